//! Pure-Rust GGUF support for EVOLVE Studio.
//!
//! Why our own crate instead of going through llama.cpp: `evolve models info` and import
//! validation must give a clear one-line error for a broken file *before* llama.cpp sees it
//! (llama.cpp tends to abort or print pages of log), and tests need a tiny model that can be
//! written deterministically without any download.
//!
//! - [`read_path`] parses and validates header, metadata and tensor infos (never tensor data).
//! - [`GgufWriter`] writes GGUF v3 with F32 / F16 / Q8_0 tensors.
//! - [`tiny`] writes a small random-weight Llama model that llama.cpp loads.
//! - [`ModelSummary`] is what `evolve models info` prints.

mod error;
mod header;
mod quant;
mod reader;
mod shapes;
mod summary;
mod types;
mod value;
mod writer;

pub mod tiny;

pub use error::GgufError;
pub use header::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION};
pub use quant::{dequantize_q8_0, f16_bytes_to_f32, quantize_q8_0, tensor_to_f32};
pub use reader::{GgufFile, MAX_METADATA_VALUES, TensorInfo, read_path};
pub use summary::ModelSummary;
pub use types::GgmlType;
pub use value::Value;
pub use writer::{GgufWriter, TensorData, TensorProducer};
