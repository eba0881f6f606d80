//! One progress stream for a run, the same in every shell: the CLI draws it as bars, the app
//! sends it as `run_progress` and `run_metrics` events. [`RunTracker`] turns the orchestrator's
//! reports into what people read: the phase, units done, tokens/s and an ETA, and the training
//! metrics on one global step axis across rounds.

use crate::Service;
use evolve_core::{EvalMetric, RoundState, StepReport};
use evolve_loop::axis::step_offsets;
use evolve_loop::run::Progress;
use evolve_store::{RunId, TrainingMetric};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Where a run is, as a progress bar shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct RunProgress {
    pub run_id: i64,
    pub round: usize,
    /// The phase's name as people read it (`sampling`, `refining`, `training`, …).
    pub state: &'static str,
    pub done: usize,
    pub total: usize,
    pub tokens_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
}

/// One training step's metrics, placed on the run's global step axis.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct MetricPoint {
    pub run_id: i64,
    pub round: usize,
    pub step: usize,
    pub global_step: i64,
    pub metrics: BTreeMap<String, f64>,
}

/// What a shell shows of a run while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent<'a> {
    /// A phase of a round finished after `seconds`, having generated `tokens`.
    PhaseDone {
        round: usize,
        state: RoundState,
        seconds: f64,
        tokens: usize,
    },
    /// The current phase moved; `milestone` marks a phase start or end, which a throttled
    /// display should not drop.
    Progress {
        progress: &'a RunProgress,
        milestone: bool,
    },
    /// A training step ended (sent before its `Progress`).
    Metrics(&'a MetricPoint),
    TrainingResumed {
        round: usize,
        after_step: usize,
    },
    Evaluated {
        round: usize,
        metric: &'a EvalMetric,
        value: f64,
    },
    /// The round did less than asked, and why (it is also the round's stored note).
    Note {
        round: usize,
        text: &'a str,
    },
}

/// The phase names the bars and the UI show.
pub fn phase_name(s: RoundState) -> &'static str {
    match s {
        RoundState::Collecting => "sampling",
        other => other.as_str(),
    }
}

/// Follows one run's reports; see the module docs.
pub struct RunTracker {
    run: RunId,
    phase: Option<(usize, RoundState)>,
    phase_started: Instant,
    /// Tokens generated since the phase started.
    tokens: usize,
    /// Where each round's training steps start on the global axis.
    offsets: HashMap<usize, i64>,
    last: RunProgress,
}

impl RunTracker {
    pub fn new(run: RunId) -> Self {
        RunTracker {
            run,
            phase: None,
            phase_started: Instant::now(),
            tokens: 0,
            offsets: HashMap::new(),
            last: RunProgress {
                run_id: run.0,
                round: 0,
                state: "starting",
                done: 0,
                total: 0,
                tokens_per_second: None,
                eta_seconds: None,
            },
        }
    }

    /// The latest progress, for a status query between events.
    pub fn latest(&self) -> &RunProgress {
        &self.last
    }

    /// Turns one report into the events a shell shows. `service` places training steps on the
    /// global axis (it reads the earlier rounds' step counts once per round).
    pub fn on(&mut self, service: &Service, p: &Progress, emit: &mut dyn FnMut(RunEvent<'_>)) {
        match p {
            Progress::Step { round, state } => {
                if let Some((r, s)) = self.phase.take() {
                    emit(RunEvent::PhaseDone {
                        round: r,
                        state: s,
                        seconds: self.phase_started.elapsed().as_secs_f64(),
                        tokens: self.tokens,
                    });
                }
                self.phase_started = Instant::now();
                self.tokens = 0;
                if *state != RoundState::Done {
                    self.phase = Some((*round, *state));
                }
                self.update(*round, phase_name(*state), 0, 0, None);
                emit(RunEvent::Progress {
                    progress: &self.last,
                    milestone: true,
                });
            }
            Progress::Work {
                round,
                state,
                done,
                total,
            } => {
                self.update(*round, phase_name(*state), *done, *total, None);
                emit(RunEvent::Progress {
                    progress: &self.last,
                    milestone: done == total,
                });
            }
            Progress::Tokens { new } => {
                self.tokens += new;
                let (round, state, done, total) = (
                    self.last.round,
                    self.last.state,
                    self.last.done,
                    self.last.total,
                );
                self.update(round, state, done, total, None);
                emit(RunEvent::Progress {
                    progress: &self.last,
                    milestone: false,
                });
            }
            Progress::Train(report) => {
                let round = self.last.round;
                let point = self.metric_point(service, round, report);
                emit(RunEvent::Metrics(&point));
                let tps = report.metrics.get("tokens_per_second").copied();
                self.update(round, "training", report.step, report.total_steps, tps);
                emit(RunEvent::Progress {
                    progress: &self.last,
                    milestone: report.step == report.total_steps,
                });
            }
            Progress::TrainingResumed { round, after_step } => emit(RunEvent::TrainingResumed {
                round: *round,
                after_step: *after_step,
            }),
            Progress::Evaluated {
                round,
                metric,
                value,
            } => emit(RunEvent::Evaluated {
                round: *round,
                metric,
                value: *value,
            }),
            Progress::Note { round, text } => emit(RunEvent::Note {
                round: *round,
                text,
            }),
        }
    }

    fn update(
        &mut self,
        round: usize,
        state: &'static str,
        done: usize,
        total: usize,
        tps: Option<f64>,
    ) {
        let elapsed = self.phase_started.elapsed().as_secs_f64();
        let tps = tps.or_else(|| (self.tokens > 0).then(|| self.tokens as f64 / elapsed.max(1e-3)));
        let eta =
            (done > 0 && total >= done).then(|| elapsed / done as f64 * (total - done) as f64);
        self.last = RunProgress {
            run_id: self.run.0,
            round,
            state,
            done,
            total,
            tokens_per_second: tps,
            eta_seconds: eta,
        };
    }

    fn metric_point(
        &mut self,
        service: &Service,
        round: usize,
        report: &StepReport,
    ) -> MetricPoint {
        let run = self.run;
        let offset = *self
            .offsets
            .entry(round)
            .or_insert_with(|| service.metric_offset(run, round).unwrap_or(0));
        MetricPoint {
            run_id: run.0,
            round,
            step: report.step,
            global_step: offset + report.step as i64,
            metrics: report.metrics.clone(),
        }
    }
}

/// A training's round index, its offset on the run's step axis, and its metrics.
type PlacedTraining = (i64, i64, Vec<TrainingMetric>);

impl Service {
    /// Every training of the run, round by round, with its round index and its offset on the
    /// run's global step axis (`evolve_loop::axis::step_offsets`), and the axis's last step.
    fn trainings(&self, run: RunId) -> anyhow::Result<(Vec<PlacedTraining>, i64)> {
        let store = self.store();
        let mut trainings = Vec::new();
        for r in store.rounds_of_run(run)? {
            for t in store.training_runs_of_round(r.id)? {
                trainings.push((r.round_index, store.metrics_of(t.id)?));
            }
        }
        let (offsets, last) = step_offsets(trainings.iter().map(|(_, m)| m.as_slice()));
        let placed = trainings
            .into_iter()
            .zip(offsets)
            .map(|((round, metrics), offset)| (round, offset, metrics))
            .collect();
        Ok((placed, last))
    }

    /// Where round `round`'s training steps start on the run's global step axis.
    pub fn metric_offset(&self, run: RunId, round: usize) -> anyhow::Result<i64> {
        let (trainings, last) = self.trainings(run)?;
        // No training of this round yet: it starts after the last step so far.
        Ok(trainings
            .iter()
            .find(|(r, ..)| *r >= round as i64)
            .map_or(last, |(_, offset, _)| *offset))
    }

    /// The run's training metrics from global step `since` on, in order.
    pub fn run_metrics(&self, run: RunId, since: i64) -> anyhow::Result<Vec<MetricPoint>> {
        self.run(run)?;
        let mut out = Vec::new();
        for (round, offset, metrics) in self.trainings(run)?.0 {
            for m in metrics {
                let global_step = offset + m.step;
                if global_step >= since {
                    out.push(MetricPoint {
                        run_id: run.0,
                        round: round as usize,
                        step: m.step as usize,
                        global_step,
                        metrics: m.metrics,
                    });
                }
            }
        }
        Ok(out)
    }
}
