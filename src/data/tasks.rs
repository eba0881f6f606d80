//! Built-in verifiable tasks as datasets, and probing a model on prompts before a run: pass@1,
//! pass@k, untrained refinement and whether a round would find pairs (see
//! `evolve_loop::probe`). `evolve tasks`, `evolve demo --task`, `run start --dry-run` and the
//! run wizard use these.

use crate::Service;
use crate::engines::{EngineSettings, judge_for};
use anyhow::Result;
use evolve_loop::probe::{ProbeRow, ProbeSettings, ProbeSummary, probe};
use evolve_loop::tasks::BuiltinTask;
use evolve_store::{DatasetId, NewPrompt};
use std::path::Path;

/// Seed of every built-in task's problems: a task's held-out split is the same in every run.
pub const TASK_SEED: u64 = 0x7A5C;

impl Service {
    /// Dataset of `task`: `train` problems for rounds and `eval` held-out problems, never in
    /// both. Named by task and sizes, so datasets of other sizes never mix rows.
    pub fn task_dataset(&self, task: BuiltinTask, train: usize, eval: usize) -> Result<DatasetId> {
        let name = format!("{task}-{train}-{eval}");
        let store = self.store();
        if let Some(d) = store.dataset_by_name(&name)? {
            return Ok(d.id);
        }
        let (train_problems, eval_problems) = task.problems(train, eval, TASK_SEED)?;
        let prompts: Vec<NewPrompt> = eval_problems
            .iter()
            .map(|p| (p, "eval"))
            .chain(train_problems.iter().map(|p| (p, "train")))
            .enumerate()
            .map(|(i, (p, split))| NewPrompt {
                idx: i as i64,
                split: split.into(),
                prompt: p.question.clone(),
                reference: Some(p.answer.clone()),
                metadata: serde_json::json!({"task": task.name()}),
            })
            .collect();
        Ok(store.create_dataset_with_prompts(&name, None, "builtin", &prompts)?)
    }

    /// Answers `prompts` (question, gold answer) with `model` as `settings` say, every answer
    /// scored by `scorer`: the evidence before a run that the scorer reads the model's answers
    /// and that a round would find pairs.
    pub fn probe_model(
        &self,
        model: &Path,
        prompts: &[(String, Option<String>)],
        settings: &ProbeSettings,
        scorer: &mut dyn evolve_core::Scorer,
        engine: &EngineSettings,
    ) -> Result<(Vec<ProbeRow>, ProbeSummary)> {
        let chains = prompts.len() * settings.samples.max(1);
        let options = self.engine_options(model, engine, chains.clamp(1, 64))?;
        let mut generator = evolve_llama::LlamaEngine::load(model, options)?;
        Ok(probe(&mut generator, scorer, prompts, settings)?)
    }
}

/// Train prompts a dry run answers: enough to see how the scorer reads the model, quick even
/// on a CPU.
pub const DRY_RUN_PROMPTS: usize = 4;

/// [`Service::dry_run`]'s answer.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
#[ts(export)]
pub struct DryRun {
    /// The scorer's name, as stored with its scores.
    pub scorer: String,
    pub rows: Vec<ProbeRow>,
    pub summary: ProbeSummary,
}

impl Service {
    /// A run's first steps on a few train prompts, nothing stored: `config.samples` answers per
    /// prompt sampled as round 0 would, each with the scorer's verdict, and whether pairs would
    /// form. Shows before a run whether the scorer can read the model's answers at all.
    pub fn dry_run(
        &self,
        model: evolve_store::ModelId,
        dataset: DatasetId,
        config: &evolve_loop::run::RunConfig,
        engine: &EngineSettings,
    ) -> Result<DryRun> {
        config.validate()?;
        let row = self.model(model)?;
        let mut prompts = self.store().list_prompts(dataset, Some("train"))?;
        anyhow::ensure!(!prompts.is_empty(), "the dataset has no train prompts");
        prompts.truncate(DRY_RUN_PROMPTS);
        let prompts: Vec<(String, Option<String>)> = prompts
            .into_iter()
            .map(|p| (p.prompt, p.reference))
            .collect();
        let settings = ProbeSettings {
            samples: config.samples,
            sampler: config.sampler.clone(),
            sample_refine_steps: 0,
            greedy: None,
            refine_steps: 0,
            template: config.template.clone(),
            pair_strategy: config.pair_strategy.clone(),
        };
        let mut scorer = judge_for(&config.scorer, engine)?;
        let (rows, summary) = self.probe_model(
            Path::new(&row.path),
            &prompts,
            &settings,
            scorer.as_mut(),
            engine,
        )?;
        Ok(DryRun {
            scorer: scorer.name().to_string(),
            rows,
            summary,
        })
    }
}

/// How `evolve tasks measure` probes each task.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureSettings {
    /// Train problems per task.
    pub problems: usize,
    /// Samples per problem (the k of pass@k).
    pub samples: usize,
    pub temperature: f32,
    pub max_tokens: u32,
}

impl Default for MeasureSettings {
    fn default() -> Self {
        MeasureSettings {
            problems: 60,
            samples: 8,
            temperature: 0.7,
            max_tokens: 64,
        }
    }
}

/// One task's measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskMeasure {
    pub task: BuiltinTask,
    pub summary: ProbeSummary,
    pub rows: Vec<ProbeRow>,
    pub wall_s: f64,
}

impl TaskMeasure {
    /// pass@k − pass@1: what a sample-and-verify loop can reach beyond greedy decoding.
    pub fn headroom(&self) -> f64 {
        self.summary.pass_k.unwrap_or(0.0) - self.summary.pass1.unwrap_or(0.0)
    }
}

impl Service {
    /// `model` on each task's first `settings.problems` train problems: greedy pass@1, pass@k
    /// at the temperature, and one greedy refinement with the model's refinement prompt.
    /// `done` sees each task as it finishes.
    pub fn measure_tasks(
        &self,
        model: &Path,
        tasks: &[BuiltinTask],
        settings: &MeasureSettings,
        engine: &EngineSettings,
        done: &mut dyn FnMut(&TaskMeasure),
    ) -> Result<Vec<TaskMeasure>> {
        let sampler = evolve_core::SamplerConfig {
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            seed: 11,
            ..Default::default()
        };
        sampler.validate("sampler").map_err(anyhow::Error::msg)?;
        let probe_settings = ProbeSettings {
            samples: settings.samples,
            sampler,
            sample_refine_steps: 0,
            greedy: Some(evolve_core::SamplerConfig::greedy(settings.max_tokens)),
            refine_steps: 1,
            template: self.refinement_template_for(model)?,
            pair_strategy: evolve_loop::pairs::PairStrategy::default(),
        };
        let mut out = Vec::new();
        for &task in tasks {
            let started = std::time::Instant::now();
            let dataset = self.task_dataset(task, settings.problems, 0)?;
            let prompts: Vec<(String, Option<String>)> = self
                .store()
                .list_prompts(dataset, Some("train"))?
                .into_iter()
                .map(|p| (p.prompt, p.reference))
                .collect();
            let mut scorer = judge_for(&task.scorer(), engine)?;
            let (rows, summary) =
                self.probe_model(model, &prompts, &probe_settings, scorer.as_mut(), engine)?;
            let measure = TaskMeasure {
                task,
                summary,
                rows,
                wall_s: started.elapsed().as_secs_f64(),
            };
            done(&measure);
            out.push(measure);
        }
        Ok(out)
    }
}
