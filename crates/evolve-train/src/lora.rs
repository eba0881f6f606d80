//! LoRA adapters on the linear layers of every block: `y = x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ`.
//!
//! The base weights are plain tensors and never receive gradients; only the `A`/`B` [`Var`]s in
//! the adapter's [`VarMap`] are trainable. Variables are named like the llama.cpp GGUF LoRA
//! tensors (`blk.0.attn_q.weight.lora_a`), so checkpoints and GGUF export share one naming.

use crate::model::config::LlamaConfig;
use crate::recompute::ParamGrads;
use crate::{Result, TrainError};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use evolve_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A linear layer of a Llama block that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// Base tensor name stem in GGUF (`blk.N.{stem}.weight`).
    pub fn gguf_stem(self) -> &'static str {
        match self {
            LoraTarget::Q => "attn_q",
            LoraTarget::K => "attn_k",
            LoraTarget::V => "attn_v",
            LoraTarget::O => "attn_output",
            LoraTarget::Gate => "ffn_gate",
            LoraTarget::Up => "ffn_up",
            LoraTarget::Down => "ffn_down",
        }
    }

    /// Module name in Hugging Face / PEFT (`target_modules` entry).
    pub fn hf_module(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// Module path under `model.layers.N` in Hugging Face Llama/Qwen2.
    pub fn hf_path(self) -> &'static str {
        match self {
            LoraTarget::Q => "self_attn.q_proj",
            LoraTarget::K => "self_attn.k_proj",
            LoraTarget::V => "self_attn.v_proj",
            LoraTarget::O => "self_attn.o_proj",
            LoraTarget::Gate => "mlp.gate_proj",
            LoraTarget::Up => "mlp.up_proj",
            LoraTarget::Down => "mlp.down_proj",
        }
    }

    /// `(n_in, n_out)` of the base weight.
    pub fn shape(self, cfg: &LlamaConfig) -> (usize, usize) {
        match self {
            LoraTarget::Q => (cfg.n_embd, cfg.q_dim()),
            LoraTarget::O => (cfg.q_dim(), cfg.n_embd),
            LoraTarget::K | LoraTarget::V => (cfg.n_embd, cfg.kv_dim()),
            LoraTarget::Gate | LoraTarget::Up => (cfg.n_embd, cfg.n_ff),
            LoraTarget::Down => (cfg.n_ff, cfg.n_embd),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Dropout on the adapter's input during training (PEFT `lora_dropout`).
    pub dropout: f64,
    /// rsLoRA: scale `alpha/√r` instead of `alpha/r`, which keeps updates stable at high rank.
    pub use_rslora: bool,
    pub targets: Vec<LoraTarget>,
    /// Seeds `A`'s initialisation and the dropout masks.
    pub seed: u64,
}

impl Default for LoraConfig {
    /// Rank and α of [`evolve_core::train::defaults`], on all linear layers.
    fn default() -> Self {
        LoraConfig {
            rank: evolve_core::train::defaults::LORA_RANK,
            alpha: evolve_core::train::defaults::LORA_ALPHA,
            dropout: 0.0,
            use_rslora: false,
            targets: LoraTarget::ALL.to_vec(),
            seed: 0,
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(TrainError::Config("LoRA rank must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(TrainError::Config(format!(
                "LoRA dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(TrainError::Config("LoRA needs at least one target".into()));
        }
        Ok(())
    }
}

/// The trainable low-rank pair of one linear layer: `A: [r, n_in]`, `B: [n_out, r]`.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: Var,
    pub b: Var,
}

pub struct Lora {
    config: LoraConfig,
    varmap: VarMap,
    /// `pairs[layer][target]`.
    pairs: Vec<BTreeMap<LoraTarget, LoraPair>>,
    training: AtomicBool,
    dropout_rng: Mutex<SplitMix64>,
    /// Recompute each block in the backward pass instead of keeping its activations.
    recompute: AtomicBool,
    /// Gradients of the pairs used inside recomputed blocks, merged by [`Lora::backward`].
    recomputed_grads: ParamGrads,
}

/// Name of the adapter variable, identical to the llama.cpp GGUF LoRA tensor name.
pub fn lora_tensor_name(layer: usize, target: LoraTarget, half: &str) -> String {
    format!("blk.{layer}.{}.weight.{half}", target.gguf_stem())
}

impl Lora {
    /// A fresh adapter: `A ~ U(±1/√n_in)` (PEFT's kaiming-uniform with a=√5), `B = 0`, so the
    /// adapted model starts exactly at the base model.
    pub fn new(
        model: &LlamaConfig,
        config: LoraConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let varmap = VarMap::new();
        let mut pairs = Vec::with_capacity(model.n_layer);
        for layer in 0..model.n_layer {
            let mut map = BTreeMap::new();
            for &target in &config.targets {
                let (n_in, n_out) = target.shape(model);
                let a_name = lora_tensor_name(layer, target, "lora_a");
                let mut rng = SplitMix64::for_tensor(config.seed, &a_name);
                let bound = 1.0 / (n_in as f64).sqrt();
                let a_init: Vec<f64> = (0..config.rank * n_in)
                    .map(|_| (2.0 * rng.next_f64() - 1.0) * bound)
                    .collect();
                let a = Tensor::from_vec(a_init, (config.rank, n_in), device)?.to_dtype(dtype)?;
                let a = Var::from_tensor(&a)?;
                let b = Var::zeros((n_out, config.rank), dtype, device)?;
                let mut data = varmap.data().lock().expect("varmap lock");
                data.insert(a_name, a.clone());
                data.insert(lora_tensor_name(layer, target, "lora_b"), b.clone());
                map.insert(target, LoraPair { a, b });
            }
            pairs.push(map);
        }
        Ok(Lora {
            dropout_rng: Mutex::new(SplitMix64::new(config.seed ^ 0xD80F_0A7D)),
            config,
            varmap,
            pairs,
            training: AtomicBool::new(false),
            recompute: AtomicBool::new(false),
            recomputed_grads: ParamGrads::default(),
        })
    }

    pub fn config(&self) -> &LoraConfig {
        &self.config
    }
    pub fn scale(&self) -> f64 {
        self.config.scale()
    }
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }
    pub fn n_layers(&self) -> usize {
        self.pairs.len()
    }
    pub fn pair(&self, layer: usize, target: LoraTarget) -> Option<&LoraPair> {
        self.pairs.get(layer)?.get(&target)
    }

    /// Every pair in a stable order (layer, then target).
    pub fn pairs(&self) -> impl Iterator<Item = (usize, LoraTarget, &LoraPair)> {
        self.pairs
            .iter()
            .enumerate()
            .flat_map(|(l, m)| m.iter().map(move |(t, p)| (l, *t, p)))
    }

    /// The trainable variables in a stable order (A then B for each pair).
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.pairs()
            .flat_map(|(_, _, p)| [p.a.clone(), p.b.clone()])
            .collect()
    }

    /// The trainable variables with their tensor names, in [`Self::trainable_vars`] order.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.pairs()
            .flat_map(|(l, t, p)| {
                [
                    (lora_tensor_name(l, t, "lora_a"), p.a.clone()),
                    (lora_tensor_name(l, t, "lora_b"), p.b.clone()),
                ]
            })
            .collect()
    }

    pub fn n_params(&self) -> usize {
        self.trainable_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Training mode turns dropout on; evaluation (the default) makes the forward deterministic.
    pub fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }

    /// Whether training recomputes each block's activations in the backward pass (less memory,
    /// one more forward pass). Only for a frozen base; see [`crate::LlamaModel::hidden_with`].
    pub fn set_recompute(&self, on: bool) {
        self.recompute.store(on, Ordering::Relaxed);
    }

    pub fn recomputes(&self) -> bool {
        self.recompute.load(Ordering::Relaxed)
    }

    /// `loss.backward()`, with the gradients of the pairs used inside recomputed blocks added.
    /// Every backward pass through a forward that recomputes must go through here.
    pub fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        self.recomputed_grads.clear();
        let mut grads = loss.backward()?;
        self.recomputed_grads.merge_into(&mut grads)?;
        Ok(grads)
    }

    pub(crate) fn recomputed_grads(&self) -> &ParamGrads {
        &self.recomputed_grads
    }

    /// The pairs of one layer as variables (for a recomputed block's gradients).
    pub(crate) fn layer_vars(&self, layer: usize) -> Vec<Var> {
        self.pairs
            .get(layer)
            .into_iter()
            .flat_map(|m| m.values().flat_map(|p| [p.a.clone(), p.b.clone()]))
            .collect()
    }

    /// The same adapter (shared variables) frozen at this moment's training mode and dropout
    /// state, without recomputation: replaying a block's forward with it draws the same masks.
    pub(crate) fn snapshot(&self) -> Lora {
        Lora {
            config: self.config.clone(),
            varmap: self.varmap.clone(),
            pairs: self.pairs.clone(),
            training: AtomicBool::new(self.training.load(Ordering::Relaxed)),
            dropout_rng: Mutex::new(self.dropout_rng.lock().expect("dropout rng lock").clone()),
            recompute: AtomicBool::new(false),
            recomputed_grads: self.recomputed_grads.clone(),
        }
    }

    /// `base_out + s·(drop(x)·Aᵀ)·Bᵀ`, or `base_out` when this layer has no adapter.
    pub fn apply(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &Tensor,
        base_out: Tensor,
    ) -> Result<Tensor> {
        let Some(pair) = self.pair(layer, target) else {
            return Ok(base_out);
        };
        // A half-precision base meets an f32 adapter (see `LlamaModel::master_dtype`): the
        // adapter path runs in the adapter's dtype and only its output is rounded to the base's.
        let x = self.dropout(&x.to_dtype(pair.a.dtype())?)?;
        // Scale the rank-r activations, not the output: one pass over a small tensor.
        let low_rank = (crate::ops::linear(&x, pair.a.as_tensor())? * self.scale())?;
        let delta = crate::ops::linear(&low_rank, pair.b.as_tensor())?;
        let delta = delta.to_dtype(base_out.dtype())?;
        Ok((base_out + delta)?)
    }

    /// A frozen base layer `w` and this layer's pair as one op ([`crate::ops::lora_linear`]),
    /// the same values as `apply` on the base's output; `None` where that op does not apply
    /// (no pair here, dropout in effect, not on the CPU in one f32/f64 dtype).
    pub(crate) fn fused(
        &self,
        layer: usize,
        target: LoraTarget,
        x: &Tensor,
        w: &crate::ops::Weight,
    ) -> Result<Option<Tensor>> {
        let Some(pair) = self.pair(layer, target) else {
            return Ok(None);
        };
        if self.dropout_in_effect() {
            return Ok(None);
        }
        let (a, b) = (pair.a.as_tensor(), pair.b.as_tensor());
        Ok(crate::ops::lora_linear(x, w, a, b, self.scale())?)
    }

    /// Whether `dropout` masks anything: a nonzero rate, in training mode.
    fn dropout_in_effect(&self) -> bool {
        self.config.dropout > 0.0 && self.training.load(Ordering::Relaxed)
    }

    fn dropout(&self, x: &Tensor) -> Result<Tensor> {
        if !self.dropout_in_effect() {
            return Ok(x.clone());
        }
        let p = self.config.dropout;
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = {
            let mut rng = self.dropout_rng.lock().expect("dropout rng lock");
            (0..x.elem_count())
                .map(|_| if rng.next_f64() < p { 0.0 } else { keep as f32 })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }

    /// Load adapter values from a safetensors file written by [`VarMap::save`].
    pub fn load_weights(&mut self, path: &std::path::Path) -> Result<()> {
        self.varmap.load(path).map_err(|e| TrainError::Read {
            path: path.into(),
            reason: e.to_string(),
        })
    }
}
