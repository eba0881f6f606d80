//! `evolve demo`: the whole method on the built-in task, start to finish, on a CPU; with
//! `--compare`, EVOLVE next to its baselines from the same base, prompts and seeds.

use super::run::{EngineArgs, drive_with};
use anyhow::{Context, Result};
use clap::Args;
use evolve::Service;
use evolve::builtin::demo::{DemoSettings, REAL_MODEL_TASK, Variant, VariantResult};
use evolve::core::{EvalMeasure, PairedComparison, RoundState};
use evolve::method::run::{Progress, RunConfig};
use evolve::method::tasks::BuiltinTask;
use evolve::store::{DatasetId, RunId};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct DemoArgs {
    /// Rounds [default: 3]
    #[arg(long)]
    rounds: Option<usize>,
    /// Train prompts per round [default: 96; on a real model 48]
    #[arg(long)]
    prompts_per_round: Option<usize>,
    /// Held-out problems evaluated after each round (0 = all of them, about 810, on the
    /// arithmetic task) [default: all; on a real model 500]
    #[arg(long)]
    eval_prompts: Option<usize>,
    /// Run EVOLVE, iterative DPO (direct pairs only) and rejection-sampling fine-tuning side by
    /// side, from the same base, prompts and seeds
    #[arg(long)]
    compare: bool,
    /// Which method to run without --compare: evolve, iterative-dpo or rft
    #[arg(long, default_value = "evolve", value_parser = parse_variant)]
    variant: Variant,
    /// Seeds per method (sampling and training order) [default: 1, with --compare 2]
    #[arg(long)]
    seeds: Option<u64>,
    /// Write the results (per method, seed and round) as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run on this model instead of the built-in task model: a task model (e.g. the version-1
    /// negative control: `evolve fixture task --version 1 --out v1.gguf`), or a real instruct
    /// model with --task; `smollm2` (after `evolve models fetch smollm2`) runs the study's task
    #[arg(long)]
    model: Option<String>,
    /// A built-in task (`evolve tasks list`) instead of the tiny model's arithmetic, for a
    /// real instruct model
    #[arg(long)]
    task: Option<BuiltinTask>,
    /// A JSON file with run settings (any part of a run configuration, e.g.
    /// `{"samples": 8, "train": {"lr": 3e-4}}`) laid over the demo's own
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(super) fn parse_variant(s: &str) -> Result<Variant, String> {
    Variant::ALL
        .into_iter()
        .find(|v| v.name() == s)
        .ok_or_else(|| format!("unknown method '{s}' (expected evolve, iterative-dpo or rft)"))
}

pub fn demo(args: DemoArgs, service: &Service) -> Result<()> {
    // A known real model without a task runs the study's task.
    let task = args.task.or_else(|| {
        args.model
            .as_deref()
            .and_then(evolve::models::catalog::known_model)
            .map(|_| REAL_MODEL_TASK)
    });
    let base = task.map_or_else(DemoSettings::default, DemoSettings::for_task);
    let settings = DemoSettings {
        rounds: args.rounds.unwrap_or(base.rounds),
        prompts_per_round: args.prompts_per_round.unwrap_or(base.prompts_per_round),
        eval_prompts: args.eval_prompts.unwrap_or(base.eval_prompts),
        ..base
    };
    let variants: Vec<Variant> = if args.compare {
        Variant::ALL.to_vec()
    } else {
        vec![args.variant]
    };
    let seeds = args.seeds.unwrap_or(if args.compare { 2 } else { 1 });
    anyhow::ensure!(seeds >= 1, "--seeds must be at least 1");
    // Every configuration is built and checked before anything runs.
    let mut planned = Vec::new();
    for seed in 0..seeds {
        for &variant in &variants {
            let mut config = variant.apply(settings.run_config(seed));
            if let Some(path) = &args.config {
                config = overlay(&config, path)?;
            }
            planned.push((variant, seed, config));
        }
    }
    let (model, path) = match &args.model {
        // A known model is fetched first if need be (checksum verified).
        Some(spec) => match evolve::models::catalog::known_model(spec) {
            Some(known) => service.fetch_known_model(&known, &mut |_, _| {})?,
            None => {
                let file = service.resolve_model(spec)?;
                let model = service.add_model(&file, None)?.model;
                (model, file)
            }
        },
        None => service.task_model()?,
    };
    println!(
        "model: {} ({})",
        path.display(),
        model.display_name.as_deref().unwrap_or("")
    );
    let train = settings.rounds * settings.prompts_per_round;
    let dataset = match settings.task {
        Some(task) => {
            println!("task: {task} ({})", task.description());
            service.task_dataset(task, train, settings.eval_prompts)?
        }
        None => service.arithmetic_dataset(train, settings.eval_prompts)?,
    };
    let started = Instant::now();
    let mut results: Vec<VariantResult> = Vec::new();
    for (variant, seed, config) in planned {
        let mut name = format!("demo {} seed {seed} model {}", variant.name(), model.id.0);
        if let Some(task) = settings.task {
            name += &format!(" task {task}");
        }
        let run = match find_run(service, &name, dataset, &config)? {
            Some(run) => run,
            None => service.create_run(&name, model.id, dataset, &config)?,
        };
        println!(
            "\n== {name} (run {}): {} rounds × {} prompts × {} samples × {} refinements",
            run.0, config.rounds, config.prompts_per_round, config.samples, config.refine_steps
        );
        let mut clock = RoundClock::new(config.rounds);
        drive_with(service, run, &args.engine, &mut |p| clock.on(p))?;
        results.push(service.demo_result(run, variant, seed, &clock.wall_s())?);
    }
    let wall = started.elapsed().as_secs_f64();
    let comparisons = comparisons(service, &results)?;
    if results.len() > 1 {
        print_comparison(&results, &comparisons, settings.refine_steps);
    }
    println!(
        "\ndemo finished in {:.0} min {:.0} s",
        (wall / 60.0).floor(),
        wall % 60.0
    );
    if let Some(out) = &args.json {
        let file = std::path::Path::new(&model.path).file_name();
        let json = serde_json::json!({
            "settings": settings,
            "model": {"file": file.map(|f| f.to_string_lossy()), "sha256": model.sha256},
            "threads": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "wall_s": wall,
            "runs": results,
            "comparisons": comparisons,
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!("results written to {}", out.display());
    }
    Ok(())
}

/// A run of this name, dataset and configuration made earlier: it resumes (or is reused when
/// done) instead of starting over.
fn find_run(
    service: &Service,
    name: &str,
    dataset: DatasetId,
    config: &RunConfig,
) -> Result<Option<RunId>> {
    let wanted = serde_json::to_value(config)?;
    Ok(service
        .list_runs()?
        .into_iter()
        .find(|r| r.name == name && r.dataset_id == dataset && r.config == wanted)
        .map(|r| r.id))
}

/// Wall time of each round that ran start to end in this process.
struct RoundClock {
    started: Vec<Option<Instant>>,
    wall: Vec<Option<f64>>,
}

impl RoundClock {
    fn new(rounds: usize) -> Self {
        RoundClock {
            started: vec![None; rounds],
            wall: vec![None; rounds],
        }
    }

    fn on(&mut self, p: &Progress) {
        if let Progress::Step { round, state } = p {
            match state {
                RoundState::Collecting => self.started[*round] = Some(Instant::now()),
                RoundState::Done => {
                    self.wall[*round] = self.started[*round].map(|t| t.elapsed().as_secs_f64())
                }
                _ => {}
            }
        }
    }

    fn wall_s(&self) -> Vec<Option<f64>> {
        self.wall.clone()
    }
}

/// A variant's final round against EVOLVE's with the same seed.
#[derive(serde::Serialize)]
struct Comparison {
    seed: u64,
    evolve_vs: Variant,
    /// EVOLVE's direct answers against the variant's, problem by problem.
    direct: Option<PairedComparison>,
    /// The same for the answers after one refinement step.
    refined: Option<PairedComparison>,
}

/// Each variant's final round against EVOLVE's with the same seed, problem by problem.
fn comparisons(service: &Service, results: &[VariantResult]) -> Result<Vec<Comparison>> {
    let mut out = Vec::new();
    for r in results.iter().filter(|r| r.variant != Variant::Evolve) {
        let Some(evolve) = results
            .iter()
            .find(|e| e.variant == Variant::Evolve && e.seed == r.seed)
        else {
            continue;
        };
        out.push(Comparison {
            seed: r.seed,
            evolve_vs: r.variant,
            direct: service.compare_runs(
                RunId(r.run_id),
                RunId(evolve.run_id),
                EvalMeasure::Direct,
            )?,
            refined: service.compare_runs(
                RunId(r.run_id),
                RunId(evolve.run_id),
                EvalMeasure::Refined(1),
            )?,
        });
    }
    Ok(out)
}

fn print_comparison(results: &[VariantResult], comparisons: &[Comparison], refine_steps: usize) {
    println!(
        "\n== side by side (held-out accuracy ×100, greedy; sampled = one answer at the collection temperature)"
    );
    let mut header = format!(
        "{:<15} {:>4} {:<8} {:>6}",
        "method", "seed", "model", "direct"
    );
    for k in 1..=refine_steps {
        header += &format!(" {:>9}", format!("refine@{k}"));
    }
    println!(
        "{header} {:>8}  {:<24} {:>5}",
        "sampled", "direct vs base [95% CI]", "w→r/r→w"
    );
    for r in results {
        for row in &r.rows {
            let mut line = format!(
                "{:<15} {:>4} {:<8} {:>6.1}",
                r.variant.name(),
                r.seed,
                row.score.label,
                100.0 * row.score.direct
            );
            for k in 0..refine_steps {
                line += &format!(
                    " {:>9}",
                    row.score
                        .refined
                        .get(k)
                        .map_or("-".into(), |v| format!("{:.1}", 100.0 * v))
                );
            }
            let sampled = row
                .score
                .sampled
                .map_or("-".into(), |v| format!("{:.1}", 100.0 * v));
            let vs = row.score.vs_base.as_ref().map_or("-".into(), ci);
            let fix = match (row.wrong_to_right().first(), row.right_to_wrong().first()) {
                (Some(a), Some(b)) => format!("{a}/{b}"),
                _ => "-".into(),
            };
            println!("{line} {sampled:>8}  {vs:<24} {fix:>5}");
        }
    }
    println!(
        "\n== the last round against EVOLVE's, same seed (EVOLVE − other, [95% CI], EVOLVE wins/losses, McNemar p)"
    );
    for c in comparisons {
        for (what, cmp) in [("direct", &c.direct), ("refine@1", &c.refined)] {
            if let Some(d) = cmp {
                println!(
                    "evolve vs {:<14} seed {} {:<8}: {}  {}/{}  {}",
                    c.evolve_vs.name(),
                    c.seed,
                    what,
                    ci(d),
                    d.wins,
                    d.losses,
                    p_value(d.p_value)
                );
            }
        }
    }
}

/// `p = 0.012`, or `p < 0.001`.
fn p_value(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

/// `+12.3 [+9.8, +14.9]` in points.
fn ci(c: &PairedComparison) -> String {
    format!(
        "{:+.1} [{:+.1}, {:+.1}]",
        100.0 * c.diff,
        100.0 * c.ci_low,
        100.0 * c.ci_high
    )
}

/// `base` with the JSON object in `path` laid over it ([`RunConfig::overlay`], as `run start
/// --config` does). Rounds and prompts per round stay the demo's: the dataset was made for them.
fn overlay(base: &RunConfig, path: &std::path::Path) -> Result<RunConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut patch: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if let Some(fields) = patch.as_object_mut() {
        fields.remove("rounds");
        fields.remove("prompts_per_round");
    }
    base.overlay(&patch)
        .with_context(|| format!("{}", path.display()))
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
        let base = DemoSettings::default().run_config(0);
        let c = overlay(&base, &path).unwrap();
        assert_eq!((c.samples, c.train.lr), (8, 3e-4));
        assert_eq!(c.train.beta, base.train.beta, "untouched fields stay");
        assert_eq!(
            c.rounds, base.rounds,
            "the dataset was made for the demo's rounds"
        );
        std::fs::write(&path, r#"{"train": {"lr": "fast"}}"#).unwrap();
        let err = format!("{:#}", overlay(&base, &path).unwrap_err());
        assert!(err.contains("the settings do not fit a run"), "{err}");
    }
}
