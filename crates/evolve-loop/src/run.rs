//! The orchestrator: one place that drives a run's rounds through the persisted state machine
//! collect → refine → score → pair → train → evaluate.
//!
//! Every step reads what the store already holds and only does what is missing, and writes its
//! results in small transactions as it goes, so `kill -9` at any moment loses at most the work in
//! flight and [`Orchestrator::run`] on the same run continues where it stopped. Sampling seeds
//! derive from (run seed, round, prompt, sample), never from batch order, so redone work gives the
//! same text.

use crate::pairs::{Candidate, PairKinds, PairStrategy, PairTexts, pair_texts, select_pairs};
use evolve_core::{
    ChainStart, GenerationKind, GenerationRequest, Generator, Objective, PreferenceTrainer,
    RefinementTemplate, ReviewState, RoundState, RunState, SamplerConfig, ScoreInput, Scorer,
    StepReport, TrainExample, WinRate, Winner, refine_chains,
};
use evolve_store::{
    AdapterId, Generation, GenerationId, NewAdapter, NewEvaluation, NewGeneration, NewPair,
    PairFilter, Prompt, PromptId, Round, RoundId, Run, RunId, Store, TrainingMetric, TrainingState,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The evaluation metric holding a round's judged win rate over the previous model.
pub const WIN_RATE_METRIC: &str = "trained/win_rate_vs_previous";

/// A run's settings, stored as the run's `config_json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub rounds: usize,
    /// Train prompts sampled per round (rounds walk through the train split in order).
    pub prompts_per_round: usize,
    /// Answers sampled per prompt (N).
    pub samples: usize,
    /// Self-refinement steps per answer (K).
    pub refine_steps: usize,
    /// Sampling for collection; its seed is the run's seed.
    pub sampler: SamplerConfig,
    /// Decoding for evaluation (greedy by default, so scores are comparable across rounds).
    pub eval_sampler: SamplerConfig,
    /// Held-out prompts evaluated per round (0 = the whole eval split).
    pub eval_prompts: usize,
    pub template: RefinementTemplate,
    pub pair_strategy: PairStrategy,
    pub pair_kinds: PairKinds,
    /// Scorer spec: a verifier name (`verify::verifier_by_name`) or what the shell accepts
    /// besides (the CLI and the app: `judge:<gguf>`, `remote-judge:<url>`, `reward:<gguf>`).
    pub scorer: String,
    /// Prompts per generation call: the unit of work a crash can lose.
    pub chunk_prompts: usize,
    pub adapter_scale: f32,
    /// LoRA-DPO settings, handed to whichever trainer the shell injects.
    pub train: TrainSettings,
}

/// The training knobs a user sets per run (the trainer maps them onto its own config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lr: f64,
    /// DPO β: how far the policy may move from the reference.
    pub beta: f64,
    /// Weight of the refinement pairs' DPO term against the direct pairs'.
    pub lambda_refine: f64,
    /// Weight of an NLL term on the chosen answers (TRL's `rpo_alpha`); 0 = plain DPO.
    pub nll_weight: f64,
    /// The preference loss: DPO's sigmoid or IPO's squared (bounded) one.
    pub loss: PreferenceLoss,
    /// The model the log-ratios are measured against.
    pub reference: ReferenceModel,
    /// Step-DPO: train on the first line where chosen and rejected differ, the lines before it
    /// as context, instead of on the whole answers (not in the paper).
    pub first_step_only: bool,
    /// The paper's SFT warm-up: round 0 trains on the chosen answers of its direct and
    /// refinement pairs alone (their NLL); the preference loss starts in round 1.
    pub sft_warmup: bool,
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Pairs longer than this many tokens are left out.
    pub max_tokens: usize,
    pub seed: u64,
    /// Optimizer steps between training checkpoints (0 = none): a killed training loses at
    /// most this many steps.
    pub checkpoint_every: usize,
}

/// The preference loss of [`TrainSettings::loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PreferenceLoss {
    /// `−log σ(β·h)`: DPO.
    #[default]
    Sigmoid,
    /// `(h − 1/(2β))²` on length-normalised log-probs: IPO, which stops pushing once the
    /// margin is reached instead of driving both log-probs down.
    Ipo,
}

/// The DPO reference of [`TrainSettings::reference`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReferenceModel {
    /// The untrained base model in every round (TRL's default for a PEFT model).
    #[default]
    Base,
    /// The model that sampled the round: the previous round's adapter (the paper's M_t).
    Previous,
}

impl Default for TrainSettings {
    /// r 16, α 32, lr 5e-6, β 0.1, effective batch 8, 1 epoch: common LoRA-DPO settings for
    /// real models (anchors.md §6.4). Tiny models want a far larger lr (see `evolve demo`).
    fn default() -> Self {
        TrainSettings {
            lora_rank: 16,
            lora_alpha: 32.0,
            lr: 5e-6,
            beta: 0.1,
            lambda_refine: 1.0,
            nll_weight: 0.0,
            loss: PreferenceLoss::Sigmoid,
            reference: ReferenceModel::Base,
            first_step_only: false,
            sft_warmup: false,
            epochs: 1,
            batch_size: 2,
            grad_accum: 4,
            max_tokens: 2048,
            seed: 0,
            checkpoint_every: 10,
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            rounds: 3,
            prompts_per_round: 64,
            samples: 4,
            refine_steps: 2,
            sampler: SamplerConfig {
                temperature: 0.8,
                max_tokens: 256,
                ..SamplerConfig::default()
            },
            eval_sampler: SamplerConfig::greedy(256),
            eval_prompts: 0,
            template: RefinementTemplate::default(),
            pair_strategy: PairStrategy::default(),
            pair_kinds: PairKinds::default(),
            scorer: "numeric".into(),
            chunk_prompts: 8,
            adapter_scale: 1.0,
            train: TrainSettings::default(),
        }
    }
}

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
    Tokens {
        generated: usize,
    },
    Train(StepReport),
    /// A killed or paused training continues from its checkpoint after `after_step`.
    TrainingResumed {
        round: usize,
        after_step: usize,
    },
    Evaluated {
        round: usize,
        metric: String,
        value: f64,
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

/// Creates a run row from a config (validated).
pub fn create_run(
    store: &Store,
    name: &str,
    model: evolve_store::ModelId,
    dataset: evolve_store::DatasetId,
    config: &RunConfig,
) -> Result<RunId, RunError> {
    validate(config)?;
    let config = serde_json::to_value(config).map_err(|e| RunError::Config(e.to_string()))?;
    Ok(store.create_run(&evolve_store::NewRun {
        name: name.to_string(),
        model_id: model,
        dataset_id: dataset,
        config,
    })?)
}

fn validate(c: &RunConfig) -> Result<(), RunError> {
    let fail = |m: &str| Err(RunError::Config(m.to_string()));
    if c.rounds == 0 || c.samples == 0 || c.prompts_per_round == 0 || c.chunk_prompts == 0 {
        return fail("rounds, samples, prompts per round and chunk size must be at least 1");
    }
    if c.samples < 2 && c.refine_steps == 0 {
        return fail(
            "with one sample and no refinement there is nothing to compare: raise --samples or --refine",
        );
    }
    if c.scorer.trim().is_empty() {
        return fail("a scorer is needed (e.g. numeric, judge:<model.gguf>)");
    }
    // Which names exist is the shell's business: it builds the scorer it injects.
    Ok(())
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
        validate(&config)?;
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
            if let Err(e) = self.run_round(r, &round) {
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
        self.store
            .set_round_adapter(round.id, sampling_adapter.as_ref().map(|(id, _)| *id))?;
        let sampling_path = sampling_adapter.as_ref().map(|(_, p)| p.clone());
        let prompts = self.round_prompts(r)?;

        self.enter(round, r, RoundState::Collecting)?;
        self.use_adapter(sampling_path.as_deref())?;
        self.collect(
            r,
            round,
            &prompts,
            sampling_adapter.as_ref().map(|(id, _)| *id),
        )?;

        self.enter(round, r, RoundState::Refining)?;
        self.refine(
            r,
            round,
            &prompts,
            sampling_adapter.as_ref().map(|(id, _)| *id),
        )?;

        self.enter(round, r, RoundState::Scoring)?;
        self.score_round(r, round, &prompts)?;

        self.enter(round, r, RoundState::Pairing)?;
        self.pair(round, &prompts)?;

        if r == 0 {
            // The untrained model refining itself: the baseline every later round is compared to.
            self.enter(round, r, RoundState::Evaluating)?;
            self.evaluate(r, round, None, "base")?;
        }

        self.enter(round, r, RoundState::Training)?;
        let trained = self.train(r, round, sampling_path.as_deref())?;

        self.enter(round, r, RoundState::Evaluating)?;
        let eval_adapter = trained.or(sampling_adapter);
        self.evaluate(r, round, eval_adapter.as_ref(), "trained")?;
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
                    kind: GenerationKind::Sample,
                    parent_id: None,
                    step_index: 0,
                    sample_index: *s as i64,
                    text: c.text,
                    token_count: c.tokens.len() as i64,
                    seed: c.seed as i64,
                    sampler: request.sampler.clone(),
                    prompt_text: request.prompt.clone(),
                    adapter_id: adapter,
                    duration_ms: c.duration_ms as i64,
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
        let (generated, paused) = (tokens.generated, tokens.paused);
        if paused || results.iter().any(|r| r.is_empty()) {
            return Err(RunError::Paused);
        }
        self.report(Progress::Tokens { generated })?;
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
        if k == 0 {
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
                        kind: GenerationKind::Refinement,
                        parent_id: Some(parent),
                        step_index: (reached + step.step_index) as i64,
                        sample_index: *s as i64,
                        text: c.text,
                        token_count: c.tokens.len() as i64,
                        seed: c.seed as i64,
                        sampler: SamplerConfig {
                            seed: c.seed,
                            ..sampler.clone()
                        },
                        prompt_text: step.prompt,
                        adapter_id: adapter,
                        duration_ms: c.duration_ms as i64,
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

    fn pair(&mut self, round: &Round, prompts: &[Prompt]) -> Result<(), RunError> {
        let scorer_name = self.engines.scorer.name().to_string();
        let mut by_prompt: BTreeMap<PromptId, Vec<Candidate>> = BTreeMap::new();
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
            by_prompt.entry(p).or_default().push(Candidate {
                id: g.id.0,
                chain: g.sample_index as usize,
                step: g.step_index as usize,
                text: g.text,
                score: score.value,
            });
        }
        for p in prompts {
            let Some(candidates) = by_prompt.get(&p.id) else {
                continue;
            };
            for pair in select_pairs(
                &self.config.pair_strategy,
                self.config.pair_kinds,
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
            }
        }
        Ok(())
    }

    /// The adapter a finished round produced, if it trained one.
    fn adapter_of_round(&self, r: usize) -> Result<Option<(AdapterId, PathBuf)>, RunError> {
        let Some(round) = self
            .store
            .rounds_of_run(self.run.id)?
            .into_iter()
            .find(|x| x.round_index == r as i64)
        else {
            return Ok(None);
        };
        let runs = self.store.training_runs_of_round(round.id)?;
        let Some(done) = runs.iter().rev().find(|t| t.state == TrainingState::Done) else {
            // No pairs that round: keep sampling with what that round sampled with.
            return Ok(match round.adapter_id {
                Some(id) => self
                    .store
                    .get_adapter(id)?
                    .map(|a| (a.id, PathBuf::from(a.path))),
                None => None,
            });
        };
        Ok(self
            .store
            .list_adapters()?
            .into_iter()
            .find(|a| a.training_run_id == Some(done.id))
            .map(|a| (a.id, PathBuf::from(a.path))))
    }

    fn train(
        &mut self,
        r: usize,
        round: &Round,
        init: Option<&Path>,
    ) -> Result<Option<(AdapterId, PathBuf)>, RunError> {
        let previous = self.store.training_runs_of_round(round.id)?;
        if previous.iter().any(|t| t.state == TrainingState::Done) {
            return self.adapter_of_round(r);
        }
        // A training left `running` (killed) or `cancelled` (paused) goes on in the same row:
        // the trainer continues from its last checkpoint when it has one of these very pairs,
        // else starts again (deterministically, so with the same result either way).
        let unfinished = previous
            .iter()
            .rev()
            .find(|t| matches!(t.state, TrainingState::Running | TrainingState::Cancelled))
            .map(|t| t.id);
        let pairs = self.store.list_pairs(&PairFilter {
            round_id: Some(round.id),
            ..Default::default()
        })?;
        let mut examples = Vec::new();
        for pair in pairs.iter().filter(|p| p.review != ReviewState::Vetoed) {
            let PairTexts {
                messages,
                chosen,
                rejected,
            } = pair_texts(self.store, &self.config.template, pair)?;
            let formatted = self.engines.generator.format_chat(&messages)?;
            examples.push(TrainExample {
                kind: pair.kind,
                prompt: formatted,
                chosen,
                rejected,
            });
        }
        if examples.is_empty() {
            return Ok(None);
        }
        let objective = if self.config.train.sft_warmup && r == 0 {
            Objective::Sft
        } else {
            Objective::Preference
        };
        let training = match unfinished {
            Some(id) => id,
            None => {
                let config = serde_json::json!({
                    "examples": examples.len(),
                    "init_adapter": init.map(|p| p.display().to_string()),
                    "objective": match objective {
                        Objective::Sft => "sft",
                        Objective::Preference => "preference",
                    },
                });
                self.store.create_training_run(Some(round.id), &config)?
            }
        };
        self.store
            .set_training_state(training, TrainingState::Running, None)?;
        let out_dir = self.adapters_dir.join(format!("round-{r}"));
        let store = self.store;
        let progress = &mut *self.progress;
        let mut store_error = None;
        let mut first_step = None;
        let trainer = &mut *self.engines.trainer;
        let result = trainer.train_for(objective, &examples, init, &out_dir, &mut |report| {
            if first_step.is_none() {
                first_step = Some(report.step);
                // Steps logged after the checkpoint it resumes from are logged again.
                if let Err(e) = store.truncate_metrics(training, report.step as i64) {
                    store_error = Some(e);
                    return false;
                }
                if report.step > 1
                    && !progress(Progress::TrainingResumed {
                        round: r,
                        after_step: report.step - 1,
                    })
                {
                    return false;
                }
            }
            let metric = TrainingMetric {
                step: report.step as i64,
                epoch: 0.0,
                metrics: report.metrics.clone(),
            };
            if let Err(e) = store.append_metrics(training, &[metric]) {
                store_error = Some(e);
                return false;
            }
            progress(Progress::Train(report.clone()))
        });
        if let Some(e) = store_error {
            return Err(e.into());
        }
        let trained = match result {
            Ok(t) if t.completed => t,
            Ok(_) => {
                self.store
                    .set_training_state(training, TrainingState::Cancelled, None)?;
                return Err(RunError::Paused);
            }
            Err(e) => {
                self.store.set_training_state(
                    training,
                    TrainingState::Failed,
                    Some(&e.to_string()),
                )?;
                return Err(e.into());
            }
        };
        let bytes = std::fs::read(&trained.gguf_path).map_err(|source| RunError::Io {
            path: trained.gguf_path.clone(),
            source,
        })?;
        let adapter = self.store.add_adapter(&NewAdapter {
            training_run_id: Some(training),
            base_model_id: self.run.model_id,
            base_sha256: self.base_sha256.clone(),
            format: evolve_core::AdapterFormat::GgufLora,
            path: trained.gguf_path.display().to_string(),
            sha256: sha256_hex(&bytes),
            file_size: bytes.len() as i64,
            rank: trained.rank as i64,
            alpha: trained.alpha,
        })?;
        self.store
            .set_training_state(training, TrainingState::Done, None)?;
        Ok(Some((adapter, trained.gguf_path)))
    }

    /// Held-out evaluation: greedy direct answers and `refine_steps` greedy refinements, scored;
    /// stores `direct_score` and `refined_score@k` (mean score; accuracy for a 0/1 verifier).
    fn evaluate(
        &mut self,
        r: usize,
        round: &Round,
        adapter: Option<&(AdapterId, PathBuf)>,
        which: &str,
    ) -> Result<(), RunError> {
        let mut eval = self.store.list_prompts(self.run.dataset_id, Some("eval"))?;
        if self.config.eval_prompts > 0 {
            eval.truncate(self.config.eval_prompts);
        }
        if eval.is_empty() {
            return Ok(());
        }
        let adapter_id = adapter.map(|(id, _)| *id);
        let metric_name = |step: usize| {
            if step == 0 {
                format!("{which}/direct_score")
            } else {
                format!("{which}/refined_score@{step}")
            }
        };
        let existing = self.store.evaluations_of_run(self.run.id)?;
        if existing.iter().any(|e| {
            e.round_id == Some(round.id) && e.metric == metric_name(self.config.refine_steps)
        }) {
            return Ok(());
        }
        self.use_adapter(adapter.map(|(_, p)| p.as_path()))?;
        let starts: Vec<ChainStart> = eval
            .iter()
            .map(|p| ChainStart {
                question: &p.prompt,
                first_answer: None,
            })
            .collect();
        let chains = refine_chains(
            self.engines.generator,
            &starts,
            self.config.refine_steps,
            &self.config.template,
            &self.config.eval_sampler,
            &mut |_, _| true,
        )
        .map_err(|e| name_prompt(e.into(), |r| &eval[r]))?;
        let mut sums = vec![0.0; self.config.refine_steps + 1];
        // Every answer is kept with its evaluation, for the win rate against the next round.
        let mut answers: Vec<Vec<EvalAnswer>> = vec![Vec::new(); self.config.refine_steps + 1];
        for (p, chain) in eval.iter().zip(&chains) {
            for step in chain {
                let input = ScoreInput {
                    prompt: &p.prompt,
                    reference: p.reference.as_deref(),
                    answer: &step.completion.text,
                };
                let v = self
                    .engines
                    .scorer
                    .score(&input)
                    .map_err(|source| RunError::Score {
                        generation: -1,
                        source,
                    })?;
                sums[step.step_index] += v.value;
                answers[step.step_index].push(EvalAnswer {
                    prompt_id: p.id.0,
                    text: step.completion.text.clone(),
                    score: v.value,
                });
            }
        }
        for (step, (sum, answers)) in sums.iter().zip(answers).enumerate() {
            let value = sum / eval.len() as f64;
            self.store.add_evaluation(&NewEvaluation {
                round_id: Some(round.id),
                adapter_id,
                model_id: self.run.model_id,
                split: "eval".into(),
                metric: metric_name(step),
                value,
                n: eval.len() as i64,
                details: serde_json::json!({
                    "scorer": self.engines.scorer.name(),
                    "answers": answers,
                }),
            })?;
            self.report(Progress::Evaluated {
                round: r,
                metric: metric_name(step),
                value,
            })?;
        }
        Ok(())
    }

    /// Judged win rate of round `r`'s direct held-out answers over the previous model's (round
    /// `r - 1`'s adapter; for round 0 the untrained model): the scorer's own pairwise verdict
    /// when it has one (an LLM judge, both orders), else the higher score wins. Stored as
    /// [`WIN_RATE_METRIC`] with the wins, ties and losses.
    fn win_rate_vs_previous(&mut self, r: usize, round: &Round) -> Result<(), RunError> {
        let evals = self.store.evaluations_of_run(self.run.id)?;
        let stored = |round_id: RoundId, metric: &str| {
            evals
                .iter()
                .find(|e| e.round_id == Some(round_id) && e.metric == metric)
        };
        if stored(round.id, WIN_RATE_METRIC).is_some() {
            return Ok(());
        }
        let (previous_round, previous_which, previous_label) = if r == 0 {
            (round.id, "base", "base".to_string())
        } else {
            let rounds = self.store.rounds_of_run(self.run.id)?;
            let Some(prev) = rounds.iter().find(|x| x.round_index == r as i64 - 1) else {
                return Ok(());
            };
            (prev.id, "trained", format!("round {}", r - 1))
        };
        let answers_of = |round_id, which: &str| -> Option<Vec<EvalAnswer>> {
            let e = stored(round_id, &format!("{which}/direct_score"))?;
            serde_json::from_value(e.details.get("answers")?.clone()).ok()
        };
        // Evaluations stored before answers were kept have nothing to compare.
        let (Some(new), Some(old)) = (
            answers_of(round.id, "trained"),
            answers_of(previous_round, previous_which),
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
            adapter_id: stored(round.id, "trained/direct_score").and_then(|e| e.adapter_id),
            model_id: self.run.model_id,
            split: "eval".into(),
            metric: WIN_RATE_METRIC.into(),
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
            metric: WIN_RATE_METRIC.into(),
            value,
        })
    }
}

/// The details of a [`WIN_RATE_METRIC`] evaluation (its value is the rate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One held-out answer, kept in its evaluation's details.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EvalAnswer {
    prompt_id: i64,
    text: String,
    score: f64,
}

/// Counts streamed tokens for the progress callback (every 64th token, to keep it cheap) and
/// remembers whether the callback asked to pause.
struct TokenProgress<'p> {
    progress: &'p mut dyn FnMut(Progress) -> bool,
    generated: usize,
    paused: bool,
}

impl<'p> TokenProgress<'p> {
    fn new(progress: &'p mut dyn FnMut(Progress) -> bool) -> Self {
        Self {
            progress,
            generated: 0,
            paused: false,
        }
    }

    fn on_event(&mut self, event: &evolve_core::GenerationEvent) -> bool {
        if let evolve_core::GenerationEvent::Token { .. } = event {
            self.generated += 1;
            if self.generated.is_multiple_of(64)
                && !(self.progress)(Progress::Tokens {
                    generated: self.generated,
                })
            {
                self.paused = true;
            }
        }
        !self.paused
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

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
