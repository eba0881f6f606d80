//! A model on a task before any training: greedy accuracy (pass@1), the chance that one of `k`
//! samples is right (pass@k), what one untrained refinement step does, and whether a round
//! would find preference pairs at all. `evolve tasks measure` tables it per task; `run start
//! --dry-run` and the run wizard show its answers with the scorer's verdict before a run starts.

use crate::pairs::{Candidate, PairKinds, PairRules, PairStrategy, select_pairs};
use evolve_core::{
    ChainStart, GenerateError, Generator, RefinementTemplate, SamplerConfig, ScoreError,
    ScoreInput, Scorer,
};
use serde::Serialize;

/// What to measure.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Answers sampled per prompt (the `k` of pass@k; 0 = none).
    pub samples: usize,
    pub sampler: SamplerConfig,
    /// Refinement steps after each sampled answer (as a round collects them).
    pub sample_refine_steps: usize,
    /// The greedy answer's decoding (`None`: no greedy answers, no pass@1 or refine@k).
    pub greedy: Option<SamplerConfig>,
    /// Greedy refinement steps after the greedy answer (refine@k).
    pub refine_steps: usize,
    pub template: RefinementTemplate,
    pub pair_strategy: PairStrategy,
}

/// One answer and the scorer's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ProbeAnswer {
    pub text: String,
    pub score: f64,
    /// The scorer's evidence (e.g. which number it read and how).
    #[ts(type = "unknown")]
    pub details: serde_json::Value,
    /// The model ended the answer itself (not cut at the token limit).
    pub stopped: bool,
}

/// One prompt's answers.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ProbeRow {
    pub question: String,
    pub reference: Option<String>,
    /// The greedy answer, then its greedy refinements.
    pub greedy: Vec<ProbeAnswer>,
    /// Per sampled chain: the answer, then its refinements.
    pub samples: Vec<Vec<ProbeAnswer>>,
    /// Preference pairs a round would take from the sampled chains.
    pub pairs: usize,
}

/// The rates over all prompts (scores ≥ 0.5 count as right).
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ProbeSummary {
    pub prompts: usize,
    /// Greedy direct answers right.
    pub pass1: Option<f64>,
    /// Greedy refinement step k right (index k-1).
    pub refine: Vec<f64>,
    /// Problems right after refinement step 1 that were wrong before, and the reverse.
    pub wrong_to_right: usize,
    pub right_to_wrong: usize,
    /// Sampled direct answers right.
    pub sampled: Option<f64>,
    /// Prompts with at least one sampled direct answer right.
    pub pass_k: Option<f64>,
    /// Prompts from which a round would take at least one pair.
    pub with_pairs: usize,
    /// Sampled answers cut at the token limit.
    pub cut: usize,
    /// When no prompt would make a pair: why, as a round would say it.
    pub no_pairs: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Score(#[from] ScoreError),
}

/// Answers `prompts` (question, gold answer) as `settings` say and scores every answer.
pub fn probe(
    generator: &mut dyn Generator,
    scorer: &mut dyn Scorer,
    prompts: &[(String, Option<String>)],
    settings: &ProbeSettings,
) -> Result<(Vec<ProbeRow>, ProbeSummary), ProbeError> {
    let greedy_starts: Vec<ChainStart> = prompts
        .iter()
        .map(|(q, _)| ChainStart {
            question: q,
            first_answer: None,
            first_seed: None,
        })
        .collect();
    let greedy = match &settings.greedy {
        Some(sampler) => evolve_core::refine_chains(
            generator,
            &greedy_starts,
            settings.refine_steps,
            &settings.template,
            sampler,
            &mut |_, _| true,
        )?,
        None => vec![Vec::new(); prompts.len()],
    };
    let sampled_starts: Vec<ChainStart> = greedy_starts
        .iter()
        .flat_map(|s| std::iter::repeat_n(*s, settings.samples))
        .collect();
    let sampled = if sampled_starts.is_empty() {
        Vec::new()
    } else {
        evolve_core::refine_chains(
            generator,
            &sampled_starts,
            settings.sample_refine_steps,
            &settings.template,
            &settings.sampler,
            &mut |_, _| true,
        )?
    };
    let mut rows = Vec::with_capacity(prompts.len());
    let mut all_candidates = Vec::with_capacity(prompts.len());
    let mut unread = crate::pairs::Unread::default();
    for (i, (question, reference)) in prompts.iter().enumerate() {
        let mut score_chain = |chain: &[evolve_core::RefinementStep]| {
            chain
                .iter()
                .map(|s| {
                    let v = scorer.score(&ScoreInput {
                        prompt: question,
                        reference: reference.as_deref(),
                        answer: &s.completion.text,
                    })?;
                    Ok(ProbeAnswer {
                        text: s.completion.text.clone(),
                        score: v.value,
                        details: v.details,
                        stopped: s.completion.stopped,
                    })
                })
                .collect::<Result<Vec<_>, ScoreError>>()
        };
        let greedy = score_chain(&greedy[i])?;
        let samples = sampled[i * settings.samples..(i + 1) * settings.samples]
            .iter()
            .map(|c| score_chain(c))
            .collect::<Result<Vec<_>, _>>()?;
        let candidates: Vec<Candidate> = samples
            .iter()
            .enumerate()
            .flat_map(|(chain, steps)| {
                steps.iter().enumerate().map(move |(step, a)| Candidate {
                    id: (chain * 1000 + step) as i64,
                    chain,
                    step,
                    text: a.text.clone(),
                    score: a.score,
                    finished: a.stopped,
                })
            })
            .collect();
        let direct_only = PairKinds {
            direct: true,
            refine: false,
            keep: false,
        };
        let pairs = select_pairs(
            &settings.pair_strategy,
            direct_only,
            PairRules::default(),
            &candidates,
        )
        .len();
        for a in samples.iter().flatten() {
            unread.see(&a.details, &a.text);
        }
        all_candidates.push(candidates);
        rows.push(ProbeRow {
            question: question.clone(),
            reference: reference.clone(),
            greedy,
            samples,
            pairs,
        });
    }
    let mut summary = summarise(&rows, settings);
    if settings.samples > 0 && summary.with_pairs == 0 {
        summary.no_pairs = Some(crate::pairs::why_no_pairs(
            &settings.pair_strategy,
            PairRules::default(),
            &all_candidates,
            &unread,
        ));
    }
    Ok((rows, summary))
}

fn right(a: &ProbeAnswer) -> bool {
    a.score >= 0.5
}

fn summarise(rows: &[ProbeRow], settings: &ProbeSettings) -> ProbeSummary {
    let n = rows.len().max(1) as f64;
    let rate = |f: &dyn Fn(&ProbeRow) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / n;
    let refine = (1..=settings.refine_steps)
        .map(|k| rate(&|r| r.greedy.get(k).is_some_and(right)))
        .collect();
    let flips = |from: bool| {
        rows.iter()
            .filter(|r| match (r.greedy.first(), r.greedy.get(1)) {
                (Some(a), Some(b)) => right(a) != from && right(b) == from,
                _ => false,
            })
            .count()
    };
    let direct_samples: Vec<&ProbeAnswer> = rows
        .iter()
        .flat_map(|r| r.samples.iter().filter_map(|c| c.first()))
        .collect();
    let has_samples = settings.samples > 0;
    ProbeSummary {
        prompts: rows.len(),
        pass1: settings
            .greedy
            .is_some()
            .then(|| rate(&|r| r.greedy.first().is_some_and(right))),
        refine,
        wrong_to_right: flips(true),
        right_to_wrong: flips(false),
        sampled: has_samples.then(|| {
            direct_samples.iter().filter(|a| right(a)).count() as f64
                / direct_samples.len().max(1) as f64
        }),
        pass_k: has_samples
            .then(|| rate(&|r| r.samples.iter().any(|c| c.first().is_some_and(right)))),
        with_pairs: rows.iter().filter(|r| r.pairs > 0).count(),
        cut: direct_samples.iter().filter(|a| !a.stopped).count(),
        no_pairs: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_core::{ChatMessage, Completion, GenerationEvent, GenerationRequest};

    /// Answers "1" to the first sample of a prompt and "2" to the rest; refinements answer "2".
    struct Scripted;

    impl Generator for Scripted {
        fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
            Ok(format!("{}|{}", messages.len(), messages[0].content))
        }
        fn generate_batch(
            &mut self,
            requests: &[GenerationRequest],
            _: &mut dyn FnMut(GenerationEvent) -> bool,
        ) -> Result<Vec<Vec<Completion>>, GenerateError> {
            Ok(requests
                .iter()
                .map(|r| {
                    let refining = !r.prompt.starts_with("1|");
                    let text = if refining || (r.sampler.seed % 2 == 1) {
                        "the answer is 2"
                    } else {
                        "1"
                    };
                    (0..r.n)
                        .map(|_| Completion {
                            text: text.into(),
                            tokens: vec![],
                            prompt_tokens: 0,
                            stopped: true,
                            duration_ms: 0,
                            seed: r.sampler.seed,
                        })
                        .collect()
                })
                .collect())
        }
    }

    #[test]
    fn rates_count_right_answers_pairs_and_refinement_flips() {
        let mut scorer = evolve_judge::verify::NumericAnyAnswer;
        // The second prompt's gold answer is never given.
        let prompts = vec![
            ("q1".to_string(), Some("1".to_string())),
            ("q2".to_string(), Some("3".to_string())),
        ];
        let settings = ProbeSettings {
            samples: 2,
            sampler: SamplerConfig {
                seed: 0,
                ..SamplerConfig::default()
            },
            sample_refine_steps: 0,
            greedy: Some(SamplerConfig::greedy(8)),
            refine_steps: 1,
            template: RefinementTemplate::default(),
            pair_strategy: PairStrategy::default(),
        };
        let (rows, s) = probe(&mut Scripted, &mut scorer, &prompts, &settings).unwrap();
        assert_eq!(rows.len(), 2);
        // Greedy chain c, step k has seed c*2+k: both direct answers are "1" (the first is
        // right), both refinements "2": one right → wrong.
        assert_eq!(s.pass1, Some(0.5));
        assert_eq!(s.refine, vec![0.0]);
        assert_eq!((s.wrong_to_right, s.right_to_wrong), (0, 1));
        // Sampled chains have one step each, seeds 0,1 | 2,3: "1", "2" for each prompt; only
        // the first prompt has a right one, and only it makes a pair.
        assert_eq!(s.pass_k, Some(0.5));
        assert_eq!(s.sampled, Some(0.25));
        assert_eq!(s.with_pairs, 1);
        assert_eq!((rows[0].pairs, rows[1].pairs), (1, 0));
        assert_eq!(s.no_pairs, None);
        // With the first prompt's gold answer changed, nothing is right: no pairs, and why.
        let prompts = vec![("q1".to_string(), Some("5".to_string()))];
        let (_, s) = probe(&mut Scripted, &mut scorer, &prompts, &settings).unwrap();
        assert_eq!(s.with_pairs, 0);
        let why = s.no_pairs.unwrap();
        assert!(
            why.starts_with("all 2 answers scored 0 (none right)"),
            "{why}"
        );
        assert_eq!(rows[0].greedy[0].details["extracted"], "1");
    }
}
