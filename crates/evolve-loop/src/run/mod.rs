//! The orchestrator: one place that drives a run's rounds through the persisted state machine
//! collect → refine → score → pair → train → evaluate.
//!
//! Every step reads what the store already holds and only does what is missing, and writes its
//! results in small transactions as it goes, so `kill -9` at any moment loses at most the work in
//! flight and [`Orchestrator::run`] on the same run continues where it stopped. Sampling seeds
//! derive from (run seed, round, prompt, sample), never from batch order, so redone work gives the
//! same text.

mod config;
mod evaluate;
mod train;

pub use config::{
    PreferenceLoss, ReferenceModel, RunConfig, RunObjective, TrainSettings, create_run,
};
pub use evaluate::{WinRateDetails, eval_answers};

use crate::pairs::{Candidate, select_pairs};
use evolve_core::{
    ChainStart, EvalMetric, EvalSubject, GenerationKind, GenerationRequest, Generator,
    PreferenceTrainer, RoundState, RunState, SamplerConfig, ScoreInput, Scorer, StepReport,
    refine_chains,
};
use evolve_store::{
    AdapterId, Generation, GenerationId, NewGeneration, NewPair, Prompt, PromptId, Round, RoundId,
    Run, RunId, Store,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What the orchestrator reports as it works (for progress bars and the UI).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Step {
        round: usize,
        state: RoundState,
    },
    /// `done` of `total` units of the current step (prompts, chains, answers…).
    Work {
        round: usize,
        state: RoundState,
        done: usize,
        total: usize,
    },
    /// `new` more tokens were generated (a delta: consumers add them up).
    Tokens {
        new: usize,
    },
    Train(StepReport),
    /// A killed or paused training continues from its checkpoint after `after_step`.
    TrainingResumed {
        round: usize,
        after_step: usize,
    },
    Evaluated {
        round: usize,
        metric: EvalMetric,
        value: f64,
    },
    /// Round `round` did less than asked, and why (e.g. it made no pairs).
    Note {
        round: usize,
        text: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] evolve_store::StoreError),
    #[error("generation failed: {0}")]
    Generate(#[from] evolve_core::GenerateError),
    #[error("scoring failed on generation {generation}: {source}")]
    Score {
        generation: i64,
        source: evolve_core::ScoreError,
    },
    #[error(transparent)]
    Train(#[from] evolve_core::TrainError),
    /// A prompt the generator refused (e.g. longer than the context), named so it can be fixed.
    #[error(
        "prompt #{idx} of the dataset (\"{preview}\") cannot be sampled: {reason}; shorten or remove it, lower max_tokens or raise the context, then resume"
    )]
    Prompt {
        idx: i64,
        preview: String,
        reason: String,
    },
    #[error("run {0} not found")]
    UnknownRun(i64),
    #[error("invalid run configuration: {0}")]
    Config(String),
    #[error("paused: the run stopped at the user's request and resumes where it left off")]
    Paused,
    /// A bug (ours or a library's) panicked mid-round; the round is marked failed with this and a
    /// resume retries from the step it was in.
    #[error("internal error (please report it): {0}; resuming retries this step")]
    Panicked(String),
    #[error("cannot compute the checksum of {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The engines a run needs, injected so the loop is the same for llama.cpp, a remote server or a
/// test double.
pub struct Engines<'a> {
    pub generator: &'a mut dyn Generator,
    pub scorer: &'a mut dyn Scorer,
    pub trainer: &'a mut dyn PreferenceTrainer,
}

pub struct Orchestrator<'a> {
    store: &'a Store,
    run: Run,
    config: RunConfig,
    engines: Engines<'a>,
    /// Where adapters are written: `<dir>/run-<id>/round-<r>/`.
    adapters_dir: PathBuf,
    /// Checksum of the base model, recorded with every adapter.
    base_sha256: String,
    progress: &'a mut dyn FnMut(Progress) -> bool,
    /// Whether the generator currently has the adapter the step needs.
    active_adapter: Option<Option<PathBuf>>,
}

/// Deterministic per-(round, prompt, sample) seed: independent of batching and of what ran before.
fn seed_for(run_seed: u32, round: usize, prompt: PromptId, sample: usize) -> u32 {
    let mut z =
        (run_seed as u64) ^ ((round as u64) << 48) ^ ((prompt.0 as u64) << 16) ^ sample as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

impl<'a> Orchestrator<'a> {
    pub fn new(
        store: &'a Store,
        run_id: RunId,
        engines: Engines<'a>,
        adapters_dir: &Path,
        progress: &'a mut dyn FnMut(Progress) -> bool,
    ) -> Result<Self, RunError> {
        let run = store
            .get_run(run_id)?
            .ok_or(RunError::UnknownRun(run_id.0))?;
        let config: RunConfig = serde_json::from_value(run.config.clone())
            .map_err(|e| RunError::Config(e.to_string()))?;
        config.validate()?;
        let base_sha256 = store
            .get_model(run.model_id)?
            .map(|m| m.sha256)
            .unwrap_or_default();
        Ok(Self {
            store,
            adapters_dir: adapters_dir.join(format!("run-{}", run.id.0)),
            run,
            config,
            engines,
            base_sha256,
            progress,
            active_adapter: None,
        })
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// Runs (or resumes) every round to the end. A failure is recorded on the round and returned;
    /// running again retries from the failed step.
    pub fn run(&mut self) -> Result<(), RunError> {
        self.store.set_run_state(self.run.id, RunState::Running)?;
        for r in 0..self.config.rounds {
            let round = self
                .store
                .get_round(self.store.create_round(self.run.id, r as i64)?)?
                .expect("just created");
            if round.state == RoundState::Done {
                continue;
            }
            let outcome = evolve_core::panic::catch_panic(|| self.run_round(r, &round))
                .unwrap_or_else(|message| Err(RunError::Panicked(message)));
            if let Err(e) = outcome {
                // A pause leaves the round in the step it reached; a failure is recorded on it.
                let run_state = if let RunError::Paused = e {
                    RunState::Paused
                } else {
                    self.store.set_round_state(
                        round.id,
                        RoundState::Failed,
                        Some(&e.to_string()),
                    )?;
                    RunState::Failed
                };
                self.store.set_run_state(self.run.id, run_state)?;
                return Err(e);
            }
        }
        self.store.set_run_state(self.run.id, RunState::Done)?;
        Ok(())
    }

    fn enter(&mut self, round: &Round, r: usize, state: RoundState) -> Result<(), RunError> {
        self.store.set_round_state(round.id, state, None)?;
        self.report(Progress::Step { round: r, state })
    }

    fn report(&mut self, p: Progress) -> Result<(), RunError> {
        if (self.progress)(p) {
            Ok(())
        } else {
            Err(RunError::Paused)
        }
    }

    fn run_round(&mut self, r: usize, round: &Round) -> Result<(), RunError> {
        // The adapter this round samples with: the one trained in the previous round.
        let sampling_adapter = if r == 0 {
            None
        } else {
            self.adapter_of_round(r - 1)?
        };
        let sampling_id = sampling_adapter.as_ref().map(|(id, _)| *id);
        self.store.set_round_adapter(round.id, sampling_id)?;
        let sampling_path = sampling_adapter.as_ref().map(|(_, p)| p.clone());
        let prompts = self.round_prompts(r)?;

        self.enter(round, r, RoundState::Collecting)?;
        self.use_adapter(sampling_path.as_deref())?;
        self.collect(r, round, &prompts, sampling_id)?;

        self.enter(round, r, RoundState::Refining)?;
        self.refine(r, round, &prompts, sampling_id)?;

        self.enter(round, r, RoundState::Scoring)?;
        self.score_round(r, round, &prompts)?;

        self.enter(round, r, RoundState::Pairing)?;
        self.pair(r, round, &prompts)?;

        if r == 0 {
            // The untrained model refining itself: the baseline every later round is compared to.
            self.enter(round, r, RoundState::Evaluating)?;
            self.evaluate(r, round, None, EvalSubject::Base)?;
        }

        self.enter(round, r, RoundState::Training)?;
        let trained = self.train(r, round, sampling_path.as_deref())?;

        self.enter(round, r, RoundState::Evaluating)?;
        let eval_adapter = trained.or(sampling_adapter);
        self.evaluate(r, round, eval_adapter.as_ref(), EvalSubject::Trained)?;
        self.win_rate_vs_previous(r, round)?;

        self.store
            .set_round_state(round.id, RoundState::Done, None)?;
        self.report(Progress::Step {
            round: r,
            state: RoundState::Done,
        })
    }

    /// This round's train prompts: the train split walked in order, wrapping around.
    fn round_prompts(&self, r: usize) -> Result<Vec<Prompt>, RunError> {
        let train = self
            .store
            .list_prompts(self.run.dataset_id, Some("train"))?;
        if train.is_empty() {
            return Err(RunError::Config("the dataset has no train prompts".into()));
        }
        let n = self.config.prompts_per_round.min(train.len());
        Ok((0..n)
            .map(|i| train[(r * n + i) % train.len()].clone())
            .collect())
    }

    fn use_adapter(&mut self, path: Option<&Path>) -> Result<(), RunError> {
        let wanted = path.map(Path::to_path_buf);
        if self.active_adapter.as_ref() != Some(&wanted) {
            self.engines
                .generator
                .use_adapter(path, self.config.adapter_scale)?;
            self.active_adapter = Some(wanted);
        }
        Ok(())
    }

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

    fn collect(
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
            for (((p, s), request), completions) in chunk.iter().zip(&requests).zip(results) {
                let c = completions
                    .into_iter()
                    .next()
                    .expect("one sample per request");
                self.store.insert_generation(&NewGeneration {
                    round_id: Some(round.id),
                    prompt_id: Some(p.id),
                    sample_index: *s as i64,
                    adapter_id: adapter,
                    ..NewGeneration::from_completion(
                        GenerationKind::Sample,
                        &c,
                        request.prompt.clone(),
                        request.sampler.clone(),
                    )
                })?;
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

    /// Runs a batch to completion; a cancelled batch is a pause (nothing partial is stored).
    fn generate(
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

    fn refine(
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
            for ((p, s, last), chain) in chunk.iter().zip(results) {
                let mut parent = last.id;
                // chain[0] is the given answer; chain[j] is its j-th refinement.
                for step in chain.into_iter().skip(1) {
                    let c = step.completion;
                    parent = self.store.insert_generation(&NewGeneration {
                        round_id: Some(round.id),
                        prompt_id: Some(*p),
                        parent_id: Some(parent),
                        step_index: (reached + step.step_index) as i64,
                        sample_index: *s as i64,
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

    fn score_round(&mut self, r: usize, round: &Round, prompts: &[Prompt]) -> Result<(), RunError> {
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

    fn pair(&mut self, r: usize, round: &Round, prompts: &[Prompt]) -> Result<(), RunError> {
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
            let why = crate::pairs::why_no_pairs(&self.config.pair_strategy, &candidates, &unread);
            format!("no preference pairs, so nothing to train: {why}")
        });
        self.store.set_round_note(round.id, note.as_deref())?;
        if let Some(text) = note {
            self.report(Progress::Note { round: r, text })?;
        }
        Ok(())
    }
}

/// Counts streamed tokens for the progress callback (in deltas of 64 tokens, to keep it
/// cheap, and the rest at the end) and remembers whether the callback asked to pause.
struct TokenProgress<'p> {
    progress: &'p mut dyn FnMut(Progress) -> bool,
    generated: usize,
    reported: usize,
    paused: bool,
    /// With [`TokenProgress::counting`]: finished answers reported as work of this step.
    work: Option<(usize, RoundState, usize, usize)>,
}

impl<'p> TokenProgress<'p> {
    fn new(progress: &'p mut dyn FnMut(Progress) -> bool) -> Self {
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
    fn counting(mut self, round: usize, state: RoundState, total: usize) -> Self {
        self.work = Some((round, state, 0, total));
        self
    }

    fn on_event(&mut self, event: &evolve_core::GenerationEvent) -> bool {
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
    fn flush(&mut self) {
        let new = self.generated - self.reported;
        self.reported = self.generated;
        if new > 0 && !(self.progress)(Progress::Tokens { new }) {
            self.paused = true;
        }
    }
}

/// Turns a generator's "request r is invalid" into an error naming the dataset prompt.
fn name_prompt<'p>(e: RunError, prompt_of: impl Fn(usize) -> &'p Prompt) -> RunError {
    match e {
        RunError::Generate(evolve_core::GenerateError::InvalidRequest { request, reason }) => {
            let p = prompt_of(request);
            let mut preview: String = p.prompt.chars().take(40).collect();
            if p.prompt.chars().count() > 40 {
                preview.push('…');
            }
            RunError::Prompt {
                idx: p.idx,
                preview,
                reason,
            }
        }
        other => other,
    }
}
