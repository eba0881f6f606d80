//! What comes with EVOLVE: the built-in task (the tiny task model, the arithmetic dataset, the
//! demo that compares EVOLVE with its baselines) and the tiny task model's training.

pub mod demo;
pub mod task_model;
