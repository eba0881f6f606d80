//! Held-out evaluation after each round: greedy direct answers and refinements, one sampled
//! answer per problem, every answer kept with its score (the scoreboard compares rounds problem
//! by problem), and the judged win rate over the previous model.

use super::collect::{TokenProgress, seed_for};
use super::error::name_prompt;
use super::{Orchestrator, Progress, RunError};
use evolve_core::RoundState;
use evolve_core::{
    ChainStart, EvalAnswer, EvalMeasure, EvalMetric, EvalSubject, GenerationRequest, SamplerConfig,
    ScoreInput, WinRate, Winner, refine_chains,
};
use evolve_store::{AdapterId, Evaluation, NewEvaluation, Prompt, Round, RoundId};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Seed of the sampled evaluation: the same for every run and round, so sampled accuracies
/// are paired across them too.
const SAMPLED_EVAL_SEED: u32 = 0x5E7A_1EED;

/// The per-problem answers an evaluation row keeps, if it kept them.
pub fn eval_answers(e: &Evaluation) -> Option<Vec<EvalAnswer>> {
    serde_json::from_value(e.details.get("answers")?.clone()).ok()
}

impl Orchestrator<'_> {
    /// Held-out evaluation of `subject` (the base model, or `adapter`): greedy direct answers
    /// and `refine_steps` greedy refinements, plus one answer sampled at the collection
    /// temperature; each stored as the mean score with every answer in its details. Only what
    /// is missing is done, so a resumed round does not evaluate twice.
    pub(super) fn evaluate(
        &mut self,
        r: usize,
        round: &Round,
        adapter: Option<&(AdapterId, PathBuf)>,
        subject: EvalSubject,
    ) -> Result<(), RunError> {
        let mut eval = self.store.list_prompts(self.run.dataset_id, Some("eval"))?;
        if self.config.eval_prompts > 0 {
            eval.truncate(self.config.eval_prompts);
        }
        if eval.is_empty() {
            return Ok(());
        }
        let existing: Vec<String> = self
            .store
            .evaluations_of_run(self.run.id)?
            .into_iter()
            .filter(|e| e.round_id == Some(round.id))
            .map(|e| e.metric)
            .collect();
        let missing = |m: EvalMetric| !existing.contains(&m.to_string());
        let steps = self.config.refine_steps;
        let sampled = EvalMetric::new(subject, EvalMeasure::Sampled);
        let want_sampled = self.config.eval_sampled && missing(sampled);
        if !missing(EvalMetric::step(subject, steps)) && !want_sampled {
            return Ok(());
        }
        if subject == EvalSubject::Base && self.reuse_base_evaluation(r, round)? {
            return Ok(());
        }
        self.use_adapter(adapter.map(|(_, p)| p.as_path()))?;
        let adapter_id = adapter.map(|(id, _)| *id);
        if missing(EvalMetric::step(subject, steps)) {
            let starts: Vec<ChainStart> = eval
                .iter()
                .map(|p| ChainStart {
                    question: &p.prompt,
                    first_answer: None,
                    first_seed: None,
                })
                .collect();
            // Tokens and finished answers as progress: 500 problems take many minutes.
            let mut tokens = TokenProgress::new(&mut *self.progress).counting(
                r,
                RoundState::Evaluating,
                starts.len() * (steps + 1),
            );
            let chains = refine_chains(
                self.engines.generator,
                &starts,
                steps,
                &self.config.template,
                &self.config.eval_sampler,
                &mut |_, event| tokens.on_event(&event),
            )
            .map_err(|e| name_prompt(e.into(), |r| &eval[r]))?;
            tokens.flush();
            // A pause mid-evaluation stores nothing: the resumed round evaluates again.
            if tokens.paused {
                return Err(RunError::Paused);
            }
            for k in 0..=steps {
                let texts: Vec<&str> = chains
                    .iter()
                    .map(|c| c.get(k).map_or("", |s| s.completion.text.as_str()))
                    .collect();
                let answers = self.score_answers(&eval, &texts)?;
                self.store_evaluation(r, round, adapter_id, EvalMetric::step(subject, k), answers)?;
            }
        }
        if want_sampled {
            let mut requests = Vec::with_capacity(eval.len());
            for p in &eval {
                let prompt = self
                    .engines
                    .generator
                    .format_chat(&self.config.template.render_question(&p.prompt))?;
                let sampler = SamplerConfig {
                    seed: seed_for(SAMPLED_EVAL_SEED, 0, p.id, 0),
                    max_tokens: self.config.eval_sampler.max_tokens,
                    ..self.config.sampler.clone()
                };
                requests.push(GenerationRequest::new(prompt, sampler, 1));
            }
            let results = self
                .generate(&requests)
                .map_err(|e| name_prompt(e, |r| &eval[r]))?;
            let texts: Vec<&str> = results
                .iter()
                .map(|s| s.first().map_or("", |c| c.text.as_str()))
                .collect();
            let answers = self.score_answers(&eval, &texts)?;
            self.store_evaluation(r, round, adapter_id, sampled, answers)?;
        }
        Ok(())
    }

    /// The untrained model's evaluation copied from another run that evaluated it on the same
    /// held-out prompts in the same way (same model, dataset, number of prompts, decoding,
    /// refinement prompt and steps, scorer): comparisons of methods from one base (EVOLVE
    /// against its baselines) evaluate the base once. Returns whether it copied.
    fn reuse_base_evaluation(&mut self, r: usize, round: &Round) -> Result<bool, RunError> {
        let c = &self.config;
        let key = |c: &super::RunConfig| {
            serde_json::json!([
                c.eval_prompts,
                c.eval_sampler,
                c.template,
                c.refine_steps,
                c.scorer,
                c.eval_sampled.then_some(&c.sampler),
            ])
        };
        let wanted = key(c);
        let mut needed: Vec<EvalMetric> = (0..=c.refine_steps)
            .map(|k| EvalMetric::step(EvalSubject::Base, k))
            .collect();
        if c.eval_sampled {
            needed.push(EvalMetric::new(EvalSubject::Base, EvalMeasure::Sampled));
        }
        for other in self.store.list_runs()? {
            if other.id == self.run.id
                || other.model_id != self.run.model_id
                || other.dataset_id != self.run.dataset_id
            {
                continue;
            }
            let Ok(other_config) = serde_json::from_value::<super::RunConfig>(other.config.clone())
            else {
                continue;
            };
            if key(&other_config) != wanted {
                continue;
            }
            let evals = self.store.evaluations_of_run(other.id)?;
            let found: Vec<&Evaluation> = needed
                .iter()
                .filter_map(|m| {
                    let name = m.to_string();
                    evals
                        .iter()
                        .find(|e| e.adapter_id.is_none() && e.metric == name)
                })
                .collect();
            if found.len() != needed.len() {
                continue;
            }
            for (e, metric) in found.into_iter().zip(needed.iter().copied()) {
                let mut details = e.details.clone();
                details["copied_from_run"] = serde_json::json!(other.id.0);
                self.store.add_evaluation(&NewEvaluation {
                    round_id: Some(round.id),
                    adapter_id: None,
                    model_id: self.run.model_id,
                    split: e.split.clone(),
                    metric: e.metric.clone(),
                    value: e.value,
                    n: e.n,
                    details,
                })?;
                self.report(Progress::Evaluated {
                    round: r,
                    metric,
                    value: e.value,
                })?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn score_answers(
        &mut self,
        eval: &[Prompt],
        texts: &[&str],
    ) -> Result<Vec<EvalAnswer>, RunError> {
        eval.iter()
            .zip(texts)
            .map(|(p, text)| {
                let input = ScoreInput {
                    prompt: &p.prompt,
                    reference: p.reference.as_deref(),
                    answer: text,
                };
                let v = self
                    .engines
                    .scorer
                    .score(&input)
                    .map_err(|source| RunError::Score {
                        generation: -1,
                        source,
                    })?;
                Ok(EvalAnswer {
                    prompt_id: p.id.0,
                    text: text.to_string(),
                    score: v.value,
                })
            })
            .collect()
    }

    fn store_evaluation(
        &mut self,
        r: usize,
        round: &Round,
        adapter_id: Option<AdapterId>,
        metric: EvalMetric,
        answers: Vec<EvalAnswer>,
    ) -> Result<(), RunError> {
        let n = answers.len();
        let value = answers.iter().map(|a| a.score).sum::<f64>() / n.max(1) as f64;
        self.store.add_evaluation(&NewEvaluation {
            round_id: Some(round.id),
            adapter_id,
            model_id: self.run.model_id,
            split: "eval".into(),
            metric: metric.to_string(),
            value,
            n: n as i64,
            details: serde_json::json!({
                "scorer": self.engines.scorer.name(),
                "answers": answers,
            }),
        })?;
        self.report(Progress::Evaluated {
            round: r,
            metric,
            value,
        })
    }

    /// Judged win rate of round `r`'s direct held-out answers over the previous model's (round
    /// `r - 1`'s adapter; for round 0 the untrained model): the scorer's own pairwise verdict
    /// when it has one (an LLM judge, both orders), else the higher score wins. Stored as
    /// [`EvalMeasure::WinRateVsPrevious`] with the wins, ties and losses.
    pub(super) fn win_rate_vs_previous(&mut self, r: usize, round: &Round) -> Result<(), RunError> {
        let evals = self.store.evaluations_of_run(self.run.id)?;
        let stored = |round_id: RoundId, metric: EvalMetric| {
            let name = metric.to_string();
            evals
                .iter()
                .find(|e| e.round_id == Some(round_id) && e.metric == name)
        };
        let win_rate = EvalMetric::new(EvalSubject::Trained, EvalMeasure::WinRateVsPrevious);
        if stored(round.id, win_rate).is_some() {
            return Ok(());
        }
        let (previous_round, previous_subject, previous_label) = if r == 0 {
            (round.id, EvalSubject::Base, "base".to_string())
        } else {
            let rounds = self.store.rounds_of_run(self.run.id)?;
            let Some(prev) = rounds.iter().find(|x| x.round_index == r as i64 - 1) else {
                return Ok(());
            };
            (prev.id, EvalSubject::Trained, format!("round {}", r - 1))
        };
        let direct = |subject| EvalMetric::new(subject, EvalMeasure::Direct);
        let answers_of = |round_id, subject| -> Option<Vec<EvalAnswer>> {
            eval_answers(stored(round_id, direct(subject))?)
        };
        // Evaluations stored before answers were kept have nothing to compare.
        let (Some(new), Some(old)) = (
            answers_of(round.id, EvalSubject::Trained),
            answers_of(previous_round, previous_subject),
        ) else {
            return Ok(());
        };
        let prompts: std::collections::HashMap<i64, Prompt> = self
            .store
            .list_prompts(self.run.dataset_id, Some("eval"))?
            .into_iter()
            .map(|p| (p.id.0, p))
            .collect();
        let pairs: Vec<(&Prompt, &EvalAnswer, &EvalAnswer)> = new
            .iter()
            .filter_map(|a| {
                let b = old.iter().find(|b| b.prompt_id == a.prompt_id)?;
                Some((prompts.get(&a.prompt_id)?, a, b))
            })
            .collect();
        if pairs.is_empty() {
            return Ok(());
        }
        let (judge, tally) = match self.engines.scorer.pairwise() {
            Some(judge) => {
                let tally = WinRate::tally(pairs.iter().map(|(p, a, b)| {
                    judge
                        .prefer(&p.prompt, p.reference.as_deref(), &a.text, &b.text)
                        .map(|v| v.winner)
                        .map_err(|e| e.to_string())
                }));
                ("pairwise, both orders", tally)
            }
            None => (
                "higher score",
                WinRate::tally(pairs.iter().map(|(_, a, b)| {
                    Ok(match a.score.partial_cmp(&b.score) {
                        Some(std::cmp::Ordering::Greater) => Winner::A,
                        Some(std::cmp::Ordering::Less) => Winner::B,
                        _ => Winner::Tie,
                    })
                })),
            ),
        };
        let Some(value) = tally.rate else {
            // Every pair failed: the judge's failure is the news, not a made-up rate.
            return Err(RunError::Score {
                generation: -1,
                source: evolve_core::ScoreError::Failed {
                    scorer: self.engines.scorer.name().to_string(),
                    reason: format!(
                        "no pair of held-out answers could be judged: {}",
                        tally.first_failure.unwrap_or_default()
                    ),
                },
            });
        };
        self.store.add_evaluation(&NewEvaluation {
            round_id: Some(round.id),
            adapter_id: stored(round.id, direct(EvalSubject::Trained)).and_then(|e| e.adapter_id),
            model_id: self.run.model_id,
            split: "eval".into(),
            metric: win_rate.to_string(),
            value,
            n: (tally.wins + tally.ties + tally.losses) as i64,
            details: serde_json::to_value(WinRateDetails {
                judge: self.engines.scorer.name().to_string(),
                method: judge.to_string(),
                previous: previous_label,
                wins: tally.wins,
                ties: tally.ties,
                losses: tally.losses,
                failed: tally.failed,
                first_failure: tally.first_failure,
            })
            .expect("plain fields serialize"),
        })?;
        self.report(Progress::Evaluated {
            round: r,
            metric: win_rate,
            value,
        })
    }
}

/// The details of a [`EvalMeasure::WinRateVsPrevious`] evaluation (its value is the rate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct WinRateDetails {
    /// The scorer's name, and how it judged: `pairwise, both orders` or `higher score`.
    pub judge: String,
    pub method: String,
    /// What was compared against: `base` or `round N`.
    pub previous: String,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// Pairs the judge could not decide, and the first failure's message.
    pub failed: usize,
    pub first_failure: Option<String>,
}
