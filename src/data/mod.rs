//! Prompt datasets in the store: import (validated, split) and listing.

pub mod pairs;
pub mod tasks;

use crate::Service;
use anyhow::{Context, Result};
use evolve_loop::dataset::{DatasetFormat, ImportReport, import_file, split_eval};
use evolve_store::{Dataset, DatasetId, NewPrompt};
use std::path::Path;

/// Train problems of a built-in task's dataset named as `task:NAME`: enough for 20 rounds of 48.
pub const TASK_TRAIN: usize = 1000;
/// Held-out problems of a built-in task's dataset named as `task:NAME`.
pub const TASK_EVAL: usize = 500;

/// How a file becomes a dataset.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Dataset name [default: the file stem].
    pub name: Option<String>,
    pub format: Option<DatasetFormat>,
    /// Share of prompts held out for evaluation, decided per line so re-imports keep it.
    pub eval_fraction: f64,
    pub split_seed: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            name: None,
            format: None,
            eval_fraction: 0.1,
            split_seed: 0,
        }
    }
}

#[derive(Debug)]
pub struct ImportOutcome {
    pub dataset: DatasetId,
    pub name: String,
    pub report: ImportReport,
    /// Prompts new to the store (a re-import of a grown file adds only the new lines).
    pub added: usize,
    pub eval_prompts: usize,
}

impl Service {
    /// Imports a JSONL/CSV file: bad lines are reported and skipped, good ones stored with a
    /// deterministic train/eval split. Importing the same name again adds only new lines.
    pub fn import_dataset(&self, path: &Path, options: &ImportOptions) -> Result<ImportOutcome> {
        let report = import_file(path, options.format)?;
        let name = match &options.name {
            Some(n) => n.clone(),
            None => path
                .file_stem()
                .map_or("dataset".into(), |s| s.to_string_lossy().into_owned()),
        };
        let format = report.format.map_or("unknown", DatasetFormat::as_str);
        let store = self.store();
        let dataset = match store.dataset_by_name(&name)? {
            Some(d) => d.id,
            None => store.create_dataset(&name, Some(&path.display().to_string()), format)?,
        };
        let max_line = report.prompts.iter().map(|p| p.line).max().unwrap_or(0);
        let is_eval = split_eval(max_line + 1, options.eval_fraction, options.split_seed);
        let prompts: Vec<NewPrompt> = report
            .prompts
            .iter()
            .map(|p| NewPrompt {
                idx: p.line as i64,
                split: if is_eval[p.line] { "eval" } else { "train" }.to_string(),
                prompt: p.prompt.clone(),
                reference: p.reference.clone(),
                metadata: p.metadata.clone(),
            })
            .collect();
        let eval_prompts = prompts.iter().filter(|p| p.split == "eval").count();
        let added = store
            .add_prompts(dataset, &prompts)
            .context("storing prompts")?;
        Ok(ImportOutcome {
            dataset,
            name,
            report,
            added,
            eval_prompts,
        })
    }

    /// Resolves `--data`: a dataset id or name, `task:NAME` (a built-in task's dataset of
    /// [`TASK_TRAIN`] train and [`TASK_EVAL`] held-out problems, fewer for small tasks), or a
    /// file to import.
    pub fn resolve_dataset(&self, spec: &str) -> Result<(DatasetId, Option<ImportReport>)> {
        let store = self.store();
        if let Ok(id) = spec.parse::<i64>()
            && store.get_dataset(DatasetId(id))?.is_some()
        {
            return Ok((DatasetId(id), None));
        }
        if let Some(d) = store.dataset_by_name(spec)? {
            return Ok((d.id, None));
        }
        let path = Path::new(spec);
        if let Some(name) = spec.strip_prefix("task:")
            && !path.exists()
        {
            let task: evolve_loop::tasks::BuiltinTask = name.parse()?;
            // Small tasks (units, count-letter) get what they have, a quarter held out.
            let eval = TASK_EVAL.min(task.size() / 4);
            let train = TASK_TRAIN.min(task.size() * 3 / 4 - eval);
            return Ok((self.task_dataset(task, train, eval)?, None));
        }
        if !path.is_file() {
            anyhow::bail!(
                "'{spec}' is neither a dataset id, a dataset name, a built-in task (task:NAME, see `evolve tasks list`) nor a file"
            );
        }
        let outcome = self.import_dataset(path, &ImportOptions::default())?;
        Ok((outcome.dataset, Some(outcome.report)))
    }

    pub fn list_datasets(&self) -> Result<Vec<(Dataset, usize, usize)>> {
        let store = self.store();
        store
            .list_datasets()?
            .into_iter()
            .map(|d| {
                let train = store.list_prompts(d.id, Some("train"))?.len();
                let eval = store.list_prompts(d.id, Some("eval"))?.len();
                Ok((d, train, eval))
            })
            .collect()
    }
}
