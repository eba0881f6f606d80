//! A realistic finished run written through the store API, for the monitor's tests and
//! screenshots: data shaped like what `evolve-loop` writes, without a model. Test support only:
//! no shipped binary writes these synthetic results into a user's database.

use anyhow::Result;
use evolve_core::{
    AdapterFormat, EvalAnswer, EvalMeasure, EvalMetric, EvalSubject, GenerationKind, PairKind,
    RoundState, RunState, SamplerConfig,
};
use evolve_store::{
    NewAdapter, NewEvaluation, NewGeneration, NewModel, NewPair, NewPrompt, NewRun, RoundId, RunId,
    Store, TrainingMetric, TrainingState,
};
use std::collections::BTreeMap;

pub const DEMO_ROUNDS: i64 = 3;
pub const DEMO_STEPS: i64 = 30;
pub const DEMO_REFINE_STEPS: i64 = 2;
const TRAIN_PROMPTS: i64 = 12;
const EVAL_PROMPTS: i64 = 40;
const SAMPLES: i64 = 2;

/// Deterministic noise in [-1, 1) (xorshift), so fixtures are the same on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Writes a finished 3-round run: prompts, sampled and refined generations with token counts
/// and durations, direct and refine pairs, one training run of 30 TRL-named steps per round
/// (loss falling, margins and accuracies rising), adapters, and `base/…` and `trained/…`
/// held-out evaluations. Returns the run id.
pub fn record_demo_run(store: &Store) -> Result<RunId> {
    let model = store.add_model(&NewModel {
        path: "/models/demo-1b-q4.gguf".into(),
        sha256: "de40".into(),
        file_size: 700_000_000,
        architecture: Some("llama".into()),
        name: Some("Demo 1B".into()),
        parameter_count: Some(1_100_000_000),
        context_length: Some(2048),
        quantization: Some("Q4_K_M".into()),
        metadata: serde_json::json!({}),
    })?;
    let dataset = store.create_dataset(
        &format!("demo-arith-{}", store.list_datasets()?.len()),
        None,
        "builtin",
    )?;
    let prompts: Vec<NewPrompt> = (0..TRAIN_PROMPTS + EVAL_PROMPTS)
        .map(|i| NewPrompt {
            idx: i,
            split: if i < TRAIN_PROMPTS { "train" } else { "eval" }.into(),
            prompt: format!("What is {i} * 7?"),
            reference: Some((i * 7).to_string()),
            metadata: serde_json::json!({}),
        })
        .collect();
    store.add_prompts(dataset, &prompts)?;
    let train = store.list_prompts(dataset, Some("train"))?;
    let eval = store.list_prompts(dataset, Some("eval"))?;
    let run = store.create_run(&NewRun {
        name: "demo".into(),
        model_id: model,
        dataset_id: dataset,
        config: serde_json::json!({"rounds": DEMO_ROUNDS, "refine_steps": DEMO_REFINE_STEPS}),
    })?;
    store.set_run_state(run, RunState::Running)?;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut adapter = None;
    for r in 0..DEMO_ROUNDS {
        let round = store.create_round(run, r)?;
        store.set_round_adapter(round, adapter)?;
        store.set_round_state(round, RoundState::Collecting, None)?;
        // Later rounds sample a little faster (warm caches) and write shorter answers.
        let tok_per_s = 38.0 + 6.0 * r as f64;
        for p in &train {
            let mut samples = Vec::new();
            for s in 0..SAMPLES {
                let mut parent = None;
                for step in 0..=DEMO_REFINE_STEPS {
                    let tokens = (140.0 - 15.0 * r as f64 + 40.0 * noise.next()).round() as i64;
                    let duration_ms =
                        (tokens as f64 / (tok_per_s * (1.0 + 0.1 * noise.next())) * 1000.0) as i64;
                    let id = store.insert_generation(&NewGeneration {
                        round_id: Some(round),
                        prompt_id: Some(p.id),
                        kind: if step == 0 {
                            GenerationKind::Sample
                        } else {
                            GenerationKind::Refinement
                        },
                        parent_id: parent,
                        step_index: step,
                        sample_index: s,
                        text: format!("answer {s}.{step}"),
                        token_count: tokens,
                        token_ids: None,
                        finished: true,
                        seed: s,
                        sampler: SamplerConfig::default(),
                        prompt_text: p.prompt.clone(),
                        adapter_id: adapter,
                        duration_ms,
                    })?;
                    let correct = noise.next() < -0.2 + 0.25 * (r + step) as f64;
                    let score = if correct { 1.0 } else { 0.0 };
                    store.add_score(id, "exact_match", score, &serde_json::json!({}))?;
                    if let Some(parent) = parent.filter(|_| correct) {
                        store.insert_pair(&NewPair {
                            round_id: round,
                            prompt_id: p.id,
                            kind: PairKind::Refine,
                            chosen_id: id,
                            rejected_id: parent,
                            margin: 1.0,
                        })?;
                    }
                    parent = Some(id);
                    if step == 0 {
                        samples.push((id, correct));
                    }
                }
            }
            if let [(a, true), (b, false)] | [(b, false), (a, true)] = samples[..] {
                store.insert_pair(&NewPair {
                    round_id: round,
                    prompt_id: p.id,
                    kind: PairKind::Direct,
                    chosen_id: a,
                    rejected_id: b,
                    margin: 1.0,
                })?;
            }
        }
        store.set_round_state(round, RoundState::Pairing, None)?;
        if r == 0 {
            evaluate(
                store,
                round,
                model,
                None,
                &eval,
                EvalSubject::Base,
                0.30,
                0.36,
            )?;
        }
        store.set_round_state(round, RoundState::Training, None)?;
        let training =
            store.create_training_run(Some(round), &serde_json::json!({"examples": 24}))?;
        store.set_training_state(training, TrainingState::Running, None)?;
        store.append_metrics(training, &training_steps(r, 1 + r as u64))?;
        store.set_training_state(training, TrainingState::Done, None)?;
        let trained = store.add_adapter(&NewAdapter {
            training_run_id: Some(training),
            base_model_id: model,
            base_sha256: "de40".into(),
            format: AdapterFormat::GgufLora,
            path: format!("/adapters/run-{run}/round-{r}/adapter.gguf"),
            sha256: format!("ad{r}"),
            file_size: 4_000_000,
            rank: 16,
            alpha: 32.0,
        })?;
        store.set_round_state(round, RoundState::Evaluating, None)?;
        let gain = 0.07 * (r + 1) as f64;
        evaluate(
            store,
            round,
            model,
            Some(trained),
            &eval,
            EvalSubject::Trained,
            0.30 + gain * 0.6,
            0.36 + gain,
        )?;
        store.set_round_state(round, RoundState::Done, None)?;
        adapter = Some(trained);
    }
    store.set_run_state(run, RunState::Done)?;
    Ok(run)
}

/// TRL-named metrics of one round's training: DPO starts at ln 2 and each round starts from the
/// previous adapter, so later rounds begin lower and end with wider margins. `seed` varies the noise.
#[doc(hidden)]
pub fn training_steps(round: i64, seed: u64) -> Vec<TrainingMetric> {
    let noise = &mut Noise(0x2545_f491_4f6c_dd1d ^ seed.wrapping_mul(0x9e37_79b9));
    (1..=DEMO_STEPS)
        .map(|step| {
            let progress = step as f64 / DEMO_STEPS as f64;
            let learned = 0.35 * round as f64 + progress;
            let margin = 1.6 * learned + 0.25 * noise.next();
            let chosen = 0.55 * margin + 0.1 * noise.next();
            let loss = (0.693 * (-0.9 * learned).exp() + 0.04 * noise.next()).max(0.02);
            let accuracy =
                (0.5 + 0.35 * (1.0 - (-1.8 * learned).exp()) + 0.08 * noise.next()).clamp(0.0, 1.0);
            // Linear warmup over 3 steps, then linear decay, like TRL's default scheduler.
            let lr =
                5e-6 * (step as f64 / 3.0).min(1.0) * (1.0 - (step - 1) as f64 / DEMO_STEPS as f64);
            let metrics: BTreeMap<String, f64> = [
                ("loss", loss),
                ("rewards/chosen", chosen),
                ("rewards/rejected", chosen - margin),
                ("rewards/margins", margin),
                ("rewards/accuracies", accuracy),
                ("logps/chosen", -120.0 + 8.0 * learned),
                ("logps/rejected", -125.0 - 10.0 * learned),
                (
                    "grad_norm",
                    2.5 * (-1.2 * progress).exp() + 0.3 + 0.2 * noise.next(),
                ),
                ("learning_rate", lr),
                ("tokens_per_second", 410.0 + 25.0 * noise.next()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            TrainingMetric {
                step,
                epoch: progress,
                metrics,
            }
        })
        .collect()
}

/// Stores the direct, refined@k and sampled evaluations with per-problem answers: problem i
/// (of difficulty i / n) is right at step k when its difficulty is below that step's score,
/// except that every ninth problem's refinements break it; for a trained round also the win
/// rate over the previous model (58 %).
#[allow(clippy::too_many_arguments)]
fn evaluate(
    store: &Store,
    round: RoundId,
    model: evolve_store::ModelId,
    adapter: Option<evolve_store::AdapterId>,
    eval: &[evolve_store::Prompt],
    subject: EvalSubject,
    direct: f64,
    refined: f64,
) -> Result<()> {
    let n = eval.len();
    let answers = |score_of: &dyn Fn(usize) -> bool| -> Vec<EvalAnswer> {
        eval.iter()
            .enumerate()
            .map(|(i, p)| EvalAnswer {
                prompt_id: p.id.0,
                text: format!("answer to {}", p.prompt),
                score: if score_of(i) { 1.0 } else { 0.0 },
            })
            .collect()
    };
    let difficulty = |i: usize| (i as f64 + 0.5) / n as f64;
    let record = |measure: EvalMeasure, answers: Vec<EvalAnswer>| {
        let value = answers.iter().map(|a| a.score).sum::<f64>() / n as f64;
        store.add_evaluation(&NewEvaluation {
            round_id: Some(round),
            adapter_id: adapter,
            model_id: model,
            split: "eval".into(),
            metric: EvalMetric::new(subject, measure).to_string(),
            value,
            n: n as i64,
            details: serde_json::json!({"scorer": "exact_match", "answers": answers}),
        })
    };
    for k in 0..=DEMO_REFINE_STEPS as usize {
        let level = direct + (refined - direct) * k as f64 / DEMO_REFINE_STEPS as f64;
        let measure = if k == 0 {
            EvalMeasure::Direct
        } else {
            EvalMeasure::Refined(k)
        };
        record(
            measure,
            answers(&|i| difficulty(i) < level && (k == 0 || i % 9 != 4)),
        )?;
    }
    record(
        EvalMeasure::Sampled,
        answers(&|i| difficulty(i) < direct - 0.1),
    )?;
    if subject == EvalSubject::Trained {
        store.add_evaluation(&NewEvaluation {
            round_id: Some(round),
            adapter_id: adapter,
            model_id: model,
            split: "eval".into(),
            metric: EvalMetric::new(subject, EvalMeasure::WinRateVsPrevious).to_string(),
            value: 0.58,
            n: n as i64,
            details: serde_json::json!({
                "judge": "exact_match", "method": "higher score", "previous": "the row above",
                "wins": 8, "ties": 30, "losses": 2, "failed": 0, "first_failure": null,
            }),
        })?;
    }
    Ok(())
}
