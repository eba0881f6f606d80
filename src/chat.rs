//! Chat with visible self-refinement: the model answers, then rewrites its own answer step by
//! step; every step is scored (when a verifier is chosen) and stored as soon as it is done
//! (generations with parent links, messages for the history). The CLI's `evolve chat` and the
//! app's chat both run [`Service::answer_turn`].

use crate::Service;
use crate::service::NotFound;
use anyhow::{Context, Result, bail};
use evolve_core::{
    GenerationEvent, GenerationKind, GenerationRequest, Generator, RefinementTemplate,
    SamplerConfig, ScoreInput, ScorerSpec,
};
use evolve_store::{
    AdapterId, ChatId, ChatRole, GenerationId, MessageId, Model, NewGeneration, NewMessage,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a chat turn reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent<'a> {
    /// Step `step` (0 = the direct answer) starts.
    StepStarted { step: usize },
    /// Text of step `step` that became safe to show.
    Token {
        step: usize,
        text: &'a str,
        tokens_per_second: f64,
    },
    /// Step `step` is stored.
    StepDone { step: usize, stored: &'a StoredStep },
}

/// One stored answer of a turn: the direct answer (step 0) or a refinement of the step before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredStep {
    pub step_index: usize,
    pub text: String,
    pub token_count: usize,
    pub duration_ms: u64,
    /// The verifier's score, when one was chosen and the question has a known answer.
    pub score: Option<f64>,
    pub generation_id: GenerationId,
    pub parent_generation_id: Option<GenerationId>,
    pub message_id: MessageId,
}

impl StoredStep {
    pub fn tokens_per_second(&self) -> f64 {
        self.token_count as f64 / (self.duration_ms as f64 / 1000.0).max(1e-3)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatTurn {
    pub chat_id: ChatId,
    pub steps: Vec<StoredStep>,
    /// True when the callback cancelled the turn; the steps finished before are stored.
    pub cancelled: bool,
}

/// One message of a chat's history.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct HistoryEntry {
    #[ts(type = "\"user\" | \"assistant\"")]
    pub role: &'static str,
    pub text: String,
    pub step: i64,
    /// Where the answer came from: `adapter` or `base` (the model alone).
    #[ts(type = "\"base\" | \"adapter\"")]
    pub variant: &'static str,
    pub score: Option<f64>,
}

/// How one turn is generated.
#[derive(Debug, Clone)]
pub struct TurnSettings<'a> {
    pub refine_steps: usize,
    pub template: &'a RefinementTemplate,
    /// Step `k` samples with `sampler.seed + k`.
    pub sampler: &'a SamplerConfig,
    /// A rule-based verifier scoring each step (chat has no reference answer, so only
    /// questions whose answer is known are scored: the built-in task's `23+45=?`).
    pub scorer: Option<&'a ScorerSpec>,
    /// The adapter the generator has applied, recorded with every answer.
    pub adapter: Option<AdapterId>,
}

/// At most this many refinement steps in a chat turn.
pub const MAX_CHAT_REFINE_STEPS: usize = 5;

/// Refuses chat settings that cannot work, before anything is generated.
pub fn check_chat_settings(refine_steps: usize, scorer: Option<&ScorerSpec>) -> Result<()> {
    if refine_steps > MAX_CHAT_REFINE_STEPS {
        bail!("at most {MAX_CHAT_REFINE_STEPS} refinement steps");
    }
    if let Some(s) = scorer
        && !matches!(s, ScorerSpec::Verifier(_))
    {
        bail!("chat scores with a rule-based verifier only, not '{s}'");
    }
    Ok(())
}

/// The answer of the built-in task's questions (`23+45=?`), the only chat questions with a
/// known answer.
fn arithmetic_reference(question: &str) -> Option<String> {
    let (a, b) = question.trim().strip_suffix("=?")?.split_once('+')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    Some(a.checked_add(b)?.to_string())
}

impl Service {
    /// Starts a chat in the history; its title is the start of the first question.
    pub fn create_chat(&self, first_question: &str, model_path: &Path) -> Result<ChatId> {
        let title: String = first_question.chars().take(60).collect();
        let model = self
            .store()
            .find_model_by_path(&model_path.display().to_string())?;
        Ok(self
            .store()
            .create_chat(title.trim(), model.map(|m| m.id), None)?)
    }

    /// Chat `id`, refused when it does not exist.
    pub fn chat(&self, id: ChatId) -> Result<evolve_store::Chat> {
        match self.store().get_chat(id)? {
            Some(c) => Ok(c),
            None => Err(NotFound(format!("no chat with id {}", id.0)).into()),
        }
    }

    /// Adapter `id` as the one to chat with on `model`: refused when trained on another model.
    pub fn adapter_for_chat(&self, model: &Model, id: AdapterId) -> Result<(AdapterId, PathBuf)> {
        let source = self.adapter_source(id)?;
        let a = &source.adapter;
        if a.base_model_id != model.id {
            bail!(
                "adapter {} was trained on another model (id {}); pick that model",
                id.0,
                a.base_model_id.0
            );
        }
        Ok((a.id, PathBuf::from(&a.path)))
    }

    /// Every chat, oldest first.
    pub fn list_chats(&self) -> Result<Vec<evolve_store::Chat>> {
        Ok(self.store().list_chats()?)
    }

    /// The messages of chat `id` in order, each with where its answer came from.
    pub fn chat_history(&self, id: ChatId) -> Result<Vec<HistoryEntry>> {
        self.chat(id)?;
        let store = self.store();
        let mut rows = Vec::new();
        for m in store.messages_of(id)? {
            let adapter = match m.generation_id {
                Some(g) => store.get_generation(g)?.and_then(|g| g.adapter_id),
                None => None,
            };
            rows.push(HistoryEntry {
                role: if m.role == ChatRole::User {
                    "user"
                } else {
                    "assistant"
                },
                text: m.content,
                step: m.step_index,
                variant: if adapter.is_some() { "adapter" } else { "base" },
                score: m.score,
            });
        }
        Ok(rows)
    }

    /// Stores the user's question in `chat` (once, however many variants answer it).
    pub fn ask(&self, chat: ChatId, question: &str) -> Result<MessageId> {
        Ok(self.store().add_message(&NewMessage {
            chat_id: chat,
            role: ChatRole::User,
            content: question.to_string(),
            generation_id: None,
            refinement_of: None,
            step_index: 0,
            score: None,
        })?)
    }

    /// Answers `question` with `generator` and refines the answer `refine_steps` times,
    /// streaming through `events` (return `false` to cancel within a token) and storing and
    /// scoring every step as it completes.
    pub fn answer_turn(
        &self,
        generator: &mut dyn Generator,
        chat: ChatId,
        question: &str,
        settings: &TurnSettings<'_>,
        events: &mut dyn FnMut(ChatEvent<'_>) -> bool,
    ) -> Result<ChatTurn> {
        check_chat_settings(settings.refine_steps, settings.scorer)?;
        settings.sampler.validate("").map_err(anyhow::Error::msg)?;
        let mut scorer = match settings.scorer {
            Some(ScorerSpec::Verifier(v)) => Some(evolve_judge::verify::verifier(v)),
            _ => None,
        };
        let reference = arithmetic_reference(question);
        let store = self.store();
        let mut steps: Vec<StoredStep> = Vec::new();
        let mut cancelled = false;
        for step in 0..=settings.refine_steps {
            let messages = match steps.last() {
                None => settings.template.render_question(question),
                Some(prev) => settings.template.render_messages(question, &prev.text),
            };
            let prompt = generator.format_chat(&messages)?;
            let sampler = SamplerConfig {
                seed: settings.sampler.seed.wrapping_add(step as u32),
                ..settings.sampler.clone()
            };
            if !events(ChatEvent::StepStarted { step }) {
                cancelled = true;
                break;
            }
            let started = Instant::now();
            let mut tokens = 0usize;
            let mut on_event = |e: GenerationEvent| {
                let GenerationEvent::Token { text, .. } = e else {
                    return true;
                };
                tokens += 1;
                let tokens_per_second = tokens as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let go_on = events(ChatEvent::Token {
                    step,
                    text: &text,
                    tokens_per_second,
                });
                cancelled |= !go_on;
                go_on
            };
            let results = generator
                .generate_batch(
                    &[GenerationRequest::new(prompt.clone(), sampler.clone(), 1)],
                    &mut on_event,
                )
                .context("generation failed")?;
            let Some(c) = results
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next())
            else {
                break; // cancelled before the first token
            };
            // A verifier that cannot score this answer leaves the score empty.
            let score = scorer.as_mut().and_then(|s| {
                s.score(&ScoreInput {
                    prompt: question,
                    reference: reference.as_deref(),
                    answer: &c.text,
                })
                .ok()
                .map(|v| v.value)
            });
            let kind = if step == 0 {
                GenerationKind::Chat
            } else {
                GenerationKind::Refinement
            };
            let parent = steps.last().map(|p| p.generation_id);
            let generation_id = store.insert_generation(&NewGeneration {
                parent_id: parent,
                step_index: step as i64,
                adapter_id: settings.adapter,
                ..NewGeneration::from_completion(kind, &c, prompt, sampler)
            })?;
            let message_id = store.add_message(&NewMessage {
                chat_id: chat,
                role: ChatRole::Assistant,
                content: c.text.clone(),
                generation_id: Some(generation_id),
                // Refinement cards hang off the direct answer they improve.
                refinement_of: steps.first().map(|s| s.message_id),
                step_index: step as i64,
                score,
            })?;
            steps.push(StoredStep {
                step_index: step,
                text: c.text,
                token_count: c.tokens.len(),
                duration_ms: c.duration_ms,
                score,
                generation_id,
                parent_generation_id: parent,
                message_id,
            });
            let stored = steps.last().expect("pushed above");
            let go_on = events(ChatEvent::StepDone { step, stored });
            if cancelled || !go_on {
                cancelled = true;
                break;
            }
        }
        Ok(ChatTurn {
            chat_id: chat,
            steps,
            cancelled,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_task_questions_have_a_reference() {
        assert_eq!(
            super::arithmetic_reference("23+45=?").as_deref(),
            Some("68")
        );
        assert_eq!(
            super::arithmetic_reference(" 7 + 8 =?").as_deref(),
            Some("15")
        );
        assert_eq!(super::arithmetic_reference("What is 2+3?"), None);
    }
}
