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
}

pub fn run(cmd: FixtureCommand) -> Result<()> {
    match cmd {
        FixtureCommand::Random(args) => {
            let weight_type: WeightType = args.weight_type.parse()?;
            let mut cfg = TinyLlamaConfig::default();
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
