//! `evolve bench round`: one round of the real-model study, phase by phase, on a fresh data
//! folder (see `evolve::devtools::round`).

use super::run::EngineArgs;
use anyhow::{Context, Result};
use clap::Args;
use evolve::Service;
use evolve::builtin::demo::Variant;
use evolve::core::DataDir;
use evolve::devtools::round::RoundBenchSettings;
use std::path::PathBuf;

#[derive(Args)]
pub struct RoundArgs {
    /// A GGUF path, or a fetchable model (smollm2)
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// evolve, iterative-dpo or rft
    #[arg(long, default_value = "evolve", value_parser = super::demo::parse_variant)]
    variant: Variant,
    /// Train prompts of the round [default: the study's, 48]
    #[arg(long)]
    prompts: Option<usize>,
    /// Answers sampled per prompt [default: the study's, 4]
    #[arg(long)]
    samples: Option<usize>,
    /// Refinement steps per answer [default: the study's, 1]
    #[arg(long)]
    refine: Option<usize>,
    /// Held-out problems evaluated before and after training, direct and refined
    /// [default: the study's, 500]
    #[arg(long)]
    eval: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the phases as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: RoundArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary data folder")?;
    let service = Service::open(DataDir::new(dir.path()))?;
    let bench = service.bench_round(
        &RoundBenchSettings {
            model: args.model.clone(),
            variant: args.variant,
            prompts: args.prompts,
            samples: args.samples,
            refine_steps: args.refine,
            eval_prompts: args.eval,
            seed: args.seed,
        },
        &args.engine.settings(),
    )?;
    println!("\n| phase | seconds | tokens | tokens/s |");
    println!("|---|---:|---:|---:|");
    for p in &bench.phases {
        let tps = p
            .tokens_per_second()
            .map_or(String::new(), |t| format!("{t:.1}"));
        println!("| {} | {:.1} | {} | {tps} |", p.phase, p.seconds, p.tokens);
    }
    let tokens: usize = bench.phases.iter().map(|p| p.tokens).sum();
    println!("| round | {:.1} | {tokens} | |", bench.wall_s);
    if let Some(out) = &args.json {
        std::fs::write(out, serde_json::to_string_pretty(&bench)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}
