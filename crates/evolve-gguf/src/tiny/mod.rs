//! A deterministic tiny random-weight Llama model that llama.cpp loads and runs.
//!
//! Why: end-to-end tests (inference, sampling, the training loop's GGUF export) need a real
//! model file without downloads, and it must be byte-identical run to run so failures
//! reproduce. The weights are noise, so the text it generates is noise too.

mod vocab;

use std::path::Path;
use std::str::FromStr;

use evolve_core::rng::SplitMix64;
pub use vocab::{
    BOS_ID, EOS_ID, IM_END_ID, IM_START_ID, UNK_ID, VocabEntry, tiny_vocab, token_type,
};

use crate::{GgufError, GgufWriter, ModelSummary, TensorData, Value, read_path};

/// ChatML, as in Hugging Face `tokenizer_config.json` files (the `\n` are real newlines
/// inside Jinja string literals). llama.cpp detects it by its `<|im_start|>` marker.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Standard deviation of the random matrices (a common transformer init).
const WEIGHT_STD: f64 = 0.02;

/// Shape of the tiny model. The default has 119,616 parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyLlamaConfig {
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_ff: u32,
    pub context_length: u32,
    pub rope_freq_base: f32,
    pub rms_eps: f32,
    pub seed: u64,
}

impl Default for TinyLlamaConfig {
    fn default() -> Self {
        TinyLlamaConfig {
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            context_length: 512,
            rope_freq_base: 10000.0,
            rms_eps: 1e-5,
            seed: 0x5EED,
        }
    }
}

impl TinyLlamaConfig {
    pub fn head_dim(&self) -> u32 {
        self.n_embd / self.n_head
    }

    fn validate(&self) -> Result<(), GgufError> {
        let fail = |msg: &str| Err(GgufError::Invalid(format!("tiny llama config: {msg}")));
        if [
            self.n_embd,
            self.n_layer,
            self.n_head,
            self.n_head_kv,
            self.n_ff,
            self.context_length,
        ]
        .contains(&0)
        {
            return fail("sizes must be non-zero");
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return fail("n_embd must be a multiple of n_head");
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return fail("n_head must be a multiple of n_head_kv");
        }
        Ok(())
    }
}

/// On-disk type of the 2-D weight matrices (1-D norm weights are always F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    Q8_0,
}

impl WeightType {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Q8_0 => "q8_0",
        }
    }

    /// llama.cpp `llama_ftype` for `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            WeightType::F32 => 0,
            WeightType::F16 => 1,
            WeightType::Q8_0 => 7,
        }
    }

    fn tensor_data(self, values: Vec<f32>) -> TensorData {
        match self {
            WeightType::F32 => TensorData::F32(values),
            WeightType::F16 => TensorData::F16(values),
            WeightType::Q8_0 => TensorData::Q8_0(values),
        }
    }
}

impl FromStr for WeightType {
    type Err = GgufError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(WeightType::F32),
            "f16" => Ok(WeightType::F16),
            "q8_0" => Ok(WeightType::Q8_0),
            _ => Err(GgufError::Invalid(format!(
                "unknown weight type '{s}' (expected f32, f16 or q8_0)"
            ))),
        }
    }
}

impl std::fmt::Display for WeightType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Write the tiny model to `path` and return the summary of the file as read back (which
/// also proves it passes our own validation).
pub fn write_tiny_llama(
    path: &Path,
    cfg: &TinyLlamaConfig,
    weight_type: WeightType,
) -> Result<ModelSummary, GgufError> {
    cfg.validate()?;
    let vocab = tiny_vocab();
    let mut w = GgufWriter::new();
    add_model_metadata(&mut w, cfg, weight_type, vocab.len() as u32);
    add_tokenizer_metadata(&mut w, &vocab);
    add_tensors(&mut w, cfg, weight_type, vocab.len() as u64)?;
    w.write_to_path(path)?;
    Ok(read_path(path)?.summary())
}

fn add_model_metadata(
    w: &mut GgufWriter,
    cfg: &TinyLlamaConfig,
    weight_type: WeightType,
    n_vocab: u32,
) {
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .add_metadata("general.name", Value::String("evolve-tiny-random".into()))
        .add_metadata("general.file_type", Value::U32(weight_type.file_type()))
        .add_metadata("llama.context_length", Value::U32(cfg.context_length))
        .add_metadata("llama.embedding_length", Value::U32(cfg.n_embd))
        .add_metadata("llama.block_count", Value::U32(cfg.n_layer))
        .add_metadata("llama.feed_forward_length", Value::U32(cfg.n_ff))
        .add_metadata("llama.attention.head_count", Value::U32(cfg.n_head))
        .add_metadata("llama.attention.head_count_kv", Value::U32(cfg.n_head_kv))
        .add_metadata("llama.rope.dimension_count", Value::U32(cfg.head_dim()))
        .add_metadata("llama.rope.freq_base", Value::F32(cfg.rope_freq_base))
        .add_metadata(
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(cfg.rms_eps),
        )
        .add_metadata("llama.vocab_size", Value::U32(n_vocab));
}

fn add_tokenizer_metadata(w: &mut GgufWriter, vocab: &[VocabEntry]) {
    let tokens = vocab
        .iter()
        .map(|v| Value::String(v.text.clone()))
        .collect();
    let scores = vocab.iter().map(|v| Value::F32(v.score)).collect();
    let types = vocab.iter().map(|v| Value::I32(v.token_type)).collect();
    w.add_metadata("tokenizer.ggml.model", Value::String("llama".into()))
        .add_metadata("tokenizer.ggml.tokens", Value::Array(tokens))
        .add_metadata("tokenizer.ggml.scores", Value::Array(scores))
        .add_metadata("tokenizer.ggml.token_type", Value::Array(types))
        .add_metadata("tokenizer.ggml.bos_token_id", Value::U32(BOS_ID))
        .add_metadata("tokenizer.ggml.eos_token_id", Value::U32(EOS_ID))
        .add_metadata("tokenizer.ggml.eot_token_id", Value::U32(IM_END_ID))
        .add_metadata("tokenizer.ggml.unknown_token_id", Value::U32(UNK_ID))
        .add_metadata("tokenizer.ggml.padding_token_id", Value::U32(UNK_ID))
        .add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .add_metadata("tokenizer.ggml.add_eos_token", Value::Bool(false))
        // Without a space prefix each character maps to exactly one token, which keeps
        // tokenisation predictable for tests.
        .add_metadata("tokenizer.ggml.add_space_prefix", Value::Bool(false))
        .add_metadata(
            "tokenizer.chat_template",
            Value::String(CHATML_TEMPLATE.into()),
        );
}

fn add_tensors(
    w: &mut GgufWriter,
    cfg: &TinyLlamaConfig,
    weight_type: WeightType,
    n_vocab: u64,
) -> Result<(), GgufError> {
    let embd = u64::from(cfg.n_embd);
    let kv = u64::from(cfg.n_head_kv * cfg.head_dim());
    let ff = u64::from(cfg.n_ff);
    let matrix = |w: &mut GgufWriter, name: &str, dims: [u64; 2]| {
        let values = random_normal(cfg.seed, name, dims[0] * dims[1]);
        w.add_tensor(name, dims.to_vec(), weight_type.tensor_data(values))
    };
    let norm = |w: &mut GgufWriter, name: &str| {
        w.add_tensor(name, vec![embd], TensorData::F32(vec![1.0; embd as usize]))
    };

    matrix(w, "token_embd.weight", [embd, n_vocab])?;
    norm(w, "output_norm.weight")?;
    matrix(w, "output.weight", [embd, n_vocab])?;
    for i in 0..cfg.n_layer {
        let name = |part: &str| format!("blk.{i}.{part}.weight");
        norm(w, &name("attn_norm"))?;
        matrix(w, &name("attn_q"), [embd, embd])?;
        matrix(w, &name("attn_k"), [embd, kv])?;
        matrix(w, &name("attn_v"), [embd, kv])?;
        matrix(w, &name("attn_output"), [embd, embd])?;
        norm(w, &name("ffn_norm"))?;
        matrix(w, &name("ffn_gate"), [embd, ff])?;
        matrix(w, &name("ffn_up"), [embd, ff])?;
        matrix(w, &name("ffn_down"), [ff, embd])?;
    }
    Ok(())
}

fn random_normal(seed: u64, tensor_name: &str, n: u64) -> Vec<f32> {
    let mut rng = SplitMix64::for_tensor(seed, tensor_name);
    (0..n)
        .map(|_| (rng.next_normal() * WEIGHT_STD) as f32)
        .collect()
}

/// The GGUF model `src` (a `llama`) rewritten as a `qwen2` at `out`: the same weights under
/// `qwen2.*` keys, plus random q/k/v biases (normal, σ 0.5, from `seed`), which qwen2 has and
/// llama.cpp requires. llama.cpp and transformers run it with NEOX RoPE.
pub fn rewrite_as_qwen2(src: &Path, out: &Path, seed: u64) -> Result<ModelSummary, GgufError> {
    let file = read_path(src)?;
    if file.architecture() != Some("llama") {
        return Err(GgufError::Invalid(format!(
            "{} is not a llama model",
            src.display()
        )));
    }
    let mut w = GgufWriter::new();
    for (key, value) in &file.metadata {
        let key = match key.strip_prefix("llama.") {
            Some(rest) => format!("qwen2.{rest}"),
            None => key.clone(),
        };
        let value = if key == "general.architecture" {
            Value::String("qwen2".into())
        } else {
            value.clone()
        };
        w.add_metadata(key, value);
    }
    let mut rng = SplitMix64::new(seed);
    for info in &file.tensors {
        let bytes = file.read_tensor_bytes(&info.name)?;
        w.add_tensor(
            info.name.clone(),
            info.dims.clone(),
            TensorData::Raw {
                ggml_type: info.ggml_type,
                bytes,
            },
        )?;
        for part in ["attn_q", "attn_k", "attn_v"] {
            if info.name.ends_with(&format!("{part}.weight")) {
                let n_out = info.dims[1];
                let bias: Vec<f32> = (0..n_out)
                    .map(|_| (rng.next_normal() * 0.5) as f32)
                    .collect();
                w.add_tensor(
                    info.name.replace(".weight", ".bias"),
                    vec![n_out],
                    TensorData::F32(bias),
                )?;
            }
        }
    }
    w.write_to_path(out)?;
    Ok(read_path(out)?.summary())
}
