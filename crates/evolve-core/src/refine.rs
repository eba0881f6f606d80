//! Self-refinement: the model rewrites its own previous answer, step by step.
//!
//! EVOLVE chains `x → y1`, then `(x, y1, z) → y2`, `(x, y2, z) → y3`, … with a fixed refinement
//! prompt `z` and no separate critique turn. The paper's exact `z` is not published, so
//! [`RefinementTemplate::default`] is our own wording; it is configurable and stored with the
//! data it produced.

use crate::SamplerConfig;
use crate::generate::{
    ChatMessage, Completion, FollowUp, GenerateError, GenerationEvent, GenerationRequest, Generator,
};
use serde::{Deserialize, Serialize};

/// Our default `z` (not the paper's text, which is unknown).
pub const DEFAULT_REFINE_INSTRUCTION: &str = "Review your previous answer to my question. \
Correct any mistakes, fill in anything missing and keep what is already right. \
Reply with the complete improved answer only.";

/// How a refinement step is put to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum RefinementTemplate {
    /// user: question, assistant: previous answer, user: `instruction` (the default), so the
    /// model sees its answer as its own turn, like the chain it is trained on.
    MultiTurn {
        system: Option<String>,
        instruction: String,
    },
    /// One user turn; `{question}` and `{previous_answer}` in `template` are replaced. For
    /// models whose template handles multi-turn chats badly.
    SingleTurn {
        system: Option<String>,
        template: String,
    },
}

impl Default for RefinementTemplate {
    fn default() -> Self {
        RefinementTemplate::MultiTurn {
            system: None,
            instruction: DEFAULT_REFINE_INSTRUCTION.to_string(),
        }
    }
}

impl RefinementTemplate {
    /// The conversation that asks for a better answer than `previous_answer`.
    pub fn render_messages(&self, question: &str, previous_answer: &str) -> Vec<ChatMessage> {
        let (system, turns) = match self {
            RefinementTemplate::MultiTurn {
                system,
                instruction,
            } => (
                system,
                vec![
                    ChatMessage::user(question),
                    ChatMessage::assistant(previous_answer),
                    ChatMessage::user(instruction.as_str()),
                ],
            ),
            RefinementTemplate::SingleTurn { system, template } => (
                system,
                vec![ChatMessage::user(
                    template
                        .replace("{question}", question)
                        .replace("{previous_answer}", previous_answer),
                )],
            ),
        };
        system
            .iter()
            .map(|s| ChatMessage::system(s.as_str()))
            .chain(turns)
            .collect()
    }

    /// The conversation of the first, direct answer (same system prompt as the refinements).
    pub fn render_question(&self, question: &str) -> Vec<ChatMessage> {
        let system = match self {
            RefinementTemplate::MultiTurn { system, .. }
            | RefinementTemplate::SingleTurn { system, .. } => system,
        };
        system
            .iter()
            .map(|s| ChatMessage::system(s.as_str()))
            .chain([ChatMessage::user(question)])
            .collect()
    }
}

/// One answer of a chain: step 0 is the direct answer, step `k` refines step `k - 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefinementStep {
    pub step_index: usize,
    pub parent_index: Option<usize>,
    /// The formatted prompt the answer was generated from.
    pub prompt: String,
    pub completion: Completion,
}

/// Where a chain starts: its question and, optionally, an answer to refine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStart<'a> {
    pub question: &'a str,
    pub first_answer: Option<&'a str>,
    /// Seed of the direct answer when it is not the chain's own (collection draws each
    /// (prompt, sample) with its own seed, shared by every method).
    pub first_seed: Option<u32>,
}

/// Generates the direct answer (unless `first_answer` is given) and `steps` refinements.
///
/// Step `k` samples with seed `sampler.seed + k`, so a chain is reproducible. A given
/// `first_answer` becomes step 0 as a completion with no tokens (it was not generated here).
/// Events carry `request = step_index`, `sample = 0`. If `events` returns `false`, the chain ends
/// with the step that was cancelled (its partial answer included).
pub fn refine_chain(
    generator: &mut dyn Generator,
    question: &str,
    first_answer: Option<&str>,
    steps: usize,
    template: &RefinementTemplate,
    sampler: &SamplerConfig,
    events: &mut dyn FnMut(GenerationEvent) -> bool,
) -> Result<Vec<RefinementStep>, GenerateError> {
    let start = ChainStart {
        question,
        first_answer,
        first_seed: None,
    };
    let mut chains = refine_chains(
        generator,
        &[start],
        steps,
        template,
        sampler,
        &mut |_, e| events(e),
    )?;
    Ok(chains.pop().unwrap_or_default())
}

/// Runs many chains through [`Generator::generate_chains`]: each chain's direct answer (unless
/// given) and `steps` refinements, the engine free to continue a chain from the cache its
/// previous answer left (a refinement restates the conversation so far).
///
/// Chain `c` samples step `k` with seed `sampler.seed + c * (steps + 1) + k` (step 0 with its
/// `first_seed` if it has one), so chain 0 is exactly [`refine_chain`] and a chain's answers do
/// not depend on what runs beside it. Events come as `(chain, event)` with the event's
/// `request` set to the step index and `sample` to 0. If `events` returns `false`, every chain
/// ends with the step that was running (its partial answer included, where it had started).
pub fn refine_chains(
    generator: &mut dyn Generator,
    starts: &[ChainStart<'_>],
    steps: usize,
    template: &RefinementTemplate,
    sampler: &SamplerConfig,
    events: &mut dyn FnMut(usize, GenerationEvent) -> bool,
) -> Result<Vec<Vec<RefinementStep>>, GenerateError> {
    let seeded = |chain: usize, step: usize| SamplerConfig {
        seed: sampler
            .seed
            .wrapping_add((chain * (steps + 1) + step) as u32),
        ..sampler.clone()
    };
    // The conversation that asks for step `step` of chain `c`, after `previous`.
    let messages = |c: usize, step: usize, previous: Option<&str>| match previous {
        Some(answer) if step > 0 => template.render_messages(starts[c].question, answer),
        _ => template.render_question(starts[c].question),
    };
    let mut chains: Vec<Vec<RefinementStep>> = Vec::with_capacity(starts.len());
    // Chains with something to generate, and the request of their first generated step.
    let mut owners = Vec::new();
    let mut first = Vec::new();
    for (c, start) in starts.iter().enumerate() {
        let prompt = generator.format_chat(&template.render_question(start.question))?;
        let given = start.first_answer.map(|answer| RefinementStep {
            step_index: 0,
            parent_index: None,
            prompt: prompt.clone(),
            completion: Completion {
                text: answer.to_string(),
                tokens: Vec::new(),
                prompt_tokens: 0,
                stopped: true,
                duration_ms: 0,
                seed: seeded(c, 0).seed,
            },
        });
        let step = usize::from(given.is_some());
        if step <= steps {
            let (prompt, sampler) = match start.first_answer {
                Some(answer) => (
                    generator.format_chat(&messages(c, step, Some(answer)))?,
                    seeded(c, step),
                ),
                None => {
                    let mut sampler = seeded(c, 0);
                    sampler.seed = start.first_seed.unwrap_or(sampler.seed);
                    (prompt, sampler)
                }
            };
            owners.push(c);
            first.push(GenerationRequest::new(prompt, sampler, 1));
        }
        chains.push(given.into_iter().collect());
    }
    // Step of each generated chain's first answer (1 when step 0 was given).
    let offset: Vec<usize> = owners.iter().map(|&c| chains[c].len()).collect();
    let generated = generator
        .generate_chains(
            &first,
            &mut |i, done| {
                let step = offset[i] + done.len();
                (step <= steps).then(|| FollowUp {
                    messages: messages(owners[i], step, done.last().map(|d| d.text.as_str())),
                    sampler: seeded(owners[i], step),
                })
            },
            &mut |event| {
                let (i, sample) = event.ids();
                events(owners[i], event.retagged(offset[i] + sample, 0))
            },
        )
        // A refused request is reported by its chain's index, which is what callers know.
        .map_err(|e| e.for_owners(&owners))?;
    for (i, completions) in generated.into_iter().enumerate() {
        let c = owners[i];
        for completion in completions {
            let step = chains[c].len();
            let previous = chains[c].last().map(|s| s.completion.text.as_str());
            let prompt = generator.format_chat(&messages(c, step, previous))?;
            chains[c].push(RefinementStep {
                step_index: step,
                parent_index: step.checked_sub(1),
                prompt,
                completion,
            });
        }
    }
    Ok(chains)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers with a counter and echoes the last user turn, so tests can see what it was shown.
    struct Scripted {
        calls: usize,
    }

    impl Generator for Scripted {
        fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
            Ok(messages
                .iter()
                .map(|m| format!("[{}]{}", m.role.as_str(), m.content))
                .collect())
        }
        fn generate_batch(
            &mut self,
            requests: &[GenerationRequest],
            events: &mut dyn FnMut(GenerationEvent) -> bool,
        ) -> Result<Vec<Vec<Completion>>, GenerateError> {
            self.calls += 1;
            let mut out = Vec::new();
            for (r, request) in requests.iter().enumerate() {
                let text = format!("answer{}.{r}", self.calls);
                let go_on = events(GenerationEvent::Token {
                    request: r,
                    sample: 0,
                    text: text.clone(),
                });
                out.push(vec![Completion {
                    text,
                    tokens: vec![1],
                    prompt_tokens: request.prompt.len(),
                    stopped: go_on,
                    duration_ms: 0,
                    seed: request.sample_seed(0),
                }]);
                if !go_on {
                    break;
                }
            }
            Ok(out)
        }
    }

    #[test]
    fn multi_turn_default_puts_the_previous_answer_in_the_assistant_turn() {
        let m = RefinementTemplate::default().render_messages("Q?", "A.");
        assert_eq!(
            m,
            [
                ChatMessage::user("Q?"),
                ChatMessage::assistant("A."),
                ChatMessage::user(DEFAULT_REFINE_INSTRUCTION)
            ]
        );
    }

    #[test]
    fn single_turn_template_fills_both_placeholders_after_the_system_turn() {
        let t = RefinementTemplate::SingleTurn {
            system: Some("be brief".into()),
            template: "Q: {question}\nA: {previous_answer}\nImprove it.".into(),
        };
        let m = t.render_messages("2+2?", "5");
        assert_eq!(
            m,
            [
                ChatMessage::system("be brief"),
                ChatMessage::user("Q: 2+2?\nA: 5\nImprove it.")
            ]
        );
        assert_eq!(
            t.render_question("2+2?"),
            [ChatMessage::system("be brief"), ChatMessage::user("2+2?")]
        );
    }

    #[test]
    fn chain_links_parents_feeds_previous_answers_and_seeds_steps() {
        let mut g = Scripted { calls: 0 };
        let mut tokens = Vec::new();
        let chain = refine_chain(
            &mut g,
            "Q?",
            None,
            3,
            &RefinementTemplate::default(),
            &SamplerConfig {
                seed: 10,
                ..Default::default()
            },
            &mut |e| {
                if let GenerationEvent::Token { request, .. } = e {
                    tokens.push(request);
                }
                true
            },
        )
        .unwrap();
        assert_eq!(chain.len(), 4);
        assert_eq!(tokens, [0, 1, 2, 3], "events are tagged with the step");
        for (i, step) in chain.iter().enumerate() {
            assert_eq!(step.step_index, i);
            assert_eq!(step.parent_index, i.checked_sub(1));
            assert_eq!(step.completion.seed, 10 + i as u32);
        }
        assert_eq!(chain[0].prompt, "[user]Q?");
        assert!(
            chain[2].prompt.contains("[assistant]answer2"),
            "{}",
            chain[2].prompt
        );
    }

    #[test]
    fn given_first_answer_is_step_zero_and_cancel_ends_the_chain() {
        let mut g = Scripted { calls: 0 };
        let chain = refine_chain(
            &mut g,
            "Q?",
            Some("mine"),
            5,
            &RefinementTemplate::default(),
            &SamplerConfig::default(),
            &mut |_| false,
        )
        .unwrap();
        assert_eq!(g.calls, 1);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].completion.text, "mine");
        assert!(chain[1].prompt.contains("[assistant]mine"));
        assert!(!chain[1].completion.stopped);
    }

    #[test]
    fn chains_advance_together_one_batch_per_step_with_their_own_seeds() {
        let mut g = Scripted { calls: 0 };
        let starts = [
            ChainStart {
                question: "Q1",
                first_answer: None,
                first_seed: None,
            },
            ChainStart {
                question: "Q2",
                first_answer: Some("given"),
                first_seed: None,
            },
            ChainStart {
                question: "Q1",
                first_answer: None,
                first_seed: None,
            },
        ];
        let mut seen = Vec::new();
        let chains = refine_chains(
            &mut g,
            &starts,
            2,
            &RefinementTemplate::default(),
            &SamplerConfig {
                seed: 100,
                ..Default::default()
            },
            &mut |chain, e| {
                if let GenerationEvent::Token { request, .. } = e {
                    seen.push((chain, request));
                }
                true
            },
        )
        .unwrap();
        assert_eq!(g.calls, 3, "one generate_batch call per step");
        seen.sort();
        assert_eq!(
            seen,
            [
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 1),
                (1, 2),
                (2, 0),
                (2, 1),
                (2, 2)
            ]
        );
        for (c, chain) in chains.iter().enumerate() {
            assert_eq!(chain.len(), 3);
            for (k, step) in chain.iter().enumerate() {
                assert_eq!((step.step_index, step.parent_index), (k, k.checked_sub(1)));
                assert_eq!(step.completion.seed, 100 + (c * 3 + k) as u32);
            }
        }
        assert_eq!(chains[1][0].completion.text, "given");
        assert!(chains[1][1].prompt.contains("[user]Q2[assistant]given"));
        // Every chain's next step goes in one call: chain 2 is the third request of each.
        assert!(
            chains[2][1].prompt.contains("[assistant]answer1.2"),
            "{}",
            chains[2][1].prompt
        );
        assert_eq!(chains[2][1].completion.text, "answer2.2");
    }
}
