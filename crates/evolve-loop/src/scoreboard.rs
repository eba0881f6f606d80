//! The held-out scoreboard of a run: the untrained model, then each round's adapter, with
//! paired comparisons computed from the per-problem answers every evaluation keeps.

use crate::run::evaluate::{WinRateDetails, eval_answers};
use evolve_core::{EvalAnswer, EvalMeasure, EvalMetric, EvalSubject, PairedComparison};
use evolve_store::{Evaluation, RunId, Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;

/// Held-out scores of one model state: the untrained model ("base") or a round's adapter.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ScoreRow {
    /// `base` or `round N`.
    pub label: String,
    /// The round whose adapter this is (`None` for the base).
    pub round: Option<usize>,
    /// Held-out problems evaluated.
    pub n: usize,
    /// Mean score of the greedy direct answers (accuracy for a verifier).
    pub direct: f64,
    /// `refined[k − 1]`: after k greedy refinement steps.
    pub refined: Vec<f64>,
    /// One direct answer sampled at the collection temperature, when evaluated.
    pub sampled: Option<f64>,
    /// Direct answers against the base's, problem by problem (rounds only).
    pub vs_base: Option<PairedComparison>,
    /// Direct answers against the previous row's.
    pub vs_previous: Option<PairedComparison>,
    /// The last refinement step's answers (refine@K) against the base's refine@K (rounds only).
    pub refined_vs_base: Option<PairedComparison>,
    /// refine@K against the previous row's refine@K.
    pub refined_vs_previous: Option<PairedComparison>,
    /// Refinement step k against step k − 1 (`refine_steps[k − 1]`): wins are wrong → right,
    /// losses right → wrong.
    pub refine_steps: Vec<PairedComparison>,
    /// Judged win rate of the direct answers over the previous row's (ties count half).
    pub win_rate: Option<WinRateCell>,
}

/// A round's judged win rate and the counts behind it.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct WinRateCell {
    pub rate: f64,
    #[serde(flatten)]
    pub details: WinRateDetails,
}

/// The scoreboard of `run`, whose refinement chains have `refine_steps` steps.
pub fn scoreboard(
    store: &Store,
    run: RunId,
    refine_steps: usize,
) -> Result<Vec<ScoreRow>, StoreError> {
    let evals = store.evaluations_of_run(run)?;
    let rounds = store.rounds_of_run(run)?;
    let mut rows: Vec<ScoreRow> = Vec::new();
    let mut base_direct: Option<Vec<EvalAnswer>> = None;
    let mut previous_direct: Option<Vec<EvalAnswer>> = None;
    let mut base_refined: Option<Vec<EvalAnswer>> = None;
    let mut previous_refined: Option<Vec<EvalAnswer>> = None;
    let subjects = rounds
        .first()
        .map(|r| (r, EvalSubject::Base, None))
        .into_iter()
        .chain(
            rounds
                .iter()
                .map(|r| (r, EvalSubject::Trained, Some(r.round_index as usize))),
        );
    for (round, subject, index) in subjects {
        let of_round: Vec<&Evaluation> = evals
            .iter()
            .filter(|e| e.round_id == Some(round.id))
            .collect();
        let get = |measure| {
            let name = EvalMetric::new(subject, measure).to_string();
            of_round.iter().copied().find(|e| e.metric == name)
        };
        let Some(direct) = get(EvalMeasure::Direct) else {
            continue;
        };
        let steps: Vec<Option<&Evaluation>> = (1..=refine_steps)
            .map(|k| get(EvalMeasure::Refined(k)))
            .collect();
        let direct_answers = eval_answers(direct);
        let mut chain = vec![direct_answers.clone()];
        chain.extend(steps.iter().map(|e| e.and_then(eval_answers)));
        let refine_steps = chain
            .windows(2)
            .map_while(|w| compare(w[0].as_ref()?, w[1].as_ref()?))
            .collect();
        // refine@K, when every step up to K was evaluated.
        let refined_answers = chain.last().filter(|_| chain.len() > 1).cloned().flatten();
        let vs =
            |other: &Option<Vec<EvalAnswer>>| compare(other.as_ref()?, direct_answers.as_ref()?);
        let vs_refined =
            |other: &Option<Vec<EvalAnswer>>| compare(other.as_ref()?, refined_answers.as_ref()?);
        let win_rate = get(EvalMeasure::WinRateVsPrevious).and_then(|e| {
            Some(WinRateCell {
                rate: e.value,
                details: serde_json::from_value(e.details.clone()).ok()?,
            })
        });
        rows.push(ScoreRow {
            label: index.map_or("base".into(), |i| format!("round {i}")),
            round: index,
            n: direct.n as usize,
            direct: direct.value,
            refined: steps.iter().map_while(|e| e.map(|e| e.value)).collect(),
            sampled: get(EvalMeasure::Sampled).map(|e| e.value),
            vs_base: index.and_then(|_| vs(&base_direct)),
            vs_previous: index.and_then(|_| vs(&previous_direct)),
            refined_vs_base: index.and_then(|_| vs_refined(&base_refined)),
            refined_vs_previous: index.and_then(|_| vs_refined(&previous_refined)),
            refine_steps,
            win_rate,
        });
        if index.is_none() {
            base_direct = direct_answers.clone();
            base_refined = refined_answers.clone();
        }
        previous_direct = direct_answers;
        previous_refined = refined_answers;
    }
    Ok(rows)
}

/// `after` against `before` on the problems both answered.
fn compare(before: &[EvalAnswer], after: &[EvalAnswer]) -> Option<PairedComparison> {
    let by_prompt: HashMap<i64, f64> = before.iter().map(|a| (a.prompt_id, a.score)).collect();
    let (b, a): (Vec<f64>, Vec<f64>) = after
        .iter()
        .filter_map(|a| Some((*by_prompt.get(&a.prompt_id)?, a.score)))
        .unzip();
    PairedComparison::of(&b, &a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_store::{NewEvaluation, NewModel, NewPrompt, NewRun};

    /// Stores one evaluation of `round` with per-problem 0/1 answers.
    fn record(
        store: &Store,
        round: evolve_store::RoundId,
        metric: EvalMetric,
        right: &[bool],
        prompts: &[i64],
    ) {
        let answers: Vec<EvalAnswer> = right
            .iter()
            .zip(prompts)
            .map(|(&r, &p)| EvalAnswer {
                prompt_id: p,
                text: String::new(),
                score: f64::from(u8::from(r)),
            })
            .collect();
        store
            .add_evaluation(&NewEvaluation {
                round_id: Some(round),
                adapter_id: None,
                model_id: evolve_store::ModelId(1),
                split: "eval".into(),
                metric: metric.to_string(),
                value: right.iter().filter(|&&r| r).count() as f64 / right.len() as f64,
                n: right.len() as i64,
                details: serde_json::json!({ "answers": answers }),
            })
            .unwrap();
    }

    #[test]
    fn rows_compare_each_round_with_the_base_and_the_previous_problem_by_problem() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let model = store
            .add_model(&NewModel {
                path: "/m.gguf".into(),
                sha256: "00".into(),
                file_size: 1,
                architecture: None,
                name: None,
                parameter_count: None,
                context_length: None,
                quantization: None,
                metadata: serde_json::json!({}),
            })
            .unwrap();
        let dataset = store.create_dataset("d", None, "jsonl").unwrap();
        let prompts: Vec<NewPrompt> = (0..10)
            .map(|i| NewPrompt {
                idx: i,
                split: "eval".into(),
                prompt: format!("q{i}"),
                reference: None,
                metadata: serde_json::json!({}),
            })
            .collect();
        store.add_prompts(dataset, &prompts).unwrap();
        let ids: Vec<i64> = store
            .list_prompts(dataset, None)
            .unwrap()
            .iter()
            .map(|p| p.id.0)
            .collect();
        let run = store
            .create_run(&NewRun {
                name: "r".into(),
                model_id: model,
                dataset_id: dataset,
                config: serde_json::json!({}),
            })
            .unwrap();
        let r0 = store.create_round(run, 0).unwrap();
        let r1 = store.create_round(run, 1).unwrap();
        use EvalMeasure::*;
        use EvalSubject::*;
        let m = EvalMetric::new;
        // Base: right on the first 4; its refinement fixes problem 4 and breaks problem 0.
        let base = [
            true, true, true, true, false, false, false, false, false, false,
        ];
        let base_refined = [
            false, true, true, true, true, false, false, false, false, false,
        ];
        record(&store, r0, m(Base, Direct), &base, &ids);
        record(&store, r0, m(Base, Refined(1)), &base_refined, &ids);
        // Round 0: also right on 4..7, wrong on 3.
        let t0 = [
            true, true, true, false, true, true, true, false, false, false,
        ];
        record(&store, r0, m(Trained, Direct), &t0, &ids);
        record(&store, r0, m(Trained, Refined(1)), &t0, &ids);
        record(&store, r0, m(Trained, Sampled), &base, &ids);
        // Round 1: right on all but the last.
        let mut t1 = [true; 10];
        t1[9] = false;
        record(&store, r1, m(Trained, Direct), &t1, &ids);

        let rows = scoreboard(&store, run, 1).unwrap();
        let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["base", "round 0", "round 1"]);
        let (b, a, c) = (&rows[0], &rows[1], &rows[2]);
        assert_eq!((b.direct, b.refined.clone(), b.n), (0.4, vec![0.4], 10));
        assert!(b.vs_base.is_none() && b.vs_previous.is_none());
        let step = &b.refine_steps[0];
        assert_eq!(
            (step.wins, step.losses),
            (1, 1),
            "fixed problem 4, broke problem 0"
        );
        let vs = a.vs_base.as_ref().unwrap();
        assert_eq!((vs.wins, vs.losses), (3, 1));
        assert!((vs.diff - 0.2).abs() < 1e-12);
        assert_eq!(a.vs_previous, a.vs_base, "round 0's previous is the base");
        assert_eq!(a.sampled, Some(0.4));
        assert_eq!(a.refine_steps[0].wins + a.refine_steps[0].losses, 0);
        // Round 0's refine@1 (= t0) against the base's refine@1: right on 0, 5, 6; wrong on 3.
        let refined = a.refined_vs_base.as_ref().unwrap();
        assert_eq!((refined.wins, refined.losses), (3, 1));
        assert_eq!(a.refined_vs_previous, a.refined_vs_base);
        assert!(b.refined_vs_base.is_none() && b.refined_vs_previous.is_none());
        let prev = c.vs_previous.as_ref().unwrap();
        assert_eq!((prev.wins, prev.losses), (3, 0), "problems 3, 7 and 8");
        assert_eq!(c.vs_base.as_ref().unwrap().wins, 5);
        assert!(
            c.refined.is_empty() && c.refine_steps.is_empty(),
            "not evaluated"
        );
        assert!(c.refined_vs_base.is_none() && c.refined_vs_previous.is_none());
    }
}
