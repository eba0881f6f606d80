//! The tiny model every integration test uses, written once per test process.
#![allow(dead_code)]

use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_llama::{EngineOptions, LlamaEngine};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

pub fn tiny_path(weight_type: WeightType) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static WRITING: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join(format!("tiny-{weight_type:?}.gguf"));
    let _guard = WRITING.lock().unwrap();
    if !path.exists() {
        write_tiny_llama(&path, &TinyLlamaConfig::default(), weight_type).unwrap();
    }
    path
}

/// One thread: the tiny model gains nothing from more, and ggml's spinning workers slow every
/// test down when test binaries share a small machine.
pub fn options() -> EngineOptions {
    EngineOptions {
        n_threads: 1,
        n_gpu_layers: 0,
        n_ctx: 256,
        n_parallel: 8,
        prompt_format: None,
        reuse_prefix: true,
    }
}

pub fn tiny_engine() -> LlamaEngine {
    LlamaEngine::load(&tiny_path(WeightType::F32), options()).unwrap()
}
