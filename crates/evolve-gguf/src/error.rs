//! One error type whose `Display` is a single line naming the file, because the CLI prints
//! `error: {err}` and users must be able to act on it without a backtrace.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: {} is empty", .path.display())]
    Empty { path: PathBuf },

    #[error("not a GGUF file: {} is not a regular file ({kind}): give a .gguf file", .path.display())]
    NotAFile { path: PathBuf, kind: &'static str },

    /// `magic` holds the first (up to 4) bytes, already escaped for display.
    #[error("not a GGUF file: {} (starts with \"{magic}\", expected \"GGUF\")", .path.display())]
    NotGguf { path: PathBuf, magic: String },

    #[error("truncated GGUF file: {} ({detail})", .path.display())]
    Truncated { path: PathBuf, detail: String },

    #[error("unsupported GGUF version {version} in {} (supported: 2, 3)", .path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },

    #[error("unsupported tensor type id {id} for tensor '{tensor}' in {}", .path.display())]
    UnknownTensorType {
        path: PathBuf,
        id: u32,
        tensor: String,
    },

    #[error("corrupt GGUF file: {} (unknown metadata value type {value_type} for key '{key}')", .path.display())]
    UnknownValueType {
        path: PathBuf,
        value_type: u32,
        key: String,
    },

    /// Structurally invalid content that is not simply a short file.
    #[error("corrupt GGUF file: {} ({detail})", .path.display())]
    Corrupt { path: PathBuf, detail: String },

    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("tensor '{name}' not found in {}", .path.display())]
    TensorNotFound { path: PathBuf, name: String },

    /// A deferred tensor's contents could not be computed while the file was written.
    #[error("cannot compute tensor '{name}': {source}")]
    Produce {
        name: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Caller mistakes when building a file or converting data (no file involved yet).
    #[error("invalid GGUF data: {0}")]
    Invalid(String),
}
