//! The inference engine: quantized GGUF models run by llama.cpp through `llama-cpp-2`.
//!
//! llama.cpp allows one backend per process, so [`backend()`] hands out a shared one; every
//! [`LlamaEngine`] borrows it. Model loading checks the file first so that a missing or
//! foreign file gives a clear error instead of llama.cpp's null pointer.
//!
//! - `engine.rs`: model, adapters, single-sequence chat generation.
//! - `batch.rs`: many samples decoded together, prompts evaluated once.
//! - `logprob.rs`: log-probability of a given answer.
//! - `adapter.rs`: the engine's adapter registry ([`LlamaEngine`] owns it) and LoRA adapter
//!   validation.
//! - `generator.rs`: the engine behind [`evolve_core::Generator`].

mod adapter;
mod batch;
pub mod chat_template;
mod engine;
mod error;
mod generator;
mod logprob;
mod sampler;
mod stream;

pub use adapter::{AdapterId, LoadedAdapter};
pub use engine::{
    EngineOptions, EngineStats, GenerationOutput, LlamaEngine, backend, check_before_llama_cpp,
    default_prompt_format,
};
pub use error::LlamaError;
pub use logprob::{SequenceLogprob, log_softmax_at};
pub use stream::{Pushed, TextStream};
