//! The one Tauri command: `api {cmd, args}` forwards to [`evolve::api::Api::call`], exactly as
//! `evolve serve` does over HTTP (docs/api.md); only `pick_path` is answered here, with the
//! native file dialog. Errors reach the UI as one-line strings.

use crate::AppState;
use serde_json::Value;
use tauri_plugin_dialog::DialogExt;

#[tauri::command]
pub async fn api(
    app: tauri::AppHandle,
    state: tauri::State<'_, AppState>,
    cmd: String,
    args: Value,
) -> Result<Value, String> {
    if cmd == "pick_path" {
        return pick_path(&app, &args).await;
    }
    // Commands block (SQLite, model loading, training the built-in model): off the IPC thread,
    // so the window stays responsive.
    let api = state.api.clone();
    tauri::async_runtime::spawn_blocking(move || api.call(&cmd, args))
        .await
        .map_err(|e| format!("the command crashed: {e}"))?
        .map_err(|e| e.message)
}

/// `pick_path {kind}`: a file dialog for models (.gguf) and data sets, a folder dialog for
/// exports; `null` when cancelled.
async fn pick_path(app: &tauri::AppHandle, args: &Value) -> Result<Value, String> {
    let kind = args
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("model")
        .to_string();
    let app = app.clone();
    let picked = tauri::async_runtime::spawn_blocking(move || {
        let dialog = app.dialog().file();
        match kind.as_str() {
            "folder" => dialog.blocking_pick_folder(),
            "dataset" => dialog
                .add_filter("prompts (JSONL, CSV)", &["jsonl", "json", "csv"])
                .blocking_pick_file(),
            _ => dialog
                .add_filter("GGUF model", &["gguf"])
                .blocking_pick_file(),
        }
    })
    .await
    .map_err(|e| format!("the file dialog crashed: {e}"))?;
    Ok(match picked.and_then(|p| p.into_path().ok()) {
        Some(path) => Value::String(path.display().to_string()),
        None => Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use evolve::api::Api;
    use evolve::core::DataDir;
    use std::sync::Arc;

    #[test]
    fn a_fresh_data_directory_starts_without_models() {
        let dir = tempfile::tempdir().unwrap();
        let api = Api::open(DataDir::new(dir.path()), Arc::new(|_: &str, _| {})).unwrap();
        let status = api.call("status", serde_json::json!({})).unwrap();
        assert_eq!(status["models"], serde_json::json!([]));
        assert_eq!(status["schema_version"], evolve::store::LATEST_VERSION);
    }
}
