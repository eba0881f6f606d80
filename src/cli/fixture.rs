use anyhow::Result;
use clap::{Args, Subcommand};
use evolve::gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve::task_model::{TaskModelConfig, train_task_model};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Subcommand)]
pub enum FixtureCommand {
    /// Write a tiny random-weight Llama GGUF (char-level vocab) for plumbing tests
    Random(RandomArgs),
    /// Train the tiny task model (two-digit addition with worked answers) from scratch on the CPU
    Task(TaskArgs),
}

#[derive(Args)]
pub struct TaskArgs {
    /// Output file
    #[arg(long, default_value = "models/tiny-task.gguf")]
    out: PathBuf,
    /// Optimizer steps (of 32 sequences) [default: 400]
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of the weights and the data
    #[arg(long)]
    seed: Option<u64>,
    /// Held-out problems to measure the trained model's accuracy on with llama.cpp (0 = skip)
    #[arg(long, default_value_t = 100)]
    eval: usize,
}

#[derive(Args)]
pub struct RandomArgs {
    /// Output file
    #[arg(long, default_value = "models/tiny-random.gguf")]
    out: PathBuf,
    /// Weight type of the 2-D tensors: f32, f16 or q8_0
    #[arg(long = "type", default_value = "f32")]
    weight_type: String,
    /// Seed of the weights; the same seed writes the same bytes
    #[arg(long)]
    seed: Option<u64>,
    // Model shape; the defaults are the tiny test model. Bigger shapes make benchmarks meaningful.
    /// Embedding width [default: 64]
    #[arg(long)]
    n_embd: Option<u32>,
    /// Transformer blocks [default: 2]
    #[arg(long)]
    n_layer: Option<u32>,
    /// Attention heads (must divide --n-embd) [default: 4]
    #[arg(long)]
    n_head: Option<u32>,
    /// Key/value heads (must divide --n-head) [default: 2]
    #[arg(long)]
    n_head_kv: Option<u32>,
    /// Feed-forward width [default: 128]
    #[arg(long)]
    n_ff: Option<u32>,
    /// Training context length written to the metadata [default: 512]
    #[arg(long)]
    ctx: Option<u32>,
}

pub fn run(cmd: FixtureCommand) -> Result<()> {
    match cmd {
        FixtureCommand::Task(args) => task(args),
        FixtureCommand::Random(args) => {
            let weight_type: WeightType = args.weight_type.parse()?;
            let mut cfg = TinyLlamaConfig::default();
            let shape = [
                (args.n_embd, &mut cfg.n_embd),
                (args.n_layer, &mut cfg.n_layer),
                (args.n_head, &mut cfg.n_head),
                (args.n_head_kv, &mut cfg.n_head_kv),
                (args.n_ff, &mut cfg.n_ff),
                (args.ctx, &mut cfg.context_length),
            ];
            for (value, field) in shape {
                if let Some(v) = value {
                    *field = v;
                }
            }
            if let Some(seed) = args.seed {
                cfg.seed = seed;
            }
            if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let summary = write_tiny_llama(&args.out, &cfg, weight_type)?;
            println!(
                "wrote {} ({} parameters, {}, {} bytes)",
                args.out.display(),
                summary.parameter_count,
                summary.quantization,
                summary.file_size
            );
            Ok(())
        }
    }
}

fn task(args: TaskArgs) -> Result<()> {
    let mut cfg = TaskModelConfig::default();
    if let Some(steps) = args.steps {
        cfg.steps = steps;
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    let started = Instant::now();
    let bar = crate::cli::progress::steps_bar(cfg.steps as u64, "training");
    train_task_model(&args.out, &cfg, &AtomicBool::new(false), |m| {
        bar.set_position(m.step as u64);
        bar.set_message(format!(
            "loss {:.3}  {:.0} tok/s",
            m.loss, m.tokens_per_second
        ));
        true
    })?;
    bar.finish_and_clear();
    println!(
        "wrote {} ({} steps in {:.0} s)",
        args.out.display(),
        cfg.steps,
        started.elapsed().as_secs_f64()
    );
    if args.eval > 0 {
        let acc = evolve::task_model::held_out_accuracy(&args.out, args.eval, 1)?;
        println!(
            "held-out accuracy on {} problems: direct {:.1}%, after 1 refinement {:.1}%",
            args.eval,
            100.0 * acc.direct,
            100.0 * acc.refined[0]
        );
    }
    Ok(())
}
