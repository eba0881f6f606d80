//! [`RewardModelScorer`]: a GGUF with a classification head, run by llama.cpp with rank pooling.
//!
//! llama.cpp attaches a classification head (`cls.weight` and/or `cls.output.weight`) only for
//! some architectures, and only when the context asks for embeddings with
//! `LLAMA_POOLING_TYPE_RANK`; the head's outputs are then read per sequence with
//! `llama_get_embeddings_seq`. A chat model has no head, and running it this way would return
//! a pooled hidden state that means nothing, so the file is inspected first and refused with a
//! clear message.

use crate::JudgeError;
use evolve_core::{ScoreError, ScoreInput, ScoreValue, Scorer};
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde_json::json;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

/// `LLAMA_POOLING_TYPE_RANK`, as stored in `<arch>.pooling_type`.
const RANK_POOLING: u64 = 4;

/// Architectures whose llama.cpp loader creates `cls`/`cls.output` tensors (llama.cpp
/// `src/models/*.cpp`, llama-cpp-sys-2 0.1.161). Any other architecture would fail to load a
/// file with such tensors ("wrong number of tensors") or ignore the head.
pub const HEAD_ARCHITECTURES: &[&str] = &[
    "bert",
    "modern-bert",
    "neo-bert",
    "jina-bert-v2",
    "qwen3",
    "qwen3vl",
    "qwen35",
];

/// Architectures where llama.cpp applies a softmax over the head's outputs (Qwen3 rerankers).
const SOFTMAX_ARCHITECTURES: &[&str] = &["qwen3", "qwen3vl"];

/// What the GGUF says about its head, before llama.cpp is asked to load it.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardHead {
    pub architecture: String,
    /// Head tensors found (`cls.weight`, `cls.output.weight`).
    pub tensors: Vec<String>,
    pub rank_pooling: bool,
    /// `<arch>.classifier.output_labels`, empty when absent (one unnamed output).
    pub labels: Vec<String>,
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

/// Reads the GGUF header and refuses a file without a classification head, in one line.
pub fn inspect_reward_head(path: &Path) -> Result<RewardHead, JudgeError> {
    let file = file_name(path);
    let gguf = evolve_gguf::read_path(path).map_err(|source| JudgeError::Gguf {
        file: file.clone(),
        source,
    })?;
    let arch = gguf.architecture().unwrap_or("").to_string();
    let tensors: Vec<String> = ["cls.weight", "cls.output.weight"]
        .iter()
        .filter(|n| gguf.tensor(n).is_some())
        .map(|n| n.to_string())
        .collect();
    let rank_pooling = gguf.get_u64(&format!("{arch}.pooling_type")) == Some(RANK_POOLING);
    if tensors.is_empty() && !rank_pooling {
        return Err(JudgeError::NotARewardModel(format!(
            "{file} has no classification head (a reward model needs one, e.g. a *-RM GGUF \
             converted with llama.cpp's convert_hf_to_gguf.py); use a verifier or an LLM judge instead"
        )));
    }
    if !HEAD_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(JudgeError::NotARewardModel(format!(
            "{file} has a classification head but llama.cpp runs heads only for the {} \
             architectures, not '{arch}'; use a verifier or an LLM judge instead",
            HEAD_ARCHITECTURES.join(", ")
        )));
    }
    let labels = match gguf.get(&format!("{arch}.classifier.output_labels")) {
        Some(evolve_gguf::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Ok(RewardHead {
        architecture: arch,
        tensors,
        rank_pooling,
        labels,
    })
}

/// Where the reward model runs.
#[derive(Debug, Clone)]
pub struct RewardOptions {
    pub n_threads: i32,
    pub n_gpu_layers: u32,
    /// Tokens per scored text (prompt plus answer); 0 uses the model's training context.
    pub n_ctx: u32,
}

impl From<&evolve_llama::EngineOptions> for RewardOptions {
    fn from(o: &evolve_llama::EngineOptions) -> Self {
        Self {
            n_threads: o.n_threads,
            n_gpu_layers: o.n_gpu_layers,
            n_ctx: o.n_ctx,
        }
    }
}

pub struct RewardModelScorer {
    model: LlamaModel,
    path: PathBuf,
    name: String,
    head: RewardHead,
    options: RewardOptions,
}

impl RewardModelScorer {
    /// Inspects the file (see [`inspect_reward_head`]), then loads it with llama.cpp.
    pub fn load(path: &Path, options: RewardOptions) -> Result<Self, JudgeError> {
        let head = inspect_reward_head(path)?;
        evolve_llama::check_before_llama_cpp(path)?;
        let params = LlamaModelParams::default().with_n_gpu_layers(options.n_gpu_layers);
        let backend = evolve_llama::backend()?;
        let model = LlamaModel::load_from_file(backend, path, &params).map_err(|source| {
            JudgeError::Load {
                file: file_name(path),
                source,
            }
        })?;
        // A softmax over a single output is always 1: such a file cannot rank anything.
        if SOFTMAX_ARCHITECTURES.contains(&head.architecture.as_str()) && model.n_cls_out() < 2 {
            return Err(JudgeError::NotARewardModel(format!(
                "{} has a one-output head on '{}', where llama.cpp applies a softmax, so every \
                 score would be 1; use a verifier or an LLM judge instead",
                file_name(path),
                head.architecture
            )));
        }
        Ok(Self {
            model,
            name: format!("reward:{}", file_name(path)),
            path: path.to_path_buf(),
            head,
            options,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn head(&self) -> &RewardHead {
        &self.head
    }

    fn failed(&self, reason: impl Into<String>) -> ScoreError {
        ScoreError::Failed {
            scorer: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// The text the head reads. A `tokenizer.chat_template.rerank` template (Qwen3 rerankers)
    /// gets `{query}` and `{document}` substituted; otherwise the model's chat template formats
    /// the user turn and the assistant's answer (how sequence-classification reward models are
    /// trained); a model with neither gets BOS query EOS SEP answer EOS, llama.cpp's rerank
    /// layout for encoders.
    fn tokens(&self, input: &ScoreInput<'_>) -> Result<Vec<LlamaToken>, ScoreError> {
        let vocab = self.model.vocab();
        if let Ok(t) = self.model.chat_template(Some("rerank")) {
            let tmpl = t.to_string().map_err(|e| self.failed(e.to_string()))?;
            let text = tmpl
                .replace("{query}", input.prompt)
                .replace("{document}", input.answer);
            return Ok(vocab.tokenize(text.as_bytes(), true, true));
        }
        if let Ok(tmpl) = self.model.chat_template(None) {
            let msgs = [("user", input.prompt), ("assistant", input.answer)]
                .into_iter()
                .map(|(r, c)| LlamaChatMessage::new(r.into(), c.into()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.failed(e.to_string()))?;
            let text = self
                .model
                .apply_chat_template(&tmpl, &msgs, false)
                .map_err(|e| self.failed(format!("cannot apply the chat template: {e}")))?;
            return Ok(vocab.tokenize(text.as_bytes(), true, true));
        }
        let eos = if vocab.eos().0 >= 0 {
            vocab.eos()
        } else {
            vocab.sep()
        };
        let mut t = vocab.tokenize(input.prompt.as_bytes(), true, false);
        t.push(eos);
        if vocab.sep().0 >= 0 {
            t.push(vocab.sep());
        }
        t.extend(vocab.tokenize(input.answer.as_bytes(), false, false));
        t.push(eos);
        Ok(t)
    }

    /// The head's raw outputs for one text.
    fn head_outputs(&self, tokens: &[LlamaToken]) -> Result<Vec<f32>, ScoreError> {
        let n_ctx = match self.options.n_ctx {
            0 => self.model.n_ctx_train(),
            n => n,
        };
        if tokens.is_empty() || tokens.len() > n_ctx as usize {
            return Err(self.failed(format!(
                "the text is {} tokens; the reward model takes 1 to {n_ctx}",
                tokens.len()
            )));
        }
        let n = tokens.len() as u32;
        // Rank pooling reads the whole sequence at once, so the batch holds all of it.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n)
            .with_n_ubatch(n)
            .with_n_seq_max(1)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Rank)
            .with_n_threads(self.options.n_threads)
            .with_n_threads_batch(self.options.n_threads);
        let backend = evolve_llama::backend().map_err(|e| self.failed(e.to_string()))?;
        let mut ctx = self
            .model
            .new_context(backend, params)
            .map_err(|e| self.failed(format!("llama.cpp context: {e}")))?;
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        batch
            .add_sequence(tokens, 0, false)
            .map_err(|e| self.failed(e.to_string()))?;
        // llama_decode falls back to llama_encode for encoder-only (BERT) models.
        ctx.decode(&mut batch)
            .map_err(|e| self.failed(format!("llama.cpp decode: {e}")))?;
        let out = ctx
            .embeddings_seq_ith(0)
            .map_err(|_| self.failed("llama.cpp returned no rank score"))?;
        Ok(out.to_vec())
    }
}

impl Scorer for RewardModelScorer {
    fn name(&self) -> &str {
        &self.name
    }

    /// Value: the head's first output (a logit, or a probability where llama.cpp applies a
    /// softmax); details: every output with its label.
    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        let tokens = self.tokens(input)?;
        let outputs = self.head_outputs(&tokens)?;
        let value = *outputs
            .first()
            .ok_or_else(|| self.failed("the classification head has no outputs"))?;
        if !value.is_finite() {
            return Err(self.failed(format!("the reward model returned {value}")));
        }
        Ok(ScoreValue {
            value: value as f64,
            details: json!({
                "outputs": outputs,
                "labels": self.head.labels,
                "tokens": tokens.len(),
            }),
        })
    }
}
