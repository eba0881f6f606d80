//! Registering GGUF models: validation, checksum and the supported-architecture gate.

use anyhow::{Context, Result, bail};
use evolve_gguf::GgufFile;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Architectures the training engine can rebuild in candle (Llama 2/3, Mistral and SmolLM
/// are all `llama` in GGUF; Qwen2/2.5 are `qwen2`). Inference alone would accept more, but a
/// model that cannot be trained is of no use to the EVOLVE loop, so `models add` refuses it.
pub const TRAINABLE_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3"];

/// Reads and validates a GGUF file's header, metadata and tensor table.
pub fn inspect(path: &Path) -> Result<GgufFile> {
    Ok(evolve_gguf::read_path(path)?)
}

/// Whether EVOLVE can train `file`, from its header alone: the architecture, then what the
/// training engine needs (hyper-parameters, tensor types, the tokenizer). Checked at `models
/// add` and again when a run is created, before any sampling.
pub fn check_trainable(file: &GgufFile) -> Result<()> {
    let summary = file.summary();
    if !TRAINABLE_ARCHITECTURES.contains(&summary.architecture.as_str()) {
        bail!(
            "unsupported architecture '{}' in {}: EVOLVE Studio trains {} models (Llama 2/3, Mistral, SmolLM, Qwen2/2.5, Qwen3)",
            summary.architecture,
            summary.path,
            TRAINABLE_ARCHITECTURES.join(", ")
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
