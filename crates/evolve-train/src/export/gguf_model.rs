//! A whole model as a GGUF file llama.cpp runs: a model trained from scratch, or a base with
//! its LoRA merged in.
//!
//! The candle model keeps the GGUF layout internally (q/k rows of `llama` already in the
//! adjacent-pair RoPE order), so weights are written as they are, with no permutation. Each
//! tensor is computed (dequantized, the adapter added, quantized) only while the file is
//! written, so memory holds the model as loaded plus one tensor in f32.

use crate::lora::Lora;
use crate::model::config::LlamaConfig;
use crate::model::{LlamaModel, WeightSource};
use crate::{Result, TrainError};
use candle_core::DType;
pub use evolve_gguf::tiny::WeightType;
use evolve_gguf::{GgmlType, GgufWriter, TensorData, Value};
use std::path::Path;

/// Where the `tokenizer.*` metadata of the exported file comes from.
pub enum TokenizerMetadata<'a> {
    /// Every `tokenizer.*` key of this GGUF (the base model, or a template with the vocabulary).
    CopyFrom(&'a Path),
    /// These keys as given.
    Given(Vec<(String, Value)>),
}

impl TokenizerMetadata<'_> {
    pub(crate) fn entries(&self) -> Result<Vec<(String, Value)>> {
        match self {
            TokenizerMetadata::CopyFrom(path) => Ok(evolve_gguf::read_path(path)?
                .metadata
                .into_iter()
                .filter(|(k, _)| k.starts_with("tokenizer."))
                .collect()),
            TokenizerMetadata::Given(v) => Ok(v.clone()),
        }
    }
}

/// Writes `model` to `path`: matrices as `weight_type` (Q8_0 blocks are 32 wide; a matrix
/// whose rows are not a multiple of 32 falls back to F16), norms, biases and RoPE factors F32 (as
/// llama.cpp's converter does).
pub fn export_gguf_model(
    model: &LlamaModel,
    path: &Path,
    weight_type: WeightType,
    tokenizer: TokenizerMetadata<'_>,
) -> Result<()> {
    write_model(model, None, path, None, weight_type, tokenizer)
}

/// Writes `model` with `lora` folded into its weights (`W + s·B·A`), as
/// [`export_gguf_model`] writes a model.
pub fn export_gguf_merged(
    model: &LlamaModel,
    lora: &Lora,
    path: &Path,
    weight_type: WeightType,
    tokenizer: TokenizerMetadata<'_>,
) -> Result<()> {
    model.check_adapter(lora)?;
    write_model(model, Some(lora), path, None, weight_type, tokenizer)
}

/// [`export_gguf_merged`] into `file`, which the caller created (new, empty) and which is
/// written through its handle, never reopened by name; `path` names it in errors.
pub fn export_gguf_merged_into(
    model: &LlamaModel,
    lora: &Lora,
    file: std::fs::File,
    path: &Path,
    weight_type: WeightType,
    tokenizer: TokenizerMetadata<'_>,
) -> Result<()> {
    model.check_adapter(lora)?;
    write_model(model, Some(lora), path, Some(file), weight_type, tokenizer)
}

/// Writes the model into `file` when given, else to `path` (beside it, then renamed).
fn write_model(
    model: &LlamaModel,
    lora: Option<&Lora>,
    path: &Path,
    file: Option<std::fs::File>,
    weight_type: WeightType,
    tokenizer: TokenizerMetadata<'_>,
) -> Result<()> {
    let cfg = model.config();
    let mut w = GgufWriter::new();
    add_model_metadata(&mut w, cfg, weight_type);
    let tokenizer = tokenizer.entries()?;
    if !tokenizer.iter().any(|(k, _)| k == "tokenizer.ggml.tokens") {
        return Err(TrainError::Metadata(
            "tokenizer.ggml.tokens (the exported model needs a vocabulary)".into(),
        ));
    }
    for (key, value) in tokenizer {
        w.add_metadata(key, value);
    }
    for source in model.weight_sources()? {
        let ggml_dims: Vec<u64> = source.dims.iter().rev().map(|&d| d as u64).collect();
        let ggml_type = match source.dims.as_slice() {
            [_] => GgmlType::F32,
            [_, cols] => matrix_type(weight_type, *cols),
            other => {
                return Err(TrainError::Tensor {
                    name: source.name,
                    reason: format!("unexpected shape {other:?}"),
                });
            }
        };
        let name = source.name.clone();
        w.add_tensor_later(
            name,
            ggml_dims,
            ggml_type,
            Box::new(move || Ok(tensor_data(&source, lora, ggml_type)?)),
        )?;
    }
    for (name, factors) in model.rope_factor_tensors() {
        w.add_tensor(
            name.clone(),
            vec![factors.len() as u64],
            TensorData::F32(factors.clone()),
        )?;
    }
    match file {
        Some(file) => w.write_to_file(file, path)?,
        None => w.write_to_path(path)?,
    }
    Ok(())
}

/// The values of `source` (with `lora` folded in) as `ggml_type` data.
fn tensor_data(
    source: &WeightSource<'_>,
    lora: Option<&Lora>,
    ggml_type: GgmlType,
) -> Result<TensorData> {
    let values = source
        .value(lora)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(match ggml_type {
        GgmlType::F16 => TensorData::F16(values),
        GgmlType::Q8_0 => TensorData::Q8_0(values),
        _ => TensorData::F32(values),
    })
}

/// The type a matrix with rows of `row_len` is written as.
fn matrix_type(weight_type: WeightType, row_len: usize) -> GgmlType {
    match weight_type {
        WeightType::F32 => GgmlType::F32,
        WeightType::F16 => GgmlType::F16,
        WeightType::Q8_0 if row_len.is_multiple_of(32) => GgmlType::Q8_0,
        WeightType::Q8_0 => GgmlType::F16,
    }
}

/// The `{arch}.*` hyper-parameters llama.cpp reads, from the config the model runs with.
fn add_model_metadata(w: &mut GgufWriter, cfg: &LlamaConfig, weight_type: WeightType) {
    let arch = cfg.architecture.as_str();
    let u32v = |v: usize| Value::U32(v as u32);
    w.add_metadata("general.architecture", Value::String(arch.into()))
        .add_metadata("general.name", Value::String("evolve-trained".into()))
        .add_metadata("general.file_type", Value::U32(weight_type.file_type()));
    let key = |s: &str| format!("{arch}.{s}");
    w.add_metadata(key("context_length"), u32v(cfg.context_length))
        .add_metadata(key("embedding_length"), u32v(cfg.n_embd))
        .add_metadata(key("block_count"), u32v(cfg.n_layer))
        .add_metadata(key("feed_forward_length"), u32v(cfg.n_ff))
        .add_metadata(key("attention.head_count"), u32v(cfg.n_head))
        .add_metadata(key("attention.head_count_kv"), u32v(cfg.n_head_kv))
        .add_metadata(key("rope.dimension_count"), u32v(cfg.rope_dims))
        .add_metadata(key("rope.freq_base"), Value::F32(cfg.rope_freq_base as f32))
        .add_metadata(
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.rms_eps as f32),
        )
        .add_metadata(key("vocab_size"), u32v(cfg.n_vocab));
    if cfg.q_dim() != cfg.n_embd
        || matches!(
            cfg.architecture,
            crate::Architecture::Qwen3 | crate::Architecture::Gemma3
        )
    {
        w.add_metadata(key("attention.key_length"), u32v(cfg.head_dim))
            .add_metadata(key("attention.value_length"), u32v(cfg.head_dim));
    }
    if let Some(window) = cfg.sliding_window {
        // llama.cpp's defaults for the period (6) and the local base (10000) are written too,
        // so that the file says what it means.
        w.add_metadata(key("attention.sliding_window"), u32v(window.size))
            .add_metadata(
                key("attention.sliding_window_pattern"),
                u32v(window.pattern),
            )
            .add_metadata(
                key("rope.freq_base_swa"),
                Value::F32(window.freq_base as f32),
            );
    }
    if cfg.rope_attn_factor != 1.0 {
        w.add_metadata(
            key("rope.scaling.attn_factor"),
            Value::F32(cfg.rope_attn_factor as f32),
        );
    }
    if let Some(original) = cfg.rope_original_context {
        w.add_metadata(key("rope.scaling.original_context_length"), u32v(original));
    }
    if cfg.rope_freq_scale != 1.0 {
        w.add_metadata(key("rope.scaling.type"), Value::String("linear".into()))
            .add_metadata(
                key("rope.scaling.factor"),
                Value::F32((1.0 / cfg.rope_freq_scale) as f32),
            );
    }
}
