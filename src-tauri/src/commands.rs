//! Tauri commands: argument plumbing only, errors as one-line strings for the UI.

use crate::AppState;
use evolve::Service;
use evolve::store::Model;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct StudioStatus {
    pub data_dir: String,
    pub schema_version: i64,
    pub models: Vec<Model>,
}

/// What the start screen shows: where data lives and which models are registered.
pub fn status_of(service: &Service) -> anyhow::Result<StudioStatus> {
    Ok(StudioStatus {
        data_dir: service.data_dir().root().display().to_string(),
        schema_version: service.store().schema_version()?,
        models: service.list_models()?,
    })
}

#[tauri::command]
pub fn studio_status(state: tauri::State<'_, AppState>) -> Result<StudioStatus, String> {
    let service = state
        .service
        .lock()
        .map_err(|_| "the service is unavailable after an earlier crash".to_string())?;
    status_of(&service).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve::core::DataDir;

    #[test]
    fn status_lists_the_built_in_model_on_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let service = Service::open(DataDir::new(dir.path())).unwrap();
        service.default_model().unwrap();
        let status = status_of(&service).unwrap();
        assert_eq!(status.models.len(), 1);
        assert_eq!(
            status.models[0].display_name.as_deref(),
            Some("tiny random (built in)")
        );
        assert_eq!(status.schema_version, evolve::store::LATEST_VERSION);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["models"][0]["architecture"], "llama");
    }
}
