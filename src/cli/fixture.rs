use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use evolve::builtin::task_model::{Mix, TaskModelConfig, train_task_model};
use evolve::devtools::fixtures::{AdapterFixture, write_tiny};
use evolve::gguf::tiny::{TinyLlamaConfig, WeightType};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Subcommand)]
pub enum FixtureCommand {
    /// Write a tiny random-weight Llama GGUF (char-level vocab) for plumbing tests
    Random(RandomArgs),
    /// Train the tiny task model (two-digit addition with worked answers) from scratch on the CPU
    Task(TaskArgs),
    /// A random adapter on a model (B ≠ 0, so it moves the logits) or a trained one, written
    /// as a checkpoint, GGUF LoRA and PEFT folder, with our logits with and without it: what
    /// scripts/check-peft.sh compares with transformers + PEFT
    Adapter(AdapterArgs),
}

#[derive(Args)]
pub struct AdapterArgs {
    /// The base model (GGUF)
    #[arg(long)]
    model: PathBuf,
    /// Output folder: adapter.safetensors, adapter.gguf, peft/, logits.json
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 8)]
    rank: usize,
    #[arg(long, default_value_t = 16.0)]
    alpha: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Standard deviation of the random B matrices
    #[arg(long, default_value_t = 0.02)]
    std: f64,
    /// Token ids to compute the logits of (every position)
    #[arg(long, value_delimiter = ',', default_value = "1,17,42,5,99,23,8,64")]
    tokens: Vec<u32>,
    /// A trained adapter's checkpoint (adapter.safetensors, of --rank and --alpha) instead of
    /// a random one
    #[arg(long)]
    weights: Option<PathBuf>,
    /// PEFT's base_model_name_or_path [default: from the GGUF's metadata]
    #[arg(long)]
    base_name: Option<String>,
}

#[derive(Args)]
pub struct TaskArgs {
    /// Output file
    #[arg(long, default_value = "models/tiny-task.gguf")]
    out: PathBuf,
    /// Optimizer steps (of 32 sequences) [default: 1200]
    #[arg(long)]
    steps: Option<usize>,
    /// Seed of the weights and the data
    #[arg(long)]
    seed: Option<u64>,
    /// The training mix: 2 (the built-in model: a systematic slip in its distribution) or 1
    /// (docs/demo.md's negative control, still learning the task)
    #[arg(long, default_value_t = 2)]
    version: u32,
    /// Version 2's slip rate on the easiest and hardest carry problems, e.g. 0.55,0.85
    #[arg(long, value_delimiter = ',')]
    slip: Option<Vec<f64>>,
    /// Version 2's rate of fixing a slipped answer in the refinement turn
    #[arg(long)]
    fix_rate: Option<f64>,
    /// Version 2's share of flawed previous answers that miscopy the final number instead
    #[arg(long)]
    miscopy_share: Option<f64>,
    /// Measure the trained model on the held-out problems with llama.cpp: all, none, or N
    #[arg(long, default_value = "all")]
    eval: String,
    /// Only measure the model already at --out (no training)
    #[arg(long)]
    report_only: bool,
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
    /// llama; qwen2 (the same weights with q/k/v biases and NEOX RoPE); qwen3 (random
    /// weights of the same width, head size 32, q/k head norms, tied embeddings; f32); gemma3
    /// (qwen3's plus post-norms, GeGLU and sliding-window layers); or phi3 (fused q/k/v and
    /// gate/up, partial rotary, LongRoPE factors)
    #[arg(long, default_value = "llama")]
    arch: String,
}

pub fn run(cmd: FixtureCommand) -> Result<()> {
    match cmd {
        FixtureCommand::Task(args) => task(args),
        FixtureCommand::Adapter(args) => adapter(args),
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
            let summary = write_tiny(&args.arch, &cfg, weight_type, &args.out)?;
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

fn adapter(args: AdapterArgs) -> Result<()> {
    let base_name = AdapterFixture {
        model: &args.model,
        out: &args.out,
        rank: args.rank,
        alpha: args.alpha,
        seed: args.seed,
        std: args.std,
        weights: args.weights.clone(),
        tokens: &args.tokens,
        base_name: args.base_name.clone(),
    }
    .write()?;
    println!(
        "wrote {}: adapter.safetensors, adapter.gguf, peft/ ({}), logits.json ({} tokens)",
        args.out.display(),
        base_name.as_deref().unwrap_or("no base name"),
        args.tokens.len()
    );
    Ok(())
}

fn task(args: TaskArgs) -> Result<()> {
    let mut cfg = match args.version {
        1 => TaskModelConfig::v1(),
        2 => TaskModelConfig::default(),
        v => anyhow::bail!("--version must be 1 or 2, not {v}"),
    };
    if let Some(steps) = args.steps {
        cfg.steps = steps;
    }
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Mix::Slip {
        slip_min,
        slip_max,
        fix_rate,
        miscopy_share,
    } = &mut cfg.mix
    {
        if let Some(m) = args.miscopy_share {
            *miscopy_share = m;
        }
        if let Some(s) = &args.slip {
            let [lo, hi] = s[..] else {
                anyhow::bail!("--slip takes two rates, e.g. 0.55,0.85");
            };
            (*slip_min, *slip_max) = (lo, hi);
        }
        if let Some(f) = args.fix_rate {
            *fix_rate = f;
        }
    }
    if !args.report_only {
        let started = Instant::now();
        let bar = crate::cli::progress::steps_bar(cfg.steps as u64, "training");
        let mut last_loss = f64::NAN;
        train_task_model(&args.out, &cfg, &AtomicBool::new(false), |m| {
            bar.set_position(m.step as u64);
            bar.set_message(format!(
                "loss {:.3}  {:.0} tok/s",
                m.loss, m.tokens_per_second
            ));
            last_loss = m.loss;
            true
        })?;
        bar.finish_and_clear();
        println!(
            "wrote {} ({} steps in {:.0} s, final loss {last_loss:.4})",
            args.out.display(),
            cfg.steps,
            started.elapsed().as_secs_f64()
        );
    }
    let eval = match args.eval.as_str() {
        "all" => Some(0),
        "none" | "0" => None,
        n => Some(n.parse().context("--eval takes all, none or a number")?),
    };
    if let Some(n) = eval {
        let r = evolve::builtin::task_model::task_report(&args.out, n, 2, 8)?;
        let pct = |x: f64| format!("{:.1}%", 100.0 * x);
        println!(
            "held-out, {} problems ({} carry into the tens):",
            r.n,
            pct(r.carry_share)
        );
        println!(
            "  greedy   direct {}  (carry {}, no carry {})  refine@1 {}  refine@2 {}",
            pct(r.greedy.direct),
            pct(r.greedy_carry),
            pct(r.greedy_no_carry),
            pct(r.greedy.refined[0]),
            pct(r.greedy.refined[1])
        );
        for (k, (wr, rw)) in r.refine_transitions.iter().enumerate() {
            println!("  refinement {}: wrong→right {wr}, right→wrong {rw}", k + 1);
        }
        println!(
            "  sampled  T {}: accuracy {}, pass@{} {}",
            r.temperature,
            pct(r.sampled),
            r.samples,
            pct(r.pass_at_k)
        );
        println!("  gold answers: NLL {:.3} nats/token", r.gold_nll);
    }
    Ok(())
}
