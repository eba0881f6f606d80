//! Pairing a round: the scored answers of each prompt turned into preference pairs by the run's
//! strategy, and a note saying why when a round makes none.

use super::{Orchestrator, Progress, RunError};
use crate::pairs::{Candidate, select_pairs};
use evolve_store::{GenerationId, NewPair, Prompt, PromptId, Round};
use std::collections::BTreeMap;

impl Orchestrator<'_> {
    pub(super) fn pair(
        &mut self,
        r: usize,
        round: &Round,
        prompts: &[Prompt],
    ) -> Result<(), RunError> {
        let scorer_name = self.engines.scorer.name().to_string();
        let mut by_prompt: BTreeMap<PromptId, Vec<Candidate>> = BTreeMap::new();
        let mut unread = crate::pairs::Unread::default();
        for g in self.store.generations_of_round(round.id)? {
            let Some(p) = g.prompt_id else { continue };
            let Some(score) = self
                .store
                .scores_of(g.id)?
                .into_iter()
                .find(|s| s.scorer == scorer_name)
            else {
                continue;
            };
            unread.see(&score.details, &g.text);
            by_prompt.entry(p).or_default().push(Candidate {
                id: g.id.0,
                chain: g.sample_index as usize,
                step: g.step_index as usize,
                text: g.text,
                score: score.value,
                finished: g.finished,
            });
        }
        let mut made = 0;
        for p in prompts {
            let Some(candidates) = by_prompt.get(&p.id) else {
                continue;
            };
            for pair in select_pairs(
                &self.config.pair_strategy,
                self.config.pair_kinds,
                self.config.pair_rules,
                candidates,
            ) {
                self.store.insert_pair(&NewPair {
                    round_id: round.id,
                    prompt_id: p.id,
                    kind: pair.kind,
                    chosen_id: GenerationId(pair.chosen),
                    rejected_id: GenerationId(pair.rejected),
                    margin: pair.margin,
                })?;
                made += 1;
            }
        }
        // A resumed round may have made its pairs before: only a round without any says why.
        let stored = self.store.list_pairs(&evolve_store::PairFilter {
            round_id: Some(round.id),
            ..Default::default()
        })?;
        let note = (made == 0 && stored.is_empty()).then(|| {
            let candidates: Vec<Vec<Candidate>> = by_prompt.into_values().collect();
            let why = crate::pairs::why_no_pairs(
                &self.config.pair_strategy,
                self.config.pair_rules,
                &candidates,
                &unread,
            );
            format!("no preference pairs, so nothing to train: {why}")
        });
        self.store.set_round_note(round.id, note.as_deref())?;
        if let Some(text) = note {
            self.report(Progress::Note { round: r, text })?;
        }
        Ok(())
    }
}
