//! Phi-3's fused matrices (q/k/v in one, gate/up in one) as the exports see them: one adapter
//! each, assembled from the adapters trained on their parts, and the walk over a layer's
//! adapters that both the GGUF LoRA and the PEFT export write.

use crate::Result;
use crate::lora::{Lora, LoraPair, LoraTarget};
use crate::model::config::{Architecture, LlamaConfig};
use candle_core::{DType, Tensor};

/// A matrix Phi-3 stores fused: its names in GGUF and transformers, and the targets whose rows
/// it stacks, in order.
pub(super) struct Fused {
    pub gguf_stem: &'static str,
    pub hf_module: &'static str,
    pub hf_path: &'static str,
    pub parts: &'static [LoraTarget],
}

const PHI3_FUSED: [Fused; 2] = [
    Fused {
        gguf_stem: "attn_qkv",
        hf_module: "qkv_proj",
        hf_path: "self_attn.qkv_proj",
        parts: &[LoraTarget::Q, LoraTarget::K, LoraTarget::V],
    },
    Fused {
        gguf_stem: "ffn_up",
        hf_module: "gate_up_proj",
        hf_path: "mlp.gate_up_proj",
        parts: &[LoraTarget::Gate, LoraTarget::Up],
    },
];

/// One adapter of a layer as an export writes it.
pub(super) enum LayerAdapter<'a> {
    /// One of Phi-3's fused matrices: `A` and `B` from [`fuse`].
    Fused(&'static Fused, Tensor, Tensor),
    /// A target's own pair.
    Own(LoraTarget, &'a LoraPair),
}

/// Layer `layer`'s adapters in the order exports write them: on Phi-3 the fused matrices first,
/// standing for their parts' adapters, then every other target that has a pair.
pub(super) fn layer_adapters<'a>(
    lora: &'a Lora,
    layer: usize,
    model: &LlamaConfig,
) -> Result<Vec<LayerAdapter<'a>>> {
    let mut out = Vec::new();
    let mut done = Vec::new();
    if model.architecture == Architecture::Phi3 {
        for fused in &PHI3_FUSED {
            let Some((a, b)) = fuse(lora, layer, fused, model)? else {
                continue;
            };
            out.push(LayerAdapter::Fused(fused, a, b));
            done.extend(fused.parts.iter().copied());
        }
    }
    for target in LoraTarget::ALL {
        if done.contains(&target) {
            continue;
        }
        if let Some(pair) = lora.pair(layer, target) {
            out.push(LayerAdapter::Own(target, pair));
        }
    }
    Ok(out)
}

/// Layer `layer`'s one adapter on `fused`, standing for the adapters on its parts' row blocks
/// (`None` when no part has one): `A` stacks their `A`s (rank k·r) and `B` places each `B` on
/// its rows, block-diagonally (zero rows for a part without an adapter) — exactly the sum of the
/// parts' updates.
fn fuse(
    lora: &Lora,
    layer: usize,
    fused: &Fused,
    model: &LlamaConfig,
) -> Result<Option<(Tensor, Tensor)>> {
    let parts: Vec<(LoraTarget, &LoraPair)> = fused
        .parts
        .iter()
        .filter_map(|&t| lora.pair(layer, t).map(|p| (t, p)))
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    let a = Tensor::cat(
        &parts
            .iter()
            .map(|(_, p)| p.a.as_tensor().to_dtype(DType::F32))
            .collect::<candle_core::Result<Vec<_>>>()?,
        0,
    )?;
    let rank_total = a.dim(0)?;
    let device = a.device().clone();
    let mut rows = Vec::new();
    let mut col = 0;
    for &target in fused.parts {
        let (_, n_out) = target.shape(model);
        match parts.iter().find(|(t, _)| *t == target) {
            Some((_, p)) => {
                let b = p.b.as_tensor().to_dtype(DType::F32)?;
                let r = b.dim(1)?;
                rows.push(b.pad_with_zeros(1, col, rank_total - col - r)?);
                col += r;
            }
            None => rows.push(Tensor::zeros((n_out, rank_total), DType::F32, &device)?),
        }
    }
    Ok(Some((a, Tensor::cat(&rows, 0)?)))
}
