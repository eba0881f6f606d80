use anyhow::Result;
use clap::Subcommand;
use evolve::core::DataDir;
use evolve::store::{LATEST_VERSION, Store};

#[derive(Subcommand)]
pub enum DbCommand {
    /// Create the database or bring it to this build's schema version
    Migrate,
    /// Show the database path, schema version and row counts (changes nothing)
    Status,
}

pub fn run(cmd: DbCommand, data_dir: &DataDir) -> Result<()> {
    let path = data_dir.database();
    match cmd {
        DbCommand::Migrate => {
            let before = if path.exists() {
                Store::open_readonly(&path)?.schema_version()?
            } else {
                0
            };
            data_dir.ensure()?;
            let store = Store::open(&path)?;
            let after = store.schema_version()?;
            if before == after {
                println!(
                    "database {} is up to date (schema version {after})",
                    path.display()
                );
            } else {
                println!(
                    "database {} migrated from schema version {before} to {after}",
                    path.display()
                );
            }
        }
        DbCommand::Status => {
            if !path.exists() {
                println!(
                    "database: {} (not created yet; `evolve db migrate` creates it)",
                    path.display()
                );
                println!("schema version: none (this build: {LATEST_VERSION})");
                return Ok(());
            }
            let store = Store::open_readonly(&path)?;
            let version = store.schema_version()?;
            println!("database: {}", path.display());
            println!(
                "schema version: {version} (this build: {LATEST_VERSION}, {} pending)",
                LATEST_VERSION - version
            );
            if version == LATEST_VERSION {
                for (table, n) in store.counts()? {
                    println!("  {table:<18} {n}");
                }
            }
        }
    }
    Ok(())
}
