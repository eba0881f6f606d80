//! The desktop shell. Commands are thin wrappers over [`evolve::Service`]; no logic lives here,
//! so the CLI, this app and the HTTP server always behave the same.

mod commands;

use evolve::Service;
use evolve::core::DataDir;
use std::sync::Mutex;

/// The service behind every command; SQLite connections are not `Sync`, hence the mutex.
pub struct AppState {
    pub service: Mutex<Service>,
}

pub fn run() {
    let state = match open_state() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    tauri::Builder::default()
        .manage(state)
        .invoke_handler(tauri::generate_handler![commands::studio_status])
        .run(tauri::generate_context!())
        .expect("the EVOLVE Studio window failed to start");
}

fn open_state() -> anyhow::Result<AppState> {
    let data_dir = DataDir::resolve(None).map_err(anyhow::Error::msg)?;
    let service = Service::open(data_dir)?;
    // First start with no model: the built-in tiny model makes the app do something real.
    service.default_model()?;
    Ok(AppState {
        service: Mutex::new(service),
    })
}
