//! Activation recomputation ("gradient checkpointing") per block. The forward pass keeps only
//! each block's input; the backward pass rebuilds one block's graph at a time from it. A step
//! then holds one block's intermediates instead of every block's, for one more forward pass.
//!
//! A recomputed block is one custom op in the autograd graph (input: the block's input; output:
//! its output). Its backward runs the block again with gradients on, differentiates
//! `Σ output·grad`, returns the input's gradient and puts the parameters' gradients into a
//! [`ParamGrads`], which [`crate::Lora::backward`] merges into the step's `GradStore`.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, TensorId, Var};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Gradients of parameters used inside recomputed blocks, collected during a backward pass.
#[derive(Clone, Default)]
pub struct ParamGrads(Arc<Mutex<HashMap<TensorId, (Var, Tensor)>>>);

impl ParamGrads {
    fn add(&self, var: &Var, grad: &Tensor) -> Result<()> {
        let mut map = self.0.lock().expect("param grads lock");
        let sum = match map.remove(&var.id()) {
            Some((_, old)) => (old + grad)?,
            None => grad.clone(),
        };
        map.insert(var.id(), (var.clone(), sum));
        Ok(())
    }

    /// Forgets what an earlier, unmerged backward pass left.
    pub fn clear(&self) {
        self.0.lock().expect("param grads lock").clear();
    }

    /// Adds the collected gradients into `grads` and empties the collection.
    pub fn merge_into(&self, grads: &mut GradStore) -> Result<()> {
        let drained: Vec<_> = self.0.lock().expect("param grads lock").drain().collect();
        for (_, (var, g)) in drained {
            let sum = match grads.remove(var.as_tensor()) {
                Some(old) => (old + g)?,
                None => g,
            };
            grads.insert(var.as_tensor(), sum);
        }
        Ok(())
    }
}

type Forward = Box<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// `forward(x)` with its intermediates dropped at once and rebuilt in the backward pass by
/// `again`, which must compute the same function (the same dropout masks included). `params`
/// are the variables it reads; their gradients go to `sink`. The first recomputed op of a chain
/// needs an input that is part of the graph: pass `x` as a [`Var`] there.
pub fn recompute(
    x: &Tensor,
    forward: impl FnOnce(&Tensor) -> Result<Tensor>,
    again: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    params: Vec<Var>,
    sink: ParamGrads,
) -> Result<Tensor> {
    // The forward on a detached input records a graph that dies with `y`: only the output stays.
    let y = forward(&x.detach())?.detach();
    let y = if y.is_contiguous() && y.layout().start_offset() == 0 {
        y
    } else {
        y.copy()?
    };
    let op = Recomputed {
        f: Box::new(again),
        params,
        sink,
        out: Mutex::new(Some(y)),
    };
    x.apply_op1_arc(Arc::new(Box::new(op)))
}

struct Recomputed {
    f: Forward,
    params: Vec<Var>,
    sink: ParamGrads,
    /// The output computed in [`recompute`], handed to the graph by the first `*_fwd` call.
    out: Mutex<Option<Tensor>>,
}

impl Recomputed {
    fn output(&self) -> Result<(Storage, Shape)> {
        let Some(y) = self.out.lock().expect("recompute lock").take() else {
            candle_core::bail!("recompute: the output was already taken")
        };
        let (storage, layout) = y.storage_and_layout();
        Ok((storage.try_clone(layout)?, y.shape().clone()))
    }
}

impl CustomOp1 for Recomputed {
    fn name(&self) -> &'static str {
        "recompute"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        match self.output()? {
            (Storage::Cpu(s), shape) => Ok((s, shape)),
            _ => candle_core::bail!("recompute: output and input on different devices"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        match self.output()? {
            (Storage::Cuda(s), shape) => Ok((s, shape)),
            _ => candle_core::bail!("recompute: output and input on different devices"),
        }
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let x = Var::from_tensor(&x.detach())?;
        let y = (self.f)(x.as_tensor())?;
        let grads = (y * grad.detach())?.sum_all()?.backward()?;
        for p in &self.params {
            if let Some(g) = grads.get(p.as_tensor()) {
                self.sink.add(p, g)?;
            }
        }
        Ok(grads.get(x.as_tensor()).cloned())
    }
}
