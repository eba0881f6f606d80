//! The payloads the API builds itself (docs/api.md); the facade's own types (scoreboard rows,
//! progress, pairs, adapters, …) are sent as they are. All of them export their TypeScript
//! types to `ui/src/bindings` (ts-rs), which the UI imports.

use crate::runs::progress::RunProgress;
use evolve_loop::scoreboard::ScoreRow;
use evolve_store::Model;
use serde::Serialize;
use ts_rs::TS;

/// `status`: the backend, its data and its models.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct Status {
    pub version: String,
    pub data_dir: String,
    pub schema_version: i64,
    pub models: Vec<Model>,
    /// The built-in model ships in the binary, so it is always available.
    pub builtin_model_available: bool,
}

/// A dataset with its split sizes.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, rename = "Dataset")]
pub struct DatasetRow {
    pub id: i64,
    pub name: String,
    pub format: String,
    pub prompts: usize,
    pub train: usize,
    pub eval: usize,
}

/// A line of an imported file that was skipped, and why.
#[derive(Debug, Clone, Serialize, TS)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct DatasetImport {
    pub dataset_id: i64,
    pub imported: usize,
    pub bad_lines: Vec<BadLine>,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct ChatStarted {
    pub chat_id: i64,
    pub request_id: String,
}

/// One `chat` event: a token, a finished step, or the end of a variant's answer.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct ChatEvent {
    pub request_id: String,
    #[ts(type = "\"base\" | \"adapter\"")]
    pub variant: &'static str,
    #[ts(type = "\"token\" | \"step_done\" | \"done\" | \"error\"")]
    pub kind: &'static str,
    pub step: usize,
    pub text: String,
    pub score: Option<f64>,
    pub tokens_per_second: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct ChatSummary {
    pub id: i64,
    pub title: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// A run as lists show it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct RunSummary {
    pub id: i64,
    pub name: String,
    /// `pending`, `running`, `paused`, `done`, `failed` or `cancelled`.
    pub state: &'static str,
    pub model_id: i64,
    pub dataset_id: i64,
    /// RFC 3339, UTC.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct RoundBrief {
    pub index: i64,
    pub state: String,
    pub error: Option<String>,
    /// Why the round did less than asked (e.g. made no pairs, so trained nothing).
    pub note: Option<String>,
    pub direct_pairs: usize,
    pub refine_pairs: usize,
}

/// `run_status`: the run, its rounds, its live progress and the scoreboard.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct RunStatus {
    pub run: RunSummary,
    pub rounds: Vec<RoundBrief>,
    pub progress: Option<RunProgress>,
    pub scoreboard: Vec<ScoreRow>,
}

/// `run_state` events.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct RunStateEvent {
    pub run_id: i64,
    pub state: &'static str,
}

/// What the run wizard shows before Start: whether the run can start and the training memory.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct RunPreflight {
    /// Why `run_start` would refuse this run (architecture, tensor types, tokenizer, a setting,
    /// memory), or `null` when it can start.
    pub problem: Option<String>,
    /// Expected peak memory of a training step, GiB: the base as kept, the adapter with its
    /// optimiser state, activations and logits; `null` when the model cannot be read as trainable.
    pub base_gib: Option<f64>,
    pub adapter_gib: Option<f64>,
    pub working_gib: Option<f64>,
    pub total_gib: Option<f64>,
    /// Memory free on this machine, GiB (`null` where unknown).
    pub free_gib: Option<f64>,
}
