//! Supervised fine-tuning / pretraining of every weight: next-token NLL on the answer tokens of
//! (prompt, answer) sequences. It pretrains the tiny task model from scratch; the loop reuses
//! the DPO trainer's AdamW, schedules, clipping, accumulation and cancellation.

use crate::batch::{SequenceBatch, answer_logps};
use crate::model::LlamaModel;
use crate::optim::{
    AdamW, LrSchedule, ParamsAdamW, accumulate_grads, clip_grad_norm, learning_rate,
};
use crate::trainer::epoch_order;
use crate::{Result, TrainError};
use candle_core::{DType, Var};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One training sequence. The loss covers the answer only; an empty prompt is not allowed
/// (the first answer token is predicted from the last prompt token, usually BOS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftExample {
    pub prompt: Vec<u32>,
    pub answer: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftConfig {
    /// Peak learning rate.
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub schedule: LrSchedule,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Clip the global gradient norm to this; 0 disables clipping.
    pub max_grad_norm: f64,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    pub seed: u64,
    pub pad_id: u32,
}

impl Default for SftConfig {
    /// lr 1e-3 cosine with 10 warm-up steps, batch 8, clip 1.0: a from-scratch setting for
    /// small models (fine-tuning a real model wants 1e-5…1e-4).
    fn default() -> Self {
        SftConfig {
            lr: 1e-3,
            weight_decay: 0.0,
            warmup_steps: 10,
            schedule: LrSchedule::Cosine,
            batch_size: 8,
            grad_accum: 1,
            max_grad_norm: 1.0,
            epochs: 1,
            max_steps: None,
            seed: 0,
            pad_id: 0,
        }
    }
}

impl SftConfig {
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size).div_ceil(self.grad_accum)
    }

    pub fn total_steps(&self, n: usize) -> usize {
        let all = self.steps_per_epoch(n) * self.epochs.max(1);
        self.max_steps.map_or(all, |m| m.min(all))
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.into()));
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch_size and grad_accum must be at least 1");
        }
        if self.lr < 0.0 || !self.lr.is_finite() {
            return bad("lr must be a non-negative number");
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("epochs must be at least 1");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SftMetrics {
    /// 1-based number of the step just taken.
    pub step: usize,
    pub total_steps: usize,
    pub epoch: f64,
    /// Mean NLL per answer token of the step's micro-batches.
    pub loss: f64,
    pub grad_norm: f64,
    pub learning_rate: f64,
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftOutcome {
    pub steps: usize,
    pub cancelled: bool,
}

/// Trains every weight of `model` (which must be [`LlamaModel::trainable`]) until the configured
/// steps are done, `on_step` returns `false`, or `cancel` is set (checked before each
/// micro-batch; an interrupted step applies no update). Weights and AdamW moments live in the
/// model's dtype, so train from scratch in f32: bf16 would round most updates away.
pub fn train_sft(
    model: &LlamaModel,
    data: &[SftExample],
    cfg: &SftConfig,
    cancel: &AtomicBool,
    mut on_step: impl FnMut(&SftMetrics) -> bool,
) -> Result<SftOutcome> {
    cfg.validate()?;
    if !model.is_trainable() {
        return Err(TrainError::Config(
            "full-parameter training needs a trainable model (LlamaModel::trainable)".into(),
        ));
    }
    if data.is_empty() {
        return Err(TrainError::Data("no sequences to train on".into()));
    }
    let named = model.named_vars().to_vec();
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let mut optimizer = AdamW::new(
        named,
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let steps_per_epoch = cfg.steps_per_epoch(data.len());
    let total = cfg.total_steps(data.len());
    let per_step = cfg.batch_size * cfg.grad_accum;
    let cancelled = |steps| SftOutcome {
        steps,
        cancelled: true,
    };
    for step in 0..total {
        let started = Instant::now();
        let (epoch, in_epoch) = (step / steps_per_epoch, step % steps_per_epoch);
        let order = epoch_order(cfg.seed, data.len(), epoch);
        let idx = &order
            [(in_epoch * per_step).min(order.len())..((in_epoch + 1) * per_step).min(order.len())];
        let micro: Vec<&[usize]> = idx.chunks(cfg.batch_size).collect();
        let (mut grads, mut loss_sum, mut tokens) = (None, 0.0, 0usize);
        for chunk in &micro {
            if cancel.load(Ordering::Relaxed) {
                return Ok(cancelled(step));
            }
            let seqs: Vec<(&[u32], &[u32])> = chunk
                .iter()
                .map(|&i| (data[i].prompt.as_slice(), data[i].answer.as_slice()))
                .collect();
            let batch =
                SequenceBatch::new(&seqs, cfg.pad_id, model.master_dtype(), model.device())?;
            let n_answer: usize = batch.answer_tokens.iter().sum();
            let loss = (answer_logps(model, None, &batch)?.sum_all()?.neg()? / n_answer as f64)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    step: step + 1,
                    loss: value,
                });
            }
            let g = (loss / micro.len() as f64)?.backward()?;
            grads = Some(accumulate_grads(grads, g, &vars)?);
            loss_sum += value;
            tokens += batch.real_tokens;
        }
        let mut grads = grads.expect("every step has at least one micro-batch");
        let grad_norm = clip_grad_norm(&vars, &mut grads, cfg.max_grad_norm)?;
        let lr = learning_rate(cfg.schedule, cfg.lr, step, cfg.warmup_steps, total);
        optimizer.set_learning_rate(lr);
        optimizer.step(&grads)?;
        let metrics = SftMetrics {
            step: step + 1,
            total_steps: total,
            epoch: (step + 1) as f64 / steps_per_epoch as f64,
            loss: loss_sum / micro.len() as f64,
            grad_norm,
            learning_rate: lr,
            tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        };
        if !on_step(&metrics) {
            return Ok(cancelled(step + 1));
        }
    }
    Ok(SftOutcome {
        steps: total,
        cancelled: false,
    })
}
