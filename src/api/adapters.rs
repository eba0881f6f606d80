//! Trained adapters: list, export and the applied-check (`crate::adapters`).

use super::{ApiError, ApiResult, Inner};
use crate::Service;
use crate::adapters::ExportRequest;
use evolve_core::ExportFormat;
use evolve_store::AdapterId;
use serde::Deserialize;

pub fn list(inner: &Inner) -> ApiResult {
    let adapters = inner.service()?.list_adapters()?;
    Ok(serde_json::to_value(adapters).expect("adapters serialise"))
}

#[derive(Deserialize)]
pub struct ExportArgs {
    adapter_id: i64,
    format: String,
    dir: String,
    /// Replace an export of the same name already in `dir` (else that is an error).
    #[serde(default)]
    overwrite: bool,
    /// PEFT's `base_model_name_or_path` (default: from the base GGUF's metadata).
    #[serde(default)]
    base_name: Option<String>,
}

pub fn export(inner: &Inner, args: ExportArgs) -> ApiResult {
    let format: ExportFormat = args
        .format
        .parse()
        .map_err(|e: evolve_core::ParseKindError| ApiError::bad(e.to_string()))?;
    let source = inner
        .service()?
        .adapter_source(AdapterId(args.adapter_id))?;
    // A merged export takes a while: on its own connection, not the shared one.
    let service = Service::open(inner.data_dir.clone())?;
    let request = ExportRequest {
        format,
        dir: &args.dir,
        overwrite: args.overwrite,
        base_name: args
            .base_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty()),
    };
    let exported = source.export(&service, &request)?;
    Ok(serde_json::to_value(exported).expect("an export serialises"))
}

#[derive(Deserialize)]
pub struct CheckArgs {
    adapter_id: i64,
}

pub fn check(inner: &Inner, args: CheckArgs) -> ApiResult {
    let source = inner
        .service()?
        .adapter_source(AdapterId(args.adapter_id))?;
    let check = source.check(&inner.engines, &inner.settings().engine())?;
    Ok(serde_json::to_value(check).expect("a check serialises"))
}
