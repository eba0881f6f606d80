//! Argument parsing and dispatch. Each sub-module is a thin printer over the service API.

mod bench;
mod chat;
mod data;
mod db;
mod fixture;
mod models;

use anyhow::Result;
use clap::{Parser, Subcommand};
use evolve::Service;
use evolve::core::DataDir;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "evolve",
    version,
    about = "EVOLVE Studio: teach a local LLM to refine its own answers",
    long_about = "EVOLVE Studio improves a local GGUF model with EVOLVE: rounds of sampling, self-refinement, \
                  scoring, preference pairs and LoRA-DPO training, all on your own machine."
)]
struct Cli {
    /// Where the database, models and adapters live [default: the platform data directory]
    #[arg(long, global = true, env = "EVOLVE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start EVOLVE Studio on the built-in tiny model (or --model): show it, then chat
    Start(chat::StartArgs),
    /// Chat with a model; answers stream as they are generated
    Chat(chat::ChatArgs),
    /// Register and inspect GGUF models
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Import and list prompt datasets
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Database maintenance
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Generate test fixtures (tiny models) deterministically
    #[command(subcommand)]
    Fixture(fixture::FixtureCommand),
    /// Measure inference speed against llama.cpp's own tools
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the cause chain joined, as the user needs it to act.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = || -> Result<DataDir> {
        DataDir::resolve(cli.data_dir.as_deref()).map_err(anyhow::Error::msg)
    };
    match cli.command {
        // Commands that need no database stay usable on a read-only or full disk.
        Command::Fixture(cmd) => fixture::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Models(models::ModelsCommand::Info(args)) if args.is_path() => {
            models::info_of_path(&args)
        }
        Command::Db(cmd) => db::run(cmd, &data_dir()?),
        Command::Models(cmd) => models::run(cmd, &Service::open(data_dir()?)?),
        Command::Data(cmd) => data::run(cmd, &Service::open(data_dir()?)?),
        Command::Start(args) => chat::start(args, &Service::open(data_dir()?)?),
        Command::Chat(args) => chat::chat(args, &Service::open(data_dir()?)?),
    }
}
