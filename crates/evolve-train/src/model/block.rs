//! One transformer block's forward pass (attention and gated MLP, with an adapter's low-rank
//! updates), what a pass over the blocks shares, and the block replayed for recomputation.

use crate::lora::{Lora, LoraTarget};
use crate::model::config::{Activation, LlamaConfig};
use crate::ops::{self, Weight};
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor};

/// What the model does with a linear layer's weight: its size, an embedding's rows, its product.
impl Weight {
    pub(super) fn bytes(&self) -> usize {
        match self {
            Weight::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
            Weight::Quantized(q) => q.storage_size_in_bytes(),
        }
    }

    /// Rows `ids` as a dense `[n, cols]` tensor. A quantized table dequantizes only those rows
    /// (quantization blocks never straddle rows), so an embedding of 128k × 4096 costs its
    /// quantized size in memory rather than 2 GiB of f32.
    pub(super) fn rows(&self, ids: &Tensor, dtype: DType, device: &Device) -> Result<Tensor> {
        match self {
            Weight::Dense(t) => Ok(t.index_select(ids, 0)?),
            Weight::Quantized(q) => {
                let (_, cols) = q.shape().dims2()?;
                let kind = q.dtype();
                let row_bytes = cols / kind.block_size() * kind.type_size();
                let raw = q.data()?;
                let ids = ids.to_vec1::<u32>()?;
                let mut picked = Vec::with_capacity(ids.len() * row_bytes);
                for &id in &ids {
                    let at = id as usize * row_bytes;
                    let row = raw.get(at..at + row_bytes).ok_or_else(|| {
                        TrainError::Data(format!("token id {id} is outside the vocabulary"))
                    })?;
                    picked.extend_from_slice(row);
                }
                let rows = candle_core::quantized::ggml_file::qtensor_from_ggml(
                    kind,
                    &picked,
                    vec![ids.len(), cols],
                    device,
                )?;
                Ok(rows.dequantize(device)?.to_dtype(dtype)?)
            }
        }
    }

    /// `x·Wᵀ`, with a weight gradient only when the model is `trainable` (a frozen base uses
    /// [`ops::frozen_linear`], so no weight gradient is ever computed or stored).
    pub(super) fn linear(&self, x: &Tensor, trainable: bool) -> Result<Tensor> {
        Ok(match self {
            Weight::Dense(w) if trainable => ops::linear(x, w)?,
            frozen => ops::frozen_linear(x, frozen)?,
        })
    }
}

/// Rotation tables and attention mask for one kind of layer.
#[derive(Clone)]
pub(super) struct Positions {
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) mask: Tensor,
}

/// What a block's forward pass needs besides its own weights.
pub(super) struct Pass<'a> {
    pub(super) cfg: &'a LlamaConfig,
    pub(super) adapter: Option<&'a Lora>,
    pub(super) trainable: bool,
    pub(super) global: &'a Positions,
    /// Sliding-window layers' own tables and mask (Gemma 3).
    pub(super) local: Option<&'a Positions>,
}

impl Pass<'_> {
    fn positions(&self, layer: usize) -> &Positions {
        match (self.local, self.cfg.sliding_window) {
            (Some(local), Some(w)) if w.is_local(layer) => local,
            _ => self.global,
        }
    }

    /// A block's linear layer `target` of layer `layer`, with the adapter's low-rank update.
    fn linear(&self, layer: usize, target: LoraTarget, x: &Tensor, w: &Weight) -> Result<Tensor> {
        if let Some(l) = self.adapter
            && !self.trainable
            && let Some(y) = l.fused(layer, target, x, w)?
        {
            return Ok(y);
        }
        let base = w.linear(x, self.trainable)?;
        match self.adapter {
            Some(l) => l.apply(layer, target, x, base),
            None => Ok(base),
        }
    }
}

#[derive(Clone)]
pub(super) struct Block {
    pub(super) attn_norm: Tensor,
    pub(super) wq: Weight,
    pub(super) wk: Weight,
    pub(super) wv: Weight,
    pub(super) wo: Weight,
    /// Qwen2 has q/k/v biases; Llama has none.
    pub(super) bq: Option<Tensor>,
    pub(super) bk: Option<Tensor>,
    pub(super) bv: Option<Tensor>,
    /// Qwen3's RMS norms over each query and key head (`[head_dim]`), applied before RoPE.
    pub(super) q_norm: Option<Tensor>,
    pub(super) k_norm: Option<Tensor>,
    /// Gemma's norms of the attention's and the MLP's outputs, before the residual sum.
    pub(super) post_attn_norm: Option<Tensor>,
    pub(super) post_ffn_norm: Option<Tensor>,
    pub(super) ffn_norm: Tensor,
    pub(super) gate: Weight,
    pub(super) up: Weight,
    pub(super) down: Weight,
}

impl Block {
    /// Pre-norm residual block: `x + attention(norm(x))`, then `+ mlp(norm(·))` (Gemma also
    /// norms each branch's output).
    pub(super) fn forward(&self, layer: usize, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let eps = pass.cfg.rms_eps;
        let post = |y: Tensor, norm: &Option<Tensor>| -> Result<Tensor> {
            Ok(match norm {
                Some(w) => ops::rms_norm(&y, w, eps)?,
                None => y,
            })
        };
        let h = ops::rms_norm(x, &self.attn_norm, eps)?;
        let x = (x + post(self.attention(layer, &h, pass)?, &self.post_attn_norm)?)?;
        let h = ops::rms_norm(&x, &self.ffn_norm, eps)?;
        Ok((&x + post(self.mlp(layer, &h, pass)?, &self.post_ffn_norm)?)?)
    }

    /// Causal self-attention with grouped KV heads and rotary positions.
    fn attention(&self, layer: usize, h: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let cfg = pass.cfg;
        let (b, t, _) = h.dims3()?;
        let project = |target,
                       w: &Weight,
                       bias: &Option<Tensor>,
                       norm: &Option<Tensor>,
                       n_heads: usize|
         -> Result<Tensor> {
            let y = pass.linear(layer, target, h, w)?;
            let y = match bias {
                Some(bias) => y.broadcast_add(bias)?,
                None => y,
            };
            // Qwen3 norms each head: only then is the split a reshape of its own.
            let y = match norm {
                Some(norm) => {
                    let y = y.reshape((b, t, n_heads, cfg.head_dim))?;
                    ops::rms_norm(&y, norm, cfg.rms_eps)?
                }
                None => y,
            };
            Ok(y)
        };
        let q = project(LoraTarget::Q, &self.wq, &self.bq, &self.q_norm, cfg.n_head)?;
        let k = project(
            LoraTarget::K,
            &self.wk,
            &self.bk,
            &self.k_norm,
            cfg.n_head_kv,
        )?;
        let v = project(LoraTarget::V, &self.wv, &self.bv, &None, cfg.n_head_kv)?;
        let at = pass.positions(layer);
        let rotation = Some((&at.cos, &at.sin, cfg.architecture.rope_layout()));
        let q = ops::to_heads(&q, cfg.n_head, rotation)?;
        let k = ops::to_heads(&k, cfg.n_head_kv, rotation)?;
        let v = ops::to_heads(&v, cfg.n_head_kv, None)?;
        let attn = ops::causal_attention(&q, &k, &v, &at.mask, cfg.attention_scale())?;
        pass.linear(layer, LoraTarget::O, &attn, &self.wo)
    }

    /// Gated feed-forward: `down(act(gate(h)) · up(h))`, SwiGLU or GeGLU.
    fn mlp(&self, layer: usize, h: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let gate = pass.linear(layer, LoraTarget::Gate, h, &self.gate)?;
        let up = pass.linear(layer, LoraTarget::Up, h, &self.up)?;
        let act = match pass.cfg.architecture.activation() {
            Activation::Silu => ops::silu_mul(&gate, &up)?,
            Activation::GeluTanh => (ops::gelu_as_ggml(&gate)? * up)?,
        };
        pass.linear(layer, LoraTarget::Down, &act, &self.down)
    }

    pub(super) fn matrices_mut(&mut self) -> [&mut Weight; 7] {
        [
            &mut self.wq,
            &mut self.wk,
            &mut self.wv,
            &mut self.wo,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }
}

/// `block.forward` whose activations are rebuilt in the backward pass (see [`crate::recompute`]).
/// The replay runs on a snapshot of the adapter taken before the forward, so its dropout masks
/// are the forward's.
pub(super) fn recomputed_block(
    layer: usize,
    block: &Block,
    x: &Tensor,
    pass: &Pass<'_>,
    lora: &Lora,
) -> Result<Tensor> {
    let snapshot = lora.snapshot();
    let (block_again, cfg) = (block.clone(), pass.cfg.clone());
    let (global, local) = (pass.global.clone(), pass.local.cloned());
    let trainable = pass.trainable;
    let again = move |x: &Tensor| -> candle_core::Result<Tensor> {
        let replay = snapshot.snapshot();
        let pass = Pass {
            cfg: &cfg,
            adapter: Some(&replay),
            trainable,
            global: &global,
            local: local.as_ref(),
        };
        block_again
            .forward(layer, x, &pass)
            .map_err(candle_core::Error::wrap)
    };
    let forward = |x: &Tensor| {
        block
            .forward(layer, x, pass)
            .map_err(candle_core::Error::wrap)
    };
    Ok(crate::recompute::recompute(
        x,
        forward,
        again,
        lora.layer_vars(layer),
        lora.recomputed_grads().clone(),
    )?)
}
