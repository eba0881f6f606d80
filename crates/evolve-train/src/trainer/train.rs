//! The preference-training loop: micro-batches, gradient accumulation, the optimizer step,
//! cached reference log-probs and cancellation.

use super::config::TrainConfig;
use crate::lora::Lora;
use crate::loss::{DpoMetrics, PreferencePair, RefLogps, Reference, evolve_loss, reference_logps};
use crate::model::LlamaModel;
use crate::optim::{AdamW, accumulate_grads, optimizer_step};
use crate::{Result, TrainError};
use candle_core::backprop::GradStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What one optimizer step reports, under TRL's metric names (see [`StepMetrics::named`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    /// 1-based number of the step just taken.
    pub step: usize,
    pub total_steps: usize,
    /// Fractional epoch reached, as `transformers` logs it.
    pub epoch: f64,
    pub loss: f64,
    pub dpo: DpoMetrics,
    /// Metrics of the direct and refinement pairs separately (EVOLVE's two terms).
    pub direct: DpoMetrics,
    pub refine: DpoMetrics,
    pub nll: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub learning_rate: f64,
    pub tokens_per_second: f64,
}

impl StepMetrics {
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![("loss", self.loss)];
        v.extend(self.dpo.named());
        v.extend([
            ("nll_loss", self.nll),
            ("grad_norm", self.grad_norm),
            ("learning_rate", self.learning_rate),
            ("tokens_per_second", self.tokens_per_second),
            ("epoch", self.epoch),
        ]);
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainOutcome {
    /// Optimizer steps taken in total (including those before a resume).
    pub steps: usize,
    pub cancelled: bool,
}

/// FNV-1a over every pair's kind and tokens: a stable identity for the training data, so cached
/// reference log-probs are never reused for different pairs.
pub fn data_fingerprint(data: &[PreferencePair]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(data.len() as u64);
    for p in data {
        eat(p.kind as u64);
        for part in [&p.prompt, &p.chosen, &p.rejected] {
            eat(part.len() as u64);
            part.iter().for_each(|&t| eat(u64::from(t)));
        }
    }
    h
}

pub struct Trainer<'m> {
    pub(super) model: &'m LlamaModel,
    pub(super) lora: Lora,
    pub(super) config: TrainConfig,
    pub(super) optimizer: AdamW,
    pub(super) step: usize,
    pub(super) ref_cache: BTreeMap<usize, RefLogps>,
    pub(super) ref_cache_data: Option<u64>,
    pub(super) cancel: Arc<AtomicBool>,
    /// Where and how often (in steps) [`Self::train`] saves a checkpoint on its own.
    pub(super) checkpoints: Option<(PathBuf, usize)>,
}

impl<'m> Trainer<'m> {
    pub fn new(model: &'m LlamaModel, lora: Lora, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        crate::alloc::keep_freed_memory();
        let optimizer = config.optim.adamw(lora.named_vars())?;
        Ok(Trainer {
            model,
            lora,
            config,
            optimizer,
            step: 0,
            ref_cache: BTreeMap::new(),
            ref_cache_data: None,
            cancel: Arc::new(AtomicBool::new(false)),
            checkpoints: None,
        })
    }

    pub fn lora(&self) -> &Lora {
        &self.lora
    }
    pub fn into_lora(self) -> Lora {
        self.lora
    }
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    /// Makes [`Self::train`] save a checkpoint into `dir` every `every` steps (0 = never),
    /// replacing the previous one whole, so that a killed run loses at most `every` steps.
    pub fn checkpoint_every(&mut self, dir: &Path, every: usize) {
        self.checkpoints = (every > 0).then(|| (dir.to_path_buf(), every));
    }

    /// Optimizer steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Reference log-probs computed so far, by pair index (each computed once per data set).
    pub fn cached_reference_logps(&self) -> &BTreeMap<usize, RefLogps> {
        &self.ref_cache
    }

    /// A flag another thread can set to stop training; the current step is abandoned at the
    /// next micro-batch boundary and no update is applied.
    pub fn cancel_handle(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Reference log-probs of `data[i]` for each index, each computed once: with the adapter
    /// off for [`Reference::Base`] (lazily, batch by batch); for [`Reference::Initial`] all of
    /// them were computed by [`Self::cache_initial_references`] before the first step.
    fn refs_for(&mut self, data: &[PreferencePair], idx: &[usize]) -> Result<Vec<RefLogps>> {
        let missing: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|i| !self.ref_cache.contains_key(i))
            .collect();
        if !missing.is_empty() {
            if self.config.reference == Reference::Initial {
                // The adapter has moved since; its starting point cannot be recomputed.
                return Err(TrainError::Data(
                    "the initial adapter's reference log-probs are missing (a checkpoint of \
                     other pairs?); start this training again"
                        .into(),
                ));
            }
            let refs = self.reference_logps_of(data, &missing, None)?;
            self.ref_cache.extend(missing.into_iter().zip(refs));
        }
        Ok(idx.iter().map(|i| self.ref_cache[i]).collect())
    }

    /// The reference log-probs of `data[i]` for each of `idx`, with `adapter` applied or the
    /// base alone.
    fn reference_logps_of(
        &self,
        data: &[PreferencePair],
        idx: &[usize],
        adapter: Option<&Lora>,
    ) -> Result<Vec<RefLogps>> {
        let pairs: Vec<&PreferencePair> = idx.iter().map(|&i| &data[i]).collect();
        reference_logps(
            self.model,
            adapter,
            &pairs,
            self.config.dpo_kind,
            self.config.optim.pad_id,
        )
    }

    /// For [`Reference::Initial`]: the log-probs of every pair under the adapter as it is before
    /// the first step (the previous round's model, when training starts from its adapter).
    /// Cached with the checkpoints, so a resumed run keeps the same reference.
    fn cache_initial_references(&mut self, data: &[PreferencePair]) -> Result<()> {
        if self.config.reference != Reference::Initial || self.step > 0 {
            return Ok(());
        }
        let missing: Vec<usize> = (0..data.len())
            .filter(|i| !self.ref_cache.contains_key(i))
            .collect();
        for chunk in missing.chunks(self.config.optim.batch_size.max(1)) {
            let refs = self.reference_logps_of(data, chunk, Some(&self.lora))?;
            self.ref_cache.extend(chunk.iter().copied().zip(refs));
        }
        Ok(())
    }

    /// Trains until the configured epochs/steps are done, `on_step` returns `false`, or the
    /// cancel flag is set. Continues from [`Self::step`] after a resume.
    pub fn train(
        &mut self,
        data: &[PreferencePair],
        mut on_step: impl FnMut(&StepMetrics) -> bool,
    ) -> Result<TrainOutcome> {
        if data.is_empty() {
            return Err(TrainError::Data("no preference pairs to train on".into()));
        }
        let fingerprint = data_fingerprint(data);
        if self.ref_cache_data != Some(fingerprint) {
            self.ref_cache.clear();
            self.ref_cache_data = Some(fingerprint);
        }
        self.cache_initial_references(data)?;
        let cfg = self.config.clone();
        let loss_cfg = cfg.loss_config();
        let steps_per_epoch = cfg.steps_per_epoch(data.len());
        let total = cfg.total_steps(data.len());
        let vars = self.lora.trainable_vars();
        self.lora.set_training(true);
        let recompute = cfg
            .recompute
            .decide(self.model.config(), data, cfg.optim.batch_size);
        self.lora.set_recompute(recompute);
        let result = (|| {
            while self.step < total {
                if self.cancel.load(Ordering::Relaxed) {
                    return Ok(TrainOutcome {
                        steps: self.step,
                        cancelled: true,
                    });
                }
                let started = Instant::now();
                let micro = cfg.optim.micro_batches(data.len(), self.step);

                let mut grads: Option<GradStore> = None;
                let (mut loss_sum, mut nll_sum, mut tokens) = (0.0, 0.0, 0usize);
                let (mut dpo, mut direct, mut refine) = Default::default();
                for idx in &micro {
                    if self.cancel.load(Ordering::Relaxed) {
                        return Ok(TrainOutcome {
                            steps: self.step,
                            cancelled: true,
                        });
                    }
                    let refs = self.refs_for(data, idx)?;
                    let pairs: Vec<&PreferencePair> = idx.iter().map(|&i| &data[i]).collect();
                    let out = evolve_loss(
                        self.model,
                        &self.lora,
                        &pairs,
                        &refs,
                        &loss_cfg,
                        cfg.optim.pad_id,
                    )?;
                    let loss_value = out
                        .loss
                        .to_dtype(candle_core::DType::F64)?
                        .to_scalar::<f64>()?;
                    if !loss_value.is_finite() {
                        return Err(TrainError::NonFinite {
                            step: self.step + 1,
                            loss: loss_value,
                        });
                    }
                    let g = self.lora.backward(&(out.loss / micro.len() as f64)?)?;
                    grads = Some(accumulate_grads(grads.take(), g, &vars)?);
                    loss_sum += loss_value;
                    nll_sum += out.nll;
                    tokens += out.real_tokens;
                    dpo = DpoMetrics::merge(&dpo, &out.metrics);
                    direct = DpoMetrics::merge(&direct, &out.direct);
                    refine = DpoMetrics::merge(&refine, &out.refine);
                }
                let grads = grads.expect("every step has at least one micro-batch");
                let (grad_norm, lr) = optimizer_step(
                    &mut self.optimizer,
                    &vars,
                    grads,
                    &cfg.optim,
                    self.step,
                    total,
                )?;
                self.step += 1;
                // Saved before the step is reported: a reported step is never lost past the
                // last checkpoint's.
                if let Some((dir, every)) = &self.checkpoints
                    && self.step.is_multiple_of(*every)
                    && self.step < total
                {
                    self.save_checkpoint_whole(dir)?;
                }

                let n_micro = micro.len() as f64;
                let metrics = StepMetrics {
                    step: self.step,
                    total_steps: total,
                    epoch: self.step as f64 / steps_per_epoch as f64,
                    loss: loss_sum / n_micro,
                    dpo,
                    direct,
                    refine,
                    nll: nll_sum / n_micro,
                    grad_norm,
                    learning_rate: lr,
                    tokens_per_second: tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
                };
                if !on_step(&metrics) {
                    return Ok(TrainOutcome {
                        steps: self.step,
                        cancelled: true,
                    });
                }
            }
            Ok(TrainOutcome {
                steps: self.step,
                cancelled: false,
            })
        })();
        self.lora.set_training(false);
        self.lora.set_recompute(false);
        result
    }
}
