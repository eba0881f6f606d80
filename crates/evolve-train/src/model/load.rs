//! Building a [`LlamaModel`]: from a GGUF file's weights (dequantized, or the matrices kept
//! quantized), or freshly initialised for pretraining from scratch.

use super::block::Block;
use super::llama::LlamaModel;
use crate::model::config::{Architecture, LlamaConfig};
use crate::ops::Weight;
use crate::{Result, TrainError};
use candle_core::quantized::{GgmlDType, gguf_file};
use candle_core::{DType, Device, Tensor};
use evolve_core::rng::SplitMix64;
use std::path::Path;
use std::sync::Arc;

/// The RoPE factor tensors a GGUF may hold (Llama 3's one set; LongRoPE's two).
const ROPE_FACTOR_TENSORS: [&str; 3] = [
    "rope_freqs.weight",
    "rope_factors_long.weight",
    "rope_factors_short.weight",
];

/// Standard deviation of random matrices in [`LlamaModel::new_random`] (GPT-2/Llama init).
const INIT_STD: f64 = 0.02;

/// Loading a fused linear layer's weight (Phi-3's q/k/v and gate/up).
impl Weight {
    /// Consecutive row blocks of `sizes` rows each (a fused matrix's parts). Quantized rows are
    /// sliced as stored: quantization blocks never straddle rows.
    fn split_rows(&self, sizes: &[usize]) -> Result<Vec<Weight>> {
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for &n in sizes {
            out.push(match self {
                Weight::Dense(t) => Weight::Dense(t.narrow(0, start, n)?.contiguous()?),
                Weight::Quantized(q) => {
                    let (_, cols) = q.shape().dims2()?;
                    let kind = q.dtype();
                    let row_bytes = cols / kind.block_size() * kind.type_size();
                    let raw = q.data()?;
                    let rows = candle_core::quantized::ggml_file::qtensor_from_ggml(
                        kind,
                        &raw[start * row_bytes..(start + n) * row_bytes],
                        vec![n, cols],
                        &q.device(),
                    )?;
                    Weight::Quantized(Arc::new(rows))
                }
            });
            start += n;
        }
        Ok(out)
    }
}

impl LlamaModel {
    /// Loads and dequantizes every tensor (any type candle reads: F32, F16, BF16, Q4_0…Q8_0,
    /// K-quants) to `dtype` (f32 for training, f64 for gradient tests).
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with(path, device, dtype, false)
    }

    /// Like [`Self::load`], but the block matrices, an untied LM head and then the embedding,
    /// stored quantized in the file (Q4_0…Q8_0, K-quants), stay quantized in memory: matrices are
    /// dequantized per use, the embedding only for the rows a batch reads. LoRA training then
    /// holds a base several times smaller. Norms, biases and a tied embedding are dequantized.
    pub fn load_quantized(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with(path, device, dtype, true)
    }

    fn load_with(path: &Path, device: &Device, dtype: DType, keep_quantized: bool) -> Result<Self> {
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
        // One reader for every tensor: dense (dequantized to `dtype`) unless `keep` and the
        // file stores it in a quantized type.
        let mut read = |name: &str, shape: &[usize], keep: bool| -> Result<Weight> {
            let tensor_err = |reason: String| TrainError::Tensor {
                name: name.into(),
                reason,
            };
            let q = content
                .tensor(&mut file, name, device)
                .map_err(|e| tensor_err(format!("cannot read: {e}")))?;
            if q.shape().dims() != shape {
                return Err(tensor_err(format!(
                    "shape {:?}, expected {shape:?}",
                    q.shape().dims()
                )));
            }
            let stored_dense =
                matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
            if keep && !stored_dense {
                return Ok(Weight::Quantized(Arc::new(q)));
            }
            let t = q
                .dequantize(device)
                .map_err(|e| tensor_err(format!("cannot dequantize: {e}")))?;
            Ok(Weight::Dense(t.to_dtype(dtype)?))
        };
        // With a head of its own the embedding is only gathered by rows: it may stay quantized.
        // A tied one is also the head's dense matrix.
        let tied = !content.tensor_infos.contains_key("output.weight");
        let token_embd = read(
            "token_embd.weight",
            &[config.n_vocab, config.n_embd],
            keep_quantized && !tied,
        )?;
        let mut get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            match read(name, shape, false)? {
                Weight::Dense(t) => Ok(t),
                Weight::Quantized(_) => unreachable!("read(.., false) is dense"),
            }
        };
        let has = |name: &str| content.tensor_infos.contains_key(name);
        let (e, kv, ff, vocab) = (config.n_embd, config.kv_dim(), config.n_ff, config.n_vocab);
        let (q, hd) = (config.q_dim(), config.head_dim);

        let output_norm = get("output_norm.weight", &[e])?;
        let mut rope_factor_tensors = Vec::new();
        for name in ROPE_FACTOR_TENSORS {
            if has(name) {
                let t = get(name, &[config.rope_dims / 2])?;
                rope_factor_tensors.push((name.to_string(), t.to_dtype(DType::F32)?.to_vec1()?));
            }
        }
        // Llama 3's one set, else LongRoPE's long or short set as llama.cpp picks them.
        let in_use = if config.long_rope() {
            ["rope_freqs.weight", "rope_factors_long.weight"]
        } else {
            ["rope_freqs.weight", "rope_factors_short.weight"]
        };
        let rope_freq_factors = in_use.iter().find_map(|wanted| {
            rope_factor_tensors
                .iter()
                .find(|(name, _)| name == wanted)
                .map(|(_, f)| f.clone())
        });
        // The LM head is often the largest matrix, so it may stay quantized too; a tied head
        // is the (dense, row-gathered) embedding.
        let output = if tied {
            token_embd.clone()
        } else {
            read("output.weight", &[vocab, e], keep_quantized)?
        };
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |part: &str| format!("blk.{i}.{part}");
            let mut dense = |part: &str, dim: usize| -> Result<Tensor> {
                match read(&n(part), &[dim], false)? {
                    Weight::Dense(t) => Ok(t),
                    Weight::Quantized(_) => unreachable!("read(.., false) is dense"),
                }
            };
            let mut bias = |part: &str, dim: usize| -> Result<Option<Tensor>> {
                if has(&n(part)) {
                    dense(part, dim).map(Some)
                } else {
                    Ok(None)
                }
            };
            let (bq, bk, bv) = (
                bias("attn_q.bias", q)?,
                bias("attn_k.bias", kv)?,
                bias("attn_v.bias", kv)?,
            );
            let (q_norm, k_norm) = (
                bias("attn_q_norm.weight", hd)?,
                bias("attn_k_norm.weight", hd)?,
            );
            let (post_attn_norm, post_ffn_norm) = (
                bias("post_attention_norm.weight", e)?,
                bias("post_ffw_norm.weight", e)?,
            );
            let attn_norm = dense("attn_norm.weight", e)?;
            let ffn_norm = dense("ffn_norm.weight", e)?;
            let fused_qkv = has(&n("attn_qkv.weight"));
            let mut matrix = |part: &str, rows: usize, cols: usize| {
                read(&n(part), &[rows, cols], keep_quantized)
            };
            // Phi-3 fuses q/k/v (rows in that order) and gate/up (gate first): split once here,
            // so the blocks and adapters stay those of every other architecture.
            let [wq, wk, wv]: [Weight; 3] = if fused_qkv {
                let parts = matrix("attn_qkv.weight", q + 2 * kv, e)?.split_rows(&[q, kv, kv])?;
                parts
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("three parts"))
            } else {
                [
                    matrix("attn_q.weight", q, e)?,
                    matrix("attn_k.weight", kv, e)?,
                    matrix("attn_v.weight", kv, e)?,
                ]
            };
            let [gate, up]: [Weight; 2] = if config.architecture == Architecture::Phi3 {
                let parts = matrix("ffn_up.weight", 2 * ff, e)?.split_rows(&[ff, ff])?;
                parts
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("two parts"))
            } else {
                [
                    matrix("ffn_gate.weight", ff, e)?,
                    matrix("ffn_up.weight", ff, e)?,
                ]
            };
            blocks.push(Block {
                attn_norm,
                wq,
                wk,
                wv,
                wo: matrix("attn_output.weight", e, q)?,
                bq,
                bk,
                bv,
                q_norm,
                k_norm,
                post_attn_norm,
                post_ffn_norm,
                ffn_norm,
                gate,
                up,
                down: matrix("ffn_down.weight", e, ff)?,
            });
        }
        Ok(LlamaModel {
            config,
            token_embd,
            output_norm,
            output,
            rope_freq_factors,
            rope_factor_tensors,
            blocks,
            dtype,
            device: device.clone(),
            vars: Vec::new(),
        })
    }

    /// [`Self::new_random`] in f32 on the CPU: how the tiny task model is trained (bf16 would
    /// round most updates away).
    pub fn new_random_f32_cpu(config: &LlamaConfig, seed: u64) -> Result<Self> {
        Self::new_random(config, seed, DType::F32, &Device::Cpu)
    }

    /// A freshly initialised, trainable model (matrices `N(0, 0.02²)`, norms 1, biases 0) —
    /// how a model is pretrained from scratch. Deterministic in `seed`.
    pub fn new_random(
        config: &LlamaConfig,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (e, kv, ff, vocab) = (config.n_embd, config.kv_dim(), config.n_ff, config.n_vocab);
        let random = |name: &str, rows: usize, cols: usize| -> Result<Tensor> {
            let mut rng = SplitMix64::for_tensor(seed, name);
            let v: Vec<f64> = (0..rows * cols)
                .map(|_| rng.next_normal() * INIT_STD)
                .collect();
            Ok(Tensor::from_vec(v, (rows, cols), device)?.to_dtype(dtype)?)
        };
        let ones = |n: usize| Tensor::ones(n, dtype, device);
        let zeros = |n: usize| Tensor::zeros(n, dtype, device);
        let q = config.q_dim();
        let qwen2 = config.architecture == Architecture::Qwen2;
        let gemma3 = config.architecture == Architecture::Gemma3;
        let qwen3 = config.architecture == Architecture::Qwen3 || gemma3;
        let bias =
            |n: usize| -> Result<Option<Tensor>> { Ok(if qwen2 { Some(zeros(n)?) } else { None }) };
        let head_norm = || -> Result<Option<Tensor>> {
            Ok(if qwen3 {
                Some(ones(config.head_dim)?)
            } else {
                None
            })
        };
        let post_norm =
            || -> Result<Option<Tensor>> { Ok(if gemma3 { Some(ones(e)?) } else { None }) };
        let token_embd = random("token_embd.weight", vocab, e)?;
        let output = Weight::Dense(if config.tied_embeddings {
            token_embd.clone()
        } else {
            random("output.weight", vocab, e)?
        });
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |part: &str| format!("blk.{i}.{part}.weight");
            blocks.push(Block {
                attn_norm: ones(e)?,
                wq: Weight::Dense(random(&n("attn_q"), q, e)?),
                wk: Weight::Dense(random(&n("attn_k"), kv, e)?),
                wv: Weight::Dense(random(&n("attn_v"), kv, e)?),
                wo: Weight::Dense(random(&n("attn_output"), e, q)?),
                bq: bias(q)?,
                bk: bias(kv)?,
                bv: bias(kv)?,
                q_norm: head_norm()?,
                k_norm: head_norm()?,
                post_attn_norm: post_norm()?,
                post_ffn_norm: post_norm()?,
                ffn_norm: ones(e)?,
                gate: Weight::Dense(random(&n("ffn_gate"), ff, e)?),
                up: Weight::Dense(random(&n("ffn_up"), ff, e)?),
                down: Weight::Dense(random(&n("ffn_down"), e, ff)?),
            });
        }
        let model = LlamaModel {
            config: config.clone(),
            token_embd: Weight::Dense(token_embd),
            output_norm: ones(e)?,
            output,
            rope_freq_factors: None,
            rope_factor_tensors: Vec::new(),
            blocks,
            dtype,
            device: device.clone(),
            vars: Vec::new(),
        };
        model.trainable()
    }
}

/// The tiny random Llama in f64, for gradient checks (the directory must outlive the model).
#[cfg(test)]
pub(crate) fn tiny_model_f64() -> (tempfile::TempDir, LlamaModel) {
    use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::F32).unwrap();
    let model = LlamaModel::load(&path, &Device::Cpu, DType::F64).unwrap();
    (dir, model)
}
