//! Preference training: `train.rs` holds the [`Trainer`] and its loop (micro-batches, gradient
//! accumulation, the optimizer step, cached reference log-probs and cancellation), `config.rs`
//! what a run is configured with, `checkpoint.rs` saves and resumes it.

mod checkpoint;
mod config;
mod train;

pub use checkpoint::{CHECKPOINT_OPTIMIZER, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS};
pub use config::{Recompute, TrainConfig};
pub use train::{StepMetrics, TrainOutcome, Trainer, data_fingerprint};
