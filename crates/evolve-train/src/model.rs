//! A differentiable Llama/Qwen2 forward pass over the dequantized weights of a GGUF file,
//! numerically matching llama.cpp's graph for the same file.

use crate::config::LlamaConfig;
use crate::lora::{Lora, LoraTarget};
use crate::ops;
use crate::{Result, TrainError};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use std::path::Path;

struct Block {
    attn_norm: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    /// Qwen2 has q/k/v biases; Llama has none.
    bq: Option<Tensor>,
    bk: Option<Tensor>,
    bv: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// The frozen base model. Weights are plain tensors (never `Var`s), so no gradient is ever
/// computed or stored for them.
pub struct LlamaModel {
    config: LlamaConfig,
    token_embd: Tensor,
    output_norm: Tensor,
    /// `[n_vocab, n_embd]`; the embedding itself when the file ties them.
    output: Tensor,
    rope_freq_factors: Option<Vec<f32>>,
    blocks: Vec<Block>,
    dtype: DType,
    device: Device,
}

impl LlamaModel {
    /// Loads and dequantizes every tensor (any type candle reads: F32, F16, BF16, Q4_0…Q8_0,
    /// K-quants) to `dtype` (f32 for training, f64 for gradient tests).
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let header = evolve_gguf::read_path(path)?;
        let config = LlamaConfig::from_gguf(&header)?;
        let mut file = std::fs::File::open(path).map_err(|source| TrainError::Open {
            path: path.into(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| TrainError::Read {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let mut get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let tensor_err = |reason: String| TrainError::Tensor {
                name: name.into(),
                reason,
            };
            let q = content
                .tensor(&mut file, name, device)
                .map_err(|e| tensor_err(format!("cannot read: {e}")))?;
            let t = q
                .dequantize(device)
                .map_err(|e| tensor_err(format!("cannot dequantize: {e}")))?;
            if t.dims() != shape {
                return Err(tensor_err(format!(
                    "shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            Ok(t.to_dtype(dtype)?)
        };
        let has = |name: &str| content.tensor_infos.contains_key(name);
        let (e, kv, ff, vocab) = (config.n_embd, config.kv_dim(), config.n_ff, config.n_vocab);

        let token_embd = get("token_embd.weight", &[vocab, e])?;
        let output_norm = get("output_norm.weight", &[e])?;
        let output = if has("output.weight") {
            get("output.weight", &[vocab, e])?
        } else {
            token_embd.clone()
        };
        let rope_freq_factors = if has("rope_freqs.weight") {
            let t = get("rope_freqs.weight", &[config.rope_dims / 2])?;
            Some(t.to_dtype(DType::F32)?.to_vec1::<f32>()?)
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |part: &str| format!("blk.{i}.{part}");
            let bias = |get: &mut dyn FnMut(&str, &[usize]) -> Result<Tensor>, part: &str, dim| {
                let name = n(part);
                if has(&name) {
                    get(&name, &[dim]).map(Some)
                } else {
                    Ok(None)
                }
            };
            let bq = bias(&mut get, "attn_q.bias", e)?;
            let bk = bias(&mut get, "attn_k.bias", kv)?;
            let bv = bias(&mut get, "attn_v.bias", kv)?;
            blocks.push(Block {
                attn_norm: get(&n("attn_norm.weight"), &[e])?,
                wq: get(&n("attn_q.weight"), &[e, e])?,
                wk: get(&n("attn_k.weight"), &[kv, e])?,
                wv: get(&n("attn_v.weight"), &[kv, e])?,
                wo: get(&n("attn_output.weight"), &[e, e])?,
                bq,
                bk,
                bv,
                ffn_norm: get(&n("ffn_norm.weight"), &[e])?,
                gate: get(&n("ffn_gate.weight"), &[ff, e])?,
                up: get(&n("ffn_up.weight"), &[ff, e])?,
                down: get(&n("ffn_down.weight"), &[e, ff])?,
            });
        }
        Ok(LlamaModel {
            config,
            token_embd,
            output_norm,
            output,
            rope_freq_factors,
            blocks,
            dtype,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
    pub fn dtype(&self) -> DType {
        self.dtype
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

    /// Logits from final hidden states `[.., n_embd]` (the LM head carries no adapter).
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(ops::frozen_linear(hidden, &self.output)?)
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
        let (cos, sin) = ops::rope_tables(
            t,
            cfg.rope_dims,
            cfg.rope_freq_base,
            cfg.rope_freq_scale,
            self.rope_freq_factors.as_deref(),
            self.dtype,
            &self.device,
        )?;
        let mask = ops::causal_mask(t, self.dtype, &self.device)?;
        let mut x = self
            .token_embd
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, t, cfg.n_embd))?;
        for (i, block) in self.blocks.iter().enumerate() {
            let lin = |target: LoraTarget, x: &Tensor, w: &Tensor| -> Result<Tensor> {
                let base = ops::frozen_linear(x, w)?;
                match adapter {
                    Some(l) => l.apply(i, target, x, base),
                    None => Ok(base),
                }
            };
            let add_bias = |y: Tensor, bias: &Option<Tensor>| -> Result<Tensor> {
                Ok(match bias {
                    Some(bias) => y.broadcast_add(bias)?,
                    None => y,
                })
            };
            let h = ops::rms_norm(&x, &block.attn_norm, cfg.rms_eps)?;
            let heads = |y: Tensor, n: usize| -> Result<Tensor> {
                Ok(y.reshape((b, t, n, cfg.head_dim))?.transpose(1, 2)?)
            };
            let q = heads(
                add_bias(lin(LoraTarget::Q, &h, &block.wq)?, &block.bq)?,
                cfg.n_head,
            )?;
            let k = heads(
                add_bias(lin(LoraTarget::K, &h, &block.wk)?, &block.bk)?,
                cfg.n_head_kv,
            )?;
            let v = heads(
                add_bias(lin(LoraTarget::V, &h, &block.wv)?, &block.bv)?,
                cfg.n_head_kv,
            )?;
            let layout = cfg.architecture.rope_layout();
            let q = ops::rope(&q.contiguous()?, &cos, &sin, layout)?;
            let k = ops::rope(&k.contiguous()?, &cos, &sin, layout)?;
            let attn = ops::causal_attention(&q, &k, &v, &mask)?;
            x = (x + lin(LoraTarget::O, &attn, &block.wo)?)?;

            let h = ops::rms_norm(&x, &block.ffn_norm, cfg.rms_eps)?;
            let gate = lin(LoraTarget::Gate, &h, &block.gate)?.silu()?;
            let up = lin(LoraTarget::Up, &h, &block.up)?;
            x = (x + lin(LoraTarget::Down, &(gate * up)?, &block.down)?)?;
        }
        Ok(ops::rms_norm(&x, &self.output_norm, cfg.rms_eps)?)
    }
}
