//! Models: the GGUF checks every registration goes through (validation, checksum, the
//! supported-architecture gate, training memory), the registered models
//! ([`registry`]), the real models one can fetch ([`catalog`]) and those already on this
//! machine ([`discover`]).

pub mod catalog;
pub mod discover;
pub mod registry;

use anyhow::{Context, Result, bail};
use evolve_gguf::GgufFile;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Architectures the training engine can rebuild in candle (Llama 2/3, Mistral and SmolLM
/// are all `llama` in GGUF; Qwen2/2.5 are `qwen2`). Inference alone would accept more, but a
/// model that cannot be trained is of no use to the EVOLVE loop, so `models add` refuses it.
pub fn trainable_architectures() -> Vec<&'static str> {
    evolve_train::Architecture::ALL
        .iter()
        .map(|a| a.as_str())
        .collect()
}

/// The warning for a model that gets the plain prompt format because it has no chat template
/// and looks like a base model; `change` says how to choose another format.
pub fn base_model_warning(name: &str, change: &str) -> String {
    format!(
        "{name} has no chat template and looks like a base model: using the plain prompt format (change with {change})"
    )
}

/// The prompt format the file at `path` gets unless one is chosen (as the engine decides).
pub fn default_prompt_format(file: &GgufFile, path: &Path) -> evolve_core::PromptFormat {
    evolve_llama::default_prompt_format(file, path)
}

/// A model's prompt format for people: the format, and why it is the one used.
pub fn describe_prompt_format(format: &evolve_core::PromptFormat, chosen: bool) -> String {
    use evolve_core::PromptFormat;
    let why = match (chosen, format) {
        (true, _) => "chosen",
        (false, PromptFormat::Template) => "the file's own chat template",
        (false, PromptFormat::Builtin(_)) => {
            "no chat template, and the name says instruct: its family's llama.cpp template"
        }
        (false, PromptFormat::Plain) => "no chat template, and it looks like a base model",
    };
    format!("{format} ({why})")
}

/// Reads and validates a GGUF file's header, metadata and tensor table.
pub fn inspect(path: &Path) -> Result<GgufFile> {
    Ok(evolve_gguf::read_path(path)?)
}

/// Whether EVOLVE can train `file`, from its header alone: the architecture, then what the
/// training engine needs (hyper-parameters, tensor types, the tokenizer). Checked at `models
/// add` and again when a run is created, before any sampling.
pub fn check_trainable(file: &GgufFile) -> Result<()> {
    let summary = file.summary();
    let trainable = trainable_architectures();
    if !trainable.contains(&summary.architecture.as_str()) {
        bail!(
            "unsupported architecture '{}' in {}: EVOLVE Studio trains {} models (Llama 2/3, Mistral, SmolLM, Qwen2/2.5, Qwen3, Gemma 3, Phi-3/3.5/4-mini)",
            summary.architecture,
            summary.path,
            trainable.join(", ")
        );
    }
    evolve_train::check_trainable(file)
        .map_err(|e| anyhow::anyhow!("{} cannot be trained: {e}", summary.path))
}

/// SHA-256 of a file, streamed (model files are gigabytes).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Bytes of memory free for a new training (`EVOLVE_MEMORY_LIMIT`, else `MemAvailable`); `None`
/// where neither is known (then nothing is refused).
pub use evolve_core::memory::available_memory;

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The expected peak memory of training `file` with `config`. A training sequence is a prompt
/// and an answer: at most `train.max_tokens`, and no longer than a refinement turn can be (the
/// question with room for it, the previous answer and the new one, each at most the sampler's
/// `max_tokens`).
pub fn training_memory(
    file: &GgufFile,
    config: &evolve_loop::run::RunConfig,
) -> Result<evolve_train::MemoryEstimate> {
    let sampled = config.sampler.max_tokens as usize;
    let sequence = config.train.max_tokens.min(2 * sampled + 256);
    evolve_train::training_memory(
        file,
        config.train.lora_rank,
        sequence,
        config.train.batch_size,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// `estimate` refused when it exceeds the free memory: a run the out-of-memory killer ends after
/// a round of sampling is worse than a clear "no" before it starts.
pub fn check_fits(estimate: &evolve_train::MemoryEstimate) -> Result<()> {
    if let Some(free) = available_memory()
        && estimate.total() > free
    {
        bail!(
            "training this model needs about {:.1} GiB (base {:.1}, adapter and optimiser {:.2}, \
             activations {:.1}) and {:.1} GiB are free: lower train.max_tokens or \
             train.batch_size, choose a smaller quantization of the model, or free memory",
            gib(estimate.total()),
            gib(estimate.base_bytes),
            gib(estimate.adapter_bytes),
            gib(estimate.working_bytes),
            gib(free)
        );
    }
    Ok(())
}

/// The model's name for PEFT's `base_model_name_or_path`, from the GGUF's metadata: its Hugging
/// Face repository (`general.repo_url`, `general.source.repo_url`) when recorded, else
/// `general.name`. Never the file name, which is the user's.
pub fn hf_name(file: &GgufFile) -> Option<String> {
    for key in ["general.repo_url", "general.source.repo_url"] {
        let repo = file
            .get_str(key)
            .and_then(|url| url.split("huggingface.co/").nth(1))
            .map(|rest| rest.split('/').take(2).collect::<Vec<_>>())
            .filter(|parts| parts.len() == 2 && parts.iter().all(|p| !p.is_empty()));
        if let Some(parts) = repo {
            return Some(parts.join("/"));
        }
    }
    file.get_str("general.name")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
}
