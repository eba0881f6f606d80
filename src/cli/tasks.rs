//! `evolve tasks`: the built-in verifiable tasks, and how much headroom a model has on each.

use super::run::EngineArgs;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use evolve::Service;
use evolve::data::tasks::{MeasureSettings, TaskMeasure};
use evolve::method::tasks::BuiltinTask;
use std::path::PathBuf;

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
    #[arg(long, default_value_t = MeasureSettings::default().problems)]
    problems: usize,
    /// Samples per problem (the k of pass@k)
    #[arg(long, default_value_t = MeasureSettings::default().samples)]
    samples: usize,
    #[arg(long, default_value_t = MeasureSettings::default().temperature)]
    temperature: f32,
    /// Maximum new tokens per answer
    #[arg(long, default_value_t = MeasureSettings::default().max_tokens)]
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
                let (train, _) = t.problems(1, 0, evolve::data::tasks::TASK_SEED)?;
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
    let settings = MeasureSettings {
        problems: args.problems,
        samples: args.samples,
        temperature: args.temperature,
        max_tokens: args.max_tokens,
    };
    println!(
        "model {}, {} problems per task, pass@{} at temperature {}, {} tokens at most",
        model.display(),
        args.problems,
        args.samples,
        args.temperature,
        args.max_tokens
    );
    let table = service.measure_tasks(
        &model,
        &tasks,
        &settings,
        &args.engine.settings(),
        &mut |m| eprintln!("{}: {}", m.task, line(m)),
    )?;
    println!();
    println!(
        "| task | problems | pass@1 (greedy) | pass@{k} | sampled | refine@1 | wrong→right | right→wrong | prompts with pairs | gap pass@{k} − pass@1 | wall s |",
        k = args.samples
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let pct = |v: Option<f64>| format!("{:.1}%", 100.0 * v.unwrap_or(0.0));
    for m in &table {
        let s = &m.summary;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:+.1} | {:.0} |",
            m.task,
            s.prompts,
            pct(s.pass1),
            pct(s.pass_k),
            pct(s.sampled),
            pct(s.refine.first().copied()),
            s.wrong_to_right,
            s.right_to_wrong,
            s.with_pairs,
            100.0 * m.headroom(),
            m.wall_s
        );
    }
    if let Some(best) = table
        .iter()
        .max_by(|a, b| a.headroom().total_cmp(&b.headroom()))
    {
        println!(
            "\nlargest headroom: {} (pass@{} − pass@1 = {:+.1} points)",
            best.task,
            args.samples,
            100.0 * best.headroom()
        );
    }
    if let Some(out) = &args.json {
        let json = serde_json::json!({
            "model": model.file_name().map(|f| f.to_string_lossy()),
            "samples": args.samples,
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "tasks": table,
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

fn line(m: &TaskMeasure) -> String {
    let s = &m.summary;
    format!(
        "pass@1 {:.1}%, pass@k {:.1}%, refine@1 {:.1}%, {} of {} prompts would make pairs, {:.0} s",
        100.0 * s.pass1.unwrap_or(0.0),
        100.0 * s.pass_k.unwrap_or(0.0),
        100.0 * s.refine.first().copied().unwrap_or(0.0),
        s.with_pairs,
        s.prompts,
        m.wall_s
    )
}
