//! `status`, models and datasets.

use super::{ApiError, ApiResult, Inner};
use crate::Service;
use crate::data::ImportOptions;
use crate::task_model::TASK_MODEL_FILE;
use evolve_loop::dataset::DatasetFormat;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;

/// With `EVOLVE_BUILTIN=random`, "use the built-in model" registers the tiny random-weight model
/// instead of training the task model (minutes) — for tests and quick looks.
pub const BUILTIN_ENV: &str = "EVOLVE_BUILTIN";

pub fn status(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "data_dir": inner.data_dir.root().display().to_string(),
        "schema_version": service.store().schema_version()?,
        "models": service.list_models()?,
        // Both built-in models are generated locally (no download), so one is always available.
        "builtin_model_available": true,
    }))
}

pub fn list(inner: &Inner) -> ApiResult {
    Ok(serde_json::to_value(inner.service()?.list_models()?).expect("models serialise"))
}

#[derive(Deserialize)]
pub struct AddArgs {
    path: String,
}

pub fn add(inner: &Inner, args: AddArgs) -> ApiResult {
    let path = args.path.trim();
    if path.is_empty() {
        return Err(ApiError::bad("give the path of a .gguf file"));
    }
    let (model, _) = inner.service()?.add_model(Path::new(path), None)?;
    Ok(serde_json::to_value(model).expect("model serialises"))
}

/// The built-in model: the tiny arithmetic task model, trained into the data directory on first
/// use. That takes minutes on a CPU and blocks this call (on its own database connection, so the
/// other commands keep answering); afterwards it is instant.
pub fn use_builtin(inner: &Inner) -> ApiResult {
    let service = Service::open(inner.data_dir.clone())?;
    let task_model = inner.data_dir.models().join(TASK_MODEL_FILE);
    let random = std::env::var(BUILTIN_ENV).is_ok_and(|v| v == "random");
    let model = if !task_model.is_file() && random {
        let path = service.default_model()?;
        let path = path.canonicalize().unwrap_or(path);
        service
            .store()
            .find_model_by_path(&path.display().to_string())?
            .ok_or_else(|| ApiError::bad("the built-in model was not registered"))?
    } else {
        service.task_model(|_| true)?.0
    };
    Ok(serde_json::to_value(model).expect("model serialises"))
}

/// True when `path` is the built-in task model (it needs its own refinement template).
pub fn is_task_model(path: &Path, display_name: Option<&str>) -> bool {
    crate::demo::is_task_model(path, display_name)
}

pub fn datasets_list(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    let rows: Vec<Value> = service
        .list_datasets()?
        .into_iter()
        .map(|(d, train, eval)| {
            json!({
                "id": d.id.0, "name": d.name, "format": d.format,
                "prompts": train + eval, "train": train, "eval": eval,
            })
        })
        .collect();
    Ok(Value::Array(rows))
}

#[derive(Deserialize)]
pub struct ImportArgs {
    path: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

pub fn datasets_import(inner: &Inner, args: ImportArgs) -> ApiResult {
    let path = args.path.trim();
    if path.is_empty() {
        return Err(ApiError::bad("give the path of a JSONL or CSV file"));
    }
    let format = match args.format.as_deref().map(str::trim) {
        None | Some("") | Some("auto") => None,
        Some(f) => Some(DatasetFormat::parse(f).map_err(ApiError::bad)?),
    };
    let options = ImportOptions {
        name: args.name.filter(|n| !n.trim().is_empty()),
        format,
        ..ImportOptions::default()
    };
    let outcome = inner.service()?.import_dataset(Path::new(path), &options)?;
    let bad_lines: Vec<Value> = outcome
        .report
        .errors
        .iter()
        .map(|e| json!({"line": e.line, "reason": e.message}))
        .collect();
    Ok(json!({
        "dataset_id": outcome.dataset.0,
        "imported": outcome.report.prompts.len(),
        "bad_lines": bad_lines,
    }))
}
