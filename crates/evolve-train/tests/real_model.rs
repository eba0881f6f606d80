//! SmolLM2-135M-Instruct, a real pretrained model (Q4_1/Q8_0 tensors, a 49k byte-level BPE
//! vocabulary with the `smollm` pre-tokenizer), fetched by `scripts/fetch-smollm2.sh`: the
//! training side must read its text and weights exactly as llama.cpp does.
//!
//! The model comes from `evolve_testkit::real_models::smollm2` (`$EVOLVE_SMOLLM2`, else the
//! script's cache; SKIPPED without it unless `EVOLVE_REQUIRE_REAL_MODELS=1`).

mod common;

use candle_core::{DType, Device};
use common::{candle_last, llama_cpp, rel_error};
use evolve_gguf::tiny::WeightType;
use evolve_llama::{EngineOptions, LlamaEngine};
use evolve_testkit::real_models::smollm2;
use evolve_train::export::{TokenizerMetadata, export_gguf_model};
use evolve_train::{LlamaModel, tokenizer_from_gguf};
use std::path::{Path, PathBuf};

/// English, code, Vietnamese, Arabic with diacritics, CJK, emoji, whitespace runs, numbers and
/// the chat markers: where byte-level BPE pre-tokenizers differ.
const CORPUS: &[&str] = &[
    "The larger number is 847.",
    "What is 12345 + 67890? The answer is 80235, isn't it? I'll check: they're right.",
    "fn main() {\n    let x = vec![1, 2, 3];\n    println!(\"{:?}\", x.iter().sum::<i32>());\n}\n",
    "def f(a, b):\n\treturn a ** 2 + b  # comment\n\n\n",
    "Tiếng Việt có dấu: người, được, những, chuyện.",
    "العربية مع التشكيل: السَّلَامُ عَلَيْكُمْ وَرَحْمَةُ اللهِ",
    "日本語の文章と中文句子，还有한국어 문장。",
    "emoji 🙂👍🏽 and 👨‍👩‍👧 family, flags 🇻🇳",
    "spaces    and\t\ttabs \n\n  \n   trailing   ",
    "3.14159 1,000,000 2024-12-01 0x1F #### 42",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
];

fn engine(path: &std::path::Path) -> LlamaEngine {
    LlamaEngine::load(
        path,
        EngineOptions {
            n_threads: 2,
            n_ctx: 512,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn smollm2_text_tokenises_exactly_as_llama_cpp_does() {
    let Some(path) = smollm2("smollm2_text_tokenises_exactly_as_llama_cpp_does") else {
        return;
    };
    let file = evolve_gguf::read_path(&path).unwrap();
    assert_eq!(file.get_str("tokenizer.ggml.pre"), Some("smollm"));
    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    let engine = engine(&path);
    let mut tokens = 0;
    for text in CORPUS {
        let want: Vec<u32> = engine.tokenize(text).iter().map(|&t| t as u32).collect();
        let got = tokenizer.encode(*text, true).unwrap().get_ids().to_vec();
        assert_eq!(got, want, "{text:?}");
        tokens += got.len();
    }
    eprintln!("{} texts, {tokens} tokens: identical ids", CORPUS.len());
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// The model loaded with its weights dequantized, and those weights written back as an F32
/// GGUF in `dir` (where candle's and llama.cpp's forward passes can be compared exactly).
fn f32_copy(path: &Path, dir: &Path) -> (LlamaModel, PathBuf) {
    let model = LlamaModel::load(path, &Device::Cpu, DType::F32).unwrap();
    let f32_path = dir.join("smollm2-f32.gguf");
    export_gguf_model(
        &model,
        &f32_path,
        WeightType::F32,
        TokenizerMetadata::CopyFrom(path),
    )
    .unwrap();
    (model, f32_path)
}

const PROMPTS: [&str; 2] = [
    "<|im_start|>user\nWhich number is larger, 847 or 784?<|im_end|>\n<|im_start|>assistant\n",
    "The capital of France is",
];

/// The forward pass is llama.cpp's: on the same weights in f32 (the Q4_1 file dequantized
/// and written back as F32), the logits agree to float rounding.
#[test]
fn smollm2_forward_in_candle_is_llama_cpps_on_the_same_f32_weights() {
    let Some(path) = smollm2("smollm2_forward_in_candle_is_llama_cpps_on_the_same_f32_weights")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (model, f32_path) = f32_copy(&path, dir.path());
    let direct = llama_cpp::load(&f32_path);
    let engine = engine(&path);
    for prompt in PROMPTS {
        let ids = engine.tokenize(prompt);
        let err = rel_error(
            &candle_last(&model, None, &ids),
            &llama_cpp::last_logits(&direct, None, &ids),
        );
        eprintln!("f32 weights, {} tokens: rel. error {err:.2e}", ids.len());
        assert!(err < 1e-4, "{prompt:?}: rel. error {err:e}");
    }
}

/// On the Q4_1 file itself, candle (weights dequantized, f32 products) and llama.cpp (weights
/// times activations quantized to 8 bits, its CPU kernels) differ by that rounding alone.
#[test]
fn smollm2_logits_in_candle_match_llama_cpp_on_the_q4_1_file() {
    let Some(path) = smollm2("smollm2_logits_in_candle_match_llama_cpp_on_the_q4_1_file") else {
        return;
    };
    let direct = llama_cpp::load(&path);
    let engine = engine(&path);
    for quantized in [false, true] {
        let model = if quantized {
            LlamaModel::load_quantized(&path, &Device::Cpu, DType::F32)
        } else {
            LlamaModel::load(&path, &Device::Cpu, DType::F32)
        }
        .unwrap();
        for prompt in PROMPTS {
            let ids = engine.tokenize(prompt);
            let got = candle_last(&model, None, &ids);
            let want = llama_cpp::last_logits(&direct, None, &ids);
            let err = rel_error(&got, &want);
            eprintln!(
                "quantized base {quantized}, {} tokens: rel. error {err:.2e}",
                ids.len()
            );
            assert!(err < 6e-2, "{prompt:?}: rel. error {err:e}");
            assert_eq!(
                argmax(&got),
                argmax(&want),
                "{prompt:?}: another next token"
            );
        }
    }
}

/// Training takes an answer as the tokens it was sampled as when they spell its text — even a
/// split re-tokenisation would never produce — and re-tokenises only when they do not.
#[test]
fn smollm2_answers_are_trained_on_the_tokens_they_were_sampled_as() {
    let Some(path) = smollm2("smollm2_answers_are_trained_on_the_tokens_they_were_sampled_as")
    else {
        return;
    };
    let file = evolve_gguf::read_path(&path).unwrap();
    let enc = evolve_train::ChatEncoder::from_gguf(&file).unwrap();
    let engine = engine(&path);
    let text = "The larger number is 847.";
    let canonical: Vec<u32> = engine.tokenize(text).iter().map(|&t| t as u32).collect();
    // The same text sampled one character at a time: a valid spelling, not the canonical one.
    let spelled: Vec<u32> = text
        .chars()
        .flat_map(|c| engine.tokenize(&c.to_string()))
        .map(|t| t as u32)
        .collect();
    assert_ne!(spelled, canonical);
    let eot = enc.end_of_turn;
    let with_eot = |ids: &[u32]| [ids, &[eot]].concat();
    assert_eq!(
        enc.sampled_answer(&[], text, Some(&spelled), true).unwrap(),
        with_eot(&spelled)
    );
    assert_eq!(
        enc.sampled_answer(&[], text, Some(&spelled), false)
            .unwrap(),
        spelled
    );
    // Ids that spell something else (a stop string cut the text) fall back to the text.
    let cut = &spelled[..spelled.len() - 3];
    assert_eq!(
        enc.sampled_answer(&[], text, Some(cut), true).unwrap(),
        with_eot(&canonical)
    );
    assert_eq!(
        enc.sampled_answer(&[], text, None, true).unwrap(),
        with_eot(&canonical)
    );
    assert_eq!(
        enc.sampled_answer(&[], text, Some(&[u32::MAX]), true)
            .unwrap(),
        with_eot(&canonical)
    );
}

/// A LoRA trained a few steps on SmolLM2 and exported as GGUF is applied by llama.cpp exactly as
/// candle applies it (compared on the f32 copy of the weights, where the two forward passes
/// agree to float rounding; the same adapter file loads on the Q4_1 file, same names and shapes).
#[test]
fn smollm2_lora_trained_in_candle_gives_the_same_logits_in_llama_cpp() {
    let Some(path) = smollm2("smollm2_lora_trained_in_candle_gives_the_same_logits_in_llama_cpp")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (model, f32_path) = f32_copy(&path, dir.path());
    drop(model);
    common::assert_llama_cpp_applies_the_adapter_on(
        &path,
        Some(&f32_path),
        evolve_train::LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..evolve_train::LoraConfig::default()
        },
    );
    // The adapter file loads on the quantized file too.
    let mut q4 = llama_cpp::load(&path);
    q4.lora_adapter_init(f32_path.with_extension("lora.gguf"))
        .unwrap();
}
