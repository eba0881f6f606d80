//! The one service API that every shell (CLI, Tauri commands, HTTP) calls. No shell holds logic.

use crate::models;
use anyhow::{Context, Result, bail};
use evolve_core::DataDir;
use evolve_gguf::ModelSummary;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType};
use evolve_store::{Model, ModelId, NewModel, Store};
use std::path::{Path, PathBuf};

/// File name of the embedded default model inside the data directory's `models/`.
pub const DEFAULT_MODEL_FILE: &str = "tiny-random.gguf";

pub struct Service {
    data_dir: DataDir,
    store: Store,
}

impl Service {
    /// Opens (creating and migrating as needed) the database in `data_dir`.
    pub fn open(data_dir: DataDir) -> Result<Self> {
        data_dir.ensure()?;
        let store = Store::open(&data_dir.database())?;
        Ok(Self { data_dir, store })
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.data_dir
    }
    pub fn store(&self) -> &Store {
        &self.store
    }

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
        let file = models::inspect(&path)?;
        let summary = file.summary();
        models::check_trainable(&file)?;
        file.check_consistency()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let sha256 = models::sha256_file(&path)?;
        let id = self.store.add_model(&NewModel {
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
            self.store.set_model_display_name(id, display_name)?;
        }
        let model = self
            .store
            .get_model(id)?
            .context("model vanished right after insert")?;
        Ok((model, summary))
    }

    pub fn list_models(&self) -> Result<Vec<Model>> {
        Ok(self.store.list_models()?)
    }

    /// Registered model `id`.
    pub fn model(&self, id: ModelId) -> Result<Model> {
        match self.store.get_model(id)? {
            Some(m) => Ok(m),
            None => Err(NotFound(format!("no model with id {}", id.0)).into()),
        }
    }

    /// The database's schema version.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.store.schema_version()?)
    }

    /// Resolves a model argument: a registered id (`3`), a fetchable model's name (`smollm2`,
    /// once fetched), or a path to a GGUF file.
    pub fn resolve_model(&self, spec: &str) -> Result<PathBuf> {
        if let Some(known) = crate::catalog::known_model(spec)
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
            if let Some(m) = self.store.get_model(ModelId(id))? {
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
        let path = self.data_dir.models().join(DEFAULT_MODEL_FILE);
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

/// An id that names nothing. Shells report it as such (the HTTP API as 404).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// RFC 3339 (UTC) of a Unix time in milliseconds, as the UI expects dates.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: exact for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
