//! A round's training: its examples (pairs, or accepted samples for the RFT baseline), the
//! training run's bookkeeping in the store, and the adapter it leaves.

use super::{Orchestrator, Progress, RunError, RunObjective};
use crate::pairs::{PairStrategy, pair_texts};
use evolve_core::{Objective, ReviewState, TrainExample};
use evolve_store::{
    AdapterId, NewAdapter, PairFilter, Prompt, PromptId, Round, TrainingMetric, TrainingState,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

impl Orchestrator<'_> {
    /// The adapter a finished round produced, if it trained one.
    pub(super) fn adapter_of_round(
        &self,
        r: usize,
    ) -> Result<Option<(AdapterId, PathBuf)>, RunError> {
        let Some(round) = self
            .store
            .rounds_of_run(self.run.id)?
            .into_iter()
            .find(|x| x.round_index == r as i64)
        else {
            return Ok(None);
        };
        let runs = self.store.training_runs_of_round(round.id)?;
        let Some(done) = runs.iter().rev().find(|t| t.state == TrainingState::Done) else {
            // No pairs that round: keep sampling with what that round sampled with.
            return Ok(match round.adapter_id {
                Some(id) => self
                    .store
                    .get_adapter(id)?
                    .map(|a| (a.id, PathBuf::from(a.path))),
                None => None,
            });
        };
        Ok(self
            .store
            .list_adapters()?
            .into_iter()
            .find(|a| a.training_run_id == Some(done.id))
            .map(|a| (a.id, PathBuf::from(a.path))))
    }

    pub(super) fn train(
        &mut self,
        r: usize,
        round: &Round,
        init: Option<&Path>,
    ) -> Result<Option<(AdapterId, PathBuf)>, RunError> {
        let previous = self.store.training_runs_of_round(round.id)?;
        if previous.iter().any(|t| t.state == TrainingState::Done) {
            return self.adapter_of_round(r);
        }
        // A training left `running` (killed) or `cancelled` (paused) goes on in the same row:
        // the trainer continues from its last checkpoint when it has one of these very pairs,
        // else starts again (deterministically, so with the same result either way).
        let unfinished = previous
            .iter()
            .rev()
            .find(|t| matches!(t.state, TrainingState::Running | TrainingState::Cancelled))
            .map(|t| t.id);
        let examples = match self.config.train.objective {
            RunObjective::Preference => self.pair_examples(round)?,
            RunObjective::Rft => self.accepted_samples(round)?,
        };
        if examples.is_empty() {
            return Ok(None);
        }
        let objective = if self.config.train.objective == RunObjective::Rft
            || (self.config.train.sft_warmup && r == 0)
        {
            Objective::Sft
        } else {
            Objective::Preference
        };
        let training = match unfinished {
            Some(id) => id,
            None => {
                let config = serde_json::json!({
                    "examples": examples.len(),
                    "init_adapter": init.map(|p| p.display().to_string()),
                    "objective": match objective {
                        Objective::Sft => "sft",
                        Objective::Preference => "preference",
                    },
                });
                self.store.create_training_run(Some(round.id), &config)?
            }
        };
        self.store
            .set_training_state(training, TrainingState::Running, None)?;
        let out_dir = self.adapters_dir.join(format!("round-{r}"));
        let store = self.store;
        let progress = &mut *self.progress;
        let mut store_error = None;
        let mut first_step = None;
        let trainer = &mut *self.engines.trainer;
        let result = trainer.train_for(objective, &examples, init, &out_dir, &mut |report| {
            if first_step.is_none() {
                first_step = Some(report.step);
                // Steps logged after the checkpoint it resumes from are logged again.
                if let Err(e) = store.truncate_metrics(training, report.step as i64) {
                    store_error = Some(e);
                    return false;
                }
                if report.step > 1
                    && !progress(Progress::TrainingResumed {
                        round: r,
                        after_step: report.step - 1,
                    })
                {
                    return false;
                }
            }
            let metric = TrainingMetric {
                step: report.step as i64,
                epoch: 0.0,
                metrics: report.metrics.clone(),
            };
            if let Err(e) = store.append_metrics(training, &[metric]) {
                store_error = Some(e);
                return false;
            }
            progress(Progress::Train(report.clone()))
        });
        if let Some(e) = store_error {
            return Err(e.into());
        }
        let trained = match result {
            Ok(t) if t.completed => t,
            Ok(_) => {
                self.store
                    .set_training_state(training, TrainingState::Cancelled, None)?;
                return Err(RunError::Paused);
            }
            Err(e) => {
                self.store.set_training_state(
                    training,
                    TrainingState::Failed,
                    Some(&e.to_string()),
                )?;
                return Err(e.into());
            }
        };
        let bytes = std::fs::read(&trained.gguf_path).map_err(|source| RunError::Io {
            path: trained.gguf_path.clone(),
            source,
        })?;
        let adapter = self.store.finish_training(
            training,
            &NewAdapter {
                training_run_id: Some(training),
                base_model_id: self.run.model_id,
                base_sha256: self.base_sha256.clone(),
                format: evolve_core::AdapterFormat::GgufLora,
                path: trained.gguf_path.display().to_string(),
                sha256: sha256_hex(&bytes),
                file_size: bytes.len() as i64,
                rank: trained.rank as i64,
                alpha: trained.alpha,
            },
        )?;
        Ok(Some((adapter, trained.gguf_path)))
    }

    /// The round's pairs (vetoed ones left out, edits applied) as training examples.
    fn pair_examples(&self, round: &Round) -> Result<Vec<TrainExample>, RunError> {
        let pairs = self.store.list_pairs(&PairFilter {
            round_id: Some(round.id),
            ..Default::default()
        })?;
        let mut examples = Vec::new();
        for pair in pairs.iter().filter(|p| p.review != ReviewState::Vetoed) {
            let t = pair_texts(self.store, &self.config.template, pair)?;
            examples.push(TrainExample {
                kind: pair.kind,
                prompt: self.engines.generator.format_chat(&t.messages)?,
                chosen: t.chosen,
                rejected: t.rejected,
                chosen_finished: t.chosen_finished,
                rejected_finished: t.rejected_finished,
                chosen_ids: t.chosen_ids,
                rejected_ids: t.rejected_ids,
            });
        }
        Ok(examples)
    }

    /// For rejection-sampling fine-tuning: every sampled direct answer the scorer accepts, as
    /// the chosen answer to its question (no rejected answer: the objective is its NLL).
    fn accepted_samples(&self, round: &Round) -> Result<Vec<TrainExample>, RunError> {
        let threshold = match self.config.pair_strategy {
            PairStrategy::CorrectVsIncorrect { threshold, .. } => threshold,
            _ => 0.5,
        };
        let scorer = self.engines.scorer.name().to_string();
        let prompts: HashMap<PromptId, Prompt> = self
            .store
            .list_prompts(self.run.dataset_id, Some("train"))?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let mut examples = Vec::new();
        for g in self.store.generations_of_round(round.id)? {
            let Some(prompt) = g.prompt_id.and_then(|p| prompts.get(&p)) else {
                continue;
            };
            if g.step_index != 0 || !g.finished {
                continue;
            }
            let accepted = self
                .store
                .scores_of(g.id)?
                .iter()
                .any(|s| s.scorer == scorer && s.value >= threshold);
            if accepted {
                let messages = self.config.template.render_question(&prompt.prompt);
                examples.push(TrainExample {
                    chosen_ids: crate::pairs::token_ids(g.token_ids),
                    ..TrainExample::new(
                        evolve_core::PairKind::Direct,
                        self.engines.generator.format_chat(&messages)?,
                        g.text,
                        String::new(),
                    )
                });
            }
        }
        Ok(examples)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
