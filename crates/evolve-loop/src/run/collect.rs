//! Collecting a round's answers: every train prompt sampled `samples` times, then each answer
//! refined step by step, stored as it comes, with streamed tokens reported as progress.

use super::error::{RunError, name_prompt};
use super::{Orchestrator, Progress};
use evolve_core::{
    ChainStart, GenerationKind, GenerationRequest, RoundState, SamplerConfig, refine_chains,
};
use evolve_store::{AdapterId, Generation, NewGeneration, Prompt, PromptId, Round, RoundId};
use std::collections::HashMap;

/// Deterministic per-(round, prompt, sample) seed: independent of batching and of what ran before.
pub(super) fn seed_for(run_seed: u32, round: usize, prompt: PromptId, sample: usize) -> u32 {
    let mut z =
        (run_seed as u64) ^ ((round as u64) << 48) ^ ((prompt.0 as u64) << 16) ^ sample as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

impl Orchestrator<'_> {
    /// Generations of this round, by (prompt, sample) then step.
    fn chains_of(
        &self,
        round: RoundId,
    ) -> Result<HashMap<(PromptId, usize), Vec<Generation>>, RunError> {
        let mut chains: HashMap<(PromptId, usize), Vec<Generation>> = HashMap::new();
        for g in self.store.generations_of_round(round)? {
            if let Some(p) = g.prompt_id {
                chains
                    .entry((p, g.sample_index as usize))
                    .or_default()
                    .push(g);
            }
        }
        for chain in chains.values_mut() {
            chain.sort_by_key(|g| g.step_index);
        }
        Ok(chains)
    }

    pub(super) fn collect(
        &mut self,
        r: usize,
        round: &Round,
        prompts: &[Prompt],
        adapter: Option<AdapterId>,
    ) -> Result<(), RunError> {
        let n = self.config.samples;
        let chains = self.chains_of(round.id)?;
        let todo: Vec<(&Prompt, usize)> = prompts
            .iter()
            .flat_map(|p| (0..n).map(move |s| (p, s)))
            .filter(|(p, s)| !chains.contains_key(&(p.id, *s)))
            .collect();
        let total = prompts.len() * n;
        let mut done = total - todo.len();
        for chunk in todo.chunks(self.config.chunk_prompts * n) {
            if self.refines_in_collection() {
                self.collect_chains(r, round, chunk, adapter)?;
            } else {
                self.collect_samples(r, round, chunk, adapter)?;
            }
            done += chunk.len();
            self.report(Progress::Work {
                round: r,
                state: RoundState::Collecting,
                done,
                total,
            })?;
        }
        Ok(())
    }

    /// A chunk's answers, stored once the whole chunk is done.
    fn collect_samples(
        &mut self,
        r: usize,
        round: &Round,
        chunk: &[(&Prompt, usize)],
        adapter: Option<AdapterId>,
    ) -> Result<(), RunError> {
        let mut requests = Vec::with_capacity(chunk.len());
        for (p, s) in chunk {
            let prompt = self
                .engines
                .generator
                .format_chat(&self.config.template.render_question(&p.prompt))?;
            let sampler = SamplerConfig {
                seed: seed_for(self.config.sampler.seed, r, p.id, *s),
                ..self.config.sampler.clone()
            };
            requests.push(GenerationRequest::new(prompt, sampler, 1));
        }
        let results = self
            .generate(&requests)
            .map_err(|e| name_prompt(e, |r| chunk[r].0))?;
        for (((p, s), request), completions) in chunk.iter().zip(requests).zip(results) {
            let c = completions
                .into_iter()
                .next()
                .expect("one sample per request");
            self.store_sample(round, (p.id, *s), &c, request.prompt, adapter)?;
        }
        Ok(())
    }

    /// Stores sample `s` of prompt `p`, drawn with the run's sampler and `c`'s seed.
    fn store_sample(
        &mut self,
        round: &Round,
        (p, s): (PromptId, usize),
        c: &evolve_core::Completion,
        prompt: String,
        adapter: Option<AdapterId>,
    ) -> Result<evolve_store::GenerationId, RunError> {
        Ok(self.store.insert_generation(&NewGeneration {
            round_id: Some(round.id),
            prompt_id: Some(p),
            sample_index: s as i64,
            adapter_id: adapter,
            ..NewGeneration::from_completion(
                GenerationKind::Sample,
                c,
                prompt,
                SamplerConfig {
                    seed: c.seed,
                    ..self.config.sampler.clone()
                },
            )
        })?)
    }

    /// Whether this round's answers are refined: then each answer is refined as soon as it is
    /// sampled, in the same call, so the engine continues from the answer's cache.
    fn refines_in_collection(&self) -> bool {
        self.config.refine_steps > 0 && self.config.trains_on_refinements()
    }

    /// A chunk's answers and their refinement chains, stored once the whole chunk is done.
    /// Seeds are those of separate collection and refinement: each (prompt, sample) its own
    /// for the answer, and the refinement chunk's for the steps.
    fn collect_chains(
        &mut self,
        r: usize,
        round: &Round,
        chunk: &[(&Prompt, usize)],
        adapter: Option<AdapterId>,
    ) -> Result<(), RunError> {
        let k = self.config.refine_steps;
        let starts: Vec<ChainStart> = chunk
            .iter()
            .map(|(p, s)| ChainStart {
                question: &p.prompt,
                first_answer: None,
                first_seed: Some(seed_for(self.config.sampler.seed, r, p.id, *s)),
            })
            .collect();
        let sampler = SamplerConfig {
            seed: seed_for(self.config.sampler.seed, r, PromptId(-1), 0),
            ..self.config.sampler.clone()
        };
        let mut tokens = TokenProgress::new(&mut *self.progress);
        let chains = refine_chains(
            self.engines.generator,
            &starts,
            k,
            &self.config.template,
            &sampler,
            &mut |_, event| tokens.on_event(&event),
        )
        .map_err(|e| name_prompt(e.into(), |i| chunk[i].0))?;
        tokens.flush();
        if tokens.paused || chains.iter().any(|c| c.len() != k + 1) {
            return Err(RunError::Paused);
        }
        for ((p, s), mut chain) in chunk.iter().zip(chains) {
            let refinements = chain.split_off(1);
            let first = chain.pop().expect("a chain starts with its answer");
            let parent =
                self.store_sample(round, (p.id, *s), &first.completion, first.prompt, adapter)?;
            self.store_refinements(round, (p.id, *s), parent, 0, refinements, &sampler, adapter)?;
        }
        Ok(())
    }

    /// Stores the refinements of a chain after its step `reached`, `parent`, as its children.
    #[allow(clippy::too_many_arguments)]
    fn store_refinements(
        &mut self,
        round: &Round,
        (p, s): (PromptId, usize),
        mut parent: evolve_store::GenerationId,
        reached: usize,
        refinements: Vec<evolve_core::RefinementStep>,
        sampler: &SamplerConfig,
        adapter: Option<AdapterId>,
    ) -> Result<(), RunError> {
        for step in refinements {
            let c = step.completion;
            parent = self.store.insert_generation(&NewGeneration {
                round_id: Some(round.id),
                prompt_id: Some(p),
                parent_id: Some(parent),
                step_index: (reached + step.step_index) as i64,
                sample_index: s as i64,
                adapter_id: adapter,
                ..NewGeneration::from_completion(
                    GenerationKind::Refinement,
                    &c,
                    step.prompt,
                    SamplerConfig {
                        seed: c.seed,
                        ..sampler.clone()
                    },
                )
            })?;
        }
        Ok(())
    }

    /// Runs a batch to completion; a cancelled batch is a pause (nothing partial is stored).
    pub(super) fn generate(
        &mut self,
        requests: &[GenerationRequest],
    ) -> Result<Vec<Vec<evolve_core::Completion>>, RunError> {
        let mut tokens = TokenProgress::new(&mut *self.progress);
        let results = self
            .engines
            .generator
            .generate_batch(requests, &mut |event| tokens.on_event(&event))?;
        tokens.flush();
        if tokens.paused || results.iter().any(|r| r.is_empty()) {
            return Err(RunError::Paused);
        }
        Ok(results)
    }

    pub(super) fn refine(
        &mut self,
        r: usize,
        round: &Round,
        prompts: &[Prompt],
        adapter: Option<AdapterId>,
    ) -> Result<(), RunError> {
        let k = self.config.refine_steps;
        if k == 0 || !self.config.trains_on_refinements() {
            return Ok(());
        }
        let by_id: HashMap<PromptId, &Prompt> = prompts.iter().map(|p| (p.id, p)).collect();
        let chains = self.chains_of(round.id)?;
        let mut keys: Vec<(PromptId, usize)> = chains
            .keys()
            .copied()
            .filter(|key| by_id.contains_key(&key.0))
            .collect();
        keys.sort();
        let total = keys.len();
        let mut unfinished: Vec<(PromptId, usize, Generation)> = Vec::new();
        for key in keys {
            let last = chains[&key].last().expect("chains are non-empty").clone();
            if (last.step_index as usize) < k {
                unfinished.push((key.0, key.1, last));
            }
        }
        let mut done = total - unfinished.len();
        // Chains resumed mid-way are grouped by the step they reached, so step j of every chain
        // samples with the same seed whether or not the run was interrupted.
        unfinished.sort_by_key(|(p, s, g)| (g.step_index, *p, *s));
        let base_seed = seed_for(self.config.sampler.seed, r, PromptId(-1), 0);
        let chunk_len = self.config.chunk_prompts * self.config.samples;
        let mut groups: Vec<&[(PromptId, usize, Generation)]> = Vec::new();
        for same_step in unfinished.chunk_by(|a, b| a.2.step_index == b.2.step_index) {
            groups.extend(same_step.chunks(chunk_len));
        }
        for chunk in groups {
            let reached = chunk[0].2.step_index as usize;
            let starts: Vec<ChainStart> = chunk
                .iter()
                .map(|(p, _, last)| ChainStart {
                    question: &by_id[p].prompt,
                    first_answer: Some(&last.text),
                    first_seed: None,
                })
                .collect();
            // refine_chains samples its step j with `seed + j`; offset so that is global step reached + j.
            let sampler = SamplerConfig {
                seed: base_seed.wrapping_add(reached as u32),
                ..self.config.sampler.clone()
            };
            let mut tokens = TokenProgress::new(&mut *self.progress);
            let results = refine_chains(
                self.engines.generator,
                &starts,
                k - reached,
                &self.config.template,
                &sampler,
                &mut |_, event| tokens.on_event(&event),
            )
            .map_err(|e| name_prompt(e.into(), |r| by_id[&chunk[r].0]))?;
            tokens.flush();
            if tokens.paused {
                return Err(RunError::Paused);
            }
            for ((p, s, last), mut chain) in chunk.iter().zip(results) {
                // chain[0] is the given answer; chain[j] is its j-th refinement.
                let refinements = chain.split_off(1);
                self.store_refinements(
                    round,
                    (*p, *s),
                    last.id,
                    reached,
                    refinements,
                    &sampler,
                    adapter,
                )?;
            }
            done += chunk.len();
            self.report(Progress::Work {
                round: r,
                state: RoundState::Refining,
                done,
                total,
            })?;
        }
        Ok(())
    }
}

/// Counts streamed tokens for the progress callback (in deltas of 64 tokens, to keep it
/// cheap, and the rest at the end) and remembers whether the callback asked to pause.
pub(super) struct TokenProgress<'p> {
    progress: &'p mut dyn FnMut(Progress) -> bool,
    generated: usize,
    reported: usize,
    pub(super) paused: bool,
    /// With [`TokenProgress::counting`]: finished answers reported as work of this step.
    work: Option<(usize, RoundState, usize, usize)>,
}

impl<'p> TokenProgress<'p> {
    pub(super) fn new(progress: &'p mut dyn FnMut(Progress) -> bool) -> Self {
        Self {
            progress,
            generated: 0,
            reported: 0,
            paused: false,
            work: None,
        }
    }

    /// Also reports each 16th finished answer as `Progress::Work` of `state` in round `round`,
    /// out of `total` (a step that has no other progress, like the held-out evaluation).
    pub(super) fn counting(mut self, round: usize, state: RoundState, total: usize) -> Self {
        self.work = Some((round, state, 0, total));
        self
    }

    pub(super) fn on_event(&mut self, event: &evolve_core::GenerationEvent) -> bool {
        match event {
            evolve_core::GenerationEvent::Token { .. } => {
                self.generated += 1;
                if self.generated - self.reported >= 64 {
                    self.flush();
                }
            }
            evolve_core::GenerationEvent::Finished { .. } => {
                if let Some((round, state, done, total)) = &mut self.work {
                    *done += 1;
                    if (*done % 16 == 0 || done == total)
                        && !(self.progress)(Progress::Work {
                            round: *round,
                            state: *state,
                            done: *done,
                            total: *total,
                        })
                    {
                        self.paused = true;
                    }
                }
            }
        }
        !self.paused
    }

    /// Reports the tokens not reported yet.
    pub(super) fn flush(&mut self) {
        let new = self.generated - self.reported;
        self.reported = self.generated;
        if new > 0 && !(self.progress)(Progress::Tokens { new }) {
            self.paused = true;
        }
    }
}
