//! Registered models through the service: adding a GGUF (validated, checksummed, gated on a
//! trainable architecture), listing them, resolving a model argument and the built-in default.

use crate::Service;
use crate::service::NotFound;
use anyhow::{Context, Result, bail};
use evolve_gguf::ModelSummary;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType};
use evolve_store::{Model, ModelId, NewModel};
use std::path::{Path, PathBuf};

/// File name of the embedded default model inside the data directory's `models/`.
pub const DEFAULT_MODEL_FILE: &str = "tiny-random.gguf";

impl Service {
    /// Validates a GGUF file, checks its architecture is trainable and registers it.
    /// Registering the same file twice returns the existing entry.
    pub fn add_model(
        &self,
        path: &Path,
        display_name: Option<&str>,
    ) -> Result<(Model, ModelSummary)> {
        let path = path
            .canonicalize()
            .with_context(|| format!("model file not found: {}", path.display()))?;
        let file = super::inspect(&path)?;
        let summary = file.summary();
        super::check_trainable(&file)?;
        file.check_consistency()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let sha256 = super::sha256_file(&path)?;
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
        Ok((model, summary))
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
