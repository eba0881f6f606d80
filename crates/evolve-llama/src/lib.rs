//! The inference engine: quantized GGUF models run by llama.cpp through `llama-cpp-2`.
//!
//! llama.cpp allows one backend per process, so [`backend()`] hands out a shared one; every
//! [`LlamaEngine`] borrows it. Model loading checks the file first so that a missing or
//! foreign file gives a clear error instead of llama.cpp's null pointer.

mod engine;
mod error;
mod stream;

pub use engine::{EngineOptions, GenerationOutput, LlamaEngine, backend};
pub use error::LlamaError;
pub use stream::{Pushed, TextStream};
