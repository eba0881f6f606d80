//! Progress bars (indicatif) for long work: training steps, and the phases of a run.

use evolve::runs::progress::RunEvent;
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

/// Draws a run's progress stream: one bar per phase, a line per finished phase.
pub struct RunProgress {
    bar: Bar,
    /// `(round, phase)` the bar shows.
    phase: Option<(usize, &'static str)>,
}

impl RunProgress {
    pub fn new() -> Self {
        RunProgress {
            bar: steps_bar(1, "starting"),
            phase: None,
        }
    }

    pub fn on(&mut self, event: &RunEvent<'_>) {
        match event {
            RunEvent::PhaseDone {
                round,
                state,
                seconds,
                tokens,
            } => {
                self.bar.finish_and_clear();
                let speed = match tokens {
                    0 => String::new(),
                    n => format!(", {n} tokens at {:.0} tok/s", *n as f64 / seconds.max(1e-3)),
                };
                self.bar.println(format!(
                    "round {round}: {} done in {seconds:.1} s{speed}",
                    state.as_str()
                ));
            }
            RunEvent::Progress { progress: p, .. } => {
                if p.state == "done" {
                    return;
                }
                if self.phase != Some((p.round, p.state)) {
                    self.bar.finish_and_clear();
                    self.phase = Some((p.round, p.state));
                    self.bar = steps_bar(1, &format!("r{} {}", p.round, p.state));
                }
                self.bar.set_length(p.total.max(1) as u64);
                self.bar.set_position(p.done as u64);
                if p.state != "training"
                    && let Some(tps) = p.tokens_per_second
                {
                    self.bar.set_message(format!("{tps:.0} tok/s"));
                }
            }
            RunEvent::Metrics(point) => {
                let m = |k: &str| point.metrics.get(k).copied().unwrap_or(f64::NAN);
                self.bar.set_message(format!(
                    "loss {:.3} margin {:.2} acc {:.2}",
                    m("loss"),
                    m("rewards/margins"),
                    m("rewards/accuracies")
                ));
            }
            RunEvent::TrainingResumed { round, after_step } => self.bar.println(format!(
                "round {round}: training resumes from its checkpoint after step {after_step}"
            )),
            RunEvent::Evaluated {
                round,
                metric,
                value,
            } => self
                .bar
                .println(format!("round {round}: {metric} = {value:.3}")),
            RunEvent::Note { round, text } => {
                self.bar.println(format!("round {round}: warning: {text}"))
            }
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
