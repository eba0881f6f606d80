//! EVOLVE runs through the service: create, drive (start or resume) and report on them. The
//! orchestrator is `evolve_loop::run`; this module picks the real engines for it: llama.cpp
//! for sampling, the scorer its spec names (a verifier, an LLM judge, a reward model), candle
//! LoRA-DPO for training.

pub mod lease;
pub mod progress;

use crate::Service;
use crate::engines::EngineSettings;
use anyhow::{Context, Result, bail};
use evolve_core::{PairKind, RoundState, RunState};
use evolve_loop::run::{
    Engines, Orchestrator, PreferenceLoss, Progress, ReferenceModel, RunConfig, TrainSettings,
    create_run,
};
use evolve_store::{DatasetId, ModelId, PairFilter, Run, RunId};
use evolve_train::OptimConfig;
use evolve_train::loss::DpoKind;
use evolve_train::optim::LrSchedule;
use evolve_train::{LoraConfig, LoraDpoTrainer, Reference, TrainConfig};
use serde::Serialize;
use std::path::{Path, PathBuf};

impl Service {
    /// The run settings `model` starts with, the same in every shell (`run start` without
    /// flags, the app's run wizard untouched): the built-in task model's own (its short
    /// refinement instruction, learning rate, every held-out problem evaluated); for any other
    /// model the loop's defaults with the held-out evaluation capped at 100 prompts, because a
    /// whole large eval split every round takes hours.
    pub fn run_config_for(&self, model: &evolve_store::Model) -> RunConfig {
        if crate::builtin::demo::is_task_model(
            std::path::Path::new(&model.path),
            model.display_name.as_deref(),
        ) {
            crate::builtin::demo::DemoSettings::default().run_config(0)
        } else {
            user_model_run_config()
        }
    }
}

/// The run settings of a model other than the built-in one (see [`Service::run_config_for`]).
pub fn user_model_run_config() -> RunConfig {
    RunConfig {
        eval_prompts: 100,
        ..RunConfig::default()
    }
}

/// [`Service::training_preflight`]'s answer.
#[derive(Debug, Clone)]
pub struct TrainingPreflight {
    /// Why a run would be refused, or `None` when it can start.
    pub problem: Option<String>,
    pub memory: Option<evolve_train::MemoryEstimate>,
    pub free_bytes: Option<u64>,
}

/// The trainer configured from a run's settings.
pub fn trainer_for(model: &std::path::Path, t: &TrainSettings) -> LoraDpoTrainer {
    let lora = LoraConfig {
        rank: t.lora_rank,
        alpha: t.lora_alpha,
        seed: t.seed,
        ..LoraConfig::default()
    };
    let train = TrainConfig {
        beta: t.beta,
        lambda_refine: t.lambda_refine,
        nll_weight: t.nll_weight,
        dpo_kind: match t.loss {
            PreferenceLoss::Sigmoid => DpoKind::Sigmoid,
            PreferenceLoss::Ipo => DpoKind::Ipo,
        },
        // Training starts from the previous round's adapter, so "initial" is that model.
        reference: match t.reference {
            ReferenceModel::Base => Reference::Base,
            ReferenceModel::Previous => Reference::Initial,
        },
        optim: OptimConfig {
            lr: t.lr,
            warmup_steps: 0,
            schedule: LrSchedule::Constant,
            batch_size: t.batch_size,
            grad_accum: t.grad_accum,
            epochs: t.epochs,
            seed: t.seed,
            ..OptimConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = LoraDpoTrainer::new(model, lora, train);
    trainer.max_tokens = t.max_tokens;
    trainer.first_step_only = t.first_step_only;
    trainer.checkpoint_every = t.checkpoint_every;
    trainer
}

pub use evolve_loop::scoreboard::{ScoreRow, WinRateCell};

#[derive(Debug, Clone, Serialize)]
pub struct RoundSummary {
    pub index: i64,
    pub state: RoundState,
    pub error: Option<String>,
    /// Why the round did less than asked (e.g. made no pairs).
    pub note: Option<String>,
    pub generations: usize,
    pub direct_pairs: usize,
    pub refine_pairs: usize,
    pub keep_pairs: usize,
    pub training_steps: usize,
    pub final_loss: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub id: i64,
    pub name: String,
    pub state: RunState,
    pub model_path: String,
    pub config: RunConfig,
    pub rounds: Vec<RoundSummary>,
    pub scoreboard: Vec<ScoreRow>,
}

impl Service {
    /// What `create_run` would check about training `model` with `config`, without creating
    /// anything: the first problem that would refuse it, the expected training memory and the
    /// memory free. For the run wizard, before the user presses Start.
    pub fn training_preflight(
        &self,
        model: ModelId,
        config: &RunConfig,
    ) -> Result<TrainingPreflight> {
        let row = self
            .store()
            .get_model(model)?
            .with_context(|| format!("no registered model with id {}", model.0))?;
        let header = crate::models::inspect(Path::new(&row.path))?;
        let memory = crate::models::training_memory(&header, config);
        let problem = crate::models::check_trainable(&header)
            .and_then(|()| config.validate().map_err(anyhow::Error::from))
            .and_then(|()| {
                crate::models::check_fits(memory.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?)
            })
            .err()
            .map(|e| format!("{e:#}"));
        let memory = memory.ok();
        Ok(TrainingPreflight {
            problem,
            memory,
            free_bytes: crate::models::available_memory(),
        })
    }

    /// Creates a run of `model` on `dataset` (nothing runs yet: see [`Service::drive_run`]),
    /// after the pre-flight: the model can be trained, the settings are valid, training fits.
    pub fn create_run(
        &self,
        name: &str,
        model: ModelId,
        dataset: DatasetId,
        config: &RunConfig,
    ) -> Result<RunId> {
        let Some(row) = self.store().get_model(model)? else {
            bail!(
                "no registered model with id {} (see `evolve models list`)",
                model.0
            );
        };
        // A model registered by an older version may fail today's pre-flight: say so now,
        // not after a round of sampling.
        let header = crate::models::inspect(Path::new(&row.path))?;
        crate::models::check_trainable(&header)?;
        let Some(ds) = self.store().get_dataset(dataset)? else {
            bail!("no dataset with id {} (see `evolve data list`)", dataset.0);
        };
        let prompts = self.store().list_prompts(dataset, Some("train"))?;
        if prompts.is_empty() {
            bail!(
                "dataset '{}' has no train prompts: import a file with at least one valid line",
                ds.name
            );
        }
        config.validate()?;
        crate::models::check_fits(&crate::models::training_memory(&header, config)?)?;
        Ok(create_run(self.store(), name, model, dataset, config)?)
    }

    /// Runs or resumes `run` to the end with the real engines. `progress` returning `false`
    /// pauses the run (it resumes where it stopped).
    pub fn drive_run(
        &self,
        run: RunId,
        engine: &EngineSettings,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<()> {
        // A panic outside a round (loading an engine, say) also ends as this run's error, so
        // the caller settles the run as failed instead of losing its worker.
        evolve_core::panic::catch_panic(|| self.drive_run_unguarded(run, engine, progress))
            .unwrap_or_else(|message| {
                Err(anyhow::anyhow!(
                    "internal error (please report it): {message}"
                ))
            })
    }

    fn drive_run_unguarded(
        &self,
        run: RunId,
        engine: &EngineSettings,
        progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<()> {
        let row = self
            .store()
            .get_run(run)?
            .with_context(|| format!("no run with id {} (see `evolve run list`)", run.0))?;
        let config: RunConfig = serde_json::from_value(row.config.clone())
            .context("the run's stored configuration is unreadable")?;
        let model = self
            .store()
            .get_model(row.model_id)?
            .context("the run's model is no longer registered")?;
        let model_path = PathBuf::from(&model.path);
        if !model_path.is_file() {
            bail!(
                "the run's model file {} is missing: put it back to resume",
                model.path
            );
        }
        // Before any engine loads: a run another process drives is refused at once.
        let mut lease = self.lease_run(run)?;
        let mut progress = |p: Progress| {
            lease.beat();
            progress(p)
        };
        let mut generator = self.load_engine(&model_path, engine, &config)?;
        let mut scorer = crate::engines::judge_for(&config.scorer, engine)?;
        let mut trainer = trainer_for(&model_path, &config.train);
        let adapters = self.data_dir().adapters();
        let mut orchestrator = Orchestrator::new(
            self.store(),
            run,
            Engines {
                generator: &mut generator,
                scorer: scorer.as_mut(),
                trainer: &mut trainer,
            },
            &adapters,
            &mut progress,
        )?;
        orchestrator.run()?;
        Ok(())
    }

    fn load_engine(
        &self,
        model: &std::path::Path,
        s: &EngineSettings,
        config: &RunConfig,
    ) -> Result<evolve_llama::LlamaEngine> {
        // Every chain of a chunk decodes in parallel.
        let parallel = (config.chunk_prompts * config.samples).clamp(1, 64);
        let options = self.engine_options(model, s, parallel)?;
        Ok(evolve_llama::LlamaEngine::load(model, options)?)
    }

    /// Every run, oldest first.
    pub fn list_runs(&self) -> Result<Vec<Run>> {
        Ok(self.store().list_runs()?)
    }

    /// Run `id`.
    pub fn run(&self, id: RunId) -> Result<Run> {
        match self.store().get_run(id)? {
            Some(r) => Ok(r),
            None => Err(crate::service::NotFound(format!("no run with id {}", id.0)).into()),
        }
    }

    /// Marks run `id` cancelled; refuses a finished or cancelled run. (A run being driven is
    /// stopped by its driver, which then calls this.)
    pub fn cancel_run(&self, id: RunId) -> Result<()> {
        let run = self.run(id)?;
        if let Some(busy) = self.run_driven_elsewhere(id)? {
            return Err(busy.into());
        }
        if matches!(run.state, RunState::Done | RunState::Cancelled) {
            bail!("run {} is already {}", id.0, run.state);
        }
        Ok(self.store().set_run_state(id, RunState::Cancelled)?)
    }

    /// Records how a driven run ended and returns its state: cancelled when the driver was
    /// asked to cancel, done, or as the orchestrator left it (paused or failed); a run that
    /// failed before the orchestrator started (its model file is gone) is marked failed.
    pub fn settle_run(&self, id: RunId, outcome: &Result<()>, cancelled: bool) -> Result<RunState> {
        let store = self.store();
        // Another process drives it: its state is that process's to write.
        if let Err(e) = outcome
            && e.downcast_ref::<crate::runs::lease::RunBusy>().is_some()
        {
            return Ok(self.run(id)?.state);
        }
        Ok(match outcome {
            _ if cancelled => {
                store.set_run_state(id, RunState::Cancelled)?;
                RunState::Cancelled
            }
            Ok(()) => RunState::Done,
            Err(_) => match store.get_run(id)?.map(|r| r.state) {
                Some(s @ (RunState::Paused | RunState::Failed)) => s,
                _ => {
                    store.set_run_state(id, RunState::Failed)?;
                    RunState::Failed
                }
            },
        })
    }

    /// Everything `evolve run status` and the UI show about a run.
    pub fn run_status(&self, run: RunId) -> Result<RunStatus> {
        let store = self.store();
        let row = store
            .get_run(run)?
            .with_context(|| format!("no run with id {} (see `evolve run list`)", run.0))?;
        let config: RunConfig = serde_json::from_value(row.config.clone())
            .context("the run's stored configuration is unreadable")?;
        let model_path = store
            .get_model(row.model_id)?
            .map(|m| m.path)
            .unwrap_or_default();
        let mut rounds = Vec::new();
        for r in store.rounds_of_run(run)? {
            let pairs = store.list_pairs(&PairFilter {
                round_id: Some(r.id),
                ..Default::default()
            })?;
            let count = |k: PairKind| pairs.iter().filter(|p| p.kind == k).count();
            let training = store.training_runs_of_round(r.id)?;
            let metrics = match training.last() {
                Some(t) => store.metrics_of(t.id)?,
                None => vec![],
            };
            rounds.push(RoundSummary {
                index: r.round_index,
                state: r.state,
                error: r.error.clone(),
                note: r.note.clone(),
                generations: store.generations_of_round(r.id)?.len(),
                direct_pairs: count(PairKind::Direct),
                refine_pairs: count(PairKind::Refine),
                keep_pairs: count(PairKind::Keep),
                training_steps: metrics.len(),
                final_loss: metrics.last().and_then(|m| m.metrics.get("loss").copied()),
            });
        }
        Ok(RunStatus {
            id: row.id.0,
            name: row.name.clone(),
            state: row.state,
            model_path,
            scoreboard: self.scoreboard(run, &config)?,
            config,
            rounds,
        })
    }

    /// The held-out scoreboard: the untrained model, then each round's adapter.
    pub fn scoreboard(&self, run: RunId, config: &RunConfig) -> Result<Vec<ScoreRow>> {
        Ok(evolve_loop::scoreboard::scoreboard(
            self.store(),
            run,
            config.refine_steps,
        )?)
    }
}

impl Service {
    /// Writes the run's pairs as TRL JSONL ([`Service::trl_pairs_jsonl`]) to `out`. Returns
    /// how many were written.
    pub fn export_trl_pairs(&self, run: RunId, out: &std::path::Path) -> Result<usize> {
        let (lines, n) = self.trl_pairs_jsonl(run)?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, lines).with_context(|| format!("cannot write {}", out.display()))?;
        Ok(n)
    }

    /// The run's pairs (vetoed ones left out, edits applied) as TRL JSONL lines, and how many;
    /// refinement pairs carry the refinement conversation as their prompt.
    pub fn trl_pairs_jsonl(&self, run: RunId) -> Result<(String, usize)> {
        use evolve_core::ReviewState;
        let store = self.store();
        let row = store
            .get_run(run)?
            .with_context(|| format!("no run with id {}", run.0))?;
        let config: RunConfig = serde_json::from_value(row.config.clone())?;
        let mut lines = String::new();
        let mut n = 0;
        for round in store.rounds_of_run(run)? {
            let filter = PairFilter {
                round_id: Some(round.id),
                ..Default::default()
            };
            for pair in store.list_pairs(&filter)? {
                if pair.review == ReviewState::Vetoed {
                    continue;
                }
                let evolve_loop::pairs::PairTexts {
                    messages,
                    chosen,
                    rejected,
                    ..
                } = evolve_loop::pairs::pair_texts(store, &config.template, &pair)?;
                let messages: Vec<(&str, &str)> = messages
                    .iter()
                    .map(|m| (m.role.as_str(), m.content.as_str()))
                    .collect();
                let json = evolve_loop::dataset::trl_pair_json(&messages, &chosen, &rejected);
                lines += &(json.to_string() + "\n");
                n += 1;
            }
        }
        Ok((lines, n))
    }
}
