//! Scoring a round: every answer of the round read by the run's scorer, once (a resumed round
//! scores only what has no score by this scorer yet).

use super::{Orchestrator, Progress, RunError};
use evolve_core::{RoundState, ScoreInput};
use evolve_store::{Prompt, PromptId, Round};
use std::collections::HashMap;

impl Orchestrator<'_> {
    pub(super) fn score_round(
        &mut self,
        r: usize,
        round: &Round,
        prompts: &[Prompt],
    ) -> Result<(), RunError> {
        let by_id: HashMap<PromptId, &Prompt> = prompts.iter().map(|p| (p.id, p)).collect();
        let generations = self.store.generations_of_round(round.id)?;
        let total = generations.len();
        let scorer_name = self.engines.scorer.name().to_string();
        for (i, g) in generations.iter().enumerate() {
            let Some(prompt) = g.prompt_id.and_then(|p| by_id.get(&p)) else {
                continue;
            };
            if self
                .store
                .scores_of(g.id)?
                .iter()
                .any(|s| s.scorer == scorer_name)
            {
                continue;
            }
            let input = ScoreInput {
                prompt: &prompt.prompt,
                reference: prompt.reference.as_deref(),
                answer: &g.text,
            };
            let value = self
                .engines
                .scorer
                .score(&input)
                .map_err(|source| RunError::Score {
                    generation: g.id.0,
                    source,
                })?;
            self.store
                .add_score(g.id, &scorer_name, value.value, &value.details)?;
            if (i + 1) % 32 == 0 || i + 1 == total {
                self.report(Progress::Work {
                    round: r,
                    state: RoundState::Scoring,
                    done: i + 1,
                    total,
                })?;
            }
        }
        Ok(())
    }
}
