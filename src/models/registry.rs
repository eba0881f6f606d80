//! Registered models through the service: adding a GGUF (validated, checksummed, gated on a
//! trainable architecture), listing them, choosing their prompt format, resolving a model
//! argument and the built-in default.

use crate::Service;
use crate::service::NotFound;
use anyhow::{Context, Result, bail};
use evolve_core::PromptFormat;
use evolve_gguf::ModelSummary;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType};
use evolve_store::{Model, ModelId, NewModel};
use std::path::{Path, PathBuf};

/// File name of the embedded default model inside the data directory's `models/`.
pub const DEFAULT_MODEL_FILE: &str = "tiny-random.gguf";

/// What [`Service::add_model`] registered (or found registered).
pub struct AddedModel {
    pub model: Model,
    pub summary: ModelSummary,
    /// When this call registered a model that looks like a base model without a chat
    /// template: one line saying it gets the plain prompt format, and how to change that.
    pub warning: Option<String>,
}

impl Service {
    /// Validates a GGUF file, checks its architecture is trainable and registers it.
    /// Registering the same file twice returns the existing entry.
    pub fn add_model(&self, path: &Path, display_name: Option<&str>) -> Result<AddedModel> {
        let path = path
            .canonicalize()
            .with_context(|| format!("model file not found: {}", path.display()))?;
        let file = super::inspect(&path)?;
        let summary = file.summary();
        super::check_trainable(&file)?;
        file.check_consistency()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let sha256 = super::sha256_file(&path)?;
        let known = self
            .store()
            .find_model_by_path(&path.display().to_string())?
            .is_some_and(|m| m.sha256 == sha256);
        let id = self.store().add_model(&NewModel {
            path: path.display().to_string(),
            sha256,
            file_size: summary.file_size as i64,
            architecture: Some(summary.architecture.clone()),
            name: summary.name.clone(),
            parameter_count: Some(summary.parameter_count as i64),
            context_length: summary.context_length.map(|c| c as i64),
            quantization: Some(summary.quantization.clone()),
            metadata: serde_json::to_value(&summary)?,
        })?;
        if display_name.is_some() {
            self.store().set_model_display_name(id, display_name)?;
        }
        let model = self
            .store()
            .get_model(id)?
            .context("model vanished right after insert")?;
        let warning = match known {
            false => plain_format_warning(&model),
            true => None,
        };
        Ok(AddedModel {
            model,
            summary,
            warning,
        })
    }

    /// The registered model at `path` (the newest, if the file was registered more than once).
    pub fn registered_model_at(&self, path: &Path) -> Result<Option<Model>> {
        let store = self.store();
        if let Some(m) = store.find_model_by_path(&path.display().to_string())? {
            return Ok(Some(m));
        }
        match path.canonicalize() {
            Ok(real) => Ok(store.find_model_by_path(&real.display().to_string())?),
            Err(_) => Ok(None),
        }
    }

    /// The prompt format of the model at `path` when it is registered; `None` for a file that
    /// is not (the engine then takes the file's default).
    pub fn prompt_format_for(&self, path: &Path) -> Result<Option<PromptFormat>> {
        Ok(self.registered_model_at(path)?.map(|m| m.prompt_format))
    }

    /// Chooses how conversations are formatted for model `id` (`None`: the default for its
    /// file). The model's own template can only be chosen when its file has one.
    pub fn set_model_prompt_format(
        &self,
        id: ModelId,
        format: Option<&PromptFormat>,
    ) -> Result<Model> {
        let model = self.model(id)?;
        if format == Some(&PromptFormat::Template) && !model.metadata["chat_template"].is_string() {
            bail!(
                "model {} has no chat template of its own: choose plain or a llama.cpp built-in template (chatml, llama3, gemma, …)",
                id.0
            );
        }
        self.store().set_model_prompt_format(id, format)?;
        self.model(id)
    }

    pub fn list_models(&self) -> Result<Vec<Model>> {
        Ok(self.store().list_models()?)
    }

    /// Registered model `id`.
    pub fn model(&self, id: ModelId) -> Result<Model> {
        match self.store().get_model(id)? {
            Some(m) => Ok(m),
            None => Err(NotFound(format!("no model with id {}", id.0)).into()),
        }
    }

    /// Resolves a model argument: a registered id (`3`), a fetchable model's name (`smollm2`,
    /// once fetched), or a path to a GGUF file.
    pub fn resolve_model(&self, spec: &str) -> Result<PathBuf> {
        if let Some(known) = super::catalog::known_model(spec)
            && !Path::new(spec).exists()
        {
            let path = known.path();
            if !path.is_file() {
                bail!(
                    "{} is not fetched yet: `evolve models fetch {}` downloads it ({} MB)",
                    known.display_name,
                    known.name,
                    known.size_bytes / 1_000_000
                );
            }
            return Ok(path);
        }
        if let Ok(id) = spec.parse::<i64>() {
            if let Some(m) = self.store().get_model(ModelId(id))? {
                return Ok(PathBuf::from(m.path));
            }
            if !Path::new(spec).exists() {
                bail!("no registered model with id {id} (see `evolve models list`)");
            }
        }
        Ok(PathBuf::from(spec))
    }

    /// The embedded default model: generated into the data directory the first time it is
    /// needed (no download), then registered like any other model.
    pub fn default_model(&self) -> Result<PathBuf> {
        let path = self.data_dir().models().join(DEFAULT_MODEL_FILE);
        if !path.exists() {
            evolve_gguf::tiny::write_tiny_llama(
                &path,
                &TinyLlamaConfig::default(),
                WeightType::Q8_0,
            )?;
        }
        self.add_model(&path, Some("tiny random (built in)"))?;
        Ok(path)
    }
}

/// The warning for a model given the plain prompt format by default (no chat template, and
/// nothing in its names saying it was tuned to chat); `None` for any other model.
pub fn plain_format_warning(model: &Model) -> Option<String> {
    if model.prompt_format_chosen || model.prompt_format != PromptFormat::Plain {
        return None;
    }
    let name = model
        .display_name
        .as_deref()
        .or(model.name.as_deref())
        .unwrap_or(&model.path);
    Some(super::base_model_warning(
        name,
        &format!("`evolve models set-format {} NAME`", model.id.0),
    ))
}
