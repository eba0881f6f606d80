//! Built-in verifiable tasks as datasets, and probing a model on prompts before a run: pass@1,
//! pass@k, untrained refinement and whether a round would find pairs (see
//! `evolve_loop::probe`). `evolve tasks`, `evolve demo --task`, `run start --dry-run` and the
//! run wizard use these.

use crate::Service;
use crate::runs::EngineSettings;
use anyhow::Result;
use evolve_core::ScorerSpec;
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
        scorer: &ScorerSpec,
        engine: &EngineSettings,
    ) -> Result<(Vec<ProbeRow>, ProbeSummary)> {
        let mut scorer = judge_for(scorer, engine)?;
        let chains = prompts.len() * settings.samples.max(1);
        let options = crate::engines::engine_options(model, engine, chains.clamp(1, 64))?;
        let mut generator = evolve_llama::LlamaEngine::load(model, options)?;
        Ok(probe(&mut generator, scorer.as_mut(), prompts, settings)?)
    }
}

pub(crate) fn judge_for(
    spec: &ScorerSpec,
    engine: &EngineSettings,
) -> Result<Box<dyn evolve_core::Scorer + Send>> {
    let mut options = evolve_llama::EngineOptions {
        n_gpu_layers: engine.gpu_layers,
        ..Default::default()
    };
    if let Some(t) = engine.threads {
        options.n_threads = t;
    }
    evolve_judge::scorer_from_spec(spec, &options).map_err(anyhow::Error::msg)
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
        let row = self
            .store()
            .get_model(model)?
            .ok_or_else(|| crate::service::NotFound(format!("no model with id {}", model.0)))?;
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
        let name = scorer.name().to_string();
        let chains = prompts.len() * settings.samples.max(1);
        let path = Path::new(&row.path);
        let options = crate::engines::engine_options(path, engine, chains.clamp(1, 64))?;
        let mut generator = evolve_llama::LlamaEngine::load(path, options)?;
        let (rows, summary) = probe(&mut generator, scorer.as_mut(), &prompts, &settings)?;
        Ok(DryRun {
            scorer: name,
            rows,
            summary,
        })
    }
}
