//! A run's settings (stored as the run's `config_json`), their defaults and their validation.

use super::error::RunError;
use crate::pairs::{PairKinds, PairRules, PairStrategy};
use evolve_core::{RefinementTemplate, SamplerConfig, ScorerSpec};
use evolve_store::{Run, RunId, Store};
use serde::{Deserialize, Serialize};

/// Answers (samples and refinement steps) one round may produce: 2 M rows are about 2 GB of
/// SQLite and hours of sampling even for a tiny model.
pub const MAX_ANSWERS_PER_ROUND: usize = 2_000_000;

/// A run's settings, stored as the run's `config_json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub rounds: usize,
    /// Train prompts sampled per round (rounds walk through the train split in order).
    pub prompts_per_round: usize,
    /// Answers sampled per prompt (N).
    pub samples: usize,
    /// Self-refinement steps per answer (K), in collection when training reads refinements
    /// ([`RunConfig::trains_on_refinements`]) and in every evaluation (refine@1..K).
    pub refine_steps: usize,
    /// Sampling for collection; its seed is the run's seed.
    pub sampler: SamplerConfig,
    /// Decoding for evaluation (greedy by default, so scores are comparable across rounds).
    pub eval_sampler: SamplerConfig,
    /// Held-out prompts evaluated per round (0 = the whole eval split).
    pub eval_prompts: usize,
    /// Also evaluate one direct answer per held-out problem sampled with `sampler` (its
    /// temperature, a fixed seed): how often the model is right when it is not greedy.
    pub eval_sampled: bool,
    pub template: RefinementTemplate,
    pub pair_strategy: PairStrategy,
    pub pair_kinds: PairKinds,
    /// Which answers may be paired: finished ones only, and whose refinement is a refinement
    /// pair's chosen answer.
    #[serde(default = "PairRules::unrestricted")]
    pub pair_rules: PairRules,
    /// Which scorer grades the answers (its string form: `numeric`, `judge:<gguf>`, …).
    pub scorer: ScorerSpec,
    /// Prompts per generation call: the unit of work a crash can lose.
    pub chunk_prompts: usize,
    pub adapter_scale: f32,
    /// LoRA-DPO settings, handed to whichever trainer the shell injects.
    pub train: TrainSettings,
}

/// The training knobs a user sets per run (the trainer maps them onto its own config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lr: f64,
    /// DPO β: how far the policy may move from the reference.
    pub beta: f64,
    /// Weight of the refinement pairs' DPO term against the direct pairs'.
    pub lambda_refine: f64,
    /// Weight of an NLL term on the chosen answers (TRL's `rpo_alpha`); 0 = plain DPO.
    pub nll_weight: f64,
    /// The preference loss: DPO's sigmoid or IPO's squared (bounded) one.
    pub loss: PreferenceLoss,
    /// The model the log-ratios are measured against.
    pub reference: ReferenceModel,
    /// Step-DPO: train on the first line where chosen and rejected differ, the lines before it
    /// as context, instead of on the whole answers (not in the paper).
    pub first_step_only: bool,
    /// The paper's SFT warm-up: round 0 trains on the chosen answers of its direct and
    /// refinement pairs alone (their NLL); the preference loss starts in round 1.
    pub sft_warmup: bool,
    /// What a round trains on: its preference pairs, or (the baseline) its correct samples.
    pub objective: RunObjective,
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Pairs longer than this many tokens are left out.
    pub max_tokens: usize,
    pub seed: u64,
    /// Optimizer steps between training checkpoints (0 = none): a killed training loses at
    /// most this many steps.
    pub checkpoint_every: usize,
}

/// The preference loss of [`TrainSettings::loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreferenceLoss {
    /// `−log σ(β·h)`: DPO.
    #[default]
    Sigmoid,
    /// `(h − 1/(2β))²` on length-normalised log-probs: IPO, which stops pushing once the
    /// margin is reached instead of driving both log-probs down.
    Ipo,
}

/// What a round trains on ([`TrainSettings::objective`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunObjective {
    /// The preference loss on the round's pairs: EVOLVE with direct and refinement pairs,
    /// iterative DPO with direct pairs only (`pair_kinds`).
    #[default]
    Preference,
    /// Rejection-sampling fine-tuning: the NLL of every sampled direct answer the scorer
    /// accepts (score ≥ the pair strategy's threshold, else 0.5); pairs are still stored for
    /// review but not trained on. The baseline that isolates "sample, verify, imitate".
    Rft,
}

/// The DPO reference of [`TrainSettings::reference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceModel {
    /// The untrained base model in every round (TRL's default for a PEFT model).
    #[default]
    Base,
    /// The model that sampled the round: the previous round's adapter (the paper's M_t).
    Previous,
}

impl Default for TrainSettings {
    /// The LoRA-DPO defaults of [`evolve_core::train::defaults`].
    fn default() -> Self {
        use evolve_core::train::defaults as d;
        TrainSettings {
            lora_rank: d::LORA_RANK,
            lora_alpha: d::LORA_ALPHA,
            lr: d::LR,
            beta: d::BETA,
            lambda_refine: 1.0,
            nll_weight: 0.0,
            loss: PreferenceLoss::Sigmoid,
            reference: ReferenceModel::Base,
            first_step_only: false,
            sft_warmup: false,
            objective: RunObjective::Preference,
            epochs: d::EPOCHS,
            batch_size: d::BATCH_SIZE,
            grad_accum: d::GRAD_ACCUM,
            max_tokens: 2048,
            seed: 0,
            checkpoint_every: 10,
        }
    }
}

impl RunConfig {
    /// Whether training reads the round's refinements: the preference objective with
    /// refinement (or keep) pairs. Iterative DPO (direct pairs only) and RFT (direct answers)
    /// do not, and their rounds sample no refinements, as in the paper's baselines: they would
    /// spend most of a round's sampling on answers nothing trains on.
    pub fn trains_on_refinements(&self) -> bool {
        self.train.objective == RunObjective::Preference
            && (self.pair_kinds.refine || self.pair_kinds.keep)
    }

    /// The configuration stored with `run`.
    pub fn of(run: &Run) -> Result<RunConfig, RunError> {
        serde_json::from_value(run.config.clone()).map_err(|e| {
            RunError::Config(format!("the run's stored configuration is unreadable: {e}"))
        })
    }

    /// This configuration with the fields of the JSON object `patch` laid over it,
    /// recursively (a patch may name only `train.lr`), then validated. The one way settings are
    /// applied: `run start --config`, `demo --config` and the app's run wizard.
    pub fn overlay(&self, patch: &serde_json::Value) -> Result<RunConfig, RunError> {
        fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
            match (into, from) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    for (k, v) in b {
                        merge(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
                (slot, v) => *slot = v.clone(),
            }
        }
        if !patch.is_object() {
            return Err(RunError::Config(
                "run settings must be a JSON object".into(),
            ));
        }
        let mut value = serde_json::to_value(self).expect("a run configuration serializes");
        merge(&mut value, patch);
        let config: RunConfig = serde_json::from_value(value)
            .map_err(|e| RunError::Config(format!("the settings do not fit a run: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Run `id` and its configuration.
    pub fn load(store: &Store, id: RunId) -> Result<(Run, RunConfig), RunError> {
        let run = store.get_run(id)?.ok_or(RunError::UnknownRun(id.0))?;
        let config = RunConfig::of(&run)?;
        Ok((run, config))
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            rounds: 3,
            prompts_per_round: 64,
            samples: 4,
            refine_steps: 2,
            sampler: SamplerConfig {
                temperature: 0.8,
                max_tokens: 256,
                ..SamplerConfig::default()
            },
            eval_sampler: SamplerConfig::greedy(256),
            eval_prompts: 0,
            eval_sampled: true,
            template: RefinementTemplate::default(),
            pair_strategy: PairStrategy::default(),
            pair_kinds: PairKinds::default(),
            pair_rules: PairRules::default(),
            scorer: ScorerSpec::NUMERIC,
            chunk_prompts: 8,
            adapter_scale: 1.0,
            train: TrainSettings::default(),
        }
    }
}

/// Creates a run row from a config (validated).
pub fn create_run(
    store: &Store,
    name: &str,
    model: evolve_store::ModelId,
    dataset: evolve_store::DatasetId,
    config: &RunConfig,
) -> Result<RunId, RunError> {
    config.validate()?;
    let config = serde_json::to_value(config).map_err(|e| RunError::Config(e.to_string()))?;
    Ok(store.create_run(&evolve_store::NewRun {
        name: name.to_string(),
        model_id: model,
        dataset_id: dataset,
        config,
    })?)
}

impl RunConfig {
    /// Refuses every setting that cannot work, naming the field, before any work starts:
    /// sizes out of range, a learning rate or β that is not positive, sampler values no sampler
    /// takes, a judge or reward model file that does not exist.
    /// Checked before a run is created, so nothing later overflows or asks for absurd memory.
    pub fn validate(&self) -> Result<(), RunError> {
        let bad = |field: &str, rule: &str, got: String| {
            Err(RunError::Config(format!(
                "{field} must be {rule} (got {got})"
            )))
        };
        let sizes = [
            ("rounds", self.rounds, 1, 1000),
            ("prompts_per_round", self.prompts_per_round, 1, 1_000_000),
            ("samples", self.samples, 1, 64),
            ("refine_steps", self.refine_steps, 0, 8),
            ("eval_prompts", self.eval_prompts, 0, 1_000_000),
            ("chunk_prompts", self.chunk_prompts, 1, 4096),
            ("train.lora_rank", self.train.lora_rank, 1, 1024),
            ("train.epochs", self.train.epochs, 1, 1000),
            ("train.batch_size", self.train.batch_size, 1, 4096),
            ("train.grad_accum", self.train.grad_accum, 1, 4096),
            ("train.max_tokens", self.train.max_tokens, 16, 1 << 20),
        ];
        for (field, v, lo, hi) in sizes {
            if !(lo..=hi).contains(&v) {
                return bad(field, &format!("between {lo} and {hi}"), v.to_string());
            }
        }
        // Each bound alone is generous; their product is what a round stores and holds in memory.
        let answers = self.prompts_per_round * self.samples * (self.refine_steps + 1);
        if answers > MAX_ANSWERS_PER_ROUND {
            return bad(
                "prompts_per_round × samples × (refine_steps + 1)",
                &format!("at most {MAX_ANSWERS_PER_ROUND} answers a round"),
                answers.to_string(),
            );
        }
        if self.samples < 2 && self.refine_steps == 0 {
            return Err(RunError::Config(
                "samples must be at least 2 when refine_steps is 0: with one answer per prompt \
                 there is nothing to compare"
                    .into(),
            ));
        }
        let positive = [
            ("train.lr", self.train.lr, 1.0),
            ("train.beta", self.train.beta, 1e6),
            ("train.lora_alpha", self.train.lora_alpha, 1e6),
        ];
        for (field, v, hi) in positive {
            // `!(v > 0)` also catches NaN.
            if !(v > 0.0 && v <= hi) {
                return bad(field, &format!("above 0 and at most {hi}"), v.to_string());
            }
        }
        for (field, v) in [
            ("train.lambda_refine", self.train.lambda_refine),
            ("train.nll_weight", self.train.nll_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, "0 or more", v.to_string());
            }
        }
        if !(self.adapter_scale.is_finite() && self.adapter_scale > 0.0) {
            return bad("adapter_scale", "above 0", self.adapter_scale.to_string());
        }
        self.sampler
            .validate("sampler.")
            .and_then(|()| self.eval_sampler.validate("eval_sampler."))
            .map_err(RunError::Config)?;
        self.scorer
            .check_files()
            .map_err(|e| RunError::Config(format!("scorer: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_out_of_bounds_or_multiplying_past_the_cap_are_refused_by_name() {
        let ok = RunConfig::default();
        ok.validate().unwrap();
        let refused = |c: RunConfig| c.validate().unwrap_err().to_string();
        let e = refused(RunConfig {
            samples: usize::MAX,
            ..ok.clone()
        });
        assert!(e.contains("samples must be between 1 and 64"), "{e}");
        let e = refused(RunConfig {
            rounds: 0,
            ..ok.clone()
        });
        assert!(e.contains("rounds must be between 1 and 1000"), "{e}");
        // Each within its own bound, together far past the cap (and no overflow).
        let e = refused(RunConfig {
            prompts_per_round: 1_000_000,
            samples: 64,
            refine_steps: 8,
            ..ok.clone()
        });
        assert!(e.contains("at most 2000000 answers a round"), "{e}");
        RunConfig {
            prompts_per_round: 200_000,
            samples: 2,
            refine_steps: 4,
            ..ok
        }
        .validate()
        .unwrap();
    }
}
