//! The EVOLVE method's data side, free of engines so it is tested in milliseconds:
//! importing prompt datasets, verifying answers, and choosing preference pairs.
//!
//! - [`dataset`]: JSONL/CSV import (GSM8K, Alpaca, ShareGPT, UltraFeedback-style) with per-line
//!   validation, deterministic train/eval splits, and TRL pair export.
//! - [`verify`]: rule/verifier scorers (numeric final answer, exact match, regex, JSON validity).
//! - [`pairs`]: the pair-selection strategies that turn scored answers into preference pairs.
//! - [`tasks`]: built-in verifiable tasks for real instruct models; [`probe`]: a model's pass@1,
//!   pass@k and untrained refinement on one, before any run.
//! - [`arithmetic`]: the synthetic addition task of the tiny task model and the demo.
//! - [`run`]: the orchestrator driving rounds through the persisted state machine (engines injected).
//! - [`scoreboard`]: held-out scores per round with paired comparisons between them.

pub mod arithmetic;
pub mod axis;
pub mod dataset;
pub mod pairs;
pub mod probe;
pub mod run;
pub mod scoreboard;
pub mod tasks;
pub mod trl;
