use anyhow::Result;
use clap::{Args, Subcommand};
use evolve::gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FixtureCommand {
    /// Write a tiny random-weight Llama GGUF (char-level vocab) for plumbing tests
    Random(RandomArgs),
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
