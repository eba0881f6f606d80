//! A [`evolve_core::Generator`] that runs on an OpenAI-compatible HTTP server: llama.cpp's
//! `llama-server`, vLLM, or anything else that serves `POST /v1/completions`.
//!
//! EVOLVE formats prompts itself and samples many answers per prompt, so the plain completions
//! endpoint is used (not chat completions): the prompt sent is exactly the prompt stored.
//! Every sample is one streamed request with seed `seed + i`, as the local engine draws it;
//! servers differ on `n` > 1 (llama-server calls it `n_cmpl`), and one request per sample keeps
//! each sample reproducible on its own and cancellable between tokens.
//!
//! - `error.rs`: what can go wrong, worded for the user.
//! - `sse.rs`: parsing the server-sent-event stream.
//! - `generator.rs`: [`RemoteGenerator`].

mod error;
mod generator;
mod sse;

pub use error::RemoteError;
pub use generator::{RemoteGenerator, RemoteOptions};
