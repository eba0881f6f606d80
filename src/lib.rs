//! EVOLVE Studio: iterative preference optimisation of a local LLM's self-refinement.
//!
//! This crate is the facade every shell uses (the `evolve` CLI, the Tauri app, the HTTP server):
//! [`service::Service`] is the one API over the engines, which live in their own crates:
//!
//! | crate | role |
//! |---|---|
//! | [`core`] (`evolve-core`) | domain types, sampler settings, data directory |
//! | [`gguf`] (`evolve-gguf`) | GGUF reading/validation, writing, the tiny test model |
//! | [`store`] (`evolve-store`) | SQLite persistence with migrations |
//! | [`llama`] (`evolve-llama`) | inference on llama.cpp |
//! | [`method`] (`evolve-loop`) | run settings, datasets, pair selection, the round orchestrator |
//! | [`train`] (`evolve-train`) | LoRA-DPO and full training on candle, exports |

pub use evolve_core as core;
pub use evolve_gguf as gguf;
pub use evolve_llama as llama;
pub use evolve_loop as method;
pub use evolve_store as store;
pub use evolve_train as train;

pub mod adapters;
pub mod api;
pub mod builtin;
pub mod chat;
pub mod data;
pub mod devtools;
pub mod engines;
pub mod models;
pub mod runs;
pub mod service;

pub use service::Service;
