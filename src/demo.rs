//! The built-in task: the tiny task model, the arithmetic dataset and a run configuration that
//! suits them. `evolve demo`, the app's first start and the end-to-end tests all use these.

use crate::Service;
use crate::task_model::{EVAL_SEED, TASK_MODEL_FILE, TaskModelConfig, train_task_model};
use anyhow::Result;
use evolve_core::{RefinementTemplate, SamplerConfig};
use evolve_loop::arithmetic::{gsm8k_jsonl, is_held_out, problems_split, task_template};
use evolve_loop::pairs::{PairKinds, PairStrategy};
use evolve_loop::run::{PreferenceLoss, ReferenceModel, RunConfig, TrainSettings};
use evolve_store::{DatasetId, Model, NewPrompt};
use evolve_train::SftMetrics;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Display name of the registered task model.
pub const TASK_MODEL_NAME: &str = "tiny task (built in)";

/// Whether a model is the built-in task model (by registered name or file name).
pub fn is_task_model(path: &std::path::Path, display_name: Option<&str>) -> bool {
    display_name == Some(TASK_MODEL_NAME)
        || path.file_name().and_then(|n| n.to_str()) == Some(TASK_MODEL_FILE)
}

/// The refinement prompt a model should be asked with: the task model knows only the short
/// instruction it was trained on; any other model gets our default.
pub fn refinement_template_for(
    path: &std::path::Path,
    display_name: Option<&str>,
) -> RefinementTemplate {
    if is_task_model(path, display_name) {
        task_template()
    } else {
        RefinementTemplate::default()
    }
}

/// Settings of the arithmetic run; the defaults are what `evolve demo` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSettings {
    pub rounds: usize,
    pub prompts_per_round: usize,
    pub eval_prompts: usize,
    pub samples: usize,
    pub refine_steps: usize,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            rounds: 3,
            prompts_per_round: 96,
            eval_prompts: 200,
            samples: 4,
            refine_steps: 2,
        }
    }
}

impl DemoSettings {
    /// The run configuration for the task model: its short refinement instruction, the numeric
    /// verifier, correct-vs-incorrect pairs, and LoRA-DPO with an NLL term on the chosen answer.
    /// Measured on the task model (docs/demo.md): plain DPO (no NLL) or a larger learning rate
    /// lowered held-out accuracy — chosen and rejected log-probs both fell (likelihood
    /// displacement); lr 1e-4, β 0.5 and NLL weight 1 kept it level.
    pub fn run_config(&self) -> RunConfig {
        RunConfig {
            rounds: self.rounds,
            prompts_per_round: self.prompts_per_round,
            samples: self.samples,
            refine_steps: self.refine_steps,
            sampler: SamplerConfig {
                temperature: 0.7,
                max_tokens: 48,
                seed: 7,
                ..SamplerConfig::default()
            },
            eval_sampler: SamplerConfig::greedy(48),
            eval_prompts: self.eval_prompts,
            template: task_template(),
            pair_strategy: PairStrategy::CorrectVsIncorrect {
                threshold: 0.5,
                max_pairs: 2,
            },
            pair_kinds: PairKinds {
                direct: true,
                refine: true,
                keep: false,
            },
            scorer: "numeric".into(),
            chunk_prompts: 16,
            adapter_scale: 1.0,
            train: TrainSettings {
                lora_rank: 8,
                lora_alpha: 16.0,
                lr: 1e-4,
                beta: 0.5,
                lambda_refine: 1.0,
                nll_weight: 1.0,
                loss: PreferenceLoss::Sigmoid,
                reference: ReferenceModel::Base,
                first_step_only: false,
                sft_warmup: false,
                epochs: 2,
                batch_size: 8,
                grad_accum: 1,
                max_tokens: 512,
                seed: 0,
                checkpoint_every: 10,
            },
        }
    }
}

impl Service {
    /// The tiny task model in the data directory, trained on first use (minutes on a CPU;
    /// `on_step` sees the progress) and registered.
    pub fn task_model(&self, on_step: impl FnMut(&SftMetrics) -> bool) -> Result<(Model, PathBuf)> {
        let path = self.data_dir().models().join(TASK_MODEL_FILE);
        if !path.is_file() {
            train_task_model(
                &path,
                &TaskModelConfig::default(),
                &AtomicBool::new(false),
                on_step,
            )?;
        }
        let (model, _) = self.add_model(&path, Some(TASK_MODEL_NAME))?;
        Ok((model, path))
    }

    /// The arithmetic dataset: `train` problems for the rounds, `eval` held-out problems (never
    /// in any training data). Also written as GSM8K JSONL next to the database, for reference.
    pub fn arithmetic_dataset(&self, name: &str, train: usize, eval: usize) -> Result<DatasetId> {
        let digits = TaskModelConfig::default().digits;
        let mut problems = problems_split(train, digits, 0xDA7A, false);
        problems.extend(problems_split(eval, digits, EVAL_SEED, true));
        let dir = self.data_dir().root().join("datasets");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{name}.jsonl"));
        std::fs::write(&file, gsm8k_jsonl(&problems))?;
        let store = self.store();
        let id = match store.dataset_by_name(name)? {
            Some(d) => d.id,
            None => store.create_dataset(name, Some(&file.display().to_string()), "gsm8k")?,
        };
        let prompts: Vec<NewPrompt> = problems
            .iter()
            .enumerate()
            .map(|(i, p)| NewPrompt {
                idx: i as i64,
                split: if is_held_out(p) { "eval" } else { "train" }.into(),
                prompt: p.question(),
                reference: Some(p.sum().to_string()),
                metadata: serde_json::json!({"a": p.a, "b": p.b}),
            })
            .collect();
        store.add_prompts(id, &prompts)?;
        Ok(id)
    }
}
