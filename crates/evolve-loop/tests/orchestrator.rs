//! The orchestrator on a real SQLite file with deterministic engine doubles: every table fills,
//! and a run stopped in the middle of collection or training resumes to exactly the state an
//! uninterrupted run reaches.

use evolve_core::{
    ChatMessage, Completion, GenerateError, GenerationEvent, GenerationRequest, Generator,
    Objective, PairVerdict, PairwiseJudge, PreferenceTrainer, RoundState, RunState, ScoreError,
    ScoreInput, ScoreValue, Scorer, StepReport, TrainExample, TrainFailed, TrainedAdapter, Winner,
};
use evolve_judge::verify::NumericFinalAnswer;
use evolve_loop::run::{
    Engines, Orchestrator, Progress, RunConfig, RunError, RunObjective, create_run,
};
use evolve_store::{NewModel, NewPrompt, Store};

const WIN_RATE_METRIC: &str = "trained/win_rate_vs_previous";
use std::collections::BTreeMap;
use std::path::Path;

/// Answers "#### N" where N depends on the seed and the prompt, and sometimes is right; a
/// refinement ("Review your previous answer") copies the right answer from the question text
/// once the adapter is on, so rounds visibly improve.
struct FakeGenerator {
    adapter: Option<String>,
    calls: usize,
    /// Off: the adapter changes nothing, so every round has pairs to train on.
    adapter_helps: bool,
}

fn answer_for(prompt: &str, seed: u32, adapter: bool) -> String {
    let expected: i64 = prompt
        .split("=")
        .nth(1)
        .and_then(|s| s.split('|').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let right = adapter || seed.is_multiple_of(3);
    format!(
        "#### {}",
        if right {
            expected
        } else {
            expected + 1 + (seed % 5) as i64
        }
    )
}

impl Generator for FakeGenerator {
    fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        Ok(messages
            .iter()
            .map(|m| format!("<{}>{}", m.role.as_str(), m.content))
            .collect::<Vec<_>>()
            .join("|"))
    }
    fn generate_batch(
        &mut self,
        requests: &[GenerationRequest],
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, GenerateError> {
        self.calls += 1;
        let mut out = Vec::new();
        for (r, req) in requests.iter().enumerate() {
            let mut samples = Vec::new();
            for s in 0..req.n {
                let seed = req.sample_seed(s);
                let text = answer_for(
                    &req.prompt,
                    seed,
                    self.adapter_helps && self.adapter.is_some(),
                );
                if !events(GenerationEvent::Token {
                    request: r,
                    sample: s,
                    text: text.clone(),
                }) {
                    return Ok(out);
                }
                samples.push(Completion {
                    text,
                    tokens: vec![1, 2, 3],
                    prompt_tokens: 4,
                    stopped: true,
                    duration_ms: 1,
                    seed,
                });
                // As llama.cpp's engine: each sample ends with its event.
                if !events(GenerationEvent::Finished {
                    request: r,
                    sample: s,
                    stopped: true,
                }) {
                    out.push(samples);
                    return Ok(out);
                }
            }
            out.push(samples);
        }
        Ok(out)
    }
    fn use_adapter(&mut self, path: Option<&Path>, _scale: f32) -> Result<(), GenerateError> {
        self.adapter = path.map(|p| p.display().to_string());
        Ok(())
    }
}

struct FakeTrainer {
    stop_at_step: Option<usize>,
    /// The objective of every training started, in order.
    objectives: Vec<Objective>,
    /// Examples whose answers came with the token ids they were sampled as.
    with_sampled_ids: usize,
}

impl PreferenceTrainer for FakeTrainer {
    fn train_for(
        &mut self,
        objective: Objective,
        examples: &[TrainExample],
        _init: Option<&Path>,
        out_dir: &Path,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<TrainedAdapter, TrainFailed> {
        self.objectives.push(objective);
        // The generator reports tokens [1, 2, 3] for every answer.
        let sampled = Some(vec![1u32, 2, 3]);
        self.with_sampled_ids += examples
            .iter()
            .filter(|e| {
                e.chosen_ids == sampled && (e.rejected_ids == sampled || e.rejected.is_empty())
            })
            .count();
        let steps = 4;
        for step in 1..=steps {
            if self.stop_at_step == Some(step) {
                self.stop_at_step = None;
                return Ok(TrainedAdapter {
                    gguf_path: out_dir.join("x"),
                    rank: 4,
                    alpha: 8.0,
                    steps: step,
                    completed: false,
                });
            }
            let metrics = BTreeMap::from([
                ("loss".to_string(), 0.7 / step as f64),
                ("rewards/accuracies".to_string(), 1.0),
            ]);
            if !on_step(&StepReport {
                step,
                total_steps: steps,
                metrics,
            }) {
                return Ok(TrainedAdapter {
                    gguf_path: out_dir.join("x"),
                    rank: 4,
                    alpha: 8.0,
                    steps: step,
                    completed: false,
                });
            }
        }
        std::fs::create_dir_all(out_dir).unwrap();
        let path = out_dir.join("adapter.gguf");
        std::fs::write(&path, format!("{} examples", examples.len())).unwrap();
        Ok(TrainedAdapter {
            gguf_path: path,
            rank: 4,
            alpha: 8.0,
            steps,
            completed: true,
        })
    }
}

fn setup(dir: &Path) -> (Store, evolve_store::RunId) {
    let store = Store::open(&dir.join("evolve.db")).unwrap();
    let model = store
        .add_model(&NewModel {
            path: "/m.gguf".into(),
            sha256: "ab".repeat(32),
            file_size: 1,
            architecture: Some("llama".into()),
            name: None,
            parameter_count: Some(1),
            context_length: Some(512),
            quantization: None,
            metadata: serde_json::json!({}),
        })
        .unwrap();
    let dataset = store.create_dataset("sums", None, "plain").unwrap();
    let prompts: Vec<NewPrompt> = (0..14)
        .map(|i| NewPrompt {
            idx: i,
            split: if i >= 10 { "eval" } else { "train" }.into(),
            prompt: format!("{i}+{i}={}", 2 * i),
            reference: Some(format!("{}", 2 * i)),
            metadata: serde_json::json!({}),
        })
        .collect();
    store.add_prompts(dataset, &prompts).unwrap();
    let config = RunConfig {
        rounds: 2,
        prompts_per_round: 5,
        samples: 3,
        refine_steps: 2,
        chunk_prompts: 2,
        eval_sampler: evolve_core::SamplerConfig {
            seed: 1,
            ..evolve_core::SamplerConfig::greedy(64)
        },
        ..RunConfig::default()
    };
    let run = create_run(&store, "test", model, dataset, &config).unwrap();
    (store, run)
}

/// Runs until done; `stop` decides, from each progress event, whether to pause there (once).
fn run_to_end(
    store: &Store,
    run: evolve_store::RunId,
    dir: &Path,
    stop: impl FnMut(&Progress) -> bool,
) -> usize {
    run_to_end_scored_by(store, run, dir, stop, || Box::new(NumericFinalAnswer))
}

fn run_to_end_scored_by(
    store: &Store,
    run: evolve_store::RunId,
    dir: &Path,
    mut stop: impl FnMut(&Progress) -> bool,
    scorer: impl Fn() -> Box<dyn Scorer>,
) -> usize {
    let mut pauses = 0;
    loop {
        let mut generator = FakeGenerator {
            adapter: None,
            calls: 0,
            adapter_helps: true,
        };
        let mut scorer = scorer();
        let mut trainer = FakeTrainer {
            stop_at_step: None,
            objectives: vec![],
            with_sampled_ids: 0,
        };
        let mut progress = |p: Progress| !stop(&p);
        let engines = Engines {
            generator: &mut generator,
            scorer: scorer.as_mut(),
            trainer: &mut trainer,
        };
        let mut orch =
            Orchestrator::new(store, run, engines, &dir.join("adapters"), &mut progress).unwrap();
        match orch.run() {
            Ok(()) => return pauses,
            Err(RunError::Paused) => pauses += 1,
            Err(e) => panic!("{e}"),
        }
        assert!(pauses < 10, "no progress");
    }
}

/// Counts, generations as (round, prompt, sample, step, text, parent step), evaluations.
type Snapshot = (
    BTreeMap<String, i64>,
    Vec<(i64, i64, i64, i64, String, i64)>,
    Vec<(String, f64)>,
);

/// Everything a run produced, without ids and timestamps.
fn snapshot(store: &Store, run: evolve_store::RunId) -> Snapshot {
    let mut gens = Vec::new();
    for round in store.rounds_of_run(run).unwrap() {
        for g in store.generations_of_round(round.id).unwrap() {
            let parent_step = g
                .parent_id
                .map_or(-1, |p| store.get_generation(p).unwrap().unwrap().step_index);
            gens.push((
                round.round_index,
                g.prompt_id.unwrap().0,
                g.sample_index,
                g.step_index,
                g.text,
                parent_step,
            ));
        }
    }
    gens.sort();
    let mut evals: Vec<(String, f64)> = store
        .evaluations_of_run(run)
        .unwrap()
        .into_iter()
        .map(|e| (e.metric, e.value))
        .collect();
    evals.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut counts = store.counts().unwrap();
    counts.remove("training_runs"); // an interrupted training leaves its row, marked failed
    counts.remove("training_metrics");
    (counts, gens, evals)
}

#[test]
fn a_run_fills_every_table_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    assert_eq!(run_to_end(&store, run, dir.path(), |_| false), 0);
    assert_eq!(store.get_run(run).unwrap().unwrap().state, RunState::Done);
    let rounds = store.rounds_of_run(run).unwrap();
    assert_eq!(rounds.len(), 2);
    assert!(rounds.iter().all(|r| r.state == RoundState::Done));
    assert!(
        rounds[0].adapter_id.is_none() && rounds[1].adapter_id.is_some(),
        "round 1 samples with round 0's adapter"
    );
    let counts = store.counts().unwrap();
    // 2 rounds × 5 prompts × 3 samples × (1 + 2 refinements)
    assert_eq!(counts["generations"], 2 * 5 * 3 * 3);
    assert_eq!(counts["scores"], counts["generations"]);
    // Round 1 samples with the adapter, so every answer is right and no pair (hence no training)
    // comes out of it: only round 0 trains.
    let pairs = store.list_pairs(&Default::default()).unwrap();
    assert!(!pairs.is_empty() && pairs.iter().all(|p| p.round_id == rounds[0].id));
    assert_eq!(counts["training_runs"], 1);
    assert_eq!(counts["training_metrics"], 4);
    assert_eq!(counts["adapters"], 1);
    let evals = store.evaluations_of_run(run).unwrap();
    let metric = |round: usize, name: &str| {
        evals
            .iter()
            .find(|e| e.round_id == Some(rounds[round].id) && e.metric == name)
            .map(|e| e.value)
            .unwrap()
    };
    // The doubles answer right with the adapter on: the trained rounds score 1.0, the base less.
    assert!(metric(0, "base/direct_score") < 1.0);
    assert_eq!(metric(0, "trained/direct_score"), 1.0);
    assert_eq!(metric(1, "trained/refined_score@2"), 1.0);
    // Win rates, judged by the scores (a verifier has no pairwise verdict): round 0's adapter
    // beats the base model where the base was wrong and never loses; round 1 ties round 0.
    let win = |round: usize| {
        evals
            .iter()
            .find(|e| e.round_id == Some(rounds[round].id) && e.metric == WIN_RATE_METRIC)
            .unwrap()
    };
    let n_eval = evals
        .iter()
        .find(|e| e.metric == "base/direct_score")
        .unwrap()
        .n;
    let base_right = (metric(0, "base/direct_score") * n_eval as f64).round() as i64;
    let w0 = &win(0).details;
    assert_eq!(
        (
            w0["wins"].as_i64(),
            w0["ties"].as_i64(),
            w0["losses"].as_i64()
        ),
        (Some(n_eval - base_right), Some(base_right), Some(0))
    );
    assert_eq!(
        (w0["previous"].as_str(), w0["method"].as_str()),
        (Some("base"), Some("higher score"))
    );
    assert!(win(0).value > 0.5);
    assert_eq!(win(1).value, 0.5);
    assert_eq!(win(1).details["previous"], "round 0");
    assert_eq!(win(1).details["ties"].as_i64(), Some(n_eval));
    // Every refinement links to the step before it.
    for g in store.generations_of_round(rounds[0].id).unwrap() {
        match g.parent_id {
            None => assert_eq!(g.step_index, 0),
            Some(p) => assert_eq!(
                store.get_generation(p).unwrap().unwrap().step_index,
                g.step_index - 1
            ),
        }
    }
}

#[test]
fn stopping_during_collection_and_training_then_resuming_matches_an_uninterrupted_run() {
    let reference_dir = tempfile::tempdir().unwrap();
    let (reference_store, reference_run) = setup(reference_dir.path());
    run_to_end(
        &reference_store,
        reference_run,
        reference_dir.path(),
        |_| false,
    );

    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    let mut stopped_collecting = false;
    let mut stopped_training = false;
    let pauses = run_to_end(&store, run, dir.path(), |p| match p {
        Progress::Work {
            round: 0,
            state: RoundState::Collecting,
            done,
            ..
        } if *done >= 6 && !stopped_collecting => {
            stopped_collecting = true;
            true
        }
        Progress::Train(report) if report.step == 2 && !stopped_training => {
            stopped_training = true;
            true
        }
        _ => false,
    });
    assert_eq!(pauses, 2);
    assert_eq!(store.get_run(run).unwrap().unwrap().state, RunState::Done);
    assert_eq!(
        snapshot(&store, run),
        snapshot(&reference_store, reference_run)
    );
}

/// Scores like the verifier, but as a pairwise judge always prefers the older answer, so the
/// stored win rate shows which path was taken.
struct ContrarianJudge {
    verifier: NumericFinalAnswer,
    compared: usize,
}

impl Scorer for ContrarianJudge {
    fn name(&self) -> &str {
        "contrarian"
    }
    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        self.verifier.score(input)
    }
    fn pairwise(&mut self) -> Option<&mut dyn PairwiseJudge> {
        Some(self)
    }
}

impl PairwiseJudge for ContrarianJudge {
    fn prefer(
        &mut self,
        _prompt: &str,
        _reference: Option<&str>,
        _a: &str,
        _b: &str,
    ) -> Result<PairVerdict, ScoreError> {
        self.compared += 1;
        Ok(PairVerdict {
            winner: Winner::B,
            p_a: 0.0,
            details: serde_json::Value::Null,
        })
    }
}

#[test]
fn a_scorer_with_a_pairwise_verdict_judges_the_win_rate_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    run_to_end_scored_by(
        &store,
        run,
        dir.path(),
        |_| false,
        || {
            Box::new(ContrarianJudge {
                verifier: NumericFinalAnswer,
                compared: 0,
            })
        },
    );
    let evals = store.evaluations_of_run(run).unwrap();
    let wins: Vec<_> = evals
        .iter()
        .filter(|e| e.metric == WIN_RATE_METRIC)
        .collect();
    assert_eq!(wins.len(), 2, "one per round");
    for w in wins {
        // The scores say round 0 beats the base; the judge's own verdict says otherwise.
        assert_eq!(w.value, 0.0);
        assert_eq!(w.details["method"], "pairwise, both orders");
        assert_eq!(w.details["judge"], "contrarian");
        assert_eq!(w.details["losses"].as_i64(), Some(w.n));
    }
}

#[test]
fn the_sft_warm_up_trains_round_0_on_the_chosen_answers_and_later_rounds_on_preferences() {
    for warm_up in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = setup(dir.path());
        let model = store.list_models().unwrap()[0].id;
        let dataset = store.list_datasets().unwrap()[0].id;
        let mut config = RunConfig {
            rounds: 2,
            prompts_per_round: 5,
            samples: 3,
            refine_steps: 1,
            eval_prompts: 1,
            ..RunConfig::default()
        };
        config.train.sft_warmup = warm_up;
        let run = create_run(&store, "warm", model, dataset, &config).unwrap();
        let mut generator = FakeGenerator {
            adapter: None,
            calls: 0,
            adapter_helps: false,
        };
        let mut scorer = NumericFinalAnswer;
        let mut trainer = FakeTrainer {
            stop_at_step: None,
            objectives: vec![],
            with_sampled_ids: 0,
        };
        let mut progress = |_: Progress| true;
        let engines = Engines {
            generator: &mut generator,
            scorer: &mut scorer,
            trainer: &mut trainer,
        };
        Orchestrator::new(&store, run, engines, &dir.path().join("a"), &mut progress)
            .unwrap()
            .run()
            .unwrap();
        let want = if warm_up {
            vec![Objective::Sft, Objective::Preference]
        } else {
            vec![Objective::Preference, Objective::Preference]
        };
        assert_eq!(trainer.objectives, want);
        assert!(
            trainer.with_sampled_ids > 0,
            "no example carried its sampled token ids"
        );
        let rounds = store.rounds_of_run(run).unwrap();
        let stored = store.training_runs_of_round(rounds[0].id).unwrap()[0]
            .config
            .clone();
        assert_eq!(
            stored["objective"],
            if warm_up { "sft" } else { "preference" }
        );
    }
}

/// The verifier, until its `fuse`-th answer, where it panics like a bug in engine code would.
struct PanickingScorer {
    verifier: NumericFinalAnswer,
    fuse: usize,
}

impl Scorer for PanickingScorer {
    fn name(&self) -> &str {
        // The verifier's name, so the scores kept before the panic count on resume.
        self.verifier.name()
    }
    fn score(&mut self, input: &ScoreInput<'_>) -> Result<ScoreValue, ScoreError> {
        self.fuse -= 1;
        if self.fuse == 0 {
            let v: Vec<u8> = vec![];
            let _ = v[input.answer.len()]; // index out of bounds: a real panic, not a returned error
        }
        self.verifier.score(input)
    }
}

#[test]
fn a_panic_mid_round_fails_the_round_with_its_message_and_the_run_resumes_from_there() {
    let reference_dir = tempfile::tempdir().unwrap();
    let (reference_store, reference_run) = setup(reference_dir.path());
    run_to_end(
        &reference_store,
        reference_run,
        reference_dir.path(),
        |_| false,
    );

    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    let mut generator = FakeGenerator {
        adapter: None,
        calls: 0,
        adapter_helps: true,
    };
    let mut scorer = PanickingScorer {
        verifier: NumericFinalAnswer,
        fuse: 7,
    };
    let mut trainer = FakeTrainer {
        stop_at_step: None,
        objectives: vec![],
        with_sampled_ids: 0,
    };
    let mut progress = |_: Progress| true;
    let engines = Engines {
        generator: &mut generator,
        scorer: &mut scorer,
        trainer: &mut trainer,
    };
    let err = Orchestrator::new(
        &store,
        run,
        engines,
        &dir.path().join("adapters"),
        &mut progress,
    )
    .unwrap()
    .run()
    .unwrap_err();
    assert!(matches!(err, RunError::Panicked(_)), "{err}");
    assert!(err.to_string().contains("index out of bounds"), "{err}");
    assert_eq!(store.get_run(run).unwrap().unwrap().state, RunState::Failed);
    let round = &store.rounds_of_run(run).unwrap()[0];
    assert_eq!(round.state, RoundState::Failed);
    assert!(
        round
            .error
            .as_deref()
            .unwrap_or("")
            .contains("index out of bounds"),
        "{:?}",
        round.error
    );
    // Six answers were scored before the panic and are kept.
    let scored: usize = store
        .generations_of_round(round.id)
        .unwrap()
        .iter()
        .map(|g| store.scores_of(g.id).unwrap().len())
        .sum();
    assert_eq!(scored, 6);

    run_to_end(&store, run, dir.path(), |_| false);
    assert_eq!(store.get_run(run).unwrap().unwrap().state, RunState::Done);
    assert_eq!(
        snapshot(&store, run),
        snapshot(&reference_store, reference_run)
    );
}

/// A verifier that can read no answer: the "wrong answer format" case.
struct Blind;

impl Scorer for Blind {
    fn name(&self) -> &str {
        "blind"
    }
    fn score(
        &mut self,
        input: &evolve_core::ScoreInput<'_>,
    ) -> Result<evolve_core::ScoreValue, evolve_core::ScoreError> {
        Ok(evolve_core::ScoreValue {
            value: 0.0,
            details: serde_json::json!({"expected": input.reference, "extracted": null}),
        })
    }
}

#[test]
fn a_round_without_pairs_says_why_in_its_note_and_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    let mut notes = Vec::new();
    run_to_end_scored_by(
        &store,
        run,
        dir.path(),
        |p| {
            if let Progress::Note { round, text } = p {
                notes.push((*round, text.clone()));
            }
            false
        },
        || Box::new(Blind),
    );
    let rounds = store.rounds_of_run(run).unwrap();
    assert_eq!(notes.len(), 2, "one per round: {notes:?}");
    for r in &rounds {
        let note = r.note.as_deref().expect("a round without pairs has a note");
        // 5 prompts × 3 samples × (1 + 2 refinements).
        assert!(
            note.starts_with(
                "no preference pairs, so nothing to train: all 45 answers scored 0 (none right)"
            ),
            "{note}"
        );
        assert!(note.contains("no answer to read in 45 of them"), "{note}");
        assert_eq!(notes[r.round_index as usize].1, note);
    }
    // With a verifier that reads the answers, round 0 has pairs and no note; in round 1 the
    // trained fake model answers everything right, and the note says so.
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    run_to_end(&store, run, dir.path(), |_| false);
    let rounds = store.rounds_of_run(run).unwrap();
    assert_eq!(rounds[0].note, None);
    let note = rounds[1].note.as_deref().unwrap_or("");
    assert!(note.contains("(all right: the task is too easy)"), "{note}");
}

#[test]
fn a_second_run_from_the_same_base_reuses_its_base_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let (store, first) = setup(dir.path());
    run_to_end(&store, first, dir.path(), |_| false);
    let row = store.get_run(first).unwrap().unwrap();
    let config: RunConfig = serde_json::from_value(row.config.clone()).unwrap();
    let base_of = |run| {
        let mut v: Vec<(String, f64, serde_json::Value)> = store
            .evaluations_of_run(run)
            .unwrap()
            .into_iter()
            .filter(|e| e.metric.starts_with("base/"))
            .map(|e| (e.metric, e.value, e.details["copied_from_run"].clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    // Same evaluation settings, other training: the base is not evaluated again.
    let mut other_training = config.clone();
    other_training.pair_kinds.refine = false;
    let second = create_run(
        &store,
        "second",
        row.model_id,
        row.dataset_id,
        &other_training,
    )
    .unwrap();
    run_to_end(&store, second, dir.path(), |_| false);
    let (a, b) = (base_of(first), base_of(second));
    assert_eq!(
        a.len(),
        config.refine_steps + 2,
        "direct, refined@1..K, sampled: {a:?}"
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, x.1), (&y.0, y.1));
        assert_eq!(
            x.2,
            serde_json::Value::Null,
            "the first run evaluated itself"
        );
        assert_eq!(y.2, serde_json::json!(first.0), "copied from the first run");
    }
    // Other held-out settings: evaluated anew.
    let mut fewer = config.clone();
    fewer.eval_prompts = 2;
    let third = create_run(&store, "third", row.model_id, row.dataset_id, &fewer).unwrap();
    run_to_end(&store, third, dir.path(), |_| false);
    assert!(base_of(third).iter().all(|e| e.2.is_null()));
}

#[test]
fn baselines_that_train_on_no_refinement_sample_none_but_their_evaluation_still_refines() {
    let dir = tempfile::tempdir().unwrap();
    let (store, evolve) = setup(dir.path());
    let row = store.get_run(evolve).unwrap().unwrap();
    let config: RunConfig = serde_json::from_value(row.config.clone()).unwrap();
    let mut iterative_dpo = config.clone();
    iterative_dpo.pair_kinds.refine = false;
    let mut rft = config.clone();
    rft.train.objective = RunObjective::Rft;
    let steps_sampled = |run| {
        let mut steps = std::collections::BTreeSet::new();
        for round in store.rounds_of_run(run).unwrap() {
            for g in store.generations_of_round(round.id).unwrap() {
                steps.insert(g.step_index);
            }
        }
        steps
    };
    let refine_metrics = |run| {
        store
            .evaluations_of_run(run)
            .unwrap()
            .into_iter()
            .filter(|e| e.metric.starts_with("trained/refined_score@"))
            .count()
    };
    run_to_end(&store, evolve, dir.path(), |_| false);
    assert_eq!(
        steps_sampled(evolve),
        (0..=config.refine_steps as i64).collect(),
        "EVOLVE refines in collection"
    );
    assert!(refine_metrics(evolve) > 0);
    for (name, c) in [("iterative dpo", iterative_dpo), ("rft", rft)] {
        assert!(!c.trains_on_refinements());
        let run = create_run(&store, name, row.model_id, row.dataset_id, &c).unwrap();
        run_to_end(&store, run, dir.path(), |_| false);
        assert_eq!(
            steps_sampled(run),
            [0].into(),
            "{name} samples direct answers only"
        );
        assert_eq!(
            refine_metrics(run),
            refine_metrics(evolve),
            "{name} is evaluated with refine@1..K like EVOLVE"
        );
    }
}

#[test]
fn the_held_out_evaluation_reports_progress_and_a_pause_in_it_resumes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    let mut work = Vec::new();
    run_to_end(&store, run, dir.path(), |p| {
        if let Progress::Work {
            round,
            state: RoundState::Evaluating,
            done,
            total,
        } = p
        {
            work.push((*round, *done, *total));
        }
        false
    });
    // 4 held-out problems × (the answer + 2 refinements), reported as they finish: the base
    // and the trained adapter in round 0, the adapter in round 1.
    assert_eq!(work.iter().filter(|w| w.1 == w.2).count(), 3, "{work:?}");
    assert!(work.iter().all(|w| w.2 == 12), "{work:?}");
    let uninterrupted = snapshot(&store, run);

    // Paused at the first evaluation progress, then resumed: the same run.
    let dir = tempfile::tempdir().unwrap();
    let (store, run) = setup(dir.path());
    let mut paused = false;
    let pauses = run_to_end(&store, run, dir.path(), |p| {
        let stop = !paused
            && matches!(
                p,
                Progress::Work {
                    state: RoundState::Evaluating,
                    ..
                }
            );
        paused |= stop;
        stop
    });
    assert_eq!(pauses, 1);
    assert_eq!(snapshot(&store, run), uninterrupted);
}
