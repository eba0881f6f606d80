//! The tokenizer built from a GGUF's vocabulary must produce llama.cpp's token ids, or training
//! data would not mean to the trained model what the served model reads.

mod common;

use candle_core::{DType, Device};
use common::tiny_llama;
use evolve_gguf::tiny::{WeightType, tiny_vocab, token_type};
use evolve_gguf::{Value, read_path};
use evolve_llama::{EngineOptions, LlamaEngine};
use evolve_train::export::{TokenizerMetadata, export_gguf_model};
use evolve_train::{LlamaConfig, LlamaModel, TrainError, tokenizer_from_gguf};
use std::path::{Path, PathBuf};

const TEXTS: &[&str] = &[
    "hello world",
    "Hello,  world!\n\nTwo  spaces and\ttab",
    " leading space",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
    "naïve café — 日本語 🙂",
    "hello hell he llo",
    "the theme then 12345 it's",
];

fn engine(path: &Path) -> LlamaEngine {
    LlamaEngine::load(
        path,
        EngineOptions {
            n_threads: 2,
            n_gpu_layers: 0,
            n_ctx: 256,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

/// Checks every text of [`TEXTS`]; returns the token count of "hello world".
fn assert_same_ids_as_llama_cpp(path: &Path) -> usize {
    let file = read_path(path).unwrap();
    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    let engine = engine(path);
    for text in TEXTS {
        let want: Vec<u32> = engine.tokenize(text).iter().map(|&t| t as u32).collect();
        let got = tokenizer.encode(*text, true).unwrap().get_ids().to_vec();
        assert_eq!(got, want, "{text:?}");
        // Decoding without the special tokens gives what llama.cpp's pieces spell.
        let decoded = tokenizer.decode(&got, true).unwrap();
        assert_eq!(
            decoded,
            engine.detokenize(&want.iter().map(|&t| t as i32).collect::<Vec<_>>())
        );
    }
    tokenizer.encode("hello world", false).unwrap().len()
}

/// A trainable random model with the given tokenizer metadata, exported so llama.cpp loads it.
fn model_with_vocab(dir: &Path, name: &str, n_vocab: usize, meta: Vec<(String, Value)>) -> PathBuf {
    let template = tiny_llama(dir, WeightType::F32);
    let cfg = LlamaConfig {
        n_vocab,
        ..LlamaConfig::from_gguf(&read_path(&template).unwrap()).unwrap()
    };
    let model = LlamaModel::new_random(&cfg, 1, DType::F32, &Device::Cpu).unwrap();
    let path = dir.join(name);
    export_gguf_model(
        &model,
        &path,
        WeightType::F32,
        TokenizerMetadata::Given(meta),
    )
    .unwrap();
    path
}

fn tokenizer_keys(path: &Path) -> Vec<(String, Value)> {
    read_path(path)
        .unwrap()
        .metadata
        .into_iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .collect()
}

fn set(meta: &mut Vec<(String, Value)>, key: &str, value: Value) {
    meta.retain(|(k, _)| k != key);
    meta.push((key.into(), value));
}

#[test]
fn the_tiny_spm_vocab_tokenises_like_llama_cpp_including_byte_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let n = assert_same_ids_as_llama_cpp(&tiny_llama(dir.path(), WeightType::F32));
    assert_eq!(n, 11, "one token per character");
}

/// Multi-character pieces exercise the merge order (llama.cpp merges the best-scoring bigram),
/// and the `▁` prefix the default SentencePiece normalisation.
#[test]
fn an_spm_vocab_with_merges_and_a_space_prefix_tokenises_like_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let mut vocab = tiny_vocab();
    for (i, piece) in [
        "he",
        "ll",
        "hell",
        "hello",
        "\u{2581}w",
        "or",
        "orld",
        "\u{2581}world",
        "lo",
        "th",
        "the",
        "\u{2581}the",
        "en",
        "\u{2581}h",
        "12",
        "\u{2581}\u{2581}",
    ]
    .iter()
    .enumerate()
    {
        vocab.push(evolve_gguf::tiny::VocabEntry {
            text: piece.to_string(),
            // Longer pieces score better, as in real SentencePiece models; ties are broken.
            score: -(1.0 / piece.chars().count() as f32) - i as f32 * 1e-3,
            token_type: token_type::NORMAL,
        });
    }
    let template = tiny_llama(dir.path(), WeightType::F32);
    let mut meta = tokenizer_keys(&template);
    let arr = |f: &dyn Fn(&evolve_gguf::tiny::VocabEntry) -> Value| {
        Value::Array(vocab.iter().map(f).collect())
    };
    set(
        &mut meta,
        "tokenizer.ggml.tokens",
        arr(&|v| Value::String(v.text.clone())),
    );
    set(
        &mut meta,
        "tokenizer.ggml.scores",
        arr(&|v| Value::F32(v.score)),
    );
    set(
        &mut meta,
        "tokenizer.ggml.token_type",
        arr(&|v| Value::I32(v.token_type)),
    );
    set(
        &mut meta,
        "tokenizer.ggml.add_space_prefix",
        Value::Bool(true),
    );
    let path = model_with_vocab(dir.path(), "spm-merges.gguf", vocab.len(), meta);
    let n = assert_same_ids_as_llama_cpp(&path);
    // 12 symbols (`▁hello▁world`) before merging; `▁world` is one piece after.
    assert!(n <= 6, "merges must apply: 'hello world' took {n} tokens");
}

/// GPT-2's byte-to-character table (`bytes_to_unicode`).
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            }
        })
        .collect()
}

#[test]
fn a_gpt2_byte_level_vocab_tokenises_like_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = byte_chars();
    let mut tokens: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    let g = bytes[b' ' as usize];
    let merges: Vec<(String, String)> = [
        ("h", "e"),
        ("l", "l"),
        ("he", "ll"),
        ("hell", "o"),
        (&*format!("{g}"), "w"),
        ("o", "r"),
        ("or", "ld"),
        ("l", "d"),
        (&*format!("{g}w"), "orld"),
        ("t", "h"),
        (&*format!("{g}"), "th"),
        (&*format!("{g}th"), "e"),
        ("1", "2"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
    }
    let n_normal = tokens.len();
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(special.into());
    }
    let types: Vec<Value> = (0..tokens.len())
        .map(|i| {
            Value::I32(if i < n_normal {
                token_type::NORMAL
            } else {
                token_type::CONTROL
            })
        })
        .collect();
    let meta = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".to_string(),
            Value::String("qwen2".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
        (
            "tokenizer.ggml.merges".to_string(),
            Value::Array(
                merges
                    .iter()
                    .map(|(a, b)| Value::String(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.eos_token_id".to_string(),
            Value::U32(n_normal as u32),
        ),
        (
            "tokenizer.ggml.bos_token_id".to_string(),
            Value::U32(n_normal as u32),
        ),
        (
            "tokenizer.ggml.padding_token_id".to_string(),
            Value::U32(n_normal as u32),
        ),
        (
            "tokenizer.ggml.add_bos_token".to_string(),
            Value::Bool(false),
        ),
    ];
    let path = model_with_vocab(dir.path(), "bpe.gguf", tokens.len(), meta);
    let n = assert_same_ids_as_llama_cpp(&path);
    assert_eq!(n, 2, "'hello' and 'Ġworld' are single tokens");
}

#[test]
fn unsupported_tokenizer_models_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let template = tiny_llama(dir.path(), WeightType::F32);
    let mut meta = tokenizer_keys(&template);
    set(
        &mut meta,
        "tokenizer.ggml.model",
        Value::String("bert".into()),
    );
    let mut file = read_path(&template).unwrap();
    file.metadata = meta.clone();
    let err = tokenizer_from_gguf(&file).unwrap_err();
    assert!(
        matches!(err, TrainError::Config(_)) && err.to_string().contains("'bert'"),
        "{err}"
    );

    set(
        &mut meta,
        "tokenizer.ggml.model",
        Value::String("gpt2".into()),
    );
    set(&mut meta, "tokenizer.ggml.merges", Value::Array(vec![]));
    set(
        &mut meta,
        "tokenizer.ggml.pre",
        Value::String("deepseek-coder".into()),
    );
    file.metadata = meta;
    let err = tokenizer_from_gguf(&file).unwrap_err();
    assert!(err.to_string().contains("'deepseek-coder'"), "{err}");
}
