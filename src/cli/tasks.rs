//! `evolve tasks`: the built-in verifiable tasks, and how much headroom a model has on each.

use super::run::EngineArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use evolve::Service;
use evolve::core::SamplerConfig;
use evolve::method::pairs::PairStrategy;
use evolve::method::probe::{ProbeSettings, ProbeSummary};
use evolve::method::tasks::BuiltinTask;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand)]
pub enum TasksCommand {
    /// The built-in tasks (each graded by the numeric_any verifier)
    List,
    /// Per task: greedy accuracy (pass@1), pass@k at a temperature, and one untrained
    /// refinement step, on the task's train problems; the task with the largest pass@k − pass@1
    /// gap has the most headroom for a sample-and-verify loop
    Measure(MeasureArgs),
}

#[derive(Args)]
pub struct MeasureArgs {
    /// A GGUF path, a registered model id, or `smollm2` (fetched by `evolve models fetch smollm2`)
    #[arg(long)]
    model: String,
    /// Tasks to measure [default: all]
    #[arg(long, value_delimiter = ',')]
    task: Vec<BuiltinTask>,
    /// Problems per task
    #[arg(long, default_value_t = 60)]
    problems: usize,
    /// Samples per problem (the k of pass@k)
    #[arg(long, default_value_t = 8)]
    samples: usize,
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Maximum new tokens per answer
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// Write the table and every answer as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(cmd: TasksCommand, service: &Service) -> Result<()> {
    match cmd {
        TasksCommand::List => {
            for t in BuiltinTask::ALL {
                let (train, _) = t.problems(1, 0, evolve::tasks::TASK_SEED)?;
                println!(
                    "{:<13} {} ({} problems), e.g. \"{}\"",
                    t.name(),
                    t.description(),
                    t.size(),
                    train[0].question
                );
            }
            Ok(())
        }
        TasksCommand::Measure(args) => measure(args, service),
    }
}

fn measure(args: MeasureArgs, service: &Service) -> Result<()> {
    let model = service.resolve_model(&args.model)?;
    let tasks = if args.task.is_empty() {
        BuiltinTask::ALL.to_vec()
    } else {
        args.task.clone()
    };
    let settings = ProbeSettings {
        samples: args.samples,
        sampler: SamplerConfig {
            temperature: args.temperature,
            max_tokens: args.max_tokens,
            seed: 11,
            ..SamplerConfig::default()
        },
        sample_refine_steps: 0,
        greedy: Some(SamplerConfig::greedy(args.max_tokens)),
        refine_steps: 1,
        template: service.refinement_template_for(&model)?,
        pair_strategy: PairStrategy::default(),
    };
    settings
        .sampler
        .validate("sampler")
        .map_err(anyhow::Error::msg)?;
    println!(
        "model {}, {} problems per task, pass@{} at temperature {}, {} tokens at most",
        model.display(),
        args.problems,
        args.samples,
        args.temperature,
        args.max_tokens
    );
    let mut table = Vec::new();
    let mut answers = serde_json::Map::new();
    for task in tasks {
        let started = Instant::now();
        let dataset = service.task_dataset(task, args.problems, 0)?;
        let prompts: Vec<(String, Option<String>)> = service
            .store()
            .list_prompts(dataset, Some("train"))?
            .into_iter()
            .map(|p| (p.prompt, p.reference))
            .collect();
        let (rows, summary) = service.probe_model(
            &model,
            &prompts,
            &settings,
            &task.scorer(),
            &args.engine.settings(),
        )?;
        let wall = started.elapsed().as_secs_f64();
        eprintln!("{task}: {}", line(&summary, wall));
        answers.insert(task.name().into(), serde_json::to_value(&rows)?);
        table.push((task, summary, wall));
    }
    println!();
    println!(
        "| task | problems | pass@1 (greedy) | pass@{k} | sampled | refine@1 | wrong→right | right→wrong | prompts with pairs | gap pass@{k} − pass@1 | wall s |",
        k = args.samples
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (task, s, wall) in &table {
        let pk = s.pass_k.unwrap_or(0.0);
        println!(
            "| {task} | {} | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {} | {} | {} | {:+.1} | {:.0} |",
            s.prompts,
            100.0 * s.pass1.unwrap_or(0.0),
            100.0 * pk,
            100.0 * s.sampled.unwrap_or(0.0),
            100.0 * s.refine.first().copied().unwrap_or(0.0),
            s.wrong_to_right,
            s.right_to_wrong,
            s.with_pairs,
            100.0 * gap(s),
            wall
        );
    }
    if let Some(best) = table.iter().max_by(|a, b| {
        gap(&a.1)
            .partial_cmp(&gap(&b.1))
            .unwrap_or(std::cmp::Ordering::Equal)
    }) {
        println!(
            "\nlargest headroom: {} (pass@{} − pass@1 = {:+.1} points)",
            best.0,
            args.samples,
            100.0 * gap(&best.1)
        );
    }
    if let Some(out) = &args.json {
        let json = serde_json::json!({
            "model": model.file_name().map(|f| f.to_string_lossy()),
            "samples": args.samples,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "table": table.iter().map(|(t, s, wall)| serde_json::json!({
                "task": t, "summary": s, "wall_s": wall
            })).collect::<Vec<_>>(),
            "answers": answers,
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn gap(s: &ProbeSummary) -> f64 {
    s.pass_k.unwrap_or(0.0) - s.pass1.unwrap_or(0.0)
}

fn line(s: &ProbeSummary, wall: f64) -> String {
    format!(
        "pass@1 {:.1}%, pass@k {:.1}%, refine@1 {:.1}%, {} of {} prompts would make pairs, {:.0} s",
        100.0 * s.pass1.unwrap_or(0.0),
        100.0 * s.pass_k.unwrap_or(0.0),
        100.0 * s.refine.first().copied().unwrap_or(0.0),
        s.with_pairs,
        s.prompts,
        wall
    )
}
