//! `evolve bench round`: one round of the real-model study (the demo's settings on the study's
//! task), timed phase by phase — collecting (answers, and with EVOLVE their refinements),
//! scoring, pairing, training, evaluating — with the tokens each phase generated. The caller
//! gives a fresh data folder, so nothing (the base model's evaluation) comes from earlier runs.

use crate::Service;
use crate::builtin::demo::{DemoSettings, REAL_MODEL_TASK, Variant};
use crate::engines::EngineSettings;
use crate::runs::progress::{RunEvent, RunTracker, phase_name};
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;

/// What to run: a model (a path, an id or a fetchable name) and the study's round, with its
/// sizes (`None`: the study's).
#[derive(Debug, Clone)]
pub struct RoundBenchSettings {
    pub model: String,
    pub variant: Variant,
    pub prompts: Option<usize>,
    pub samples: Option<usize>,
    pub refine_steps: Option<usize>,
    /// Held-out problems evaluated (direct and refine@k), before and after training.
    pub eval_prompts: Option<usize>,
    pub seed: u64,
}

/// One phase of the round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseTiming {
    pub phase: &'static str,
    pub seconds: f64,
    /// Tokens generated (0 for phases that generate none).
    pub tokens: usize,
}

impl PhaseTiming {
    pub fn tokens_per_second(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.tokens as f64 / self.seconds.max(1e-3))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundBench {
    pub phases: Vec<PhaseTiming>,
    /// The whole round, model loading included.
    pub wall_s: f64,
}

impl Service {
    /// Runs one round as `settings` say on this service's data folder; see the module docs.
    pub fn bench_round(
        &self,
        settings: &RoundBenchSettings,
        engine: &EngineSettings,
    ) -> Result<RoundBench> {
        let study = DemoSettings::for_task(REAL_MODEL_TASK);
        let demo = DemoSettings {
            rounds: 1,
            prompts_per_round: settings.prompts.unwrap_or(study.prompts_per_round),
            samples: settings.samples.unwrap_or(study.samples),
            refine_steps: settings.refine_steps.unwrap_or(study.refine_steps),
            eval_prompts: settings.eval_prompts.unwrap_or(study.eval_prompts),
            ..study
        };
        let config = settings.variant.apply(demo.run_config(settings.seed));
        config.validate().map_err(anyhow::Error::msg)?;
        let model = match crate::models::catalog::known_model(&settings.model) {
            Some(known) => self.fetch_known_model(&known, &mut |_, _| {})?.0,
            None => {
                self.add_model(&self.resolve_model(&settings.model)?, None)?
                    .model
            }
        };
        let dataset =
            self.task_dataset(REAL_MODEL_TASK, demo.prompts_per_round, demo.eval_prompts)?;
        let run = self.create_run("bench round", model.id, dataset, &config)?;
        let started = Instant::now();
        let mut tracker = RunTracker::new(run);
        let mut phases = Vec::new();
        self.drive_run(run, engine, &mut |p| {
            tracker.on(self, &p, &mut |e| {
                if let RunEvent::PhaseDone {
                    state,
                    seconds,
                    tokens,
                    ..
                } = e
                {
                    phases.push(PhaseTiming {
                        phase: phase_name(state),
                        seconds,
                        tokens,
                    });
                }
            });
            true
        })?;
        Ok(RoundBench {
            phases,
            wall_s: started.elapsed().as_secs_f64(),
        })
    }
}
