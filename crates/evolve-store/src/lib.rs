//! EVOLVE Studio persistence: one SQLite file per data directory, embedded forward-only
//! migrations, and a typed repository API (methods on [`Store`], grouped by table in `repo/`).
//!
//! Every round step writes its results before moving on, so the database is what makes a killed
//! run resumable; hence WAL (monitors read while the engine writes), `synchronous=NORMAL`
//! (durable at each checkpoint, never corrupt) and idempotent inserts keyed on natural keys.

mod error;
mod ids;
pub mod migrate;
mod repo;
mod sql;
mod store;

pub use error::StoreError;
pub use ids::{
    AdapterId, ChatId, DatasetId, EvaluationId, GenerationId, MessageId, ModelId, PairId, PromptId,
    RoundId, RunId, ScoreId, TrainingRunId,
};
pub use migrate::LATEST_VERSION;
pub use repo::adapters::{Adapter, NewAdapter};
pub use repo::chats::{Chat, ChatRole, Message, NewMessage};
pub use repo::datasets::{Dataset, NewPrompt, Prompt};
pub use repo::evaluations::{Evaluation, NewEvaluation};
pub use repo::generations::{Generation, NewGeneration, Score};
pub use repo::leases::{LEASE_STALE_MS, RunLease};
pub use repo::models::{Model, NewModel};
pub use repo::pairs::{NewPair, Pair, PairFilter};
pub use repo::runs::{NewRun, Round, Run};
pub use repo::training::{TRL_METRIC_NAMES, TrainingMetric, TrainingRun, TrainingState};
pub use store::Store;
