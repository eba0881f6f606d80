//! The optimiser side of training, shared by SFT and preference training: its configuration,
//! AdamW, learning-rate schedules and gradient clipping with the semantics of Hugging Face
//! `transformers` (`get_*_schedule_with_warmup`, `clip_grad_norm_`), so numbers users know
//! carry over.

use crate::{Result, TrainError};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
pub use candle_nn::ParamsAdamW;
use evolve_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    #[default]
    Cosine,
    Linear,
    Constant,
}

/// How a training run walks its data and steps its optimizer: one type for full-parameter SFT
/// and LoRA preference training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub schedule: LrSchedule,
    /// Examples per micro-batch (a preference pair is two sequences in one forward pass).
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Clip the global gradient norm to this; 0 disables clipping.
    pub max_grad_norm: f64,
    pub epochs: usize,
    /// Stop after this many optimizer steps even if epochs remain.
    pub max_steps: Option<usize>,
    /// Seeds the per-epoch shuffle.
    pub seed: u64,
    /// Token id used to right-pad sequences (never enters the loss).
    pub pad_id: u32,
}

impl Default for OptimConfig {
    /// The LoRA-DPO defaults of [`evolve_core::train::defaults`], cosine with 10 warm-up steps,
    /// gradients clipped at norm 1.
    fn default() -> Self {
        use evolve_core::train::defaults as d;
        OptimConfig {
            lr: d::LR,
            weight_decay: 0.0,
            warmup_steps: 10,
            schedule: LrSchedule::Cosine,
            batch_size: d::BATCH_SIZE,
            grad_accum: d::GRAD_ACCUM,
            max_grad_norm: 1.0,
            epochs: d::EPOCHS,
            max_steps: None,
            seed: 0,
            pad_id: 0,
        }
    }
}

impl OptimConfig {
    /// Training from scratch: lr 1e-3 cosine with 10 warm-up steps, batch 8, clip 1 (fine-tuning
    /// a real model wants 1e-5…1e-4).
    pub fn from_scratch() -> Self {
        OptimConfig {
            lr: 1e-3,
            batch_size: 8,
            grad_accum: 1,
            ..OptimConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
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

    /// Optimizer steps in one epoch over `n` examples.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size).div_ceil(self.grad_accum)
    }

    /// Optimizer steps of the whole run.
    pub fn total_steps(&self, n: usize) -> usize {
        let all = self.steps_per_epoch(n) * self.epochs.max(1);
        self.max_steps.map_or(all, |m| m.min(all))
    }

    /// The examples of optimizer step `step` (0-based) of a run over `n` examples, as
    /// micro-batches: each epoch shuffles all of them with the seed.
    pub fn micro_batches(&self, n: usize, step: usize) -> Vec<Vec<usize>> {
        let steps_per_epoch = self.steps_per_epoch(n);
        let (epoch, in_epoch) = (step / steps_per_epoch, step % steps_per_epoch);
        let order = epoch_order(self.seed, n, epoch);
        let per_step = self.batch_size * self.grad_accum;
        let idx = &order
            [(in_epoch * per_step).min(order.len())..((in_epoch + 1) * per_step).min(order.len())];
        idx.chunks(self.batch_size).map(<[usize]>::to_vec).collect()
    }

    /// AdamW over `vars` with this learning rate and weight decay.
    pub fn adamw(&self, vars: Vec<(String, Var)>) -> Result<AdamW> {
        AdamW::new(
            vars,
            ParamsAdamW {
                lr: self.lr,
                weight_decay: self.weight_decay,
                ..ParamsAdamW::default()
            },
        )
    }
}

/// The example order of `epoch`: a seeded shuffle, so a resumed run sees the same order.
fn epoch_order(seed: u64, n: usize, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// One optimizer step `step` (0-based) of `total`: clips the accumulated gradients, sets the
/// scheduled learning rate and updates. Returns the gradient norm before clipping and the rate.
pub fn optimizer_step(
    optimizer: &mut AdamW,
    vars: &[Var],
    mut grads: GradStore,
    cfg: &OptimConfig,
    step: usize,
    total: usize,
) -> Result<(f64, f64)> {
    let grad_norm = clip_grad_norm(vars, &mut grads, cfg.max_grad_norm)?;
    let lr = learning_rate(cfg.schedule, cfg.lr, step, cfg.warmup_steps, total);
    optimizer.set_learning_rate(lr);
    optimizer.step(&grads)?;
    Ok((grad_norm, lr))
}

/// Learning rate for optimizer step `step` (0-based) of `total_steps`: linear warm-up from 0
/// over `warmup_steps`, then the schedule down to 0 at `total_steps` (or flat for constant).
pub fn learning_rate(
    schedule: LrSchedule,
    peak: f64,
    step: usize,
    warmup_steps: usize,
    total_steps: usize,
) -> f64 {
    if step < warmup_steps {
        return peak * step as f64 / warmup_steps.max(1) as f64;
    }
    let decay_steps = total_steps.saturating_sub(warmup_steps).max(1) as f64;
    let progress = ((step - warmup_steps) as f64 / decay_steps).min(1.0);
    match schedule {
        LrSchedule::Constant => peak,
        LrSchedule::Linear => peak * (1.0 - progress).max(0.0),
        LrSchedule::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Global L2 norm of the gradients of `vars` (vars without a gradient count as zero).
pub fn global_grad_norm(vars: &[Var], grads: &GradStore) -> Result<f64> {
    let mut sum_sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sum_sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    Ok(sum_sq.sqrt())
}

/// Adds the gradients of `vars` in `new` to `acc` (gradient accumulation over micro-batches);
/// gradients of anything else in `new` (activations) are dropped with it.
pub fn accumulate_grads(acc: Option<GradStore>, new: GradStore, vars: &[Var]) -> Result<GradStore> {
    let Some(mut acc) = acc else {
        return Ok(new);
    };
    for v in vars {
        if let Some(g) = new.get(v.as_tensor()) {
            let sum = match acc.remove(v.as_tensor()) {
                Some(old) => (old + g)?,
                None => g.clone(),
            };
            acc.insert(v.as_tensor(), sum);
        }
    }
    Ok(acc)
}

/// Scales all gradients in place so their global norm is at most `max_norm` (as PyTorch's
/// `clip_grad_norm_`, factor `max_norm / (norm + 1e-6)`). Returns the norm before clipping.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let norm = global_grad_norm(vars, grads)?;
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * factor)?);
            }
        }
    }
    Ok(norm)
}

/// AdamW with decoupled weight decay — the same update as `candle_nn::AdamW` (and
/// `torch.optim.AdamW`) — whose moment estimates and step count can be saved, so that a run
/// resumed from a checkpoint continues exactly as if it had never stopped.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    step_t: usize,
    params: ParamsAdamW,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, params: ParamsAdamW) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(AdamW {
            exp_avg: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
            exp_avg_sq: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
            vars,
            step_t: 0,
            params,
        })
    }

    pub fn learning_rate(&self) -> f64 {
        self.params.lr
    }
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
    /// Updates applied so far (drives the bias correction).
    pub fn step_count(&self) -> usize {
        self.step_t
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_t += 1;
        let ParamsAdamW {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.params.clone();
        let correct1 = 1.0 / (1.0 - beta1.powi(self.step_t as i32));
        let correct2 = 1.0 / (1.0 - beta2.powi(self.step_t as i32));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.exp_avg[i] * beta1)? + (g * (1.0 - beta1))?)?;
            let v = ((&self.exp_avg_sq[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let update = ((&m * correct1)? / ((&v * correct2)?.sqrt()? + eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.exp_avg[i] = m;
            self.exp_avg_sq[i] = v;
        }
        Ok(())
    }

    /// Moment tensors named `{var}.exp_avg` / `{var}.exp_avg_sq` (PyTorch's names).
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{name}.exp_avg"), self.exp_avg[i].clone());
            out.insert(format!("{name}.exp_avg_sq"), self.exp_avg_sq[i].clone());
        }
        out
    }

    /// Restores [`Self::state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step_t: usize) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (suffix, slot) in [
                ("exp_avg", &mut self.exp_avg[i]),
                ("exp_avg_sq", &mut self.exp_avg_sq[i]),
            ] {
                let key = format!("{name}.{suffix}");
                let t = tensors
                    .get(&key)
                    .ok_or_else(|| TrainError::Config(format!("optimizer state lacks '{key}'")))?;
                if t.shape() != var.shape() {
                    return Err(TrainError::Config(format!(
                        "optimizer state '{key}' has shape {:?}, the adapter {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                *slot = t.to_dtype(var.dtype())?.to_device(var.device())?;
            }
        }
        self.step_t = step_t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn schedules_match_hugging_face_values() {
        let lr = |s, step| learning_rate(s, 1e-3, step, 10, 110);
        // Warm-up: 0 at step 0, half way at step 5, full at step 10.
        for s in [LrSchedule::Cosine, LrSchedule::Linear, LrSchedule::Constant] {
            assert_eq!(lr(s, 0), 0.0);
            assert!((lr(s, 5) - 5e-4).abs() < 1e-15);
            assert!((lr(s, 10) - 1e-3).abs() < 1e-15);
        }
        assert!(
            (lr(LrSchedule::Cosine, 60) - 5e-4).abs() < 1e-15,
            "half way down"
        );
        assert!(
            (lr(LrSchedule::Cosine, 35) - 1e-3 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()))
                .abs()
                < 1e-15
        );
        assert!(lr(LrSchedule::Cosine, 110).abs() < 1e-15);
        assert!((lr(LrSchedule::Linear, 60) - 5e-4).abs() < 1e-15);
        assert!((lr(LrSchedule::Linear, 85) - 2.5e-4).abs() < 1e-15);
        assert_eq!(lr(LrSchedule::Linear, 200), 0.0);
        assert_eq!(lr(LrSchedule::Constant, 109), 1e-3);
        // No warm-up starts at the peak.
        assert_eq!(learning_rate(LrSchedule::Cosine, 2e-5, 0, 0, 50), 2e-5);
    }

    #[test]
    fn clipping_bounds_the_global_norm_and_keeps_the_direction() {
        let dev = Device::Cpu;
        let a = Var::new(&[1.0f64, 2.0], &dev).unwrap();
        let b = Var::new(&[[0.5f64, -1.0], [3.0, 0.0]], &dev).unwrap();
        let loss = ((a.as_tensor() * Tensor::new(&[3.0f64, 4.0], &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            + (b.as_tensor() * Tensor::new(&[[12.0f64, 0.0], [0.0, 0.0]], &dev).unwrap())
                .unwrap()
                .sum_all()
                .unwrap())
        .unwrap();
        let vars = vec![a.clone(), b.clone()];
        let mut grads = loss.backward().unwrap();
        // Gradients are (3, 4) and (12, 0, 0, 0): global norm 13.
        let before = clip_grad_norm(&vars, &mut grads, 1.0).unwrap();
        assert!((before - 13.0).abs() < 1e-12);
        let after = global_grad_norm(&vars, &grads).unwrap();
        assert!(after <= 1.0 && after > 0.999_999, "{after}");
        let ga = grads.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        assert!((ga[0] / ga[1] - 0.75).abs() < 1e-12);
        // Below the threshold nothing changes.
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&vars, &mut grads, 100.0).unwrap();
        assert!((global_grad_norm(&vars, &grads).unwrap() - 13.0).abs() < 1e-12);
    }

    /// Ours must take exactly candle's AdamW steps (it only adds saving the moments).
    #[test]
    fn adamw_matches_candle_nn_and_restores_its_state() {
        use candle_nn::Optimizer;
        let dev = Device::Cpu;
        let init = [[0.3f64, -0.7], [1.1, 0.05]];
        let target = Tensor::new(&[[1.0f64, 2.0], [-1.0, 0.5]], &dev).unwrap();
        let params = ParamsAdamW {
            lr: 0.05,
            weight_decay: 0.1,
            ..ParamsAdamW::default()
        };
        let ours_var = Var::new(&init, &dev).unwrap();
        let theirs_var = Var::new(&init, &dev).unwrap();
        let mut ours = AdamW::new(vec![("w".into(), ours_var.clone())], params.clone()).unwrap();
        let mut theirs = candle_nn::AdamW::new(vec![theirs_var.clone()], params.clone()).unwrap();
        let loss = |v: &Var| {
            (v.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        };
        for step in 0..5 {
            if step == 3 {
                // Swap in a fresh optimizer restored from the saved state mid-run.
                let state = ours.state_tensors();
                ours = AdamW::new(vec![("w".into(), ours_var.clone())], params.clone()).unwrap();
                ours.load_state(&state, 3).unwrap();
            }
            ours.step(&loss(&ours_var).backward().unwrap()).unwrap();
            theirs.backward_step(&loss(&theirs_var)).unwrap();
        }
        let (a, b) = (
            ours_var.as_tensor().to_vec2::<f64>().unwrap(),
            theirs_var.as_tensor().to_vec2::<f64>().unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, init.map(|r| r.to_vec()).to_vec());
        assert_eq!(ours.step_count(), 5);
        assert!(ours.load_state(&HashMap::new(), 0).is_err());
    }
}
