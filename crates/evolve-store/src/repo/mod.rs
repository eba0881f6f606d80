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

/// An update by id that changed no row names nothing: `NotFound` for the caller.
fn one_row_changed(changed: usize, what: &'static str, id: i64) -> Result<(), crate::StoreError> {
    if changed == 0 {
        return Err(crate::StoreError::NotFound { what, id });
    }
    Ok(())
}
