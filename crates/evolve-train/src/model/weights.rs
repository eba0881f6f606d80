//! The model's weights in the GGUF layout, one tensor at a time, with or without an adapter
//! folded in: what exports write. Computing each tensor only when it is written keeps a merged
//! export of an 8B model at one f32 tensor beside the (quantized) model, not 32 GB.

use super::block::Block;
use super::llama::LlamaModel;
use crate::lora::{Lora, LoraTarget};
use crate::model::config::Architecture;
use crate::ops::Weight;
use crate::{Result, TrainError};
use candle_core::{DType, Tensor};

/// One tensor of the GGUF file, by name and shape, computed by [`WeightSource::value`].
/// Phi-3's fused `attn_qkv` and `ffn_up` are their parts stacked, as llama.cpp stores them.
pub struct WeightSource<'a> {
    pub name: String,
    /// `[rows, cols]` for a matrix (candle's order), `[n]` for a vector.
    pub dims: Vec<usize>,
    model: &'a LlamaModel,
    parts: Vec<Part<'a>>,
}

enum Part<'a> {
    Vector(&'a Tensor),
    /// A matrix, and the adapter pair that applies to it.
    Weight(&'a Weight, Option<(usize, LoraTarget)>),
}

/// The parts `targets` of layer `layer`, each adapted by its pair.
fn adapted<'a>(layer: usize, targets: &[(&'a Weight, LoraTarget)]) -> Vec<Part<'a>> {
    targets
        .iter()
        .map(|&(w, t)| Part::Weight(w, Some((layer, t))))
        .collect()
}

impl<'a> WeightSource<'a> {
    fn new(model: &'a LlamaModel, name: String, parts: Vec<Part<'a>>) -> Result<Self> {
        let dims = match parts.as_slice() {
            [Part::Vector(t)] => t.dims().to_vec(),
            _ => {
                let mut rows = 0;
                let mut width = 0;
                for part in &parts {
                    let Part::Weight(w, _) = part else {
                        unreachable!("vectors are never stacked")
                    };
                    let (r, c) = w.dims2()?;
                    rows += r;
                    width = c;
                }
                vec![rows, width]
            }
        };
        Ok(WeightSource {
            name,
            dims,
            model,
            parts,
        })
    }

    /// The tensor, with `lora`'s `s·B·A` added to every matrix it adapts.
    pub fn value(&self, lora: Option<&Lora>) -> Result<Tensor> {
        let m = self.model;
        let parts = self
            .parts
            .iter()
            .map(|part| match (part, lora) {
                (Part::Vector(t), _) => Ok((*t).clone()),
                (Part::Weight(w, Some((layer, target))), Some(lora)) => {
                    m.with_delta(w.dense(m.dtype, &m.device)?, lora, *layer, *target)
                }
                (Part::Weight(w, _), _) => Ok(w.dense(m.dtype, &m.device)?),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(match parts.as_slice() {
            [one] => one.clone(),
            many => Tensor::cat(many, 0)?,
        })
    }
}

impl LlamaModel {
    /// Every weight by GGUF tensor name, in the order llama.cpp's converter writes them
    /// (`output.weight` omitted when tied, RoPE factors not included), none computed yet.
    pub fn weight_sources<'a>(&'a self) -> Result<Vec<WeightSource<'a>>> {
        let source = |name: String, parts| WeightSource::new(self, name, parts);
        let vector = |t| vec![Part::Vector(t)];
        let frozen = |w| vec![Part::Weight(w, None)];
        let mut out = vec![
            source("token_embd.weight".into(), frozen(&self.token_embd))?,
            source("output_norm.weight".into(), vector(&self.output_norm))?,
        ];
        if !self.config.tied_embeddings {
            out.push(source("output.weight".into(), frozen(&self.output))?);
        }
        let phi3 = self.config.architecture == Architecture::Phi3;
        for (i, b) in self.blocks.iter().enumerate() {
            let n = |part: &str| format!("blk.{i}.{part}");
            let adapted = |targets: &[(&'a Weight, LoraTarget)]| adapted(i, targets);
            let Block { wq, wk, wv, wo, .. } = b;
            out.push(source(n("attn_norm.weight"), vector(&b.attn_norm))?);
            let (q, k, v) = (
                (wq, LoraTarget::Q),
                (wk, LoraTarget::K),
                (wv, LoraTarget::V),
            );
            if phi3 {
                out.push(source(n("attn_qkv.weight"), adapted(&[q, k, v]))?);
            } else {
                out.push(source(n("attn_q.weight"), adapted(&[q]))?);
                out.push(source(n("attn_k.weight"), adapted(&[k]))?);
                out.push(source(n("attn_v.weight"), adapted(&[v]))?);
            }
            out.push(source(
                n("attn_output.weight"),
                adapted(&[(wo, LoraTarget::O)]),
            )?);
            for (part, extra) in [
                ("attn_q.bias", &b.bq),
                ("attn_k.bias", &b.bk),
                ("attn_v.bias", &b.bv),
                ("attn_q_norm.weight", &b.q_norm),
                ("attn_k_norm.weight", &b.k_norm),
                ("post_attention_norm.weight", &b.post_attn_norm),
            ] {
                if let Some(t) = extra {
                    out.push(source(n(part), vector(t))?);
                }
            }
            out.push(source(n("ffn_norm.weight"), vector(&b.ffn_norm))?);
            let (gate, up) = ((&b.gate, LoraTarget::Gate), (&b.up, LoraTarget::Up));
            if phi3 {
                out.push(source(n("ffn_up.weight"), adapted(&[gate, up]))?);
            } else {
                out.push(source(n("ffn_gate.weight"), adapted(&[gate]))?);
                out.push(source(n("ffn_up.weight"), adapted(&[up]))?);
            }
            out.push(source(
                n("ffn_down.weight"),
                adapted(&[(&b.down, LoraTarget::Down)]),
            )?);
            if let Some(t) = &b.post_ffn_norm {
                out.push(source(n("post_ffw_norm.weight"), vector(t))?);
            }
        }
        Ok(out)
    }

    /// `w + s·B·A` for the pair of `lora` at (`layer`, `target`), or `w` if it has none;
    /// computed in f32 or wider (the model's dtype if wider), returned in the model's dtype.
    fn with_delta(
        &self,
        w: Tensor,
        lora: &Lora,
        layer: usize,
        target: LoraTarget,
    ) -> Result<Tensor> {
        let Some(pair) = lora.pair(layer, target) else {
            return Ok(w);
        };
        let wide = if self.dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let b = pair.b.as_tensor().detach().to_dtype(wide)?;
        let a = pair.a.as_tensor().detach().to_dtype(wide)?;
        let delta = (b.matmul(&a)? * lora.scale())?;
        Ok((w.detach().to_dtype(wide)? + delta)?.to_dtype(self.dtype)?)
    }

    /// Whether `lora` was made for this model's depth (an export must not fold in an adapter
    /// of another model).
    pub fn check_adapter(&self, lora: &Lora) -> Result<()> {
        if lora.n_layers() != self.config.n_layer {
            return Err(TrainError::Config(format!(
                "adapter has {} layers, the model {}",
                lora.n_layers(),
                self.config.n_layer
            )));
        }
        Ok(())
    }

    /// A frozen copy with the adapter folded into the base weights, `W + s·B·A` — what a
    /// merged GGUF holds, whole in memory (exports stream instead: [`Self::weight_sources`]).
    pub fn merged(&self, lora: &Lora) -> Result<LlamaModel> {
        self.check_adapter(lora)?;
        let detach = |t: &Tensor| t.detach().copy();
        let merge = |layer: usize, target: LoraTarget, w: &Weight| -> Result<Weight> {
            let w = detach(&w.dense(self.dtype, &self.device)?)?;
            Ok(Weight::Dense(self.with_delta(w, lora, layer, target)?))
        };
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for (i, b) in self.blocks.iter().enumerate() {
            let opt = |t: &Option<Tensor>| t.as_ref().map(detach).transpose();
            blocks.push(Block {
                attn_norm: detach(&b.attn_norm)?,
                wq: merge(i, LoraTarget::Q, &b.wq)?,
                wk: merge(i, LoraTarget::K, &b.wk)?,
                wv: merge(i, LoraTarget::V, &b.wv)?,
                wo: merge(i, LoraTarget::O, &b.wo)?,
                bq: opt(&b.bq)?,
                bk: opt(&b.bk)?,
                bv: opt(&b.bv)?,
                q_norm: opt(&b.q_norm)?,
                k_norm: opt(&b.k_norm)?,
                post_attn_norm: opt(&b.post_attn_norm)?,
                post_ffn_norm: opt(&b.post_ffn_norm)?,
                ffn_norm: detach(&b.ffn_norm)?,
                gate: merge(i, LoraTarget::Gate, &b.gate)?,
                up: merge(i, LoraTarget::Up, &b.up)?,
                down: merge(i, LoraTarget::Down, &b.down)?,
            });
        }
        let token_embd = detach(&self.token_embd.dense(self.dtype, &self.device)?)?;
        let output = Weight::Dense(if self.config.tied_embeddings {
            token_embd.clone()
        } else {
            detach(&self.output.dense(self.dtype, &self.device)?)?
        });
        Ok(LlamaModel {
            config: self.config.clone(),
            token_embd: Weight::Dense(token_embd),
            output_norm: detach(&self.output_norm)?,
            output,
            rope_freq_factors: self.rope_freq_factors.clone(),
            rope_factor_tensors: self.rope_factor_tensors.clone(),
            blocks,
            dtype: self.dtype,
            device: self.device.clone(),
            vars: Vec::new(),
        })
    }
}
