//! A Hugging Face `tokenizers::Tokenizer` built from a GGUF's `tokenizer.ggml.*` vocabulary, so
//! training data can be tokenised without llama.cpp exactly as llama.cpp tokenises it.
//!
//! The tokenizer is described as a `tokenizer.json` document (the format transformers writes
//! for these vocabularies) and parsed by the crate, which keeps this file declarative:
//! - `llama` (SentencePiece): BPE over the pieces with merges ranked by the merged piece's score
//!   (llama.cpp's SPM merges the highest-scoring bigram first), byte fallback `<0xXX>`, spaces
//!   as `▁`, optional `▁` prefix.
//! - `gpt2` (byte-level BPE): `tokenizer.ggml.merges` in order, with the pre-tokenizer of
//!   `tokenizer.ggml.pre` as llama.cpp defines it ([`pre::PRE_TOKENIZERS`]).
//!
//! Control, user-defined and unknown tokens are added tokens, matched in the text as llama.cpp
//! does with `parse_special`.

pub mod pre;

use crate::{Result, TrainError};
use evolve_gguf::{GgufFile, Value};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use tokenizers::Tokenizer;

/// llama.cpp `llama_token_type`.
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

fn meta_err(key: &str, why: &str) -> TrainError {
    TrainError::Metadata(format!("{key} ({why})"))
}

fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    file.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| meta_err(key, "missing"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(String::from)
                .ok_or_else(|| meta_err(key, "not strings"))
        })
        .collect()
}

fn numbers(file: &GgufFile, key: &str, n: usize) -> Result<Option<Vec<f64>>> {
    let Some(arr) = file.get(key).and_then(Value::as_array) else {
        return Ok(None);
    };
    if arr.len() != n {
        return Err(meta_err(key, "length differs from tokenizer.ggml.tokens"));
    }
    arr.iter()
        .map(|v| v.as_f64().ok_or_else(|| meta_err(key, "not numbers")))
        .collect::<Result<_>>()
        .map(Some)
}

fn flag(file: &GgufFile, key: &str, default: bool) -> bool {
    match file.get(key) {
        Some(Value::Bool(b)) => *b,
        _ => default,
    }
}

/// The tokenizer of `file`. Refuses tokenizer models other than `llama` and `gpt2`, and `gpt2`
/// pre-tokenizers without a known regex, by name.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    build(file, true)
}

/// For a SentencePiece vocabulary that prefixes text with `▁` (`add_space_prefix`): the
/// tokenizer of text that continues other text, which llama.cpp tokenises without the prefix
/// (it adds one only at the start and after a special token). `None` for every other vocabulary.
pub fn continuation_tokenizer(file: &GgufFile) -> Result<Option<Tokenizer>> {
    if file.get_str("tokenizer.ggml.model") == Some("llama") && adds_space_prefix(file) {
        build(file, false).map(Some)
    } else {
        Ok(None)
    }
}

/// Whether a SentencePiece vocabulary prefixes text with `▁` (llama.cpp's default: yes).
fn adds_space_prefix(file: &GgufFile) -> bool {
    flag(file, "tokenizer.ggml.add_space_prefix", true)
}

/// The tokenizer of `file`, with its `▁` prefix only if `space_prefix` allows one.
fn build(file: &GgufFile, space_prefix: bool) -> Result<Tokenizer> {
    let model = file
        .get_str("tokenizer.ggml.model")
        .ok_or_else(|| meta_err("tokenizer.ggml.model", "missing"))?;
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let types = numbers(file, "tokenizer.ggml.token_type", tokens.len())?
        .unwrap_or_else(|| vec![1.0; tokens.len()]);
    let id = |key: &str| file.get_u64(key).filter(|&i| (i as usize) < tokens.len());
    let (model_json, normalizer, pre_tokenizer, decoder, add_bos_default) = match model {
        "llama" => {
            let scores = numbers(file, "tokenizer.ggml.scores", tokens.len())?
                .ok_or_else(|| meta_err("tokenizer.ggml.scores", "missing"))?;
            let unk = id("tokenizer.ggml.unknown_token_id").map(|i| tokens[i as usize].clone());
            let space_prefix = space_prefix && adds_space_prefix(file);
            spm_parts(&tokens, &types, &scores, unk, space_prefix)
        }
        "gpt2" => {
            let merges = strings(file, "tokenizer.ggml.merges")?;
            let pre = file.get_str("tokenizer.ggml.pre").unwrap_or("gpt-2");
            bpe_parts(&tokens, &merges, pre)?
        }
        other => {
            return Err(TrainError::Config(format!(
                "tokenizer model '{other}' is not supported (supported: llama, gpt2)"
            )));
        }
    };
    let added: Vec<Json> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, t))| matches!(**t as i64, TYPE_CONTROL | TYPE_USER_DEFINED | TYPE_UNKNOWN))
        .map(|(i, (text, t))| {
            json!({"id": i, "content": text, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": *t as i64 != TYPE_USER_DEFINED})
        })
        .collect();
    let add_bos = flag(file, "tokenizer.ggml.add_bos_token", add_bos_default);
    let add_eos = flag(file, "tokenizer.ggml.add_eos_token", false);
    let bos = id("tokenizer.ggml.bos_token_id").filter(|_| add_bos);
    let eos = id("tokenizer.ggml.eos_token_id").filter(|_| add_eos);
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor(&tokens, bos, eos),
        "decoder": decoder,
        "model": model_json,
    });
    doc.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| TrainError::Config(format!("cannot build the tokenizer: {e}")))
}

type Parts = (Json, Json, Json, Json, bool);

/// SentencePiece as BPE: every piece that splits into two pieces gives a merge, ranked by the
/// merged piece's score (higher first, then lower id) — the order llama.cpp's SPM merges in.
fn spm_parts(
    tokens: &[String],
    types: &[f64],
    scores: &[f64],
    unk: Option<String>,
    space_prefix: bool,
) -> Parts {
    let vocab: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f64, usize, &str, &str)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        // llama.cpp's SPM merges into user-defined pieces too (Gemma's whitespace runs).
        if !matches!(types[i] as i64, 1 | TYPE_USER_DEFINED) || piece.chars().count() < 2 {
            continue;
        }
        for (cut, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(cut);
            if vocab.contains_key(a) && vocab.contains_key(b) {
                merges.push((scores[i], i, a, b));
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let merges: Vec<[&str; 2]> = merges.iter().map(|m| [m.2, m.3]).collect();
    let vocab_json: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
        "ignore_merges": false, "vocab": vocab_json, "merges": merges,
    });
    let replace_space =
        json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if space_prefix {
        json!({"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u{2581}"}, replace_space]})
    } else {
        replace_space
    };
    // Decoding concatenates the pieces like llama.cpp's `token_to_piece` (the prefix space is
    // kept, where transformers would strip it).
    let decoder = json!({"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]});
    (model, normalizer, Json::Null, decoder, true)
}

/// Byte-level BPE with the file's merges (`"a b"` strings, in rank order).
fn bpe_parts(tokens: &[String], merges: &[String], pre: &str) -> Result<Parts> {
    let pre = pre::pre_tokenizer(pre).ok_or_else(|| {
        TrainError::Config(format!(
            "BPE pre-tokenizer '{pre}' is not supported (supported: {})",
            pre::supported_names().join(", ")
        ))
    })?;
    let merges: Vec<[&str; 2]> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| [a, b])
                .ok_or_else(|| meta_err("tokenizer.ggml.merges", "an entry is not 'a b'"))
        })
        .collect::<Result<_>>()?;
    let vocab_json: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let model = json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        "ignore_merges": pre.ignore_merges, "vocab": vocab_json, "merges": merges,
    });
    // Each regex splits the pieces of the one before, keeping what it does not match, as
    // llama.cpp's `unicode_regex_split` does; then bytes become GPT-2's characters.
    let mut steps: Vec<Json> = pre
        .regexes
        .iter()
        .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
        .collect();
    steps.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}));
    let pre_tokenizer = json!({"type": "Sequence", "pretokenizers": steps});
    let decoder = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false,
                         "use_regex": false});
    Ok((model, Json::Null, pre_tokenizer, decoder, false))
}

/// Prepends BOS / appends EOS when the vocabulary asks for them.
fn post_processor(tokens: &[String], bos: Option<u64>, eos: Option<u64>) -> Json {
    if bos.is_none() && eos.is_none() {
        return Json::Null;
    }
    let special = |i: u64| {
        let t = &tokens[i as usize];
        (t.clone(), json!({"id": t, "ids": [i], "tokens": [t]}))
    };
    let piece = |i: u64| json!({"SpecialToken": {"id": tokens[i as usize], "type_id": 0}});
    let seq = |name: &str| json!({"Sequence": {"id": name, "type_id": 0}});
    let mut single = vec![];
    let mut pair = vec![];
    let mut specials = serde_json::Map::new();
    if let Some(b) = bos {
        single.push(piece(b));
        pair.push(piece(b));
        let (k, v) = special(b);
        specials.insert(k, v);
    }
    single.push(seq("A"));
    pair.push(seq("A"));
    if let Some(e) = eos {
        single.push(piece(e));
        pair.push(piece(e));
        let (k, v) = special(e);
        specials.insert(k, v);
    }
    if let Some(b) = bos {
        pair.push(piece(b));
    }
    pair.push(seq("B"));
    if let Some(e) = eos {
        pair.push(piece(e));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair,
           "special_tokens": specials})
}
