//! The typed repository API: `impl Store` blocks, one module per group of tables.

pub mod adapters;
pub mod chats;
pub mod datasets;
pub mod evaluations;
pub mod generations;
pub mod leases;
pub mod models;
pub mod pairs;
pub mod runs;
pub mod training;
