//! Preference losses, following TRL's `DPOTrainer` maths and metric names.
//!
//! The EVOLVE objective is DPO on direct pairs (x → y_w ≻ y_l) plus λ·DPO on refinement pairs
//! ((x, y_l, refine-template) → y_w ≻ y_l), plus an optional α·NLL on the chosen answers
//! (TRL's `rpo_alpha`), which keeps chosen likelihoods from collapsing.

pub use crate::batch::{
    SequenceBatch, answer_and_span_logps, answer_logps, sequence_logps, sft_nll,
};
use crate::lora::Lora;
use crate::model::LlamaModel;
use crate::ops::log_sigmoid;
use crate::{Result, TrainError};
use candle_core::{DType, Tensor};
use evolve_core::PairKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DpoKind {
    /// `-log σ(β·h)`, the original DPO loss.
    #[default]
    Sigmoid,
    /// `(h − 1/(2β))²` on length-normalised log-probs (IPO), robust to deterministic preferences.
    Ipo,
}

/// TRL's DPO metrics, averaged over the pairs they were computed on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DpoMetrics {
    /// `rewards/chosen` = β(π_c − ref_c).
    pub rewards_chosen: f64,
    pub rewards_rejected: f64,
    /// `rewards/margins` = chosen − rejected rewards.
    pub rewards_margins: f64,
    /// `rewards/accuracies`: fraction of pairs whose chosen reward beats the rejected one.
    pub rewards_accuracies: f64,
    /// `logps/chosen`: policy log-prob of the chosen answers.
    pub logps_chosen: f64,
    pub logps_rejected: f64,
    pub n_pairs: usize,
}

impl DpoMetrics {
    /// The metrics under the names TRL logs them.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            ("rewards/margins", self.rewards_margins),
            ("rewards/accuracies", self.rewards_accuracies),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
        ]
    }

    /// Pair-weighted average of two sets of metrics (for accumulating micro-batches).
    pub fn merge(&self, other: &DpoMetrics) -> DpoMetrics {
        let n = self.n_pairs + other.n_pairs;
        if n == 0 {
            return DpoMetrics::default();
        }
        let (a, b) = (
            self.n_pairs as f64 / n as f64,
            other.n_pairs as f64 / n as f64,
        );
        let mix = |x: f64, y: f64| a * x + b * y;
        DpoMetrics {
            rewards_chosen: mix(self.rewards_chosen, other.rewards_chosen),
            rewards_rejected: mix(self.rewards_rejected, other.rewards_rejected),
            rewards_margins: mix(self.rewards_margins, other.rewards_margins),
            rewards_accuracies: mix(self.rewards_accuracies, other.rewards_accuracies),
            logps_chosen: mix(self.logps_chosen, other.logps_chosen),
            logps_rejected: mix(self.logps_rejected, other.logps_rejected),
            n_pairs: n,
        }
    }
}

/// Per-pair DPO losses `[n]` and the metrics. Reference log-probs are constants.
pub fn dpo_losses(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
    kind: DpoKind,
) -> Result<(Tensor, DpoMetrics)> {
    let chosen_ratio = (policy_chosen - ref_chosen.detach())?;
    let rejected_ratio = (policy_rejected - ref_rejected.detach())?;
    let h = (&chosen_ratio - &rejected_ratio)?;
    let losses = match kind {
        DpoKind::Sigmoid => log_sigmoid(&(&h * beta)?)?.neg()?,
        DpoKind::Ipo => ((h - 1.0 / (2.0 * beta))?).sqr()?,
    };
    let vals =
        |t: &Tensor| -> Result<Vec<f64>> { Ok(t.detach().to_dtype(DType::F64)?.to_vec1::<f64>()?) };
    let rc: Vec<f64> = vals(&chosen_ratio)?.iter().map(|r| beta * r).collect();
    let rr: Vec<f64> = vals(&rejected_ratio)?.iter().map(|r| beta * r).collect();
    let n = rc.len();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n.max(1) as f64;
    let accurate: Vec<f64> = rc
        .iter()
        .zip(&rr)
        .map(|(c, r)| if c > r { 1.0 } else { 0.0 })
        .collect();
    let metrics = DpoMetrics {
        rewards_chosen: mean(&rc),
        rewards_rejected: mean(&rr),
        rewards_margins: mean(&rc) - mean(&rr),
        rewards_accuracies: mean(&accurate),
        logps_chosen: mean(&vals(policy_chosen)?),
        logps_rejected: mean(&vals(policy_rejected)?),
        n_pairs: n,
    };
    Ok((losses, metrics))
}

/// The mean DPO loss over the pairs and TRL's metrics.
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    ref_chosen: &Tensor,
    ref_rejected: &Tensor,
    beta: f64,
    kind: DpoKind,
) -> Result<(Tensor, DpoMetrics)> {
    let (losses, metrics) = dpo_losses(
        policy_chosen,
        policy_rejected,
        ref_chosen,
        ref_rejected,
        beta,
        kind,
    )?;
    Ok((losses.mean_all()?, metrics))
}

/// One preference pair as token ids. For [`PairKind::Refine`], `prompt` already holds the
/// question, the weak answer and the refinement instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub kind: PairKind,
    pub prompt: Vec<u32>,
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    /// The answer tokens (`start..end`) the preference term compares, when not all of them
    /// (Step-DPO); the NLL term always covers the whole chosen answer.
    #[serde(default)]
    pub chosen_span: Option<(usize, usize)>,
    #[serde(default)]
    pub rejected_span: Option<(usize, usize)>,
}

impl PreferencePair {
    /// A pair compared on the whole answers.
    pub fn new(kind: PairKind, prompt: Vec<u32>, chosen: Vec<u32>, rejected: Vec<u32>) -> Self {
        PreferencePair {
            kind,
            prompt,
            chosen,
            rejected,
            chosen_span: None,
            rejected_span: None,
        }
    }
}

/// Reference-policy log-probs of one pair (the base model, adapter off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RefLogps {
    pub chosen: f64,
    pub rejected: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvolveLossConfig {
    pub beta: f64,
    /// λ: weight of each refinement pair relative to a direct pair.
    pub lambda_refine: f64,
    /// α: weight of the NLL of the chosen answers; 0 turns it off.
    pub nll_weight: f64,
    /// Weight of the preference term; 0 leaves only the NLL (supervised warm-up).
    pub dpo_weight: f64,
    pub kind: DpoKind,
}

impl Default for EvolveLossConfig {
    fn default() -> Self {
        EvolveLossConfig {
            beta: 0.1,
            lambda_refine: 1.0,
            nll_weight: 0.0,
            dpo_weight: 1.0,
            kind: DpoKind::Sigmoid,
        }
    }
}

pub struct EvolveLossOutput {
    /// Scalar loss to backpropagate.
    pub loss: Tensor,
    /// Metrics over all pairs of the batch.
    pub metrics: DpoMetrics,
    pub direct: DpoMetrics,
    pub refine: DpoMetrics,
    /// Mean NLL per chosen-answer token (reported even when its weight is 0).
    pub nll: f64,
    pub real_tokens: usize,
}

/// The batch of `2n` sequences, chosen answers first, then rejected ones.
fn pair_batch(pairs: &[&PreferencePair], pad_id: u32, model: &LlamaModel) -> Result<SequenceBatch> {
    let seqs: Vec<(&[u32], &[u32])> = pairs
        .iter()
        .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
        .chain(
            pairs
                .iter()
                .map(|p| (p.prompt.as_slice(), p.rejected.as_slice())),
        )
        .collect();
    let spans: Vec<Option<(usize, usize)>> = pairs
        .iter()
        .map(|p| p.chosen_span)
        .chain(pairs.iter().map(|p| p.rejected_span))
        .collect();
    SequenceBatch::with_spans(&seqs, &spans, pad_id, model.master_dtype(), model.device())
}

/// Per-sequence answer log-probs `[2n]`: summed over the whole answers (for the NLL), and as
/// the preference loss uses them — summed over the spans (sigmoid) or averaged over the span
/// tokens (IPO, as TRL does).
fn policy_logps(
    model: &LlamaModel,
    adapter: Option<&Lora>,
    batch: &SequenceBatch,
    kind: DpoKind,
) -> Result<(Tensor, Tensor)> {
    let (summed, span) = answer_and_span_logps(model, adapter, batch)?;
    let used = match kind {
        DpoKind::Sigmoid => span,
        DpoKind::Ipo => {
            let lens: Vec<f64> = batch.span_tokens.iter().map(|&n| n as f64).collect();
            let lens =
                Tensor::from_vec(lens, span.dims(), span.device())?.to_dtype(span.dtype())?;
            (&span / lens)?
        }
    };
    Ok((summed, used))
}

/// The model DPO measures the policy's log-ratios against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    /// The base model, adapter off (TRL's default on a PEFT model).
    #[default]
    Base,
    /// The policy as it was before the first step: base plus the adapter training starts from
    /// (EVOLVE's reference is the previous round's model).
    Initial,
}

/// Reference log-probs of the pairs (no gradient): with `adapter` applied, or the base alone.
pub fn reference_logps(
    model: &LlamaModel,
    adapter: Option<&Lora>,
    pairs: &[&PreferencePair],
    kind: DpoKind,
    pad_id: u32,
) -> Result<Vec<RefLogps>> {
    let batch = pair_batch(pairs, pad_id, model)?;
    let (_, logps) = policy_logps(model, adapter, &batch, kind)?;
    let v = logps.detach().to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let n = pairs.len();
    Ok((0..n)
        .map(|i| RefLogps {
            chosen: v[i],
            rejected: v[n + i],
        })
        .collect())
}

/// The EVOLVE loss of a batch:
/// `(1/n) Σ_i w_i·DPO_i + α·NLL(chosen)`, with `w_i = 1` for direct and `λ` for refinement
/// pairs — DPO(direct) + λ·DPO(refine) over the concatenated data, independent of how the
/// pairs fall into batches.
pub fn evolve_loss(
    model: &LlamaModel,
    adapter: &Lora,
    pairs: &[&PreferencePair],
    refs: &[RefLogps],
    cfg: &EvolveLossConfig,
    pad_id: u32,
) -> Result<EvolveLossOutput> {
    if pairs.len() != refs.len() {
        return Err(TrainError::Data(format!(
            "{} pairs but {} reference log-probs",
            pairs.len(),
            refs.len()
        )));
    }
    let n = pairs.len();
    let (dtype, device) = (model.master_dtype(), model.device());
    let batch = pair_batch(pairs, pad_id, model)?;
    let (summed, logps) = policy_logps(model, Some(adapter), &batch, cfg.kind)?;
    let chosen = logps.narrow(0, 0, n)?;
    let rejected = logps.narrow(0, n, n)?;
    let to_t =
        |v: Vec<f64>| -> Result<Tensor> { Ok(Tensor::from_vec(v, n, device)?.to_dtype(dtype)?) };
    let ref_c = to_t(refs.iter().map(|r| r.chosen).collect())?;
    let ref_r = to_t(refs.iter().map(|r| r.rejected).collect())?;
    let (losses, metrics) = dpo_losses(&chosen, &rejected, &ref_c, &ref_r, cfg.beta, cfg.kind)?;
    let weights = to_t(
        pairs
            .iter()
            .map(|p| match p.kind {
                PairKind::Direct => 1.0,
                PairKind::Refine | PairKind::Keep => cfg.lambda_refine,
            })
            .collect(),
    )?;
    let mut loss = ((losses * weights)?.sum_all()? * (cfg.dpo_weight / n as f64))?;

    // NLL per token over the chosen answers (from the sums, not the IPO averages).
    let n_chosen_tokens: usize = batch.answer_tokens[..n].iter().sum();
    let nll = (summed.narrow(0, 0, n)?.sum_all()?.neg()? / n_chosen_tokens as f64)?;
    if cfg.nll_weight != 0.0 {
        loss = (loss + (&nll * cfg.nll_weight)?)?;
    }

    // `refine/…` metrics cover both refinement-turn kinds (refine and keep pairs).
    let subset = |kind: PairKind| -> Result<DpoMetrics> {
        let idx: Vec<u32> = (0..n as u32)
            .filter(|&i| pairs[i as usize].kind.is_refinement() == kind.is_refinement())
            .collect();
        if idx.is_empty() {
            return Ok(DpoMetrics::default());
        }
        let idx = Tensor::new(idx.as_slice(), device)?;
        let pick = |t: &Tensor| t.detach().index_select(&idx, 0);
        Ok(dpo_losses(
            &pick(&chosen)?,
            &pick(&rejected)?,
            &pick(&ref_c)?,
            &pick(&ref_r)?,
            cfg.beta,
            cfg.kind,
        )?
        .1)
    };
    Ok(EvolveLossOutput {
        loss,
        metrics,
        direct: subset(PairKind::Direct)?,
        refine: subset(PairKind::Refine)?,
        nll: nll.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        real_tokens: batch.real_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_grad_matches, randn};
    use crate::lora::{LoraConfig, LoraTarget};
    use crate::model::tiny_model_f64;
    use candle_core::Device;

    fn t(v: &[f64]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn dpo_sigmoid_loss_and_metrics_equal_hand_computed_values() {
        // Pair 1: chosen +1 over ref, rejected −1 → h = 2; pair 2: h = (−12+11) − 0 = −1.
        let (pc, pr) = (t(&[-10.0, -12.0]), t(&[-14.0, -11.0]));
        let (rc, rr) = (t(&[-11.0, -12.0]), t(&[-13.0, -12.0]));
        let (loss, m) = dpo_loss(&pc, &pr, &rc, &rr, 0.1, DpoKind::Sigmoid).unwrap();
        // (−log σ(0.2) − log σ(−0.1)) / 2 = (0.5981388693815918 + 0.744396660073571) / 2
        assert!((loss.to_scalar::<f64>().unwrap() - 0.6712677647275813).abs() < 1e-12);
        let want = DpoMetrics {
            rewards_chosen: 0.05,
            rewards_rejected: 0.0,
            rewards_margins: 0.05,
            rewards_accuracies: 0.5,
            logps_chosen: -11.0,
            logps_rejected: -12.5,
            n_pairs: 2,
        };
        for ((name, got), (_, exp)) in m.named().iter().zip(want.named()) {
            assert!((got - exp).abs() < 1e-12, "{name}: {got} vs {exp}");
        }
        assert_eq!(m.n_pairs, 2);
    }

    #[test]
    fn dpo_ipo_loss_is_the_squared_distance_to_one_over_two_beta() {
        let (pc, pr) = (t(&[-10.0, -12.0]), t(&[-14.0, -11.0]));
        let (rc, rr) = (t(&[-11.0, -12.0]), t(&[-13.0, -12.0]));
        let (loss, _) = dpo_loss(&pc, &pr, &rc, &rr, 0.1, DpoKind::Ipo).unwrap();
        // ((2 − 5)² + (−1 − 5)²) / 2
        assert!((loss.to_scalar::<f64>().unwrap() - 22.5).abs() < 1e-12);
    }

    fn pairs() -> Vec<PreferencePair> {
        vec![
            PreferencePair::new(
                PairKind::Direct,
                vec![1, 40, 41],
                vec![50, 51, 52],
                vec![60],
            ),
            PreferencePair::new(
                PairKind::Refine,
                vec![1, 42, 60, 43],
                vec![53, 54],
                vec![61, 62, 63],
            ),
        ]
    }

    /// A small random f64 model of `architecture` with q/k head norms and a head size of its own.
    fn head_norm_config(architecture: crate::Architecture) -> crate::LlamaConfig {
        crate::LlamaConfig {
            architecture,
            n_embd: 32,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 48,
            n_vocab: 70,
            context_length: 64,
            rope_dims: 16,
            rope_freq_base: 10_000.0,
            rope_freq_scale: 1.0,
            rms_eps: 1e-6,
            tied_embeddings: true,
            sliding_window: None,
            rope_attn_factor: 1.0,
            rope_original_context: None,
        }
    }

    /// The adapter's gradients on `targets` of `config`'s random model match finite differences.
    fn assert_adapter_gradients(config: &crate::LlamaConfig, targets: &[(usize, LoraTarget)]) {
        let model = LlamaModel::new_random(config, 3, DType::F64, &Device::Cpu).unwrap();
        let lora_cfg = LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            use_rslora: false,
            targets: targets.iter().map(|(_, t)| *t).collect(),
            seed: 5,
        };
        let lora = Lora::new(model.config(), lora_cfg, DType::F64, &Device::Cpu).unwrap();
        for (i, (_, _, p)) in lora.pairs().enumerate() {
            p.b.set(&randn(300 + i as u64, p.b.dims(), 0.5)).unwrap();
        }
        let data = pairs();
        let refs_pairs: Vec<&PreferencePair> = data.iter().collect();
        let kind = DpoKind::Sigmoid;
        let refs = reference_logps(&model, None, &refs_pairs, kind, 0).unwrap();
        let cfg = EvolveLossConfig {
            beta: 0.5,
            lambda_refine: 0.7,
            nll_weight: 0.5,
            dpo_weight: 1.0,
            kind,
        };
        let f = || {
            evolve_loss(&model, &lora, &refs_pairs, &refs, &cfg, 0)
                .map(|o| o.loss)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))
        };
        let arch = config.architecture.as_str();
        for &(layer, target) in targets {
            let p = lora.pair(layer, target).unwrap();
            assert_grad_matches(
                &format!("{arch} blk.{layer}.{target:?}.lora_a"),
                &p.a,
                f,
                12,
            );
            assert_grad_matches(
                &format!("{arch} blk.{layer}.{target:?}.lora_b"),
                &p.b,
                f,
                12,
            );
        }
    }

    /// Recomputing each block in the backward pass changes nothing but memory: the same loss and
    /// the same gradient for every adapter variable, dropout masks included, on a plain, a
    /// head-normed and a sliding-window architecture. (Without [`Lora::backward`]'s merge the
    /// adapter's gradients would be missing, so the comparison also checks the merge.)
    #[test]
    fn recomputed_blocks_give_the_same_loss_and_gradients() {
        let gemma3 = crate::LlamaConfig {
            sliding_window: Some(crate::SlidingWindow {
                size: 2,
                pattern: 2,
                freq_base: 100.0,
            }),
            ..head_norm_config(crate::Architecture::Gemma3)
        };
        let qwen3 = head_norm_config(crate::Architecture::Qwen3);
        let llama = crate::LlamaConfig {
            head_dim: 8,
            rope_dims: 8,
            ..head_norm_config(crate::Architecture::Llama)
        };
        let data = pairs();
        let refs_pairs: Vec<&PreferencePair> = data.iter().collect();
        let cfg = EvolveLossConfig {
            beta: 0.5,
            lambda_refine: 0.7,
            nll_weight: 0.5,
            dpo_weight: 1.0,
            kind: DpoKind::Sigmoid,
        };
        for config in [llama, qwen3, gemma3] {
            let model = LlamaModel::new_random(&config, 3, DType::F64, &Device::Cpu)
                .unwrap()
                .frozen();
            let refs = reference_logps(&model, None, &refs_pairs, cfg.kind, 0).unwrap();
            let run = |recompute: bool| {
                let lora_cfg = LoraConfig {
                    rank: 2,
                    alpha: 4.0,
                    dropout: 0.3,
                    use_rslora: false,
                    targets: LoraTarget::ALL.to_vec(),
                    seed: 5,
                };
                let lora = Lora::new(model.config(), lora_cfg, DType::F64, &Device::Cpu).unwrap();
                for (i, (_, _, p)) in lora.pairs().enumerate() {
                    p.b.set(&randn(300 + i as u64, p.b.dims(), 0.5)).unwrap();
                }
                lora.set_training(true);
                lora.set_recompute(recompute);
                let out = evolve_loss(&model, &lora, &refs_pairs, &refs, &cfg, 0).unwrap();
                let grads = lora.backward(&out.loss).unwrap();
                let loss = out.loss.to_scalar::<f64>().unwrap();
                let named: Vec<(String, Tensor)> = lora
                    .named_vars()
                    .into_iter()
                    .map(|(name, v)| {
                        let g = grads.get(v.as_tensor()).cloned();
                        (
                            name.clone(),
                            g.unwrap_or_else(|| panic!("{name}: no gradient")),
                        )
                    })
                    .collect();
                (loss, named)
            };
            let arch = config.architecture.as_str();
            let (loss, kept) = run(false);
            let (loss_again, recomputed) = run(true);
            assert!(
                (loss - loss_again).abs() < 1e-12,
                "{arch}: {loss} vs {loss_again}"
            );
            assert_eq!(kept.len(), 2 * 7 * config.n_layer);
            for ((name, a), (_, b)) in kept.iter().zip(&recomputed) {
                let scale = a
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert!(scale > 0.0, "{arch} {name}: zero gradient");
                let diff = crate::gradcheck::max_abs_diff(a, b);
                assert!(
                    diff <= 1e-12 * scale,
                    "{arch} {name}: {diff:e} of {scale:e}"
                );
            }
        }
    }

    /// Qwen3's per-head RMS norms sit between the q/k projections and RoPE, with a head size of
    /// its own: the adapter's q and k gradients must come through them intact.
    #[test]
    fn qwen3_head_norms_pass_the_adapter_gradients_intact() {
        let config = head_norm_config(crate::Architecture::Qwen3);
        assert_ne!(config.q_dim(), config.n_embd);
        assert_adapter_gradients(
            &config,
            &[(0, LoraTarget::Q), (1, LoraTarget::K), (0, LoraTarget::O)],
        );
    }

    /// Gemma 3 adds a scaled embedding, post-norms, GeGLU and a sliding-window layer (window 2,
    /// shorter than every sequence here, with its own RoPE base) beside a global, position-
    /// scaled one: the gradients must come through all of them.
    #[test]
    fn gemma3_layers_pass_the_adapter_gradients_intact() {
        let config = crate::LlamaConfig {
            rope_freq_base: 1_000_000.0,
            rope_freq_scale: 0.5,
            sliding_window: Some(crate::SlidingWindow {
                size: 2,
                pattern: 2,
                freq_base: 100.0,
            }),
            ..head_norm_config(crate::Architecture::Gemma3)
        };
        let w = config.sliding_window.unwrap();
        assert!(w.is_local(0) && !w.is_local(1));
        assert_adapter_gradients(
            &config,
            &[
                (0, LoraTarget::Q),
                (1, LoraTarget::K),
                (0, LoraTarget::Gate),
                (1, LoraTarget::Down),
            ],
        );
    }

    #[test]
    fn evolve_loss_gradients_match_finite_differences() {
        let (_dir, model) = tiny_model_f64();
        let lora_cfg = LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            use_rslora: false,
            targets: LoraTarget::ALL.to_vec(),
            seed: 7,
        };
        let lora = Lora::new(model.config(), lora_cfg, DType::F64, &Device::Cpu).unwrap();
        // B = 0 makes ∂L/∂A vanish; give every B a random value so both are exercised.
        for (i, (_, _, p)) in lora.pairs().enumerate() {
            p.b.set(&randn(100 + i as u64, p.b.dims(), 0.05)).unwrap();
        }
        let data = pairs();
        let refs_pairs: Vec<&PreferencePair> = data.iter().collect();
        for (kind, nll_weight) in [(DpoKind::Sigmoid, 0.5), (DpoKind::Ipo, 0.0)] {
            let refs = reference_logps(&model, None, &refs_pairs, kind, 0).unwrap();
            let cfg = EvolveLossConfig {
                beta: 0.5,
                lambda_refine: 0.7,
                nll_weight,
                dpo_weight: 1.0,
                kind,
            };
            let f = || {
                evolve_loss(&model, &lora, &refs_pairs, &refs, &cfg, 0)
                    .map(|o| o.loss)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            };
            for (layer, target) in [
                (0, LoraTarget::Q),
                (0, LoraTarget::K),
                (1, LoraTarget::Down),
                (1, LoraTarget::O),
            ] {
                let p = lora.pair(layer, target).unwrap();
                assert_grad_matches(
                    &format!("{kind:?} blk.{layer}.{target:?}.lora_a"),
                    &p.a,
                    f,
                    12,
                );
                assert_grad_matches(
                    &format!("{kind:?} blk.{layer}.{target:?}.lora_b"),
                    &p.b,
                    f,
                    12,
                );
            }
        }
    }

    #[test]
    fn refinement_pairs_are_weighted_by_lambda_and_nll_by_alpha() {
        let (_dir, model) = tiny_model_f64();
        let lora = Lora::new(
            model.config(),
            LoraConfig {
                rank: 2,
                ..LoraConfig::default()
            },
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        for (i, (_, _, p)) in lora.pairs().enumerate() {
            p.b.set(&randn(200 + i as u64, p.b.dims(), 0.05)).unwrap();
        }
        let data = pairs();
        let all: Vec<&PreferencePair> = data.iter().collect();
        let refs = reference_logps(&model, None, &all, DpoKind::Sigmoid, 0).unwrap();
        let loss_weighted = |pairs: &[&PreferencePair],
                             refs: &[RefLogps],
                             lambda: f64,
                             alpha: f64,
                             dpo_weight: f64| {
            let cfg = EvolveLossConfig {
                beta: 0.1,
                lambda_refine: lambda,
                nll_weight: alpha,
                dpo_weight,
                kind: DpoKind::Sigmoid,
            };
            let o = evolve_loss(&model, &lora, pairs, refs, &cfg, 0).unwrap();
            (o.loss.to_scalar::<f64>().unwrap(), o.nll)
        };
        let loss = |pairs: &[&PreferencePair], refs: &[RefLogps], lambda: f64, alpha: f64| {
            loss_weighted(pairs, refs, lambda, alpha, 1.0)
        };
        let (direct, _) = loss(&all[..1], &refs[..1], 1.0, 0.0);
        let (refine, _) = loss(&all[1..], &refs[1..], 1.0, 0.0);
        let (mixed, _) = loss(&all, &refs, 0.3, 0.0);
        assert!((mixed - (direct + 0.3 * refine) / 2.0).abs() < 1e-12);
        let (with_nll, nll) = loss(&all, &refs, 0.3, 2.0);
        assert!(nll > 0.0);
        assert!((with_nll - mixed - 2.0 * nll).abs() < 1e-12);
        // The supervised warm-up: the preference term weighted 0 leaves the NLL alone.
        let (sft, sft_nll) = loss_weighted(&all, &refs, 0.3, 1.0, 0.0);
        assert!((sft - nll).abs() < 1e-12 && (sft_nll - nll).abs() < 1e-12);
    }

    #[test]
    fn a_span_limits_the_preference_term_and_leaves_the_nll_on_the_whole_answer() {
        let (_dir, model) = tiny_model_f64();
        let lora = Lora::new(
            model.config(),
            LoraConfig::default(),
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
        for (i, (_, _, p)) in lora.pairs().enumerate() {
            p.b.set(&randn(300 + i as u64, p.b.dims(), 0.05)).unwrap();
        }
        // Shared first token (50), then the step that differs (51, 52 vs 61), then the rest.
        let whole = PreferencePair::new(
            PairKind::Direct,
            vec![1, 40, 41],
            vec![50, 51, 52, 53],
            vec![50, 61, 62],
        );
        let spanned = PreferencePair {
            chosen_span: Some((1, 3)),
            rejected_span: Some((1, 2)),
            ..whole.clone()
        };
        // The same step, cut out by hand: the shared token joins the prompt.
        let cut = PreferencePair::new(
            PairKind::Direct,
            vec![1, 40, 41, 50],
            vec![51, 52],
            vec![61],
        );
        let cfg = EvolveLossConfig {
            beta: 0.5,
            nll_weight: 1.0,
            ..EvolveLossConfig::default()
        };
        let run = |p: &PreferencePair| {
            let refs = reference_logps(&model, None, &[p], DpoKind::Sigmoid, 0).unwrap();
            evolve_loss(&model, &lora, &[p], &refs, &cfg, 0).unwrap()
        };
        let (w, s, c) = (run(&whole), run(&spanned), run(&cut));
        assert!((s.metrics.logps_chosen - c.metrics.logps_chosen).abs() < 1e-10);
        assert!((s.metrics.logps_rejected - c.metrics.logps_rejected).abs() < 1e-10);
        assert!((s.metrics.rewards_margins - c.metrics.rewards_margins).abs() < 1e-10);
        assert!(
            (s.nll - w.nll).abs() < 1e-12,
            "NLL over the whole chosen answer"
        );
        assert!((s.nll - c.nll).abs() > 1e-6, "not over the step alone");
    }
}
