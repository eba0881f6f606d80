//! The command dispatcher behind every shell of the web UI: `evolve serve` (HTTP + SSE) and the
//! Tauri app call [`Api::call`] with the command names and JSON arguments of `docs/api.md`, and
//! forward the events the [`EventSink`] receives. No shell holds logic.
//!
//! Quick commands run on the caller's thread against one [`Service`] behind a mutex. Long work
//! (chat answers, EVOLVE runs) runs on its own thread with its own `Service::open` — SQLite
//! connections are not `Sync`, and WAL lets those connections read and write concurrently.

mod adapters;
mod chat;
mod error;
mod models;
mod pairs;
pub mod protocol;
mod runs;
pub mod settings;
pub use settings::SETTINGS_FILE;
mod util;

use crate::Service;
use evolve_core::DataDir;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

pub use error::{ApiError, ApiResult};
pub use settings::Settings;

/// Receives every event: its name (`chat`, `run_progress`, `run_metrics`, `run_state`) and
/// payload. Called from worker threads, so it must be cheap and thread-safe.
pub type EventSink = Arc<dyn Fn(&str, Value) + Send + Sync>;

/// Every command name of `docs/api.md`, for shells that register them one by one.
pub const COMMANDS: &[&str] = &[
    "status",
    "models_list",
    "models_add",
    "models_use_builtin",
    "models_fetch",
    "models_discover",
    "models_set_format",
    "datasets_list",
    "datasets_import",
    "chat_send",
    "chat_cancel",
    "chats_list",
    "chat_history",
    "runs_list",
    "run_defaults",
    "run_preflight",
    "run_dry_run",
    "run_start",
    "run_pause",
    "run_resume",
    "run_cancel",
    "run_status",
    "run_metrics",
    "pairs_list",
    "pair_review",
    "adapters_list",
    "adapter_export",
    "adapter_check",
    "settings_get",
    "settings_set",
    "pick_path",
];

/// State shared with the worker threads.
pub(crate) struct Inner {
    pub data_dir: DataDir,
    pub service: Mutex<Service>,
    pub sink: EventSink,
    pub settings: Mutex<Settings>,
    pub chat: chat::ChatState,
    /// The loaded model, kept between chat messages and adapter checks.
    pub engines: crate::engines::EngineCache,
    pub runs: runs::RunWorkers,
    pub next_request: AtomicU64,
}

impl Inner {
    pub fn service(&self) -> ApiResult<MutexGuard<'_, Service>> {
        // A panic while holding the lock leaves a consistent database (every write is a
        // transaction), so the poison is ignored rather than turning every later call into an error.
        Ok(self.service.lock().unwrap_or_else(|p| p.into_inner()))
    }
    pub fn emit(&self, name: &str, payload: Value) {
        (self.sink)(name, payload)
    }
    pub fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The backend of the web UI. Cheap to share (`Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

impl Api {
    /// Opens (creating and migrating as needed) the data directory; events go to `sink`.
    pub fn open(data_dir: DataDir, sink: EventSink) -> anyhow::Result<Api> {
        let service = Service::open(data_dir.clone())?;
        let settings = settings::load(&data_dir)?;
        Ok(Api {
            inner: Arc::new(Inner {
                data_dir,
                service: Mutex::new(service),
                sink,
                settings: Mutex::new(settings),
                chat: chat::ChatState::default(),
                engines: Default::default(),
                runs: runs::RunWorkers::default(),
                next_request: AtomicU64::new(1),
            }),
        })
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.inner.data_dir
    }

    /// Runs command `cmd` with its JSON arguments (`{}` or `null` when it takes none).
    pub fn call(&self, cmd: &str, args: Value) -> ApiResult {
        let args = if args.is_null() {
            Value::Object(Default::default())
        } else {
            args
        };
        let i = &self.inner;
        match cmd {
            "status" => models::status(i),
            "models_list" => models::list(i),
            "models_add" => models::add(i, parse(cmd, args)?),
            "models_use_builtin" => models::use_builtin(i),
            "models_fetch" => models::fetch(i, parse(cmd, args)?),
            "models_discover" => models::discover(i),
            "models_set_format" => models::set_format(i, parse(cmd, args)?),
            "datasets_list" => models::datasets_list(i),
            "datasets_import" => models::datasets_import(i, parse(cmd, args)?),
            "chat_send" => chat::send(&self.inner, parse(cmd, args)?),
            "chat_cancel" => chat::cancel(i, parse(cmd, args)?),
            "chats_list" => chat::list(i),
            "chat_history" => chat::history(i, parse(cmd, args)?),
            "runs_list" => runs::list(i),
            "run_defaults" => runs::defaults(i, parse(cmd, args)?),
            "run_preflight" => runs::preflight(i, parse(cmd, args)?),
            "run_dry_run" => runs::dry_run(i, parse(cmd, args)?),
            "run_start" => runs::start(&self.inner, parse(cmd, args)?),
            "run_pause" => runs::pause(i, parse(cmd, args)?),
            "run_resume" => runs::resume(&self.inner, parse(cmd, args)?),
            "run_cancel" => runs::cancel(i, parse(cmd, args)?),
            "run_status" => runs::status(i, parse(cmd, args)?),
            "run_metrics" => runs::metrics(i, parse(cmd, args)?),
            "pairs_list" => pairs::list(i, parse(cmd, args)?),
            "pair_review" => pairs::review(i, parse(cmd, args)?),
            "adapters_list" => adapters::list(i),
            "adapter_export" => adapters::export(i, parse(cmd, args)?),
            "adapter_check" => adapters::check(i, parse(cmd, args)?),
            "settings_get" => settings::get(&i.settings),
            "settings_set" => settings::set(&i.data_dir, &i.settings, parse(cmd, args)?),
            "pick_path" => Err(ApiError::bad(
                "no file dialog in the browser: type the path on the server",
            )),
            other => Err(ApiError::not_found(format!("unknown command {other}"))),
        }
    }

    /// True while a run's worker thread is alive in this process.
    pub fn run_is_active(&self, run_id: i64) -> bool {
        self.inner.runs.is_active(run_id)
    }

    /// Pauses every active run and waits for the workers (at most `timeout`), so a shell can
    /// exit without leaving a run marked as running.
    pub fn shutdown(&self, timeout: std::time::Duration) {
        self.inner.runs.pause_all_and_wait(timeout);
    }
}

/// A typed result or event as JSON.
pub(crate) fn to_json(payload: impl serde::Serialize) -> Value {
    serde_json::to_value(payload).expect("a protocol payload serialises")
}

fn parse<T: DeserializeOwned>(cmd: &str, args: Value) -> ApiResult<T> {
    // A command without arguments may be sent with none at all.
    let args = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args
    };
    serde_json::from_value(args).map_err(|e| ApiError::bad(format!("{cmd}: bad arguments: {e}")))
}

/// Events the UI buffers before `chat_send` returns are keyed by request id; ids are unique per
/// process, which is the lifetime of the UI's event stream.
pub(crate) type Flags = Mutex<HashMap<String, Arc<std::sync::atomic::AtomicBool>>>;
