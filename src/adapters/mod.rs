//! Trained adapters: list, export (GGUF LoRA, PEFT, merged GGUF, TRL pairs) and "is it really
//! applied" (base and adapter logits compared in llama.cpp). `evolve adapters` and the app's
//! adapter screen both call these.
//!
//! Listing and resolving need the database; exporting and checking take seconds to minutes, so
//! they run on an [`AdapterSource`] without holding it.

pub mod export_path;
pub mod handoff;
pub mod trl_train;

use crate::Service;
use crate::engines::{EngineCache, EngineSettings};
use crate::models::discover::{self, Places};
use crate::service::NotFound;
use anyhow::{Context, Result, bail};
use evolve_core::{ExportFormat, PromptFormat, SamplerConfig};
use evolve_store::{Adapter, AdapterId, RunId, Store};
use evolve_train::CHECKPOINT_WEIGHTS;
use evolve_train::export::AdapterFiles;
use export_path::{check_free, check_written, commit_partial, fresh_partial, target_in};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// An adapter as listed.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct AdapterInfo {
    pub id: i64,
    /// The run and round that trained it, when it came from a run.
    pub run_id: Option<i64>,
    pub round: Option<i64>,
    pub path: String,
    pub format: &'static str,
    pub rank: i64,
    pub alpha: f64,
    pub sha256: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub base_model_id: i64,
}

/// An adapter with what exporting or checking it needs, resolved from the database.
#[derive(Debug, Clone)]
pub struct AdapterSource {
    pub adapter: Adapter,
    pub base_model: PathBuf,
    /// What the base model is called (its label, else `general.name`, else the file's name).
    pub base_name: String,
    /// How the base model formats conversations (checks prompt with it; an Ollama export
    /// writes the plain format's template).
    pub prompt_format: PromptFormat,
    pub run: Option<RunId>,
}

/// What to export an adapter as, and where.
#[derive(Debug, Clone, Copy)]
pub struct ExportRequest<'a> {
    pub format: ExportFormat,
    /// An absolute folder (for LM Studio: its models folder; empty = the one on this machine).
    pub dir: &'a str,
    /// Replace an export of the same name.
    pub overwrite: bool,
    /// PEFT's `base_model_name_or_path` (default: from the base GGUF's metadata).
    pub base_name: Option<&'a str>,
}

/// A finished export.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct Exported {
    /// The file or folder written.
    pub path: String,
    /// What else happened or what to do next: `ollama create`'s outcome or the command to run.
    pub note: Option<String>,
}

/// The outcome of the applied-check on a fixed prompt.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct AdapterCheck {
    /// The adapter changes the next-token logits.
    pub applied: bool,
    pub max_logit_diff: f32,
    pub base_text: String,
    pub adapter_text: String,
}

/// The GGUF LoRA's name inside an Ollama export's folder.
const OLLAMA_ADAPTER: &str = "adapter.gguf";

/// The same prompt for every adapter, so results compare.
const CHECK_PROMPT: &str = "What is 12 + 30?";

fn origin(store: &Store, a: &Adapter) -> Result<(Option<RunId>, Option<i64>)> {
    let Some(t) = a.training_run_id else {
        return Ok((None, None));
    };
    let round = store
        .get_training_run(t)?
        .and_then(|t| t.round_id)
        .map(|r| store.get_round(r))
        .transpose()?
        .flatten();
    Ok(round.map_or((None, None), |r| (Some(r.run_id), Some(r.round_index))))
}

impl Service {
    pub fn list_adapters(&self) -> Result<Vec<AdapterInfo>> {
        let store = self.store();
        let mut out = Vec::new();
        for a in store.list_adapters()? {
            let (run, round) = origin(store, &a)?;
            out.push(AdapterInfo {
                id: a.id.0,
                run_id: run.map(|r| r.0),
                round,
                path: a.path.clone(),
                format: a.format.as_str(),
                rank: a.rank,
                alpha: a.alpha,
                sha256: a.sha256.clone(),
                created_at: crate::service::rfc3339(a.created_at),
                base_model_id: a.base_model_id.0,
            });
        }
        Ok(out)
    }

    /// Adapter `id`, its base model's file and the run that trained it.
    pub fn adapter_source(&self, id: AdapterId) -> Result<AdapterSource> {
        let store = self.store();
        let Some(adapter) = store.get_adapter(id)? else {
            return Err(NotFound(format!("no adapter with id {}", id.0)).into());
        };
        let base = store.get_model(adapter.base_model_id)?.with_context(|| {
            format!("the base model of adapter {} is no longer registered", id.0)
        })?;
        let (run, _) = origin(store, &adapter)?;
        let base_model = PathBuf::from(&base.path);
        let prompt_format = base.prompt_format.clone();
        let base_name = base
            .display_name
            .or(base.name)
            .or_else(|| {
                base_model
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        Ok(AdapterSource {
            adapter,
            base_model,
            base_name,
            prompt_format,
            run,
        })
    }
}

impl AdapterSource {
    /// Writes the adapter as `format` into the absolute folder `dir` (created if missing) and
    /// returns the file or folder written. The export is written beside its name and renamed
    /// into place when complete; an export already there is replaced only with `overwrite`.
    /// For LM Studio `dir` is its models folder, found on this machine when empty. `service`
    /// is only read for TRL pairs.
    pub fn export(&self, service: &Service, request: &ExportRequest) -> Result<Exported> {
        let ExportRequest {
            format,
            dir,
            overwrite,
            base_name,
        } = *request;
        let id = self.adapter.id.0;
        let (dir, name) = match format {
            ExportFormat::GgufLora => (dir.to_string(), format!("adapter-{id}.gguf")),
            ExportFormat::Peft => (dir.to_string(), format!("adapter-{id}-peft")),
            ExportFormat::MergedGguf => (dir.to_string(), format!("adapter-{id}-merged.gguf")),
            ExportFormat::TrlPairs => (dir.to_string(), format!("adapter-{id}-pairs.jsonl")),
            ExportFormat::Ollama => (dir.to_string(), format!("adapter-{id}-ollama")),
            ExportFormat::LmStudio => {
                let root = match dir.trim() {
                    "" => Places::of_this_machine(&[])
                        .lm_studio_target()
                        .context("cannot tell where LM Studio keeps its models: give the folder")?
                        .to_path_buf(),
                    d => PathBuf::from(d),
                };
                let (sub, file) = handoff::lm_studio_names(&self.base_name, id);
                (root.join(sub).display().to_string(), file)
            }
        };
        let (folder, target) = target_in(&dir, &name)?;
        check_free(&target, overwrite)?;
        // Loaded before anything is written: a missing checkpoint leaves no partial behind.
        let trained = match format {
            ExportFormat::Peft | ExportFormat::MergedGguf | ExportFormat::LmStudio => {
                Some(self.trained()?)
            }
            _ => None,
        };
        let ollama = match format {
            ExportFormat::Ollama => Some(self.modelfile(&target)?),
            _ => None,
        };
        let is_dir = matches!(format, ExportFormat::Peft | ExportFormat::Ollama);
        let mut partial = fresh_partial(&target, is_dir)?;
        let source = Path::new(&self.adapter.path);
        let copy = |to: &mut std::fs::File, name: &Path| {
            let mut from = std::fs::File::open(source)
                .with_context(|| format!("cannot read {}", source.display()))?;
            std::io::copy(&mut from, to)
                .map(drop)
                .with_context(|| format!("cannot copy {} to {}", source.display(), name.display()))
        };
        let written = (|| -> Result<()> {
            match (format, &trained) {
                (ExportFormat::GgufLora, _) => copy(partial.file()?, &target)?,
                (ExportFormat::Ollama, _) => {
                    // A folder of our own, made afresh: its files are new names in it.
                    let (_, text) = ollama.as_ref().expect("made above");
                    let to = partial.path.join(OLLAMA_ADAPTER);
                    let mut file = std::fs::File::create_new(&to)
                        .with_context(|| format!("cannot write {}", to.display()))?;
                    copy(&mut file, &to)?;
                    std::fs::write(partial.path.join("Modelfile"), text)
                        .context("cannot write the Modelfile")?;
                }
                (ExportFormat::Peft, Some(t)) => {
                    let name = match base_name {
                        Some(name) => Some(name.to_string()),
                        None => crate::models::hf_name(&crate::models::inspect(&self.base_model)?),
                    };
                    t.export_peft(&partial.path, name.as_deref())
                        .context("export failed")?;
                }
                (ExportFormat::MergedGguf | ExportFormat::LmStudio, Some(t)) => {
                    // A plain-format base gets the plain template, so LM Studio prompts it so.
                    let template = (self.prompt_format == PromptFormat::Plain)
                        .then_some(evolve_core::prompt_format::PLAIN_JINJA_TEMPLATE);
                    let file = partial.file()?.try_clone()?;
                    t.export_merged_gguf(file, &target, &self.base_model, template)
                        .context("export failed")?;
                }
                (ExportFormat::TrlPairs, _) => {
                    let Some(run) = self.run else {
                        bail!("adapter {id} did not come from a run: it has no pairs");
                    };
                    let (lines, _) = service.trl_pairs_jsonl(run)?;
                    std::io::Write::write_all(partial.file()?, lines.as_bytes())
                        .with_context(|| format!("cannot write {}", target.display()))?;
                }
                _ => unreachable!("the weights are loaded for PEFT and merged exports"),
            }
            Ok(())
        })();
        commit_partial(partial, &target, written)?;
        let path = check_written(&folder, &target)?;
        let note = match (format, ollama) {
            (ExportFormat::Ollama, Some((name, _))) => {
                Some(handoff::ollama_create(&name, &path.join("Modelfile")))
            }
            (ExportFormat::LmStudio, _) => Some(format!(
                "LM Studio lists it as {}",
                path.strip_prefix(folder.parent().and_then(Path::parent).unwrap_or(&folder))
                    .unwrap_or(&path)
                    .display()
            )),
            _ => None,
        };
        Ok(Exported {
            path: path.display().to_string(),
            note,
        })
    }

    /// The Ollama model name and Modelfile for an export into the folder `target`: `FROM` the
    /// base as Ollama knows it (its template and parameters repeated) when it is one of
    /// Ollama's own models, else the base GGUF with its end-of-turn tokens as stop strings.
    fn modelfile(&self, target: &Path) -> Result<(String, String)> {
        let id = self.adapter.id.0;
        let base_ollama =
            discover::ollama_model_of(&self.base_model, &Places::of_this_machine(&[]));
        let base_file = crate::models::inspect(&self.base_model)?;
        let name = handoff::ollama_name(
            base_ollama
                .as_ref()
                .map_or(&self.base_name, |m| &m.found.name),
            id,
        );
        let origin = self
            .run
            .map_or(String::new(), |run| format!(", trained in run {}", run.0));
        let spec = handoff::ModelfileSpec {
            title: format!("EVOLVE adapter {id} on {}{origin}", self.base_name),
            from: match &base_ollama {
                Some(m) => m.found.name.clone(),
                None => self.base_model.display().to_string(),
            },
            adapter: &target.join(OLLAMA_ADAPTER),
            ollama_base: base_ollama.as_ref(),
            prompt_format: &self.prompt_format,
            stops: handoff::stop_tokens(&base_file),
            name: &name,
        };
        Ok((name.clone(), handoff::modelfile(&spec)?))
    }

    /// The base model and the adapter's trained weights (the checkpoint saved next to its GGUF).
    fn trained(&self) -> Result<AdapterFiles> {
        let weights = Path::new(&self.adapter.path)
            .parent()
            .unwrap_or(Path::new("."))
            .join(CHECKPOINT_WEIGHTS);
        if !weights.is_file() {
            bail!(
                "the adapter's weights {} are missing: only adapters trained here export as PEFT or merged",
                weights.display()
            );
        }
        AdapterFiles::load(
            &self.base_model,
            &weights,
            self.adapter.rank as usize,
            self.adapter.alpha,
        )
        .context("cannot load the adapter")
    }

    /// Base and adapter on the same prompt: greedy text and next-token logits. An adapter that
    /// leaves every logit unchanged is not applied (a wrong base model, an empty adapter).
    pub fn check(&self, engines: &EngineCache, settings: &EngineSettings) -> Result<AdapterCheck> {
        let mut guard = engines.lock();
        let mut run = |adapter: Option<&Path>| -> Result<(Vec<f32>, String)> {
            let engine = guard.select(
                &self.base_model,
                adapter,
                settings,
                Some(&self.prompt_format),
            )?;
            let prompt = engine
                .format_user_prompt(CHECK_PROMPT)
                .unwrap_or_else(|_| CHECK_PROMPT.to_string());
            let logits = engine.last_logits(&engine.tokenize(&prompt))?;
            let text = engine
                .generate(&prompt, &SamplerConfig::greedy(24), |_| true)?
                .text;
            Ok((logits, text))
        };
        let (base_logits, base_text) = run(None)?;
        let (adapter_logits, adapter_text) = run(Some(Path::new(&self.adapter.path)))?;
        let max_logit_diff = base_logits
            .iter()
            .zip(&adapter_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        Ok(AdapterCheck {
            applied: max_logit_diff > 1e-4,
            max_logit_diff,
            base_text,
            adapter_text,
        })
    }
}
