//! What a preference-training run is configured with: the loss's weights and kind, the reference
//! policy, activation recomputation and the optimiser ([`TrainConfig`]).

use crate::loss::{DpoKind, EvolveLossConfig, PreferencePair, Reference};
use crate::model::config::LlamaConfig;
use crate::optim::OptimConfig;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};

/// Whether a step recomputes each block's activations in its backward pass ("gradient
/// checkpointing"): one block's activations in memory instead of every block's, for one more
/// forward pass of the policy (SmolLM2-135M, 4 pairs of 256 tokens: 1.7 instead of 9.1 GB,
/// 39 instead of 27 s a step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// Recompute when keeping every block's activations would take more than half of the
    /// memory free when training starts (or when that is unknown).
    #[default]
    Auto,
    Always,
    Never,
}

impl Recompute {
    pub const ALL: [Recompute; 3] = [Recompute::Auto, Recompute::Always, Recompute::Never];

    pub fn as_str(self) -> &'static str {
        match self {
            Recompute::Auto => "auto",
            Recompute::Always => "always",
            Recompute::Never => "never",
        }
    }

    /// The decision for training `model` on `data` in batches of `batch` pairs.
    pub fn decide(self, model: &LlamaConfig, data: &[PreferencePair], batch: usize) -> bool {
        self.decide_with(model, data, batch, evolve_core::memory::available_memory())
    }

    fn decide_with(
        self,
        model: &LlamaConfig,
        data: &[PreferencePair],
        batch: usize,
        free: Option<u64>,
    ) -> bool {
        match self {
            Recompute::Always => true,
            Recompute::Never => false,
            Recompute::Auto => {
                let longest = data
                    .iter()
                    .map(|p| p.prompt.len() + p.chosen.len().max(p.rejected.len()))
                    .max()
                    .unwrap_or(0);
                let kept = crate::preflight::kept_activation_bytes(model, batch, longest);
                free.is_none_or(|free| kept > free / 2)
            }
        }
    }
}

impl std::str::FromStr for Recompute {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Recompute::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown recompute mode '{s}': auto, always or never"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub beta: f64,
    pub lambda_refine: f64,
    pub nll_weight: f64,
    /// Weight of the preference term (0: the NLL alone, a supervised warm-up).
    #[serde(default = "one")]
    pub dpo_weight: f64,
    pub dpo_kind: DpoKind,
    /// Which model the DPO log-ratios are taken against.
    #[serde(default)]
    pub reference: Reference,
    /// Keep every block's activations for the backward pass, or recompute them there.
    #[serde(default)]
    pub recompute: Recompute,
    /// Learning rate, batches, epochs: the same type as full-parameter training's.
    #[serde(flatten)]
    pub optim: OptimConfig,
}

impl Default for TrainConfig {
    /// The LoRA-DPO defaults of [`evolve_core::train::defaults`] (β and the optimiser's).
    fn default() -> Self {
        TrainConfig {
            beta: evolve_core::train::defaults::BETA,
            lambda_refine: 1.0,
            nll_weight: 0.0,
            dpo_weight: 1.0,
            dpo_kind: DpoKind::Sigmoid,
            reference: Reference::Base,
            recompute: Recompute::Auto,
            optim: OptimConfig::default(),
        }
    }
}

fn one() -> f64 {
    1.0
}

impl TrainConfig {
    /// The same run as a supervised warm-up: the chosen answers' NLL alone.
    pub fn sft(&self) -> TrainConfig {
        TrainConfig {
            dpo_weight: 0.0,
            nll_weight: 1.0,
            // The preference term is off, so the references only feed the logged rewards; the
            // base ones are computed batch by batch, without the initial one's upfront pass.
            reference: Reference::Base,
            ..self.clone()
        }
    }

    pub fn loss_config(&self) -> EvolveLossConfig {
        EvolveLossConfig {
            beta: self.beta,
            lambda_refine: self.lambda_refine,
            nll_weight: self.nll_weight,
            dpo_weight: self.dpo_weight,
            kind: self.dpo_kind,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.beta <= 0.0 || !self.beta.is_finite() {
            return Err(TrainError::Config("beta must be positive".into()));
        }
        self.optim.validate()
    }

    /// Optimizer steps in one epoch over `n_pairs` pairs.
    pub fn steps_per_epoch(&self, n_pairs: usize) -> usize {
        self.optim.steps_per_epoch(n_pairs)
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self, n_pairs: usize) -> usize {
        self.optim.total_steps(n_pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_core::PairKind;

    #[test]
    fn auto_recomputes_when_the_kept_activations_would_take_half_the_free_memory() {
        // Qwen2.5-0.5B's dimensions (`evolve bench train`'s `0.5b` shape).
        let cfg = LlamaConfig {
            architecture: crate::model::config::Architecture::Qwen2,
            n_embd: 896,
            n_layer: 24,
            n_head: 14,
            n_head_kv: 2,
            head_dim: 64,
            n_ff: 4864,
            n_vocab: 151_936,
            context_length: 4096,
            rope_dims: 64,
            rope_freq_base: 1_000_000.0,
            rope_freq_scale: 1.0,
            rms_eps: 1e-6,
            tied_embeddings: true,
            sliding_window: None,
            rope_attn_factor: 1.0,
            rope_original_context: None,
        };
        let data = vec![PreferencePair::new(
            PairKind::Direct,
            vec![1; 128],
            vec![2; 128],
            vec![3; 100],
        )];
        let kept = crate::kept_activation_bytes(&cfg, 4, 256);
        let gib = 1u64 << 30;
        assert!(kept > 10 * gib && kept < 40 * gib, "{kept}");
        let auto = |free| Recompute::Auto.decide_with(&cfg, &data, 4, free);
        assert!(auto(Some(kept)), "half the free memory is not enough");
        assert!(!auto(Some(2 * kept + gib)));
        assert!(auto(None), "unknown free memory");
        assert!(Recompute::Always.decide_with(&cfg, &data, 4, Some(u64::MAX)));
        assert!(!Recompute::Never.decide_with(&cfg, &data, 4, Some(0)));
        for r in Recompute::ALL {
            assert_eq!(r.as_str().parse::<Recompute>(), Ok(r));
        }
    }
}
