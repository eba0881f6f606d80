//! Supervised fine-tuning / pretraining of every weight: next-token NLL on the answer tokens of
//! (prompt, answer) sequences. It pretrains the tiny task model from scratch; it shares the
//! preference trainer's [`OptimConfig`], AdamW, schedules, clipping, accumulation and
//! cancellation.

use crate::batch::{SequenceBatch, answer_logps};
use crate::model::LlamaModel;
use crate::optim::{OptimConfig, accumulate_grads, optimizer_step};
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
    cfg: &OptimConfig,
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
    let mut optimizer = cfg.adamw(named)?;
    let steps_per_epoch = cfg.steps_per_epoch(data.len());
    let total = cfg.total_steps(data.len());
    let cancelled = |steps| SftOutcome {
        steps,
        cancelled: true,
    };
    for step in 0..total {
        let started = Instant::now();
        let micro = cfg.micro_batches(data.len(), step);
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
        let grads = grads.expect("every step has at least one micro-batch");
        let (grad_norm, lr) = optimizer_step(&mut optimizer, &vars, grads, cfg, step, total)?;
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
