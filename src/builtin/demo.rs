//! The built-in task: the tiny task model, the arithmetic dataset, a run configuration that
//! suits them, and the demo's comparison of EVOLVE with its baselines. `evolve demo`, the app's
//! first start and the end-to-end tests all use these.

use crate::Service;
use crate::builtin::task_model::{EVAL_SEED, TASK_MODEL_FILE, TaskModelConfig};
use anyhow::{Context, Result};
use evolve_core::{PairedComparison, RefinementTemplate, SamplerConfig};
use evolve_loop::arithmetic::{
    all_held_out, gsm8k_jsonl, is_held_out, problems_split, task_template,
};
use evolve_loop::pairs::{PairKinds, PairRules, PairStrategy};
use evolve_loop::run::evaluate::eval_answers;
use evolve_loop::run::{PreferenceLoss, ReferenceModel, RunConfig, RunObjective, TrainSettings};
use evolve_loop::scoreboard::ScoreRow;
use evolve_loop::tasks::BuiltinTask;
use evolve_store::{DatasetId, Model, NewPrompt, RunId};
use serde::Serialize;
use std::path::PathBuf;

/// Display name of the registered task model.
pub const TASK_MODEL_NAME: &str = "tiny task (built in)";

/// The task model, trained by `evolve fixture task` and checked in: the app and the tests use
/// these bytes, nobody trains it at run time.
pub const TASK_MODEL_GGUF: &[u8] = include_bytes!("../../models/tiny-task.gguf");

/// Whether a model is the built-in task model (by registered name or file name).
pub fn is_task_model(path: &std::path::Path, display_name: Option<&str>) -> bool {
    display_name == Some(TASK_MODEL_NAME)
        || path.file_name().and_then(|n| n.to_str()) == Some(TASK_MODEL_FILE)
}

/// The refinement prompt a model should be asked with: the task model knows only the short
/// instruction it was trained on; any other model gets our default.
pub fn refinement_template_for(
    path: &std::path::Path,
    display_name: Option<&str>,
) -> RefinementTemplate {
    if is_task_model(path, display_name) {
        task_template()
    } else {
        RefinementTemplate::default()
    }
}

/// Settings of the arithmetic run; the defaults are what `evolve demo` runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoSettings {
    pub rounds: usize,
    pub prompts_per_round: usize,
    /// Held-out problems evaluated (0 = all of the held-out split, about 810).
    pub eval_prompts: usize,
    pub samples: usize,
    pub refine_steps: usize,
    /// A built-in task for a real model; `None` is the tiny task model's arithmetic.
    pub task: Option<BuiltinTask>,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            rounds: 3,
            prompts_per_round: 96,
            eval_prompts: 0,
            samples: 4,
            refine_steps: 2,
            task: None,
        }
    }
}

/// The task `evolve demo --model smollm2` runs: the one with the most headroom for
/// SmolLM2-135M-Instruct in `evolve tasks measure` (docs/real-model.md).
pub const REAL_MODEL_TASK: BuiltinTask = BuiltinTask::Smallest;

impl DemoSettings {
    /// The demo on a real instruct model: a built-in task, 500 held-out problems, half the
    /// tiny model's prompts per round and one refinement step (every answer and pair costs far
    /// more on a 135M model than on the 0.9M task model).
    pub fn for_task(task: BuiltinTask) -> Self {
        DemoSettings {
            rounds: 3,
            prompts_per_round: 48,
            eval_prompts: 500,
            samples: 4,
            refine_steps: 1,
            task: Some(task),
        }
    }
}

/// One row of [`Service::compare_run_lists`].
#[derive(Debug, Clone, Serialize)]
pub struct ComparedRuns {
    /// `direct` or `refine@k`.
    pub measure: String,
    /// `B vs A` by run id, or `pooled`.
    pub runs: String,
    /// `None` until both runs have that evaluation.
    pub comparison: Option<PairedComparison>,
}

/// What the demo compares, from the same base, prompts and seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The paper's method: DPO on direct and refinement pairs.
    Evolve,
    /// The paper's main baseline: DPO on direct pairs only.
    IterativeDpo,
    /// Rejection-sampling fine-tuning: NLL on the correct samples only, no pairs.
    Rft,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Evolve, Variant::IterativeDpo, Variant::Rft];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Evolve => "evolve",
            Variant::IterativeDpo => "iterative-dpo",
            Variant::Rft => "rft",
        }
    }

    /// `config` (the EVOLVE settings) turned into this variant.
    pub fn apply(self, mut config: RunConfig) -> RunConfig {
        match self {
            Variant::Evolve => {}
            Variant::IterativeDpo => config.pair_kinds.refine = false,
            Variant::Rft => config.train.objective = RunObjective::Rft,
        }
        config
    }
}

impl DemoSettings {
    /// The EVOLVE run configuration for the task model: its short refinement instruction, the
    /// numeric verifier, correct-vs-incorrect pairs, and LoRA-DPO with an NLL term on the
    /// chosen answer (plain DPO displaces the chosen answers' likelihood on reasoning tasks).
    /// `seed` varies the sampling and the training order, nothing else.
    pub fn run_config(&self, seed: u64) -> RunConfig {
        if self.task.is_some() {
            return self.real_model_config(seed);
        }
        RunConfig {
            rounds: self.rounds,
            prompts_per_round: self.prompts_per_round,
            samples: self.samples,
            refine_steps: self.refine_steps,
            sampler: SamplerConfig {
                temperature: 0.7,
                max_tokens: 48,
                seed: 7 + seed as u32,
                ..SamplerConfig::default()
            },
            eval_sampler: SamplerConfig::greedy(48),
            eval_prompts: self.eval_prompts,
            eval_sampled: true,
            template: task_template(),
            pair_strategy: PairStrategy::CorrectVsIncorrect {
                threshold: 0.5,
                max_pairs: 2,
            },
            pair_kinds: PairKinds {
                direct: true,
                refine: true,
                keep: false,
            },
            pair_rules: PairRules::default(),
            scorer: evolve_core::ScorerSpec::NUMERIC,
            chunk_prompts: 16,
            adapter_scale: 1.0,
            train: TrainSettings {
                lora_rank: 8,
                lora_alpha: 16.0,
                lr: 1e-4,
                beta: 0.5,
                lambda_refine: 1.0,
                nll_weight: 1.0,
                loss: PreferenceLoss::Sigmoid,
                reference: ReferenceModel::Base,
                first_step_only: false,
                sft_warmup: false,
                objective: RunObjective::Preference,
                epochs: 2,
                batch_size: 8,
                grad_accum: 1,
                max_tokens: 512,
                seed,
                checkpoint_every: 10,
            },
        }
    }
}

impl DemoSettings {
    /// A built-in task on a real instruct model: our default refinement prompt, the
    /// `numeric_any` verifier, answers of up to 64 tokens, one pair per prompt and kind, and a
    /// LoRA of rank 16 on every linear layer, trained one epoch at TRL's usual LoRA-DPO β.
    fn real_model_config(&self, seed: u64) -> RunConfig {
        let tiny = DemoSettings {
            task: None,
            ..self.clone()
        }
        .run_config(seed);
        RunConfig {
            sampler: SamplerConfig {
                max_tokens: 64,
                ..tiny.sampler
            },
            eval_sampler: SamplerConfig::greedy(64),
            eval_sampled: false,
            template: RefinementTemplate::default(),
            pair_strategy: PairStrategy::CorrectVsIncorrect {
                threshold: 0.5,
                max_pairs: 1,
            },
            scorer: self.task.map_or(tiny.scorer.clone(), BuiltinTask::scorer),
            train: TrainSettings {
                lora_rank: 16,
                lora_alpha: 32.0,
                lr: 1e-4,
                beta: 0.1,
                epochs: 1,
                // A refinement turn holds the question, an answer and the instruction: well
                // under 256 tokens here, and the vocabulary projection of 49k entries makes
                // every token of a batch cost memory.
                max_tokens: 256,
                batch_size: 4,
                ..tiny.train
            },
            ..tiny
        }
    }
}

impl Service {
    /// The refinement prompt to ask `model` with (see [`refinement_template_for`]).
    pub fn refinement_template_for(&self, model: &std::path::Path) -> Result<RefinementTemplate> {
        let display_name = self
            .store()
            .find_model_by_path(&model.display().to_string())?
            .and_then(|m| m.display_name);
        Ok(refinement_template_for(model, display_name.as_deref()))
    }

    /// The built-in task model, written into the data directory from the bytes shipped in the
    /// binary (rewritten if the file there differs) and registered.
    pub fn task_model(&self) -> Result<(Model, PathBuf)> {
        let path = self.data_dir().models().join(TASK_MODEL_FILE);
        let same = std::fs::read(&path).is_ok_and(|b| b == TASK_MODEL_GGUF);
        if !same {
            std::fs::create_dir_all(self.data_dir().models())?;
            let partial = path.with_extension("gguf.partial");
            std::fs::write(&partial, TASK_MODEL_GGUF)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let model = self.add_model(&path, Some(TASK_MODEL_NAME))?.model;
        Ok((model, path))
    }

    /// The arithmetic dataset: `train` problems for the rounds and `eval` held-out problems
    /// (0 = every held-out problem), never in any training data. Named by its size, so demos of
    /// other sizes never mix their rows. Also written as GSM8K JSONL next to the database.
    pub fn arithmetic_dataset(&self, train: usize, eval: usize) -> Result<DatasetId> {
        let name = format!(
            "arithmetic-{train}-{}",
            if eval == 0 {
                "all".into()
            } else {
                eval.to_string()
            }
        );
        let store = self.store();
        if let Some(d) = store.dataset_by_name(&name)? {
            return Ok(d.id);
        }
        let digits = TaskModelConfig::default().digits;
        let mut problems = problems_split(train, digits, 0xDA7A, false);
        problems.extend(if eval == 0 {
            all_held_out(digits)
        } else {
            problems_split(eval, digits, EVAL_SEED, true)
        });
        let dir = self.data_dir().root().join("datasets");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{name}.jsonl"));
        std::fs::write(&file, gsm8k_jsonl(&problems))?;
        let prompts: Vec<NewPrompt> = problems
            .iter()
            .enumerate()
            .map(|(i, p)| NewPrompt {
                idx: i as i64,
                split: if is_held_out(p) { "eval" } else { "train" }.into(),
                prompt: p.question(),
                reference: Some(p.sum().to_string()),
                metadata: serde_json::json!({"a": p.a, "b": p.b}),
            })
            .collect();
        // One transaction: a crash leaves no half-filled dataset under this name.
        let id = store.create_dataset_with_prompts(
            &name,
            Some(&file.display().to_string()),
            "gsm8k",
            &prompts,
        )?;
        Ok(id)
    }
}

/// One row of a demo's results: a model state of one run, its scoreboard row with the time
/// its round took.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub score: ScoreRow,
    /// Seconds the round took (collection to evaluation), when it ran in one go.
    pub wall_s: Option<f64>,
}

impl ResultRow {
    /// Per refinement step: problems it turned wrong → right.
    pub fn wrong_to_right(&self) -> Vec<usize> {
        self.score.refine_steps.iter().map(|c| c.wins).collect()
    }

    /// Per refinement step: problems it turned right → wrong.
    pub fn right_to_wrong(&self) -> Vec<usize> {
        self.score.refine_steps.iter().map(|c| c.losses).collect()
    }
}

/// The demo's JSON keeps its own columns: the scoreboard row's, less the round, the win rate
/// and the step comparisons (written as their wrong → right and right → wrong counts).
impl Serialize for ResultRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut row = serde_json::to_value(&self.score).map_err(serde::ser::Error::custom)?;
        let columns = row.as_object_mut().expect("a scoreboard row is an object");
        for left_out in ["round", "win_rate", "refine_steps"] {
            columns.remove(left_out);
        }
        columns.insert("wrong_to_right".into(), self.wrong_to_right().into());
        columns.insert("right_to_wrong".into(), self.right_to_wrong().into());
        columns.insert("wall_s".into(), self.wall_s.into());
        row.serialize(serializer)
    }
}

/// One run of the demo: a variant with a seed.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub variant: Variant,
    pub seed: u64,
    pub run_id: i64,
    pub rows: Vec<ResultRow>,
    pub pairs: Vec<[usize; 2]>,
    pub wall_s: Option<f64>,
}

impl Service {
    /// The results of a finished (or partial) demo run, for the table and the JSON file.
    pub fn demo_result(
        &self,
        run: RunId,
        variant: Variant,
        seed: u64,
        round_wall_s: &[Option<f64>],
    ) -> Result<VariantResult> {
        let status = self.run_status(run)?;
        let rows = status
            .scoreboard
            .iter()
            .map(|r| ResultRow {
                score: r.clone(),
                wall_s: r.round.and_then(|i| round_wall_s.get(i).copied().flatten()),
            })
            .collect();
        let wall: Vec<f64> = round_wall_s.iter().flatten().copied().collect();
        Ok(VariantResult {
            variant,
            seed,
            run_id: run.0,
            rows,
            pairs: status
                .rounds
                .iter()
                .map(|r| [r.direct_pairs, r.refine_pairs])
                .collect(),
            wall_s: (wall.len() == round_wall_s.len() && !wall.is_empty())
                .then(|| wall.iter().sum()),
        })
    }

    /// The last round's `measure` (direct, or refined after k steps) of run `b` against run
    /// `a`'s, problem by problem (both evaluated on the same held-out problems): does one
    /// variant beat the other.
    pub fn compare_runs(
        &self,
        a: RunId,
        b: RunId,
        measure: evolve_core::EvalMeasure,
    ) -> Result<Option<PairedComparison>> {
        Ok(self
            .paired_scores(a, b, measure)?
            .and_then(|(before, after)| PairedComparison::of(&before, &after)))
    }

    /// `b`'s runs against `a`'s (the i-th with the i-th, e.g. the same seed), direct and after
    /// each refinement step both evaluated: one row per pair of runs, then (for several pairs)
    /// one pooled over all of them, every problem of every pair one paired observation.
    pub fn compare_run_lists(&self, a: &[RunId], b: &[RunId]) -> Result<Vec<ComparedRuns>> {
        anyhow::ensure!(
            a.len() == b.len() && !a.is_empty(),
            "runs A and B must be as many ({} against {}): the i-th of A is paired with the i-th of B",
            a.len(),
            b.len()
        );
        let pairs: Vec<(RunId, RunId)> = a.iter().copied().zip(b.iter().copied()).collect();
        let mut steps = usize::MAX;
        for &run in a.iter().chain(b) {
            let (_, config) = evolve_loop::run::RunConfig::load(self.store(), run)?;
            steps = steps.min(config.refine_steps);
        }
        let measures = std::iter::once(("direct".to_string(), evolve_core::EvalMeasure::Direct))
            .chain(
                (1..=steps).map(|k| (format!("refine@{k}"), evolve_core::EvalMeasure::Refined(k))),
            );
        let mut rows = Vec::new();
        for (name, measure) in measures {
            // `None` once some pair lacks the evaluation: nothing pooled then.
            let mut pooled = Some((Vec::new(), Vec::new()));
            for &(x, y) in &pairs {
                let scores = self.paired_scores(x, y, measure)?;
                rows.push(ComparedRuns {
                    measure: name.clone(),
                    runs: format!("{} vs {}", y.0, x.0),
                    comparison: scores
                        .as_ref()
                        .and_then(|(before, after)| PairedComparison::of(before, after)),
                });
                pooled =
                    pooled
                        .zip(scores)
                        .map(|((mut all_before, mut all_after), (before, after))| {
                            all_before.extend(before);
                            all_after.extend(after);
                            (all_before, all_after)
                        });
            }
            if pairs.len() > 1 {
                rows.push(ComparedRuns {
                    measure: name,
                    runs: "pooled".into(),
                    comparison: pooled
                        .and_then(|(before, after)| PairedComparison::of(&before, &after)),
                });
            }
        }
        Ok(rows)
    }

    /// The scores of `a`'s and `b`'s last rounds on the problems both were evaluated on, in
    /// the same order; `None` when either lacks an evaluation of `measure`.
    fn paired_scores(
        &self,
        a: RunId,
        b: RunId,
        measure: evolve_core::EvalMeasure,
    ) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        let last = |run: RunId| -> Result<Option<Vec<evolve_core::EvalAnswer>>> {
            let rounds = self.store().rounds_of_run(run)?;
            let Some(last) = rounds.last() else {
                return Ok(None);
            };
            let metric = evolve_core::EvalMetric::new(evolve_core::EvalSubject::Trained, measure)
                .to_string();
            Ok(self
                .store()
                .evaluations_of_run(run)?
                .iter()
                .find(|e| e.round_id == Some(last.id) && e.metric == metric)
                .and_then(eval_answers))
        };
        let (Some(x), Some(y)) = (last(a)?, last(b)?) else {
            return Ok(None);
        };
        let by_prompt: std::collections::HashMap<i64, f64> =
            x.iter().map(|e| (e.prompt_id, e.score)).collect();
        Ok(Some(
            y.iter()
                .filter_map(|e| Some((*by_prompt.get(&e.prompt_id)?, e.score)))
                .unzip(),
        ))
    }
}
