//! Judges and reward models on real GGUF files run by llama.cpp (tiny, random weights), and the
//! spec factory's local forms.

mod common;

use common::{
    engine_options, tiny_llama, tiny_llama_with_head, tiny_qwen3_one_output, tiny_qwen3_rm,
};
use evolve_core::{SCORER_FORMS, ScoreError, ScoreInput, Scorer, ScorerSpec};
use evolve_judge::{LlmJudge, PairwiseJudge, RewardModelScorer, inspect_reward_head};

/// Parses then builds, as every shell does: both halves' errors are one line naming the spec.
fn scorer_from_spec(
    spec: &str,
    opts: &evolve_llama::EngineOptions,
) -> Result<Box<dyn Scorer + Send>, String> {
    let spec: ScorerSpec = spec
        .parse()
        .map_err(|e: evolve_core::ParseScorerError| e.0)?;
    spec.check_files().map_err(|e| e.0)?;
    evolve_judge::scorer_from_spec(&spec, opts).map_err(|e| e.to_string())
}
use evolve_llama::LlamaEngine;

const INPUT: ScoreInput<'static> = ScoreInput {
    prompt: "2+2?",
    reference: Some("4"),
    answer: "4",
};

/// The tiny model's replies are noise: a value in range or a Failed quoting the reply are both
/// correct outcomes; a panic or an engine error is not.
fn assert_judged(result: Result<evolve_core::ScoreValue, ScoreError>) {
    match result {
        Ok(v) => {
            assert!((0.0..=1.0).contains(&v.value), "{v:?}");
            assert!(v.details["reply"].is_string());
        }
        Err(ScoreError::Failed { reason, .. }) => {
            assert!(
                reason.starts_with("no \"Rating: N\" line in the judge's reply"),
                "{reason}"
            )
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn llm_judge_runs_end_to_end_on_a_local_gguf() {
    let engine = LlamaEngine::load(&tiny_llama(), engine_options()).unwrap();
    let mut judge = LlmJudge::new(Box::new(engine), "judge:tiny").with_max_tokens(12);
    assert_judged(judge.score(&INPUT));
    for r in judge.score_many(&[INPUT, INPUT]).unwrap() {
        assert_judged(r);
    }
    match judge.prefer("2+2?", None, "4", "5") {
        Ok(v) => assert!((0.0..=1.0).contains(&v.p_a)),
        Err(ScoreError::Failed { reason, .. }) => {
            assert!(reason.contains("Winner: A|B|tie"), "{reason}")
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn reward_model_refuses_a_chat_model_in_one_clear_line() {
    let path = tiny_llama();
    let err = RewardModelScorer::load(&path, (&engine_options()).into())
        .err()
        .expect("a model without a head must be refused")
        .to_string();
    assert_eq!(
        err,
        "tiny.gguf has no classification head (a reward model needs one, e.g. a *-RM GGUF \
         converted with llama.cpp's convert_hf_to_gguf.py); use a verifier or an LLM judge instead"
    );
    assert!(!err.contains('\n'));
}

#[test]
fn reward_model_refuses_a_head_on_an_architecture_llama_cpp_cannot_run_it_on() {
    let err = inspect_reward_head(&tiny_llama_with_head())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tiny-llama-cls.gguf has a classification head but llama.cpp runs heads only for the bert,"),
        "{err}"
    );
    assert!(err.contains("not 'llama'"), "{err}");
    let err = RewardModelScorer::load(&tiny_qwen3_one_output(), (&engine_options()).into())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("every score would be 1"), "{err}");
}

#[test]
fn reward_model_scores_with_a_classification_head() {
    let path = tiny_qwen3_rm();
    let head = inspect_reward_head(&path).unwrap();
    assert_eq!(head.architecture, "qwen3");
    assert_eq!(head.tensors, ["cls.output.weight"]);
    assert!(head.rank_pooling);
    let mut rm = RewardModelScorer::load(&path, (&engine_options()).into()).unwrap();
    assert_eq!(rm.name(), "reward:tiny-qwen3-rm.gguf");
    let good = rm.score(&INPUT).unwrap();
    // llama.cpp's Qwen3 head is a softmax over ("yes", "no"): the value is P(yes).
    let outputs: Vec<f64> = serde_json::from_value(good.details["outputs"].clone()).unwrap();
    assert_eq!(outputs.len(), 2);
    assert!(
        (outputs.iter().sum::<f64>() - 1.0).abs() < 1e-4,
        "{outputs:?}"
    );
    assert!(good.value > 0.0 && good.value < 1.0, "{good:?}");
    assert_eq!(good.details["labels"], serde_json::json!(["yes", "no"]));
    // Deterministic, and it reads the answer: another answer scores differently.
    assert_eq!(rm.score(&INPUT).unwrap().value, good.value);
    let other = rm
        .score(&ScoreInput {
            answer: "twenty-two, surely not four",
            ..INPUT
        })
        .unwrap();
    assert_ne!(other.value, good.value);
}

#[test]
fn scorer_from_spec_builds_verifiers_local_judges_and_reward_models() {
    let opts = engine_options();
    assert_eq!(
        scorer_from_spec("numeric", &opts).unwrap().name(),
        "numeric_final_answer"
    );
    assert!(scorer_from_spec("pattern:yes", &opts).is_ok());
    let tiny = tiny_llama();
    let spec = format!("judge:{}", tiny.display());
    assert_eq!(scorer_from_spec(&spec, &opts).unwrap().name(), spec);
    let spec = format!("reward:{}", tiny_qwen3_rm().display());
    assert_eq!(
        scorer_from_spec(&spec, &opts).unwrap().name(),
        "reward:tiny-qwen3-rm.gguf"
    );
}

#[test]
fn scorer_from_spec_refuses_in_one_line_naming_the_accepted_forms() {
    let opts = engine_options();
    let err = |spec: &str| scorer_from_spec(spec, &opts).err().expect(spec);
    let e = err("bogus");
    assert_eq!(
        e,
        format!("unknown scorer 'bogus' (expected {SCORER_FORMS})")
    );
    for form in [
        "numeric",
        "pattern:<text>",
        "judge:<model.gguf>",
        "remote-judge:",
        "reward:<model.gguf>",
    ] {
        assert!(e.contains(form), "{form} missing from {e}");
    }
    assert!(err("judge:").contains("needs a model path"));
    assert!(err("reward: ").contains("needs a model path"));
    assert!(err("remote-judge:").contains("needs a server address"));
    assert!(err("judge:/nonexistent/m.gguf").contains("model file not found"));
    let e = err(&format!("reward:{}", tiny_llama().display()));
    assert!(e.contains("tiny.gguf has no classification head"), "{e}");
    assert!(err("remote-judge:ftp://x").contains("invalid server address"));
    for spec in ["bogus", "judge:", "reward:/x.gguf", "remote-judge:ftp://x"] {
        assert!(!err(spec).contains('\n'), "{spec}");
    }
}
