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
    /// A JSON file with run settings (any part of a run configuration, e.g.
    /// `{"samples": 8, "train": {"lr": 3e-4}}`) laid over the demo's own
    #[arg(long)]
    config: Option<std::path::PathBuf>,
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
    let mut config = settings.run_config();
    if let Some(path) = &args.config {
        config = overlay(&config, path)?;
    }
    let run = service.create_run("demo", model.id, dataset, &config)?;
    println!(
        "run {}: {} rounds × {} prompts × {} samples × {} refinements; held-out: {} problems",
        run.0,
        config.rounds,
        config.prompts_per_round,
        config.samples,
        config.refine_steps,
        settings.eval_prompts
    );
    drive(service, run, &args.engine)
}

/// `base` with the fields of the JSON object in `path` replacing its own, recursively (so a
/// file may name only `train.lr`). Rounds and prompts per round stay the demo's: the dataset
/// was made for them.
fn overlay(
    base: &evolve::method::run::RunConfig,
    path: &std::path::Path,
) -> Result<evolve::method::run::RunConfig> {
    use anyhow::Context;
    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let patch: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    anyhow::ensure!(
        patch.is_object(),
        "{} must hold a JSON object",
        path.display()
    );
    let mut value = serde_json::to_value(base)?;
    merge(&mut value, patch);
    let mut config: evolve::method::run::RunConfig = serde_json::from_value(value)
        .with_context(|| format!("{} does not fit a run configuration", path.display()))?;
    config.rounds = base.rounds;
    config.prompts_per_round = base.prompts_per_round;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_overrides_only_what_it_names_and_keeps_the_demos_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(
            &path,
            r#"{"samples": 8, "rounds": 9, "train": {"lr": 0.0003}}"#,
        )
        .unwrap();
        let base = DemoSettings::default().run_config();
        let c = overlay(&base, &path).unwrap();
        assert_eq!((c.samples, c.train.lr), (8, 3e-4));
        assert_eq!(c.train.beta, base.train.beta, "untouched fields stay");
        assert_eq!(
            c.rounds, base.rounds,
            "the dataset was made for the demo's rounds"
        );
        std::fs::write(&path, r#"{"train": {"lr": "fast"}}"#).unwrap();
        let err = format!("{:#}", overlay(&base, &path).unwrap_err());
        assert!(err.contains("does not fit a run configuration"), "{err}");
    }
}
