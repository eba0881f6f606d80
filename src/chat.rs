//! Chat with visible self-refinement: the model answers, then rewrites its own answer step by
//! step, and every step is stored (generations with parent links, messages for the history).

use crate::Service;
use anyhow::{Context, Result};
use evolve_core::{GenerationEvent, GenerationKind, Generator, RefinementTemplate, SamplerConfig};
use evolve_store::{ChatId, ChatRole, GenerationId, MessageId, NewGeneration, NewMessage};
use serde::Serialize;
use std::path::Path;

/// What a chat turn reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent<'a> {
    /// Step `step` (0 = the direct answer) starts.
    StepStarted { step: usize },
    /// Text of step `step` that became safe to show.
    Token { step: usize, text: &'a str },
}

/// One stored answer of a turn: the direct answer (step 0) or a refinement of the step before.
#[derive(Debug, Clone, Serialize)]
pub struct StoredStep {
    pub step_index: usize,
    pub text: String,
    pub token_count: usize,
    pub duration_ms: u64,
    pub generation_id: GenerationId,
    pub parent_generation_id: Option<GenerationId>,
    pub message_id: MessageId,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatTurn {
    pub chat_id: ChatId,
    pub user_message_id: MessageId,
    pub steps: Vec<StoredStep>,
    /// True when the callback cancelled the turn; the steps so far are stored.
    pub cancelled: bool,
}

/// How one turn is generated.
#[derive(Debug, Clone)]
pub struct TurnSettings<'a> {
    /// Model file, to link the chat to a registered model.
    pub model_path: &'a Path,
    pub refine_steps: usize,
    pub template: &'a RefinementTemplate,
    pub sampler: &'a SamplerConfig,
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

    /// Answers `question` and refines the answer `refine_steps` times, streaming through
    /// `events` (return `false` to cancel) and storing every step as it completes.
    pub fn chat_turn(
        &self,
        generator: &mut dyn Generator,
        chat: ChatId,
        question: &str,
        settings: &TurnSettings<'_>,
        events: &mut dyn FnMut(ChatEvent<'_>) -> bool,
    ) -> Result<ChatTurn> {
        let store = self.store();
        let user_message_id = store.add_message(&NewMessage {
            chat_id: chat,
            role: ChatRole::User,
            content: question.to_string(),
            generation_id: None,
            refinement_of: None,
            step_index: 0,
            score: None,
        })?;
        let mut current_step = None;
        let mut cancelled = false;
        let chain = evolve_core::refine_chain(
            generator,
            question,
            None,
            settings.refine_steps,
            settings.template,
            settings.sampler,
            &mut |event| {
                let GenerationEvent::Token {
                    request: step,
                    text,
                    ..
                } = event
                else {
                    return true;
                };
                if current_step != Some(step) {
                    current_step = Some(step);
                    if !events(ChatEvent::StepStarted { step }) {
                        cancelled = true;
                        return false;
                    }
                }
                let go_on = events(ChatEvent::Token { step, text: &text });
                cancelled |= !go_on;
                go_on
            },
        )
        .context("generation failed")?;

        let mut steps: Vec<StoredStep> = Vec::with_capacity(chain.len());
        for step in chain {
            let parent = steps.last();
            let c = &step.completion;
            let generation_id = store.insert_generation(&NewGeneration {
                round_id: None,
                prompt_id: None,
                kind: if step.step_index == 0 {
                    GenerationKind::Chat
                } else {
                    GenerationKind::Refinement
                },
                parent_id: parent.map(|p| p.generation_id),
                step_index: step.step_index as i64,
                sample_index: 0,
                text: c.text.clone(),
                token_count: c.tokens.len() as i64,
                seed: c.seed as i64,
                sampler: settings.sampler.clone(),
                prompt_text: step.prompt.clone(),
                adapter_id: None,
                duration_ms: c.duration_ms as i64,
            })?;
            let message_id = store.add_message(&NewMessage {
                chat_id: chat,
                role: ChatRole::Assistant,
                content: c.text.clone(),
                generation_id: Some(generation_id),
                // Refinement cards hang off the direct answer they improve.
                refinement_of: steps.first().map(|s| s.message_id),
                step_index: step.step_index as i64,
                score: None,
            })?;
            steps.push(StoredStep {
                step_index: step.step_index,
                text: c.text.clone(),
                token_count: c.tokens.len(),
                duration_ms: c.duration_ms,
                generation_id,
                parent_generation_id: parent.map(|p| p.generation_id),
                message_id,
            });
        }
        Ok(ChatTurn {
            chat_id: chat,
            user_message_id,
            steps,
            cancelled,
        })
    }
}
