//! The candle LoRA-DPO trainer behind the loop's [`PreferenceTrainer`] trait: text pairs in, a
//! GGUF LoRA that llama.cpp loads out.
//!
//! Rounds continue one adapter: a round starts from the previous round's adapter weights. The
//! DPO reference is, by [`crate::Reference`], the base model (adapter off, as with TRL on a PEFT
//! model) or the adapter training starts from (the paper's previous-round model). Neither needs
//! a second model in memory: the latter's log-probs are computed once before the first step.

use crate::encode::ChatEncoder;
use crate::export::export_gguf_lora;
use crate::loss::PreferencePair;
use crate::{
    CHECKPOINT_WEIGHTS, LlamaModel, Lora, LoraConfig, Result, TrainConfig, TrainError, Trainer,
};
use candle_core::{DType, Device};
use evolve_core::{Objective, PreferenceTrainer, StepReport, TrainExample, TrainedAdapter};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the GGUF LoRA inside a round's output directory.
pub const ADAPTER_GGUF: &str = "adapter.gguf";

/// The mid-training checkpoint inside a round's output directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";

pub struct LoraDpoTrainer {
    model_path: PathBuf,
    device: Device,
    dtype: DType,
    pub lora: LoraConfig,
    pub train: TrainConfig,
    /// Pairs longer than this (prompt + longer answer, in tokens) are left out of training.
    pub max_tokens: usize,
    /// Step-DPO: compare only the first line on which chosen and rejected differ (see
    /// [`first_differing_step`]).
    pub first_step_only: bool,
    /// Steps between checkpoints in `<out_dir>/checkpoint` (0 = none). A training killed and
    /// started again with the same pairs and settings continues from the last one.
    pub checkpoint_every: usize,
    /// Loaded on first use and kept across rounds. The base stays as stored: quantized
    /// matrices are dequantized one at a time as they are used (see [`LlamaModel::load_quantized`]),
    /// so an 8B Q4_K_M model trains in a fraction of its f32 size.
    loaded: Option<(LlamaModel, ChatEncoder)>,
}

impl LoraDpoTrainer {
    pub fn new(model_path: &Path, lora: LoraConfig, train: TrainConfig) -> Self {
        LoraDpoTrainer {
            model_path: model_path.to_path_buf(),
            device: Device::Cpu,
            dtype: DType::F32,
            lora,
            train,
            max_tokens: 1024,
            first_step_only: false,
            checkpoint_every: 10,
            loaded: None,
        }
    }

    /// Trains on `device` in `dtype` (bf16 keeps adapters and losses in f32).
    pub fn with_device(mut self, device: Device, dtype: DType) -> Self {
        self.device = device;
        self.dtype = dtype;
        self.loaded = None;
        self
    }

    fn load(&mut self) -> Result<&(LlamaModel, ChatEncoder)> {
        if self.loaded.is_none() {
            let model = LlamaModel::load_quantized(&self.model_path, &self.device, self.dtype)?;
            let encoder = ChatEncoder::from_gguf(&evolve_gguf::read_path(&self.model_path)?)?;
            self.loaded = Some((model, encoder));
        }
        Ok(self.loaded.as_ref().expect("just loaded"))
    }

    /// Tokenized pairs, in order, without those over `max_tokens`; also how many were dropped.
    pub fn encode(&mut self, examples: &[TrainExample]) -> Result<(Vec<PreferencePair>, usize)> {
        let first_step_only = self.first_step_only;
        self.encode_as(examples, first_step_only)
    }

    fn encode_as(
        &mut self,
        examples: &[TrainExample],
        first_step_only: bool,
    ) -> Result<(Vec<PreferencePair>, usize)> {
        let max = self.max_tokens;
        let (_, enc) = self.load()?;
        let mut pairs = Vec::with_capacity(examples.len());
        for e in examples {
            let prompt = enc.prompt(&e.prompt)?;
            let answer = |text, ids: &Option<Vec<u32>>, finished| {
                enc.sampled_answer(&prompt, text, ids.as_deref(), finished)
            };
            let chosen = answer(&e.chosen, &e.chosen_ids, e.chosen_finished)?;
            let rejected = answer(&e.rejected, &e.rejected_ids, e.rejected_finished)?;
            let mut pair = PreferencePair::new(e.kind, prompt, chosen, rejected);
            if first_step_only {
                pair = first_differing_step(pair, |t| enc.ends_line(t));
            }
            if pair.prompt.len() + pair.chosen.len().max(pair.rejected.len()) <= max {
                pairs.push(pair);
            }
        }
        let dropped = examples.len() - pairs.len();
        Ok((pairs, dropped))
    }

    fn run(
        &mut self,
        objective: Objective,
        examples: &[TrainExample],
        init: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<TrainedAdapter> {
        // The warm-up learns whole answers; Step-DPO cuts only what the preference term compares.
        let first_step_only = self.first_step_only && objective == Objective::Preference;
        let (pairs, dropped) = self.encode_as(examples, first_step_only)?;
        if pairs.is_empty() {
            return Err(TrainError::Data(format!(
                "all {dropped} pairs are longer than {} tokens",
                self.max_tokens
            )));
        }
        let train_cfg = match objective {
            Objective::Preference => self.train.clone(),
            Objective::Sft => self.train.sft(),
        };
        let lora_cfg = self.lora.clone();
        let every = self.checkpoint_every;
        let (model, _) = self.load()?;
        let checkpoint = out_dir.join(CHECKPOINT_DIR);
        let mut trainer =
            match Trainer::resume_matching(model, &checkpoint, &train_cfg, &lora_cfg, &pairs)? {
                Some(resumed) => resumed,
                None => {
                    let mut lora = Lora::new(
                        model.config(),
                        lora_cfg,
                        model.master_dtype(),
                        model.device(),
                    )?;
                    if let Some(init) = init {
                        lora.load_weights(&checkpoint_of(init))?;
                    }
                    Trainer::new(model, lora, train_cfg)?
                }
            };
        trainer.checkpoint_every(&checkpoint, every);
        let outcome = trainer.train(&pairs, |m| {
            let mut metrics: BTreeMap<String, f64> = m
                .named()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            // EVOLVE's two terms apart, so a user sees whether refinement pairs are learned.
            for (prefix, part) in [("direct", &m.direct), ("refine", &m.refine)] {
                if part.n_pairs > 0 {
                    for (k, v) in part.named() {
                        metrics.insert(format!("{prefix}/{k}"), v);
                    }
                }
            }
            metrics.insert("pairs_dropped".into(), dropped as f64);
            on_step(&StepReport {
                step: m.step,
                total_steps: m.total_steps,
                metrics,
            })
        })?;
        let lora_config = trainer.lora().config().clone();
        let gguf_path = out_dir.join(ADAPTER_GGUF);
        if outcome.cancelled && every > 0 && outcome.steps > 0 {
            // Stopped between steps (Ctrl-C, pause): the next start continues from here.
            trainer.save_checkpoint_whole(&checkpoint)?;
        }
        if !outcome.cancelled {
            trainer.save_checkpoint(out_dir)?;
            // Written beside and renamed, so a crash never leaves a half-written adapter.
            let partial = out_dir.join(format!("{ADAPTER_GGUF}.partial"));
            export_gguf_lora(trainer.lora(), model.config(), &partial)?;
            std::fs::rename(&partial, &gguf_path).map_err(|source| TrainError::Io {
                path: gguf_path.clone(),
                source,
            })?;
            // Done: the mid-run checkpoint has served its purpose.
            let _ = std::fs::remove_dir_all(&checkpoint);
        }
        Ok(TrainedAdapter {
            gguf_path,
            rank: lora_config.rank,
            alpha: lora_config.alpha,
            steps: outcome.steps,
            completed: !outcome.cancelled,
        })
    }
}

/// The adapter weights saved next to a round's GGUF LoRA (the next round starts from them).
fn checkpoint_of(gguf: &Path) -> PathBuf {
    gguf.parent()
        .unwrap_or(Path::new("."))
        .join(CHECKPOINT_WEIGHTS)
}

/// Step-DPO's view of a pair (Lai et al. 2024, arXiv 2406.18629): the preference term
/// compares only the line where the answers first differ (with the end token if that line is
/// the last), conditioned on the lines both share; the answers stay whole, so the NLL term
/// still covers the whole chosen answer. What follows a mistake is conditioned on it; pushing
/// those tokens down (a newline, `####`) teaches the format away instead of the mistake.
pub fn first_differing_step(
    mut pair: PreferencePair,
    ends_line: impl Fn(u32) -> bool,
) -> PreferencePair {
    let same = pair
        .chosen
        .iter()
        .zip(&pair.rejected)
        .take_while(|(a, b)| a == b)
        .count();
    let start = pair.chosen[..same]
        .iter()
        .rposition(|&t| ends_line(t))
        .map_or(0, |i| i + 1);
    let end = |ids: &[u32]| {
        ids[same..]
            .iter()
            .position(|&t| ends_line(t))
            .map_or(ids.len(), |i| same + i + 1)
    };
    // Identical answers are never paired; guard anyway against an empty span.
    let span = |ids: &[u32]| Some((start.min(ids.len() - 1), end(ids).max(start + 1)));
    pair.chosen_span = span(&pair.chosen);
    pair.rejected_span = span(&pair.rejected);
    pair
}

impl PreferenceTrainer for LoraDpoTrainer {
    fn train_for(
        &mut self,
        objective: Objective,
        examples: &[TrainExample],
        init_adapter: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> std::result::Result<TrainedAdapter, evolve_core::TrainFailed> {
        std::fs::create_dir_all(out_dir).map_err(|e| {
            evolve_core::TrainFailed(format!("cannot create {}: {e}", out_dir.display()))
        })?;
        self.run(objective, examples, init_adapter, out_dir, on_step)
            .map_err(|e| evolve_core::TrainFailed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_core::PairKind;

    /// Characters as token ids, `|` standing for the end token.
    fn ids(s: &str) -> Vec<u32> {
        s.chars().map(|c| c as u32).collect()
    }

    /// (context the step is conditioned on, chosen step, rejected step) as text.
    fn step(chosen: &str, rejected: &str) -> (String, String, String) {
        let pair = PreferencePair::new(PairKind::Direct, ids("Q:"), ids(chosen), ids(rejected));
        let out = first_differing_step(pair, |t| t == '\n' as u32);
        let text = |v: &[u32]| {
            v.iter()
                .map(|&t| char::from_u32(t).unwrap())
                .collect::<String>()
        };
        let (cs, ce) = out.chosen_span.unwrap();
        let (rs, re) = out.rejected_span.unwrap();
        assert_eq!(cs, rs, "both steps follow the same shared lines");
        assert_eq!(
            out.chosen,
            ids(chosen),
            "the answers stay whole (for the NLL)"
        );
        let context = text(&out.prompt) + &text(&out.chosen[..cs]);
        (
            context,
            text(&out.chosen[cs..ce]),
            text(&out.rejected[rs..re]),
        )
    }

    #[test]
    fn the_first_differing_line_is_compared_and_shared_lines_join_the_prompt() {
        // A wrong carry in the second line; the rest is conditioned on it.
        assert_eq!(
            step("7+8=15\n4+3+1=8\n#### 85|", "7+8=15\n4+3=7\n#### 75|"),
            ("Q:7+8=15\n".into(), "4+3+1=8\n".into(), "4+3=7\n".into())
        );
        // Only the final line differs: it is the last step, so the end token stays.
        assert_eq!(
            step("7+8=15\n#### 85|", "7+8=15\n#### 86|"),
            ("Q:7+8=15\n".into(), "#### 85|".into(), "#### 86|".into())
        );
        // Different from the first token: nothing is shared.
        assert_eq!(
            step("1+1=2\n|", "9\n|"),
            ("Q:".into(), "1+1=2\n".into(), "9\n".into())
        );
        // One answer stops where the other goes on.
        assert_eq!(
            step("a\n|", "a\nb\n|"),
            ("Q:a\n".into(), "|".into(), "b\n".into())
        );
    }
}
