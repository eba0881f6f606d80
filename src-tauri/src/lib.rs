//! The desktop shell: the web UI (`ui/dist`) in a Tauri window, every command forwarded to
//! [`evolve::api::Api`] and every event re-emitted to the window. No logic lives here, so the
//! desktop app and `evolve serve` always behave the same.

mod commands;

use evolve::api::{Api, EventSink};
use evolve::core::DataDir;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tauri::{Emitter, Manager};

pub struct AppState {
    pub api: Api,
}

pub fn run() {
    // Events may come before the window exists (they are then dropped: the UI loads state
    // when a page opens); the handle is filled in once Tauri has started.
    let handle: Arc<OnceLock<tauri::AppHandle>> = Arc::default();
    let sink_handle = handle.clone();
    let sink: EventSink = Arc::new(move |name: &str, payload: serde_json::Value| {
        if let Some(app) = sink_handle.get() {
            let _ = app.emit(name, payload);
        }
    });
    // First start with no model is fine: the UI's welcome panel offers one.
    let api = match DataDir::resolve(None)
        .map_err(anyhow::Error::msg)
        .and_then(|d| Api::open(d, sink))
    {
        Ok(api) => api,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(AppState { api })
        .setup(move |app| {
            let _ = handle.set(app.handle().clone());
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![commands::api])
        .build(tauri::generate_context!())
        .expect("the EVOLVE Studio window failed to start");
    app.run(|app, event| {
        // Pause active runs on exit, so none stays marked as running (resume them later).
        if let tauri::RunEvent::Exit = event {
            app.state::<AppState>()
                .api
                .shutdown(Duration::from_secs(30));
        }
    });
}
