//! The fixed values of a GGUF file's layout, shared by the reader and the writer.

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The version [`crate::GgufWriter`] writes.
pub const GGUF_VERSION: u32 = 3;
/// ggml's default tensor-data alignment, used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
