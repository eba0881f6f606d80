//! Argument parsing and dispatch. Each sub-module is a thin printer over the service API.

mod adapters;
mod bench;
mod bench_round;
mod chat;
mod compare;
mod data;
mod db;
mod demo;
mod fixture;
mod models;
mod pairs;
mod progress;
mod run;
mod serve;
mod tasks;
mod train;

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
    /// Run EVOLVE rounds: start, resume, status, export pairs
    #[command(subcommand)]
    Run(run::RunCommand),
    /// Trained adapters: list, export (GGUF LoRA, PEFT, merged GGUF, TRL pairs), check
    #[command(subcommand)]
    Adapters(adapters::AdaptersCommand),
    /// Train a LoRA on a file of preference pairs (TRL's format), outside any run
    Train(train::TrainArgs),
    /// Review preference pairs before training: list, approve, veto, edit, reset
    #[command(subcommand)]
    Pairs(pairs::PairsCommand),
    /// The whole method, 3 rounds with a held-out scoreboard: on the built-in task model's
    /// arithmetic, or (--model smollm2, --task) on a real instruct model
    Demo(demo::DemoArgs),
    /// A window with the live training curves and the scoreboard of a run [default: the latest];
    /// read-only, so it can follow a run another process is driving
    Monitor { run: Option<i64> },
    /// Serve the web UI and its API on http://127.0.0.1 (loopback only; token in the printed URL)
    Serve(serve::ServeArgs),
    /// Measure inference speed against llama.cpp's own tools
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Built-in verifiable tasks for real models, and a model's headroom on each
    #[command(subcommand)]
    Tasks(tasks::TasksCommand),
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
        Command::Monitor { run } => evolve_monitor::open_window(&data_dir()?.database(), run),
        Command::Models(cmd) => models::run(cmd, &Service::open(data_dir()?)?),
        Command::Data(cmd) => data::run(cmd, &Service::open(data_dir()?)?),
        Command::Start(args) => chat::start(args, &Service::open(data_dir()?)?),
        Command::Chat(args) => chat::chat(args, &Service::open(data_dir()?)?),
        Command::Run(cmd) => run::run(cmd, &Service::open(data_dir()?)?),
        Command::Adapters(cmd) => adapters::run(cmd, &Service::open(data_dir()?)?),
        Command::Pairs(cmd) => pairs::run(cmd, &Service::open(data_dir()?)?),
        Command::Train(args) => train::train(args),
        Command::Tasks(cmd) => tasks::run(cmd, &Service::open(data_dir()?)?),
        Command::Demo(args) => demo::demo(args, &Service::open(data_dir()?)?),
        Command::Serve(args) => serve::serve(args, data_dir()?),
    }
}
