use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evolve::bench::{bench_sample, default_tools_dir, find_reference, run_reference};
use evolve::gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Batched sampling speed (one shared prompt, B samples), next to llama.cpp's batched-bench
    Sample(SampleArgs),
}

#[derive(Args)]
pub struct SampleArgs {
    /// GGUF file, or `tiny` for the built-in tiny random model
    #[arg(long)]
    model: String,
    /// Batch sizes (samples decoded together)
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    batch: Vec<usize>,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// CPU threads [default: all cores]
    #[arg(long)]
    threads: Option<i32>,
    /// llama-batched-bench / evolve-batched-bench binary or its directory
    /// [default: the scripts/build-llama-tools.sh output, when built]
    #[arg(long, value_name = "DIR_OR_BINARY")]
    reference: Option<PathBuf>,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    let BenchCommand::Sample(args) = cmd;
    if args.batch.is_empty()
        || args.batch.contains(&0)
        || args.prompt_tokens == 0
        || args.gen_tokens < 2
    {
        bail!("--batch sizes must be positive, --prompt-tokens > 0 and --gen-tokens >= 2");
    }
    // A named --reference must exist; the default one is used only when it was built.
    let reference = match &args.reference {
        Some(path) => Some(find_reference(path)?),
        None => find_reference(&default_tools_dir()).ok(),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get() as i32));
    // `tiny`: written to a scratch file for this run (removed when done).
    let tiny = (args.model == "tiny").then(|| {
        std::env::temp_dir().join(format!("evolve-bench-tiny-{}.gguf", std::process::id()))
    });
    let model = match &tiny {
        Some(path) => {
            write_tiny_llama(path, &TinyLlamaConfig::default(), WeightType::Q8_0)?;
            path.clone()
        }
        None => PathBuf::from(&args.model),
    };
    let result = bench_and_print(&args, &model, reference, threads);
    if let Some(path) = tiny {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn bench_and_print(
    args: &SampleArgs,
    model: &std::path::Path,
    reference: Option<PathBuf>,
    threads: i32,
) -> Result<()> {
    let ours = bench_sample(
        model,
        &args.batch,
        args.prompt_tokens,
        args.gen_tokens,
        threads,
    )?;
    let theirs = match &reference {
        Some(bin) => run_reference(
            bin,
            model,
            &args.batch,
            ours[0].prompt_tokens,
            args.gen_tokens,
            threads,
        )
        .with_context(|| "reference run")?,
        None => Vec::new(),
    };
    println!(
        "model {}, prompt {} tokens (shared), {} tokens per sample, {threads} threads",
        model.display(),
        ours[0].prompt_tokens,
        args.gen_tokens
    );
    match &reference {
        Some(bin) => println!("reference: {}", bin.display()),
        None => {
            println!("reference: none (scripts/build-llama-tools.sh builds one; or --reference)")
        }
    }
    println!(
        "| batch | ours pp t/s | llama.cpp pp t/s | ours gen t/s | llama.cpp gen t/s | gen ratio |"
    );
    println!(
        "|------:|------------:|-----------------:|-------------:|------------------:|----------:|"
    );
    for row in &ours {
        let r = theirs.iter().find(|t| t.batch == row.batch);
        let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        println!(
            "| {:>5} | {:>11.1} | {:>16} | {:>12.1} | {:>17} | {:>9} |",
            row.batch,
            row.prompt_tps,
            cell(r.map(|r| r.prompt_tps)),
            row.gen_tps,
            cell(r.map(|r| r.gen_tps)),
            r.map_or("-".to_string(), |r| format!(
                "{:.2}x",
                row.gen_tps / r.gen_tps
            )),
        );
    }
    Ok(())
}
