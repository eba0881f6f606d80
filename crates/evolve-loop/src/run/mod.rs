//! The orchestrator: one place that drives a run's rounds through the persisted state machine
//! collect → refine → score → pair → train → evaluate.
//!
//! Every step reads what the store already holds and only does what is missing, and writes its
//! results in small transactions as it goes, so `kill -9` at any moment loses at most the work in
//! flight and [`Orchestrator::run`] on the same run continues where it stopped. Sampling seeds
//! derive from (run seed, round, prompt, sample), never from batch order, so redone work gives the
//! same text.

mod collect;
mod config;
mod error;
pub mod evaluate;
mod pair;
mod score;
mod train;

pub use config::{
    PreferenceLoss, ReferenceModel, RunConfig, RunObjective, TrainSettings, create_run,
};
pub use error::RunError;

use evolve_core::{
    EvalMetric, EvalSubject, Generator, PreferenceTrainer, RoundState, RunState, Scorer, StepReport,
};
use evolve_store::{Prompt, Round, Run, RunId, Store};
use std::path::{Path, PathBuf};

/// What the orchestrator reports as it works (for progress bars and the UI).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Step {
        round: usize,
        state: RoundState,
    },
    /// `done` of `total` units of the current step (prompts, chains, answers…).
    Work {
        round: usize,
        state: RoundState,
        done: usize,
        total: usize,
    },
    /// `new` more tokens were generated (a delta: consumers add them up).
    Tokens {
        new: usize,
    },
    Train(StepReport),
    /// A killed or paused training continues from its checkpoint after `after_step`.
    TrainingResumed {
        round: usize,
        after_step: usize,
    },
    Evaluated {
        round: usize,
        metric: EvalMetric,
        value: f64,
    },
    /// Round `round` did less than asked, and why (e.g. it made no pairs).
    Note {
        round: usize,
        text: String,
    },
}

/// The engines a run needs, injected so the loop is the same for llama.cpp, a remote server or a
/// test double.
pub struct Engines<'a> {
    pub generator: &'a mut dyn Generator,
    pub scorer: &'a mut dyn Scorer,
    pub trainer: &'a mut dyn PreferenceTrainer,
}

pub struct Orchestrator<'a> {
    store: &'a Store,
    run: Run,
    config: RunConfig,
    engines: Engines<'a>,
    /// Where adapters are written: `<dir>/run-<id>/round-<r>/`.
    adapters_dir: PathBuf,
    /// Checksum of the base model, recorded with every adapter.
    base_sha256: String,
    progress: &'a mut dyn FnMut(Progress) -> bool,
    /// Whether the generator currently has the adapter the step needs.
    active_adapter: Option<Option<PathBuf>>,
}

impl<'a> Orchestrator<'a> {
    pub fn new(
        store: &'a Store,
        run_id: RunId,
        engines: Engines<'a>,
        adapters_dir: &Path,
        progress: &'a mut dyn FnMut(Progress) -> bool,
    ) -> Result<Self, RunError> {
        let run = store
            .get_run(run_id)?
            .ok_or(RunError::UnknownRun(run_id.0))?;
        let config: RunConfig = serde_json::from_value(run.config.clone())
            .map_err(|e| RunError::Config(e.to_string()))?;
        config.validate()?;
        let base_sha256 = store
            .get_model(run.model_id)?
            .map(|m| m.sha256)
            .unwrap_or_default();
        Ok(Self {
            store,
            adapters_dir: adapters_dir.join(format!("run-{}", run.id.0)),
            run,
            config,
            engines,
            base_sha256,
            progress,
            active_adapter: None,
        })
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// Runs (or resumes) every round to the end. A failure is recorded on the round and returned;
    /// running again retries from the failed step.
    pub fn run(&mut self) -> Result<(), RunError> {
        self.store.set_run_state(self.run.id, RunState::Running)?;
        for r in 0..self.config.rounds {
            let round = self
                .store
                .get_round(self.store.create_round(self.run.id, r as i64)?)?
                .expect("just created");
            if round.state == RoundState::Done {
                continue;
            }
            let outcome = evolve_core::panic::catch_panic(|| self.run_round(r, &round))
                .unwrap_or_else(|message| Err(RunError::Panicked(message)));
            if let Err(e) = outcome {
                // A pause leaves the round in the step it reached; a failure is recorded on it.
                let run_state = if let RunError::Paused = e {
                    RunState::Paused
                } else {
                    self.store.set_round_state(
                        round.id,
                        RoundState::Failed,
                        Some(&e.to_string()),
                    )?;
                    RunState::Failed
                };
                self.store.set_run_state(self.run.id, run_state)?;
                return Err(e);
            }
        }
        self.store.set_run_state(self.run.id, RunState::Done)?;
        Ok(())
    }

    fn enter(&mut self, round: &Round, r: usize, state: RoundState) -> Result<(), RunError> {
        self.store.set_round_state(round.id, state, None)?;
        self.report(Progress::Step { round: r, state })
    }

    fn report(&mut self, p: Progress) -> Result<(), RunError> {
        if (self.progress)(p) {
            Ok(())
        } else {
            Err(RunError::Paused)
        }
    }

    fn run_round(&mut self, r: usize, round: &Round) -> Result<(), RunError> {
        // The adapter this round samples with: the one trained in the previous round.
        let sampling_adapter = if r == 0 {
            None
        } else {
            self.adapter_of_round(r - 1)?
        };
        let sampling_id = sampling_adapter.as_ref().map(|(id, _)| *id);
        self.store.set_round_adapter(round.id, sampling_id)?;
        let sampling_path = sampling_adapter.as_ref().map(|(_, p)| p.clone());
        let prompts = self.round_prompts(r)?;

        self.enter(round, r, RoundState::Collecting)?;
        self.use_adapter(sampling_path.as_deref())?;
        self.collect(r, round, &prompts, sampling_id)?;

        self.enter(round, r, RoundState::Refining)?;
        self.refine(r, round, &prompts, sampling_id)?;

        self.enter(round, r, RoundState::Scoring)?;
        self.score_round(r, round, &prompts)?;

        self.enter(round, r, RoundState::Pairing)?;
        self.pair(r, round, &prompts)?;

        if r == 0 {
            // The untrained model refining itself: the baseline every later round is compared to.
            self.enter(round, r, RoundState::Evaluating)?;
            self.evaluate(r, round, None, EvalSubject::Base)?;
        }

        self.enter(round, r, RoundState::Training)?;
        let trained = self.train(r, round, sampling_path.as_deref())?;

        self.enter(round, r, RoundState::Evaluating)?;
        let eval_adapter = trained.or(sampling_adapter);
        self.evaluate(r, round, eval_adapter.as_ref(), EvalSubject::Trained)?;
        self.win_rate_vs_previous(r, round)?;

        self.store
            .set_round_state(round.id, RoundState::Done, None)?;
        self.report(Progress::Step {
            round: r,
            state: RoundState::Done,
        })
    }

    /// This round's train prompts: the train split walked in order, wrapping around.
    fn round_prompts(&self, r: usize) -> Result<Vec<Prompt>, RunError> {
        let train = self
            .store
            .list_prompts(self.run.dataset_id, Some("train"))?;
        if train.is_empty() {
            return Err(RunError::Config("the dataset has no train prompts".into()));
        }
        let n = self.config.prompts_per_round.min(train.len());
        Ok((0..n)
            .map(|i| train[(r * n + i) % train.len()].clone())
            .collect())
    }

    fn use_adapter(&mut self, path: Option<&Path>) -> Result<(), RunError> {
        let wanted = path.map(Path::to_path_buf);
        if self.active_adapter.as_ref() != Some(&wanted) {
            self.engines
                .generator
                .use_adapter(path, self.config.adapter_scale)?;
            self.active_adapter = Some(wanted);
        }
        Ok(())
    }
}
