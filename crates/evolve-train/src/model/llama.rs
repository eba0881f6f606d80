//! The model: its weights, made trainable or frozen, and the forward pass over its blocks to
//! hidden states and logits.

use super::block::{Block, Pass, Positions, recomputed_block};
use crate::lora::Lora;
use crate::model::config::LlamaConfig;
use crate::ops::{self, Weight};
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};

/// The base model. Loaded from GGUF it is frozen: weights are plain tensors, and the linear
/// layers use [`ops::frozen_linear`], so no weight gradient is ever computed or stored. After
/// [`LlamaModel::trainable`] (or from [`LlamaModel::new_random`]) every weight is a [`Var`] and
/// the plain matmul is used, for full-parameter training.
pub struct LlamaModel {
    pub(super) config: LlamaConfig,
    /// `[n_vocab, n_embd]`, read by rows (`Weight::rows`); kept quantized when the head is untied.
    pub(super) token_embd: Weight,
    pub(super) output_norm: Tensor,
    /// `[n_vocab, n_embd]`; the embedding itself when the file ties them.
    pub(super) output: Weight,
    /// Per-dimension RoPE frequency divisors in use (Llama 3's `rope_freqs`, or Phi-3's long
    /// or short LongRoPE factors).
    pub(super) rope_freq_factors: Option<Vec<f32>>,
    /// Every RoPE factor tensor of the file by name, written back as they were on export.
    pub(super) rope_factor_tensors: Vec<(String, Vec<f32>)>,
    pub(super) blocks: Vec<Block>,
    pub(super) dtype: DType,
    pub(super) device: Device,
    /// Every weight as a variable, by GGUF tensor name; empty while the model is frozen.
    pub(super) vars: Vec<(String, Var)>,
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
