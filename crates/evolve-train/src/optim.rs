//! Learning-rate schedules and gradient clipping, with the semantics of Hugging Face
//! `transformers` (`get_*_schedule_with_warmup`, `clip_grad_norm_`), so numbers users know carry over.

use crate::{Result, TrainError};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
pub use candle_nn::ParamsAdamW;
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
