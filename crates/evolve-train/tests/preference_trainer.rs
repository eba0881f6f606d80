//! The loop's `PreferenceTrainer` on candle: text pairs in, a GGUF LoRA llama.cpp loads out,
//! the next round continuing from the previous adapter, and cancellation writing nothing.

mod common;

use common::tiny_llama;
use evolve_core::{PairKind, PreferenceTrainer, StepReport, TrainExample};
use evolve_gguf::tiny::WeightType;
use evolve_llama::{EngineOptions, LlamaEngine};
use evolve_train::OptimConfig;
use evolve_train::{
    ADAPTER_GGUF, CHECKPOINT_DIR, ChatEncoder, LoraConfig, LoraDpoTrainer, TrainConfig,
};

fn examples() -> Vec<TrainExample> {
    let prompt = |q: &str| format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
    (0..6)
        .map(|i| {
            TrainExample::new(
                if i % 2 == 0 {
                    PairKind::Direct
                } else {
                    PairKind::Refine
                },
                prompt(&format!("{i}+{i}=?")),
                format!("#### {}", 2 * i),
                format!("#### {}", 2 * i + 1),
            )
        })
        .collect()
}

fn trainer(model: &std::path::Path) -> LoraDpoTrainer {
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let train = TrainConfig {
        beta: 0.5,
        optim: OptimConfig {
            lr: 1e-2,
            warmup_steps: 0,
            batch_size: 2,
            grad_accum: 1,
            epochs: 2,
            ..OptimConfig::default()
        },
        ..TrainConfig::default()
    };
    LoraDpoTrainer::new(model, lora, train)
}

#[test]
fn encodes_like_llama_cpp_with_bos_and_the_end_of_turn_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_llama(dir.path(), WeightType::F32);
    let enc = ChatEncoder::from_gguf(&evolve_gguf::read_path(&path).unwrap()).unwrap();
    let engine = LlamaEngine::load(&path, EngineOptions::default()).unwrap();
    let text = "<|im_start|>user\n12+3=?<|im_end|>\n<|im_start|>assistant\n";
    let ours: Vec<i32> = enc
        .prompt(text)
        .unwrap()
        .iter()
        .map(|&t| t as i32)
        .collect();
    assert_eq!(ours, engine.tokenize(text));
    let answer = enc.answer(&[], "#### 15").unwrap();
    assert_eq!(*answer.last().unwrap(), evolve_gguf::tiny::IM_END_ID);
    // Step-DPO cuts answers at the tokens that end a line.
    let line = enc.answer(&[], "1+2=3\n#### 3").unwrap();
    let ends: Vec<bool> = line.iter().map(|&t| enc.ends_line(t)).collect();
    assert_eq!(ends.iter().filter(|&&e| e).count(), 1);
    assert!(ends[5], "the newline after 1+2=3");
}

#[test]
fn trains_rounds_into_gguf_adapters_that_llama_cpp_applies() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_llama(dir.path(), WeightType::F32);
    let mut t = trainer(&model);
    let mut reports: Vec<StepReport> = vec![];
    let round0 = dir.path().join("round-0");
    let first = t
        .train(&examples(), None, &round0, &mut |r| {
            reports.push(r.clone());
            true
        })
        .unwrap();
    assert!(first.completed);
    assert_eq!(first.gguf_path, round0.join(ADAPTER_GGUF));
    assert_eq!((first.rank, first.steps), (4, 6));
    assert_eq!(reports.len(), 6);
    let last = &reports[5].metrics;
    for key in [
        "loss",
        "rewards/margins",
        "rewards/accuracies",
        "direct/rewards/margins",
        "refine/rewards/margins",
    ] {
        assert!(last[key].is_finite(), "{key} missing: {last:?}");
    }
    assert!(last["loss"] < reports[0].metrics["loss"], "it learns");

    // llama.cpp loads the adapter, and under it the chosen answer gains on the rejected one.
    let mut engine = LlamaEngine::load(&model, EngineOptions::default()).unwrap();
    let e = &examples()[0];
    let margin = |engine: &LlamaEngine| {
        let prompt = engine.tokenize(&e.prompt);
        let logp = |answer: &str| {
            let tokens = &engine.tokenize(answer)[1..]; // without BOS
            engine.sequence_logprob(&prompt, tokens).unwrap().sum
        };
        logp(&e.chosen) - logp(&e.rejected)
    };
    let base = margin(&engine);
    let id = engine.load_adapter(&first.gguf_path).unwrap();
    engine.set_adapter(Some(id), 1.0).unwrap();
    let tuned = margin(&engine);
    assert!(tuned > base + 0.1, "margin {base} -> {tuned}");

    // Round 1 starts from round 0's adapter, so its first loss is already low.
    let mut second_losses = vec![];
    let second = t
        .train(
            &examples(),
            Some(&first.gguf_path),
            &dir.path().join("round-1"),
            &mut |r| {
                second_losses.push(r.metrics["loss"]);
                true
            },
        )
        .unwrap();
    assert!(second.completed);
    assert!(
        second_losses[0] < reports[0].metrics["loss"] - 0.01,
        "{second_losses:?}"
    );
}

#[test]
fn a_cancelled_run_reports_incomplete_and_writes_no_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_llama(dir.path(), WeightType::F32);
    let out = dir.path().join("round-0");
    let result = trainer(&model)
        .train(&examples(), None, &out, &mut |r| r.step < 2)
        .unwrap();
    assert!(!result.completed);
    assert_eq!(result.steps, 2);
    assert!(!out.join(ADAPTER_GGUF).exists());
}

#[test]
fn a_stopped_run_continues_from_its_checkpoint_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_llama(dir.path(), WeightType::F32);
    let losses = |reports: &[StepReport]| -> Vec<(usize, f64)> {
        reports
            .iter()
            .map(|r| (r.step, r.metrics["loss"]))
            .collect()
    };
    let whole_dir = dir.path().join("whole");
    let mut whole = Vec::new();
    let mut t = trainer(&model);
    t.checkpoint_every = 2;
    t.train(&examples(), None, &whole_dir, &mut |r| {
        whole.push(r.clone());
        true
    })
    .unwrap();
    assert!(
        !whole_dir.join(CHECKPOINT_DIR).exists(),
        "a finished run leaves no checkpoint behind"
    );

    // Stopped after step 3 (Ctrl-C, a pause): a checkpoint of step 3 is saved besides the
    // periodic one of step 2 (a kill, which saves nothing, is tests/runs.rs's).
    let out = dir.path().join("stopped");
    let mut t = trainer(&model);
    t.checkpoint_every = 2;
    let stopped = t
        .train(&examples(), None, &out, &mut |r| r.step < 3)
        .unwrap();
    assert!(!stopped.completed);
    assert!(
        out.join(CHECKPOINT_DIR)
            .join("trainer_state.json")
            .is_file()
    );
    // A fresh trainer (a new process) goes on after step 3, to the very same end.
    let mut resumed = Vec::new();
    let mut t = trainer(&model);
    t.checkpoint_every = 2;
    let done = t
        .train(&examples(), None, &out, &mut |r| {
            resumed.push(r.clone());
            true
        })
        .unwrap();
    assert!(done.completed);
    assert_eq!(resumed[0].step, 4);
    assert_eq!(losses(&resumed), losses(&whole[3..]));
    assert_eq!(
        std::fs::read(out.join(ADAPTER_GGUF)).unwrap(),
        std::fs::read(whole_dir.join(ADAPTER_GGUF)).unwrap()
    );

    // Other pairs: the checkpoint is not theirs, so training starts from step 1.
    let other = dir.path().join("other");
    let mut t = trainer(&model);
    t.checkpoint_every = 2;
    t.train(&examples(), None, &other, &mut |r| r.step < 3)
        .unwrap();
    let mut fewer = examples();
    fewer.pop();
    let mut first = None;
    trainer(&model)
        .train(&fewer, None, &other, &mut |r| {
            first.get_or_insert(r.step);
            true
        })
        .unwrap();
    assert_eq!(first, Some(1));
}

#[test]
fn pairs_longer_than_the_limit_are_left_out_and_all_too_long_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_llama(dir.path(), WeightType::F32);
    let mut t = trainer(&model);
    t.max_tokens = 10;
    let err = t
        .train(&examples(), None, &dir.path().join("r"), &mut |_| true)
        .unwrap_err();
    assert!(err.to_string().contains("longer than 10 tokens"), "{err}");
    let (kept, dropped) = {
        t.max_tokens = 40;
        t.encode(&examples()).unwrap()
    };
    assert_eq!(kept.len() + dropped, 6);
}

#[test]
fn first_step_only_trains_on_the_line_where_the_answers_part() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_llama(dir.path(), WeightType::F32);
    let enc = ChatEncoder::from_gguf(&evolve_gguf::read_path(&model).unwrap()).unwrap();
    let prompt = "<|im_start|>user\n47+38=?<|im_end|>\n<|im_start|>assistant\n";
    let pair = TrainExample::new(
        PairKind::Direct,
        prompt,
        "7+8=15\n4+3+1=8\n#### 85",
        "7+8=15\n4+3=7\n#### 75",
    );
    let mut t = trainer(&model);
    let (whole, _) = t.encode(std::slice::from_ref(&pair)).unwrap();
    t.first_step_only = true;
    let (step, _) = t.encode(std::slice::from_ref(&pair)).unwrap();
    assert_eq!(whole[0].prompt, enc.prompt(prompt).unwrap());
    assert_eq!((whole[0].chosen_span, whole[0].rejected_span), (None, None));
    // The answers stay whole (the NLL term covers all of the chosen one); the preference term
    // compares the second line only, after the shared first line.
    assert_eq!(step[0].prompt, whole[0].prompt);
    assert_eq!(step[0].chosen, whole[0].chosen);
    assert_eq!(step[0].rejected, whole[0].rejected);
    let shared = enc.answer(&[], "7+8=15\n").unwrap().len() - 1;
    let (cs, ce) = step[0].chosen_span.unwrap();
    let (rs, re) = step[0].rejected_span.unwrap();
    assert_eq!((cs, rs), (shared, shared));
    assert_eq!(
        step[0].chosen[cs..ce],
        enc.answer(&[], "4+3+1=8\n").unwrap()[..8]
    );
    assert_eq!(
        step[0].rejected[rs..re],
        enc.answer(&[], "4+3=7\n").unwrap()[..6]
    );
}

#[test]
fn the_sft_objective_trains_on_the_chosen_answers_nll_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_llama(dir.path(), WeightType::F32);
    let mut t = trainer(&model);
    let mut reports: Vec<StepReport> = vec![];
    let out = t
        .train_for(
            evolve_core::Objective::Sft,
            &examples(),
            None,
            &dir.path().join("sft"),
            &mut |r| {
                reports.push(r.clone());
                true
            },
        )
        .unwrap();
    assert!(out.completed && out.gguf_path.is_file());
    assert!(!reports.is_empty());
    for r in &reports {
        let (loss, nll) = (r.metrics["loss"], r.metrics["nll_loss"]);
        assert!(
            (loss - nll).abs() < 1e-5,
            "step {}: {loss} vs {nll}",
            r.step
        );
    }
    // The preference objective of the same trainer is not the NLL.
    let mut first = None;
    t.train(&examples(), None, &dir.path().join("dpo"), &mut |r| {
        first.get_or_insert(r.metrics.clone());
        false
    })
    .unwrap();
    let m = first.unwrap();
    assert!((m["loss"] - m["nll_loss"]).abs() > 1e-3);
}
