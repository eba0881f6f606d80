//! `evolve demo`: the whole method on the built-in task, start to finish, on a CPU.

use super::progress::task_model_with_bar;
use super::run::{EngineArgs, drive};
use anyhow::Result;
use clap::Args;
use evolve::Service;
use evolve::demo::DemoSettings;

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Train prompts per round
    #[arg(long, default_value_t = DemoSettings::default().prompts_per_round)]
    prompts_per_round: usize,
    /// Held-out problems evaluated after each round
    #[arg(long, default_value_t = DemoSettings::default().eval_prompts)]
    eval_prompts: usize,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn demo(args: DemoArgs, service: &Service) -> Result<()> {
    let settings = DemoSettings {
        rounds: args.rounds,
        prompts_per_round: args.prompts_per_round,
        eval_prompts: args.eval_prompts,
        ..DemoSettings::default()
    };
    let (model, path) = task_model_with_bar(service, None)?;
    println!(
        "model: {} ({})",
        path.display(),
        model.display_name.as_deref().unwrap_or("")
    );
    let dataset = service.arithmetic_dataset(
        "arithmetic",
        settings.rounds * settings.prompts_per_round,
        settings.eval_prompts,
    )?;
    let run = service.create_run("demo", model.id, dataset, &settings.run_config())?;
    println!(
        "run {}: {} rounds × {} prompts × {} samples × {} refinements; held-out: {} problems",
        run.0,
        settings.rounds,
        settings.prompts_per_round,
        settings.samples,
        settings.refine_steps,
        settings.eval_prompts
    );
    drive(service, run, &args.engine)
}
