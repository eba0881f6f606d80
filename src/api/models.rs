//! `status`, models and datasets.

use super::protocol::{BadLine, DatasetImport, DatasetRow, Status};
use super::{ApiError, ApiResult, Inner, to_json};
use crate::data::ImportOptions;
use crate::models::discover::Places;
use evolve_loop::dataset::DatasetFormat;
use serde::Deserialize;
use std::path::Path;

pub fn status(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    Ok(to_json(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        data_dir: inner.data_dir.root().display().to_string(),
        schema_version: service.schema_version()?,
        models: service.list_models()?,
        builtin_model_available: true,
    }))
}

pub fn list(inner: &Inner) -> ApiResult {
    Ok(serde_json::to_value(inner.service()?.list_models()?).expect("models serialise"))
}

#[derive(Deserialize)]
pub struct AddArgs {
    path: String,
    /// The label to show (a discovered model's name); `general.name` when absent.
    #[serde(default)]
    name: Option<String>,
}

pub fn add(inner: &Inner, args: AddArgs) -> ApiResult {
    let path = args.path.trim();
    if path.is_empty() {
        return Err(ApiError::bad("give the path of a .gguf file"));
    }
    // Hashing a multi-GB file takes a while: on its own connection, so chat and runs (which
    // share the app's) never wait on it.
    let service = crate::Service::open(inner.data_dir.clone())?;
    let name = args
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let model = service.add_model(Path::new(path), name)?.model;
    Ok(serde_json::to_value(model).expect("model serialises"))
}

/// The GGUF models on this machine (LM Studio, Ollama, the llama.cpp and Hugging Face caches,
/// the folders of Settings), each with whether it can be trained and whether it is registered.
pub fn discover(inner: &Inner) -> ApiResult {
    let places = Places::of_this_machine(&inner.settings().model_folders);
    // Reading every header takes a moment: on its own connection, as `models_add`.
    let found = crate::Service::open(inner.data_dir.clone())?.discover_models(&places)?;
    Ok(to_json(found))
}

#[derive(Deserialize)]
pub struct SetFormatArgs {
    id: i64,
    /// `plain`, `template` or a llama.cpp built-in template's name; `null`: the file's default.
    format: Option<String>,
}

/// Chooses how conversations are formatted for a registered model; returns the model.
pub fn set_format(inner: &Inner, args: SetFormatArgs) -> ApiResult {
    let format = args
        .format
        .map(|f| f.parse::<evolve_core::PromptFormat>())
        .transpose()
        .map_err(ApiError::bad)?;
    let model = inner
        .service()?
        .set_model_prompt_format(evolve_store::ModelId(args.id), format.as_ref())?;
    Ok(serde_json::to_value(model).expect("model serialises"))
}

/// The built-in model: the tiny arithmetic task model shipped in the binary, written into the
/// data directory and registered.
pub fn use_builtin(inner: &Inner) -> ApiResult {
    let (model, _) = inner.service()?.task_model()?;
    Ok(serde_json::to_value(model).expect("model serialises"))
}

#[derive(serde::Deserialize)]
pub struct FetchArgs {
    name: String,
}

/// Downloads a known real model (checksum verified) and registers it.
pub fn fetch(inner: &Inner, args: FetchArgs) -> ApiResult {
    let known = crate::models::catalog::known_model(&args.name)
        .ok_or_else(|| ApiError::bad(format!("no fetchable model named '{}'", args.name)))?;
    let (model, _) = inner.service()?.fetch_known_model(&known, &mut |_, _| {})?;
    Ok(serde_json::to_value(model).expect("model serialises"))
}

pub fn datasets_list(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    let rows: Vec<DatasetRow> = service
        .list_datasets()?
        .into_iter()
        .map(|(d, train, eval)| DatasetRow {
            id: d.id.0,
            name: d.name,
            format: d.format,
            prompts: train + eval,
            train,
            eval,
        })
        .collect();
    Ok(to_json(rows))
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
    // Reading a large file takes a while: on its own connection, as `models_add`.
    let outcome =
        crate::Service::open(inner.data_dir.clone())?.import_dataset(Path::new(path), &options)?;
    let bad_lines = outcome
        .report
        .errors
        .iter()
        .map(|e| BadLine {
            line: e.line,
            reason: e.message.clone(),
        })
        .collect();
    Ok(to_json(DatasetImport {
        dataset_id: outcome.dataset.0,
        imported: outcome.report.prompts.len(),
        bad_lines,
    }))
}
