//! Progress bars (indicatif) for long work: training steps, and the phases of a run.

use evolve::core::RoundState;
use evolve::method::run::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress bar with ETA on a terminal; in a log (stderr not a terminal) a plain line at most
/// every few seconds instead, so CI logs and `2>file` still show progress.
pub struct Bar {
    bar: ProgressBar,
    log: Option<LogLine>,
}

struct LogLine {
    prefix: String,
    last: std::cell::Cell<Instant>,
    message: std::cell::RefCell<String>,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

pub fn steps_bar(total: u64, prefix: &str) -> Bar {
    let log = (!std::io::stderr().is_terminal()).then(|| LogLine {
        prefix: prefix.to_string(),
        last: std::cell::Cell::new(Instant::now()),
        message: Default::default(),
    });
    let target = if log.is_some() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    Bar { bar, log }
}

impl Bar {
    pub fn set_length(&self, n: u64) {
        self.bar.set_length(n);
    }
    pub fn set_position(&self, n: u64) {
        self.bar.set_position(n);
        self.log_line(false);
    }
    pub fn set_message(&self, m: String) {
        if let Some(log) = &self.log {
            *log.message.borrow_mut() = m.clone();
        }
        self.bar.set_message(m);
    }
    pub fn println(&self, line: String) {
        if self.log.is_some() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
    pub fn finish_and_clear(&self) {
        self.log_line(true);
        self.bar.finish_and_clear();
    }

    fn log_line(&self, force: bool) {
        let Some(log) = &self.log else { return };
        if !force && log.last.get().elapsed() < LOG_EVERY {
            return;
        }
        log.last.set(Instant::now());
        let len = self.bar.length().unwrap_or(0);
        if len > 1 || self.bar.position() > 0 {
            eprintln!(
                "{} {}/{} {}",
                log.prefix,
                self.bar.position(),
                len,
                log.message.borrow()
            );
        }
    }
}

/// Turns the orchestrator's events into one bar per phase and a line per finished phase.
pub struct RunProgress {
    bar: Bar,
    phase: Option<(usize, RoundState)>,
    phase_started: Instant,
    /// Tokens of finished generation calls, and of the current one (its counter restarts).
    tokens_done: usize,
    tokens_call: usize,
    /// `tokens_done + tokens_call` when the phase started.
    tokens_at_phase: usize,
}

impl RunProgress {
    pub fn new() -> Self {
        RunProgress {
            bar: steps_bar(1, "starting"),
            phase: None,
            phase_started: Instant::now(),
            tokens_done: 0,
            tokens_call: 0,
            tokens_at_phase: 0,
        }
    }

    pub fn on(&mut self, p: &Progress) {
        match p {
            Progress::Step { round, state } => {
                self.bar.finish_and_clear();
                if let Some((r, s)) = self.phase.take() {
                    self.bar.println(format!(
                        "round {r}: {} done in {:.1} s",
                        s.as_str(),
                        self.phase_started.elapsed().as_secs_f64()
                    ));
                }
                if *state != RoundState::Done {
                    self.phase = Some((*round, *state));
                    self.phase_started = Instant::now();
                    self.tokens_at_phase = self.tokens_done + self.tokens_call;
                    self.bar = steps_bar(1, &format!("r{round} {}", state.as_str()));
                    self.bar.set_position(0);
                }
            }
            Progress::Work { done, total, .. } => {
                self.bar.set_length(*total as u64);
                self.bar.set_position(*done as u64);
                self.show_tokens();
            }
            Progress::Tokens { generated } => {
                if *generated < self.tokens_call {
                    self.tokens_done += self.tokens_call;
                }
                self.tokens_call = *generated;
                self.show_tokens();
            }
            Progress::Train(report) => {
                self.bar.set_length(report.total_steps as u64);
                self.bar.set_position(report.step as u64);
                let m = |k: &str| report.metrics.get(k).copied().unwrap_or(f64::NAN);
                self.bar.set_message(format!(
                    "loss {:.3} margin {:.2} acc {:.2}",
                    m("loss"),
                    m("rewards/margins"),
                    m("rewards/accuracies")
                ));
            }
            Progress::TrainingResumed { round, after_step } => self.bar.println(format!(
                "round {round}: training resumes from its checkpoint after step {after_step}"
            )),
            Progress::Evaluated {
                round,
                metric,
                value,
            } => self
                .bar
                .println(format!("round {round}: {metric} = {value:.3}")),
        }
    }

    fn show_tokens(&self) {
        let secs = self.phase_started.elapsed().as_secs_f64().max(1e-3);
        let generated = (self.tokens_done + self.tokens_call).saturating_sub(self.tokens_at_phase);
        if generated > 0 {
            self.bar
                .set_message(format!("{:.0} tok/s", generated as f64 / secs));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The built-in task model, with a training bar (and `announce`, if given, printed first) only
/// when it has to be trained — on first use of a data directory.
pub fn task_model_with_bar(
    service: &evolve::Service,
    announce: Option<&str>,
) -> anyhow::Result<(evolve::store::Model, std::path::PathBuf)> {
    let steps = evolve::task_model::TaskModelConfig::default().steps as u64;
    let mut bar = None;
    let model = service.task_model(|m| {
        let bar = bar.get_or_insert_with(|| {
            if let Some(line) = announce {
                eprintln!("{line}");
            }
            steps_bar(steps, "task model")
        });
        bar.set_position(m.step as u64);
        bar.set_message(format!("loss {:.3}", m.loss));
        true
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(model)
}
