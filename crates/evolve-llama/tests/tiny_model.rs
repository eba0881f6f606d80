//! llama.cpp must load the tiny GGUF our own writer produces and decode with it.
//! All tests share the process-wide backend (llama.cpp allows one).

use evolve_core::SamplerConfig;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_llama::{EngineOptions, LlamaEngine, LlamaError};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

fn tiny(weight_type: WeightType) -> PathBuf {
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

/// One thread: with more, ggml's spinning workers make these tests slow when other processes
/// share a small machine.
fn options() -> EngineOptions {
    EngineOptions {
        n_threads: 1,
        n_gpu_layers: 0,
        n_ctx: 256,
        ..EngineOptions::default()
    }
}

#[test]
fn loads_f32_and_q8_models_with_the_written_shape() {
    let cfg = TinyLlamaConfig::default();
    for wt in [WeightType::F32, WeightType::Q8_0] {
        let engine = LlamaEngine::load(&tiny(wt), options()).unwrap();
        assert_eq!(engine.n_ctx_train(), cfg.context_length);
        assert_eq!(engine.n_vocab(), evolve_gguf::tiny::tiny_vocab().len());
    }
}

#[test]
fn tokenizer_is_char_level_and_round_trips() {
    let engine = LlamaEngine::load(&tiny(WeightType::F32), options()).unwrap();
    let text = "12+34=46\nok";
    let tokens = engine.tokenize(text);
    // BOS, then one token per character (the newline through byte fallback).
    assert_eq!(tokens.len(), 1 + text.chars().count(), "{tokens:?}");
    assert_eq!(tokens[0], 1, "BOS");
    assert_eq!(engine.detokenize(&tokens[1..]), text);
    // ChatML markers are single special tokens, not spelled out.
    assert_eq!(engine.tokenize("<|im_start|>").len(), 2);
}

#[test]
fn decodes_tokens_with_finite_distinct_logits() {
    let engine = LlamaEngine::load(&tiny(WeightType::F32), options()).unwrap();
    let a = engine.last_logits(&engine.tokenize("abc")).unwrap();
    let b = engine.last_logits(&engine.tokenize("xyz")).unwrap();
    assert_eq!(a.len(), engine.n_vocab());
    assert!(a.iter().all(|x| x.is_finite()));
    assert!(
        a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-6),
        "different inputs must give different logits"
    );
}

#[test]
fn quantized_model_gives_nearly_the_same_logits() {
    let f32_engine = LlamaEngine::load(&tiny(WeightType::F32), options()).unwrap();
    let q8_engine = LlamaEngine::load(&tiny(WeightType::Q8_0), options()).unwrap();
    let tokens = f32_engine.tokenize("hello there");
    let a = f32_engine.last_logits(&tokens).unwrap();
    let b = q8_engine.last_logits(&tokens).unwrap();
    let max_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let scale = a.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
    assert!(
        max_diff < 0.05 * scale.max(1e-3),
        "q8 logits drift {max_diff} vs scale {scale}"
    );
}

#[test]
fn same_seed_same_text_and_generation_respects_max_tokens() {
    let engine = LlamaEngine::load(&tiny(WeightType::Q8_0), options()).unwrap();
    let prompt = engine.format_user_prompt("What is 2+2?").unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    let cfg = SamplerConfig {
        seed: 7,
        max_tokens: 24,
        ..Default::default()
    };
    let mut streamed = String::new();
    let first = engine
        .generate(&prompt, &cfg, |p| {
            streamed.push_str(p);
            true
        })
        .unwrap();
    let second = engine.generate(&prompt, &cfg, |_| true).unwrap();
    assert_eq!(first.text, second.text);
    assert_eq!(first.text, streamed, "streamed pieces add up to the answer");
    assert!(first.tokens.len() <= 24);
    assert!(!first.tokens.is_empty() || first.stopped);
    let other = engine
        .generate(
            &prompt,
            &SamplerConfig {
                seed: 8,
                ..cfg.clone()
            },
            |_| true,
        )
        .unwrap();
    assert_ne!(
        first.tokens, other.tokens,
        "a random model sampled with another seed should differ"
    );
}

#[test]
fn cancellation_stops_at_the_next_token() {
    let engine = LlamaEngine::load(&tiny(WeightType::Q8_0), options()).unwrap();
    let cfg = SamplerConfig {
        max_tokens: 50,
        temperature: 1.5,
        min_p: 0.0,
        ..Default::default()
    };
    let mut seen = 0;
    let out = engine
        .generate("abc", &cfg, |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!(seen, 3);
    assert_eq!(out.tokens.len(), 3);
}

#[test]
fn context_overflow_and_missing_files_are_clear_errors() {
    let engine = LlamaEngine::load(&tiny(WeightType::Q8_0), options()).unwrap();
    let long = "x".repeat(300);
    let err = engine
        .generate(&long, &SamplerConfig::greedy(8), |_| true)
        .unwrap_err();
    assert!(
        matches!(err, LlamaError::ContextOverflow { n_ctx: 256, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("exceeds the context of 256 tokens")
    );

    let err = LlamaEngine::load(std::path::Path::new("/nonexistent/m.gguf"), options())
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "model file not found: /nonexistent/m.gguf");

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF but not really").unwrap();
    let err = LlamaEngine::load(&junk, options())
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("llama.cpp could not load"), "{err}");
}
