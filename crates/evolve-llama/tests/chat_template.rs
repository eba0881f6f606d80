//! Chat formatting policy: the model's template, an explicit override, a ChatML fallback for
//! models without one, and a clear error for a template llama.cpp cannot apply.

mod common;

use common::{options, tiny_path};
use evolve_core::ChatMessage;
use evolve_gguf::tiny::WeightType;
use evolve_gguf::{GgufWriter, TensorData};
use evolve_llama::{EngineOptions, LlamaEngine, LlamaError};

const CHATML_TURN: &str = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";

/// A copy of the tiny model without `tokenizer.chat_template`.
fn model_without_template(dir: &std::path::Path) -> std::path::PathBuf {
    let source = evolve_gguf::read_path(&tiny_path(WeightType::F32)).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in &source.metadata {
        if key != "tokenizer.chat_template" && key != "general.alignment" {
            w.add_metadata(key.clone(), value.clone());
        }
    }
    for t in &source.tensors {
        let bytes = source.read_tensor_bytes(&t.name).unwrap();
        w.add_tensor(
            t.name.clone(),
            t.dims.clone(),
            TensorData::Raw {
                ggml_type: t.ggml_type,
                bytes,
            },
        )
        .unwrap();
    }
    let path = dir.join("no-template.gguf");
    w.write_to_path(&path).unwrap();
    assert!(
        evolve_gguf::read_path(&path)
            .unwrap()
            .get("tokenizer.chat_template")
            .is_none()
    );
    path
}

#[test]
fn the_models_own_template_is_used() {
    let engine = LlamaEngine::load(&tiny_path(WeightType::F32), options()).unwrap();
    assert_eq!(
        engine.format_chat(&[ChatMessage::user("hi")]).unwrap(),
        CHATML_TURN
    );
}

#[test]
fn a_model_without_a_template_falls_back_to_chatml() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LlamaEngine::load(&model_without_template(dir.path()), options()).unwrap();
    assert_eq!(
        engine.format_chat(&[ChatMessage::user("hi")]).unwrap(),
        CHATML_TURN
    );
}

#[test]
fn an_explicit_template_overrides_the_models() {
    let opts = EngineOptions {
        chat_template: Some("llama3".into()),
        ..options()
    };
    let engine = LlamaEngine::load(&tiny_path(WeightType::F32), opts).unwrap();
    let text = engine.format_chat(&[ChatMessage::user("hi")]).unwrap();
    assert!(
        text.contains("<|start_header_id|>user<|end_header_id|>"),
        "{text}"
    );
    assert!(
        text.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"),
        "{text}"
    );
}

#[test]
fn an_unknown_template_is_a_clear_error() {
    let opts = EngineOptions {
        chat_template: Some("no-such-template".into()),
        ..options()
    };
    let engine = LlamaEngine::load(&tiny_path(WeightType::F32), opts).unwrap();
    let err = engine.format_chat(&[ChatMessage::user("hi")]).unwrap_err();
    assert!(matches!(err, LlamaError::ChatTemplate { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("'no-such-template' template cannot be applied"),
        "{text}"
    );
    assert!(text.contains("--chat-template"), "{text}");
}
