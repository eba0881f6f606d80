//! A differentiable Llama/Qwen2/Qwen3/Gemma 3/Phi-3 forward pass over the dequantized weights of
//! a GGUF file, numerically matching llama.cpp's graph for the same file: the model and its
//! blocks' forward pass here; `config.rs` reads the hyperparameters, `load.rs` builds the
//! model from a file's weights (or random ones), `weights.rs` gives them back for export.

pub(crate) mod config;
mod load;
mod weights;

#[cfg(test)]
pub(crate) use load::tiny_model_f64;
pub use weights::WeightSource;

use crate::lora::{Lora, LoraTarget};
use crate::model::config::{Activation, LlamaConfig};
use crate::ops::{self, Weight};
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};

/// What the model does with a linear layer's weight: its size, an embedding's rows, its product.
impl Weight {
    fn bytes(&self) -> usize {
        match self {
            Weight::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
            Weight::Quantized(q) => q.storage_size_in_bytes(),
        }
    }

    /// Rows `ids` as a dense `[n, cols]` tensor. A quantized table dequantizes only those rows
    /// (quantization blocks never straddle rows), so an embedding of 128k × 4096 costs its
    /// quantized size in memory rather than 2 GiB of f32.
    fn rows(&self, ids: &Tensor, dtype: DType, device: &Device) -> Result<Tensor> {
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
    fn linear(&self, x: &Tensor, trainable: bool) -> Result<Tensor> {
        Ok(match self {
            Weight::Dense(w) if trainable => ops::linear(x, w)?,
            frozen => ops::frozen_linear(x, frozen)?,
        })
    }
}

/// Rotation tables and attention mask for one kind of layer.
#[derive(Clone)]
struct Positions {
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
}

/// What a block's forward pass needs besides its own weights.
struct Pass<'a> {
    cfg: &'a LlamaConfig,
    adapter: Option<&'a Lora>,
    trainable: bool,
    global: &'a Positions,
    /// Sliding-window layers' own tables and mask (Gemma 3).
    local: Option<&'a Positions>,
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
struct Block {
    attn_norm: Tensor,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    /// Qwen2 has q/k/v biases; Llama has none.
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    /// Qwen3's RMS norms over each query and key head (`[head_dim]`), applied before RoPE.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    /// Gemma's norms of the attention's and the MLP's outputs, before the residual sum.
    post_attn_norm: Option<Tensor>,
    post_ffn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Weight,
    up: Weight,
    down: Weight,
}

impl Block {
    /// Pre-norm residual block: `x + attention(norm(x))`, then `+ mlp(norm(·))` (Gemma also
    /// norms each branch's output).
    fn forward(&self, layer: usize, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
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

    fn matrices_mut(&mut self) -> [&mut Weight; 7] {
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

/// The base model. Loaded from GGUF it is frozen: weights are plain tensors, and the linear
/// layers use [`ops::frozen_linear`], so no weight gradient is ever computed or stored. After
/// [`LlamaModel::trainable`] (or from [`LlamaModel::new_random`]) every weight is a [`Var`] and
/// the plain matmul is used, for full-parameter training.
pub struct LlamaModel {
    config: LlamaConfig,
    /// `[n_vocab, n_embd]`, read by rows (`Weight::rows`); kept quantized when the head is untied.
    token_embd: Weight,
    output_norm: Tensor,
    /// `[n_vocab, n_embd]`; the embedding itself when the file ties them.
    output: Weight,
    /// Per-dimension RoPE frequency divisors in use (Llama 3's `rope_freqs`, or Phi-3's long
    /// or short LongRoPE factors).
    rope_freq_factors: Option<Vec<f32>>,
    /// Every RoPE factor tensor of the file by name, written back as they were on export.
    rope_factor_tensors: Vec<(String, Vec<f32>)>,
    blocks: Vec<Block>,
    dtype: DType,
    device: Device,
    /// Every weight as a variable, by GGUF tensor name; empty while the model is frozen.
    vars: Vec<(String, Var)>,
}

impl LlamaModel {
    /// Makes every weight a trainable [`Var`] (a copy), switching the linear layers from the
    /// frozen op to the plain matmul so that weight gradients flow. Tied embeddings stay one
    /// variable.
    pub fn trainable(mut self) -> Result<Self> {
        if self.is_trainable() {
            return Ok(self);
        }
        let (dtype, device) = (self.dtype, self.device.clone());
        for block in &mut self.blocks {
            for m in block.matrices_mut() {
                *m = Weight::Dense(m.dense(dtype, &device)?);
            }
        }
        self.output = Weight::Dense(self.output.dense(dtype, &device)?);
        self.token_embd = Weight::Dense(self.token_embd.dense(dtype, &device)?);
        let tied = self.config.tied_embeddings;
        let mut vars = Vec::new();
        for (name, t) in self.weights_mut() {
            if tied && name == "output.weight" {
                continue;
            }
            let var = Var::from_tensor(t)?;
            *t = var.as_tensor().clone();
            vars.push((name, var));
        }
        if tied {
            self.output = self.token_embd.clone();
        }
        self.vars = vars;
        Ok(self)
    }

    /// The reverse of [`Self::trainable`]: the weights become plain tensors again (LoRA on top
    /// of a model trained in full, or of a random one in tests).
    pub fn frozen(mut self) -> Self {
        for block in &mut self.blocks {
            for m in block.matrices_mut() {
                if let Weight::Dense(t) = m {
                    *t = t.detach();
                }
            }
        }
        for m in [&mut self.output, &mut self.token_embd] {
            if let Weight::Dense(t) = m {
                *t = t.detach();
            }
        }
        for (_, t) in self.weights_mut() {
            *t = t.detach();
        }
        self.vars.clear();
        self
    }

    pub fn is_trainable(&self) -> bool {
        !self.vars.is_empty()
    }

    /// The trainable variables by GGUF tensor name (empty for a frozen model).
    pub fn named_vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    fn weights_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out = vec![("output_norm.weight".to_string(), &mut self.output_norm)];
        if let Weight::Dense(t) = &mut self.token_embd {
            out.insert(0, ("token_embd.weight".to_string(), t));
        }
        if let Weight::Dense(t) = &mut self.output {
            out.push(("output.weight".to_string(), t));
        }
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let n = |part: &str| format!("blk.{i}.{part}");
            let Block {
                attn_norm,
                ffn_norm,
                bq,
                bk,
                bv,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                ..
            } = b;
            out.push((n("attn_norm.weight"), attn_norm));
            out.push((n("ffn_norm.weight"), ffn_norm));
            for (part, extra) in [
                ("attn_q.bias", bq),
                ("attn_k.bias", bk),
                ("attn_v.bias", bv),
                ("attn_q_norm.weight", q_norm),
                ("attn_k_norm.weight", k_norm),
                ("post_attention_norm.weight", post_attn_norm),
                ("post_ffw_norm.weight", post_ffn_norm),
            ] {
                if let Some(t) = extra.as_mut() {
                    out.push((n(part), t));
                }
            }
            let Block {
                wq,
                wk,
                wv,
                wo,
                gate,
                up,
                down,
                ..
            } = b;
            for (stem, m) in [
                ("attn_q", wq),
                ("attn_k", wk),
                ("attn_v", wv),
                ("attn_output", wo),
                ("ffn_gate", gate),
                ("ffn_up", up),
                ("ffn_down", down),
            ] {
                if let Weight::Dense(t) = m {
                    out.push((n(&format!("{stem}.weight")), t));
                }
            }
        }
        out
    }

    /// Per-dimension RoPE frequency divisors in use (`rope_freqs.weight`, Llama 3; Phi-3's
    /// LongRoPE set), if any.
    pub fn rope_freq_factors(&self) -> Option<&[f32]> {
        self.rope_freq_factors.as_deref()
    }

    /// Every RoPE factor tensor of the file (name, values), as an export writes them back.
    pub fn rope_factor_tensors(&self) -> &[(String, Vec<f32>)] {
        &self.rope_factor_tensors
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dtype of logits, losses and LoRA adapters (with their optimizer state): f32 for a
    /// half-precision (bf16/f16) base, else the base's dtype. Mixed precision: the base weights
    /// and activations stay half, while log-probs and small adapter updates keep f32 precision.
    pub fn master_dtype(&self) -> DType {
        match self.dtype {
            DType::BF16 | DType::F16 => DType::F32,
            other => other,
        }
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[b, t, n_vocab]` of the base model for token ids `[b, t]` (u32).
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        self.forward_with(tokens, None)
    }

    /// Logits with an adapter, or the base model when `adapter` is `None` — which is how the
    /// DPO reference policy is scored without a second copy of the model.
    ///
    /// Attention is causal only: batches are right-padded, so real tokens never see padding.
    pub fn forward_with(&self, tokens: &Tensor, adapter: Option<&Lora>) -> Result<Tensor> {
        self.lm_head(&self.hidden_with(tokens, adapter)?)
    }

    /// Logits from final hidden states `[.., n_embd]` (the LM head carries no adapter), in
    /// [`Self::master_dtype`].
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self
            .output
            .linear(hidden, self.is_trainable())?
            .to_dtype(self.master_dtype())?)
    }

    /// Bytes of all weights as held in memory (quantized matrices at their quantized size;
    /// a tied LM head counted once).
    pub fn weight_bytes(&self) -> usize {
        let dense = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        let mut total = self.token_embd.bytes() + dense(&self.output_norm);
        if !self.config.tied_embeddings {
            total += self.output.bytes();
        }
        for b in &self.blocks {
            total += dense(&b.attn_norm) + dense(&b.ffn_norm);
            total += [
                &b.bq,
                &b.bk,
                &b.bv,
                &b.q_norm,
                &b.k_norm,
                &b.post_attn_norm,
                &b.post_ffn_norm,
            ]
            .iter()
            .filter_map(|t| t.as_ref())
            .map(dense)
            .sum::<usize>();
            total += [&b.wq, &b.wk, &b.wv, &b.wo, &b.gate, &b.up, &b.down]
                .iter()
                .map(|m| m.bytes())
                .sum::<usize>();
        }
        total
    }

    /// Final-normed hidden states `[b, t, n_embd]`, before the LM head. Losses project only
    /// the answer positions through the (vocabulary-sized) head, which saves most of the
    /// memory of full logits.
    pub fn hidden_with(&self, tokens: &Tensor, adapter: Option<&Lora>) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let cfg = &self.config;
        if t > cfg.context_length {
            return Err(TrainError::Data(format!(
                "sequence of {t} tokens exceeds the model's context of {}",
                cfg.context_length
            )));
        }
        if let Some(l) = adapter
            && l.n_layers() != cfg.n_layer
        {
            return Err(TrainError::Config(format!(
                "adapter has {} layers, the model {}",
                l.n_layers(),
                cfg.n_layer
            )));
        }
        let positions = |base: f64, scale: f64, window: Option<usize>| -> Result<Positions> {
            let (cos, sin) = ops::rope_tables(
                t,
                cfg.rope_dims,
                base,
                scale,
                self.rope_freq_factors.as_deref(),
                self.dtype,
                &self.device,
            )?;
            let mask = ops::sliding_mask(t, window, self.dtype, &self.device)?;
            let (cos, sin) = match cfg.rope_attn_factor {
                1.0 => (cos, sin),
                f => ((cos * f)?, (sin * f)?),
            };
            Ok(Positions { cos, sin, mask })
        };
        let global = positions(cfg.rope_freq_base, cfg.rope_freq_scale, None)?;
        // Local layers: their own base, no position scaling (llama.cpp's `*_train_swa`).
        let local = cfg
            .sliding_window
            .map(|w| positions(w.freq_base, 1.0, Some(w.size)))
            .transpose()?;
        let mut x = self
            .token_embd
            .rows(&tokens.flatten_all()?, self.dtype, &self.device)?
            .reshape((b, t, cfg.n_embd))?;
        let scale = cfg.embedding_scale();
        if scale != 1.0 {
            x = (x * scale)?;
        }
        let pass = Pass {
            cfg,
            adapter,
            trainable: self.is_trainable(),
            global: &global,
            local: local.as_ref(),
        };
        // Recomputation needs the adapter's gradients only: a trainable base keeps its graph.
        let recompute = adapter.filter(|l| l.recomputes() && !pass.trainable);
        if recompute.is_some() {
            x = Var::from_tensor(&x)?.into_inner();
        }
        for (i, block) in self.blocks.iter().enumerate() {
            x = match recompute {
                Some(lora) => recomputed_block(i, block, &x, &pass, lora)?,
                None => block.forward(i, &x, &pass)?,
            };
        }
        Ok(ops::rms_norm(&x, &self.output_norm, cfg.rms_eps)?)
    }
}

/// `block.forward` whose activations are rebuilt in the backward pass (see [`crate::recompute`]).
/// The replay runs on a snapshot of the adapter taken before the forward, so its dropout masks
/// are the forward's.
fn recomputed_block(
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
