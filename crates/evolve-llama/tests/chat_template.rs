//! Chat formatting policy: the model's template, an explicit format, for a model without a
//! template plain text (a base model) or its family's built-in template (an instruct model),
//! and a clear error for a template llama.cpp cannot apply.

mod common;

use common::{options, tiny_path};
use evolve_core::{ChatMessage, PromptFormat};
use evolve_gguf::tiny::WeightType;
use evolve_llama::{EngineOptions, LlamaEngine, LlamaError};

const CHATML_TURN: &str = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";

/// A copy of the tiny model without `tokenizer.chat_template`, as `dir/name`.
fn model_without_template(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = evolve_testkit::vocab_gguf::without_chat_template(
        &tiny_path(WeightType::F32),
        &dir.join(name),
    );
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
fn a_base_model_without_a_template_gets_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_without_template(dir.path(), "no-template.gguf");
    let engine = LlamaEngine::load(&path, options()).unwrap();
    assert_eq!(engine.prompt_format(), &PromptFormat::Plain);
    assert_eq!(
        engine.format_chat(&[ChatMessage::user("hi")]).unwrap(),
        "Question: hi\nAnswer:"
    );
    let refinement = [
        ChatMessage::user("What is 2+2?"),
        ChatMessage::assistant("5"),
        ChatMessage::user("Check it and correct it."),
    ];
    let text = engine.format_chat(&refinement).unwrap();
    assert_eq!(
        text,
        "Question: What is 2+2?\nAnswer: 5\nCheck it and correct it.\nA better answer:"
    );
    assert!(!text.contains("<|"), "{text}");
}

#[test]
fn the_plain_jinja_template_renders_as_the_plain_format() {
    use evolve_core::prompt_format::{PLAIN_JINJA_TEMPLATE, render_plain};
    use evolve_llama::chat_template::{ChatTemplate, RenderOptions};
    let template = ChatTemplate::new(PLAIN_JINJA_TEMPLATE, "<s>", "</s>").unwrap();
    for messages in [
        vec![ChatMessage::user(" What is 2+2?")],
        vec![
            ChatMessage::system("Answer briefly."),
            ChatMessage::user("What is 2+2?"),
            ChatMessage::assistant(" 5\n"),
            ChatMessage::user("Check it and correct it."),
            ChatMessage::assistant("4"),
            ChatMessage::user("Once more."),
        ],
    ] {
        let jinja = template
            .render(&messages, RenderOptions::default())
            .unwrap();
        assert_eq!(jinja, render_plain(&messages));
    }
}

#[test]
fn an_instruct_model_without_a_template_gets_its_familys_built_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_without_template(dir.path(), "tiny-instruct.gguf");
    let engine = LlamaEngine::load(&path, options()).unwrap();
    assert_eq!(
        engine.prompt_format(),
        &PromptFormat::Builtin("chatml".into())
    );
    assert_eq!(
        engine.format_chat(&[ChatMessage::user("hi")]).unwrap(),
        CHATML_TURN
    );
}

#[test]
fn the_format_can_be_changed_on_a_loaded_engine() {
    let mut engine = LlamaEngine::load(&tiny_path(WeightType::F32), options()).unwrap();
    assert_eq!(engine.prompt_format(), &PromptFormat::Template);
    engine.set_prompt_format(Some(PromptFormat::Plain));
    assert_eq!(
        engine.format_chat(&[ChatMessage::user("hi")]).unwrap(),
        "Question: hi\nAnswer:"
    );
    engine.set_prompt_format(None);
    assert_eq!(
        engine.format_chat(&[ChatMessage::user("hi")]).unwrap(),
        CHATML_TURN
    );
}

#[test]
fn every_listed_built_in_template_is_one_llama_cpp_applies() {
    let mut engine = LlamaEngine::load(&tiny_path(WeightType::F32), options()).unwrap();
    for name in evolve_core::prompt_format::BUILTIN_TEMPLATES {
        engine.set_prompt_format(Some(PromptFormat::Builtin(name.to_string())));
        let text = engine.format_chat(&[ChatMessage::user("hi")]);
        assert!(text.is_ok_and(|t| t.contains("hi")), "{name}");
    }
}

#[test]
fn the_models_own_template_is_an_error_for_a_model_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EngineOptions {
        prompt_format: Some(PromptFormat::Template),
        ..options()
    };
    let path = model_without_template(dir.path(), "no-template.gguf");
    let engine = LlamaEngine::load(&path, opts).unwrap();
    let err = engine.format_chat(&[ChatMessage::user("hi")]).unwrap_err();
    assert!(
        err.to_string().contains("the model has no chat template"),
        "{err}"
    );
}

#[test]
fn an_explicit_template_overrides_the_models() {
    let opts = EngineOptions {
        prompt_format: Some(PromptFormat::Builtin("llama3".into())),
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
        prompt_format: Some(PromptFormat::Builtin("no-such-template".into())),
        ..options()
    };
    let engine = LlamaEngine::load(&tiny_path(WeightType::F32), opts).unwrap();
    let err = engine.format_chat(&[ChatMessage::user("hi")]).unwrap_err();
    assert!(matches!(err, LlamaError::ChatTemplate { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("the 'no-such-template' template cannot be applied"),
        "{text}"
    );
    assert!(text.contains("evolve models set-format"), "{text}");
}
