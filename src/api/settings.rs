//! `settings_get` / `settings_set`: machine settings kept in `<data_dir>/settings.json`.

use super::error::{ApiError, ApiResult};
use super::util::lock;
use evolve_core::{DataDir, SamplerConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const SETTINGS_FILE: &str = "settings.json";

/// Upper bounds of the engine settings: far above any machine, low enough to catch a typo.
const MAX_THREADS: i32 = 1024;
const MAX_GPU_LAYERS: u32 = 10_000;

/// The sampler fields the UI edits (the seed and stop strings stay internal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Sampler {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub max_tokens: u32,
}

impl Sampler {
    pub fn from_config(c: &SamplerConfig) -> Self {
        Sampler {
            temperature: c.temperature,
            top_p: c.top_p,
            top_k: c.top_k,
            min_p: c.min_p,
            repeat_penalty: c.repeat_penalty,
            max_tokens: c.max_tokens,
        }
    }
    /// This sampler over `base` (which keeps its seed and stop strings).
    pub fn apply(&self, base: &SamplerConfig) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            max_tokens: self.max_tokens,
            ..base.clone()
        }
    }
    /// The sampler's ranges (`SamplerConfig::validate`), the error naming the field.
    pub fn validate(&self) -> ApiResult<()> {
        self.apply(&SamplerConfig::default())
            .validate("sampler.")
            .map_err(ApiError::bad)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Settings {
    /// Read-only: where this backend keeps its data (set by `--data-dir` / `EVOLVE_DATA_DIR`).
    pub data_dir: String,
    pub threads: i32,
    pub gpu_layers: u32,
    pub export_dir: String,
    /// Folders searched for GGUF models besides LM Studio's, Ollama's and the caches.
    #[serde(default)]
    pub model_folders: Vec<String>,
    pub sampler: Sampler,
}

impl Settings {
    fn defaults(data_dir: &DataDir) -> Settings {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Settings {
            data_dir: data_dir.root().display().to_string(),
            threads: cores as i32,
            gpu_layers: 0,
            export_dir: data_dir.root().join("exports").display().to_string(),
            model_folders: Vec::new(),
            sampler: Sampler::from_config(&SamplerConfig::default()),
        }
    }

    pub fn engine(&self) -> crate::engines::EngineSettings {
        crate::engines::EngineSettings {
            threads: Some(self.threads),
            gpu_layers: self.gpu_layers,
            ..Default::default()
        }
    }
}

/// A folder setting must be absolute: a relative one would resolve against whichever folder
/// the app or the CLI happened to start in.
fn check_absolute(what: &str, folder: &str) -> ApiResult<()> {
    if Path::new(folder.trim()).is_absolute() {
        return Ok(());
    }
    Err(ApiError::bad(format!(
        "{what} must be an absolute path, not {folder}"
    )))
}

fn file(data_dir: &DataDir) -> PathBuf {
    data_dir.root().join(SETTINGS_FILE)
}

/// The stored settings, or the defaults when there is no file yet.
pub fn load(data_dir: &DataDir) -> anyhow::Result<Settings> {
    let path = file(data_dir);
    let mut s = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str::<Settings>(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid settings ({e}); fix or delete it",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::defaults(data_dir),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    // The data directory is where this file was found, whatever it says.
    s.data_dir = data_dir.root().display().to_string();
    Ok(s)
}

pub(crate) fn get(settings: &Mutex<Settings>) -> ApiResult {
    Ok(serde_json::to_value(lock(settings).clone()).expect("settings serialise"))
}

#[derive(Deserialize)]
pub struct SetArgs {
    settings: Settings,
}

/// Checks and stores `args` as the settings of `data_dir`, then makes them `settings`.
pub(crate) fn set(data_dir: &DataDir, settings: &Mutex<Settings>, args: SetArgs) -> ApiResult {
    let mut s = args.settings;
    if !(1..=MAX_THREADS).contains(&s.threads) {
        return Err(ApiError::bad(format!(
            "threads must be between 1 and {MAX_THREADS} (got {})",
            s.threads
        )));
    }
    if s.gpu_layers > MAX_GPU_LAYERS {
        return Err(ApiError::bad(format!(
            "gpu_layers must be at most {MAX_GPU_LAYERS} (got {})",
            s.gpu_layers
        )));
    }
    s.sampler.validate()?;
    if s.export_dir.trim().is_empty() {
        return Err(ApiError::bad("the export folder must not be empty"));
    }
    check_absolute("the export folder", &s.export_dir)?;
    s.model_folders.retain(|f| !f.trim().is_empty());
    for f in &s.model_folders {
        check_absolute("a model folder", f)?;
    }
    s.data_dir = data_dir.root().display().to_string();
    let path = file(data_dir);
    let text = serde_json::to_string_pretty(&s).expect("settings serialise");
    // Written beside and renamed, so a crash never leaves half a settings file.
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text)
        .and_then(|_| std::fs::rename(&partial, &path))
        .map_err(|e| ApiError::bad(format!("cannot write {}: {e}", path.display())))?;
    *lock(settings) = s.clone();
    Ok(serde_json::to_value(s).expect("settings serialise"))
}
