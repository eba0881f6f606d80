//! `evolve demo`: the whole method on the built-in task, start to finish, on a CPU.

use super::progress::steps_bar;
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
    // The bar appears only if the task model has to be trained (first use of this data dir).
    let steps = evolve::task_model::TaskModelConfig::default().steps as u64;
    let mut bar = None;
    let (model, path) = service.task_model(|m| {
        let bar = bar.get_or_insert_with(|| steps_bar(steps, "task model"));
        bar.set_position(m.step as u64);
        bar.set_message(format!("loss {:.3}", m.loss));
        true
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
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
