//! Model hyper-parameters read from GGUF metadata, the way llama.cpp reads them.

use crate::{Result, TrainError};
use evolve_gguf::{GgufFile, Value};

/// Architectures whose forward pass this crate reproduces exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    /// Qwen2's layout without q/k/v biases, with RMS norms on each query and key head, and a
    /// head size of its own (`attention.key_length`, not the width over the heads).
    Qwen3,
    /// Gemma 3 (text): Qwen3's head norms plus an embedding scaled by √width, norms after the
    /// attention and the MLP as well as before, a GELU-gated MLP, and sliding-window layers with
    /// a RoPE base of their own between the global ones.
    Gemma3,
    /// Phi-3/3.5-mini, Phi-4-mini: Llama's block with fused q/k/v and gate/up matrices (split on
    /// load), NEOX RoPE over part of each head, LongRoPE factors and attention factor.
    Phi3,
}

impl Architecture {
    pub const ALL: [Architecture; 5] = [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma3,
        Architecture::Phi3,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma3 => "gemma3",
            Architecture::Phi3 => "phi3",
        }
    }

    /// The MLP's gate activation.
    pub fn activation(self) -> Activation {
        match self {
            Architecture::Gemma3 => Activation::GeluTanh,
            _ => Activation::Silu,
        }
    }

    /// llama.cpp's rope type for the architecture (`llama_model_rope_type`).
    pub fn rope_layout(self) -> RopeLayout {
        match self {
            Architecture::Llama => RopeLayout::AdjacentPairs,
            Architecture::Qwen2
            | Architecture::Qwen3
            | Architecture::Gemma3
            | Architecture::Phi3 => RopeLayout::Halves,
        }
    }
}

/// Which dimensions RoPE rotates together.
///
/// `llama` GGUFs had their q/k rows permuted by the HF→GGUF converter, so llama.cpp rotates
/// adjacent pairs (`LLAMA_ROPE_TYPE_NORM`); `qwen2` is converted unpermuted and rotates the two
/// halves like HF (`LLAMA_ROPE_TYPE_NEOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// `(x[2i], x[2i+1])` — ggml NORM.
    AdjacentPairs,
    /// `(x[i], x[i + d/2])` — ggml NEOX.
    Halves,
}

/// The gated MLP's activation: `down(act(gate(x)) · up(x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU (Llama, Qwen).
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma; ggml's `gelu`).
    GeluTanh,
}

/// Gemma 3's local layers: each attends to the previous `size` positions only (its own
/// included) and rotates with a RoPE base of its own, unscaled; every `pattern`-th layer is global.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingWindow {
    pub size: usize,
    pub pattern: usize,
    pub freq_base: f64,
}

impl SlidingWindow {
    /// llama.cpp's `set_swa_pattern`: layer `il` is local unless `il % pattern == pattern - 1`.
    pub fn is_local(&self, layer: usize) -> bool {
        self.pattern == 0 || layer % self.pattern < self.pattern - 1
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub architecture: Architecture,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub context_length: usize,
    /// How many leading dimensions of each head RoPE rotates (the rest pass through).
    pub rope_dims: usize,
    pub rope_freq_base: f64,
    /// Position multiplier from linear RoPE scaling (`1/factor`); 1 without scaling.
    pub rope_freq_scale: f64,
    pub rms_eps: f64,
    /// True when the file has no `output.weight` and the embedding doubles as the LM head.
    pub tied_embeddings: bool,
    /// Sliding-window layers (Gemma 3); `None`: every layer attends to every earlier position.
    pub sliding_window: Option<SlidingWindow>,
    /// Multiplier of RoPE's cos and sin (`rope.scaling.attn_factor`: LongRoPE's √(1 + ln s / ln
    /// n₀)); 1 otherwise.
    pub rope_attn_factor: f64,
    /// The context the model was pretrained at before RoPE scaling
    /// (`rope.scaling.original_context_length`): LongRoPE uses its long factors beyond it.
    pub rope_original_context: Option<usize>,
}

impl LlamaConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch_name = file
            .architecture()
            .ok_or_else(|| TrainError::Metadata("general.architecture".into()))?;
        let architecture = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            "gemma3" => Architecture::Gemma3,
            "phi3" => Architecture::Phi3,
            other => return Err(TrainError::UnsupportedArchitecture(other.into())),
        };
        let key = |suffix: &str| format!("{arch_name}.{suffix}");
        let required = |suffix: &str| -> Result<usize> {
            file.arch_u64(suffix)
                .map(|v| v as usize)
                .filter(|&v| v > 0)
                .ok_or_else(|| TrainError::Metadata(key(suffix)))
        };
        let float = |suffix: &str| file.get(&key(suffix)).and_then(Value::as_f64);

        let n_embd = required("embedding_length")?;
        let n_layer = required("block_count")?;
        let n_head = required("attention.head_count")?;
        let n_head_kv = file
            .arch_u64("attention.head_count_kv")
            .map_or(n_head, |v| v as usize);
        let n_ff = required("feed_forward_length")?;
        let own_head_size = file.arch_u64("attention.key_length").is_some();
        if (!own_head_size && !n_embd.is_multiple_of(n_head))
            || n_head_kv == 0
            || !n_head.is_multiple_of(n_head_kv)
        {
            return Err(TrainError::Metadata(format!(
                "{} / {} (n_embd {n_embd}, n_head {n_head}, n_head_kv {n_head_kv})",
                key("attention.head_count"),
                key("attention.head_count_kv")
            )));
        }
        // The head size is the width over the heads unless the file says otherwise (Qwen3).
        let head_dim = file
            .arch_u64("attention.key_length")
            .map_or(n_embd / n_head, |v| v as usize);
        if head_dim == 0
            || file
                .arch_u64("attention.value_length")
                .is_some_and(|v| v as usize != head_dim)
        {
            return Err(TrainError::Metadata(format!(
                "{} / {} (query, key and value heads must have one size)",
                key("attention.key_length"),
                key("attention.value_length")
            )));
        }
        let rope_dims = file
            .arch_u64("rope.dimension_count")
            .map_or(head_dim, |v| v as usize);
        if rope_dims == 0 || rope_dims > head_dim || !rope_dims.is_multiple_of(2) {
            return Err(TrainError::Metadata(key("rope.dimension_count")));
        }
        let rms_eps = float("attention.layer_norm_rms_epsilon")
            .ok_or_else(|| TrainError::Metadata(key("attention.layer_norm_rms_epsilon")))?;
        let n_vocab = match file.arch_u64("vocab_size") {
            Some(v) => v as usize,
            None => file
                .get("tokenizer.ggml.tokens")
                .and_then(Value::as_array)
                .map(<[Value]>::len)
                .ok_or_else(|| TrainError::Metadata(key("vocab_size")))?,
        };
        let rope_freq_scale = match file.get_str(&key("rope.scaling.type")) {
            None | Some("none") => 1.0,
            Some("linear") => {
                1.0 / float("rope.scaling.factor")
                    .filter(|f| *f > 0.0)
                    .unwrap_or(1.0)
            }
            Some(other) => {
                return Err(TrainError::Metadata(format!(
                    "{} = '{other}' (only linear RoPE scaling is supported)",
                    key("rope.scaling.type")
                )));
            }
        };
        let sliding_window = match architecture {
            Architecture::Gemma3 => sliding_window(file, &key)?,
            _ => None,
        };
        if float("final_logit_softcapping").is_some_and(|c| c > 0.0)
            || float("attn_logit_softcapping").is_some_and(|c| c > 0.0)
        {
            return Err(TrainError::Metadata(format!(
                "{} (logit soft-capping is not supported)",
                key("final_logit_softcapping")
            )));
        }
        Ok(LlamaConfig {
            architecture,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            context_length: file.arch_u64("context_length").map_or(4096, |v| v as usize),
            rope_dims,
            rope_freq_base: float("rope.freq_base").unwrap_or(10_000.0),
            rope_freq_scale,
            rms_eps,
            tied_embeddings: file.tensor("output.weight").is_none(),
            sliding_window,
            rope_attn_factor: float("rope.scaling.attn_factor")
                .filter(|f| *f > 0.0)
                .unwrap_or(1.0),
            rope_original_context: file
                .arch_u64("rope.scaling.original_context_length")
                .map(|v| v as usize),
        })
    }

    /// Multiplier of the token embeddings entering the first block: Gemma's √width (in f32,
    /// as llama.cpp computes it), else 1.
    pub fn embedding_scale(&self) -> f64 {
        match self.architecture {
            Architecture::Gemma3 => f64::from((self.n_embd as f32).sqrt()),
            _ => 1.0,
        }
    }

    /// Multiplier of the attention scores: `1/√head_dim`, except Gemma 3 27B (62 layers),
    /// whose queries are scaled by `1/√(width / heads)` — llama.cpp's rule, from its reference.
    pub fn attention_scale(&self) -> f64 {
        let d = match self.architecture {
            Architecture::Gemma3 if self.n_layer == 62 => self.n_embd / self.n_head,
            _ => self.head_dim,
        };
        1.0 / (d as f64).sqrt()
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of the attention's queries (and of its output projection's input).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}

/// Gemma 3's sliding-window settings, as llama.cpp reads them: no window (every layer global)
/// when `attention.sliding_window` is absent or 0.
fn sliding_window(file: &GgufFile, key: &dyn Fn(&str) -> String) -> Result<Option<SlidingWindow>> {
    let size = file
        .get(&key("attention.sliding_window"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    if size == 0 {
        return Ok(None);
    }
    let pattern = match file.get(&key("attention.sliding_window_pattern")) {
        None => 6,
        Some(v) => v.as_u64().ok_or_else(|| {
            TrainError::Metadata(format!(
                "{} (only a period, not a per-layer list, is supported)",
                key("attention.sliding_window_pattern")
            ))
        })? as usize,
    };
    let freq_base = file
        .get(&key("rope.freq_base_swa"))
        .and_then(Value::as_f64)
        .unwrap_or(10_000.0);
    Ok(Some(SlidingWindow {
        size,
        pattern,
        freq_base,
    }))
}

impl LlamaConfig {
    /// Which LongRoPE factor tensor llama.cpp rotates with: the long factors when its context
    /// exceeds the original one. Our engine runs at the model's own context unless told
    /// otherwise, so that is the context compared here.
    pub fn long_rope(&self) -> bool {
        self.rope_original_context
            .is_some_and(|original| self.context_length > original)
    }
}
