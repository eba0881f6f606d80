use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evolve::bench::{
    BenchRow, ReferenceRow, bench_sample, default_tools_dir, find_reference, run_reference,
};
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
    /// Alternating runs of ours and the reference; the table shows medians
    #[arg(long, default_value_t = 5)]
    repeat: usize,
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
        || args.repeat == 0
    {
        bail!(
            "--batch sizes must be positive, --prompt-tokens > 0, --gen-tokens >= 2 and --repeat > 0"
        );
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
    // Ours and the reference take turns, `--repeat` times: on a shared machine the speed drifts
    // by tens of percent between runs, and neighbouring runs see the same conditions, so the
    // ratio is taken per turn and its median reported.
    let mut ours: Vec<Vec<BenchRow>> = Vec::new();
    let mut theirs: Vec<Vec<ReferenceRow>> = Vec::new();
    for _ in 0..args.repeat {
        let rows = bench_sample(
            model,
            &args.batch,
            args.prompt_tokens,
            args.gen_tokens,
            threads,
        )?;
        if let Some(bin) = &reference {
            let prompt_tokens = rows[0].prompt_tokens;
            theirs.push(
                run_reference(
                    bin,
                    model,
                    &args.batch,
                    prompt_tokens,
                    args.gen_tokens,
                    threads,
                )
                .with_context(|| "reference run")?,
            );
        }
        ours.push(rows);
    }
    println!(
        "model {}, prompt {} tokens (shared), {} tokens per sample, {threads} threads, \
         medians of {} alternating runs",
        model.display(),
        ours[0][0].prompt_tokens,
        args.gen_tokens,
        args.repeat
    );
    match &reference {
        Some(bin) => println!("reference: {}", bin.display()),
        None => {
            println!("reference: none (scripts/build-llama-tools.sh builds one; or --reference)")
        }
    }
    println!(
        "| batch | ours pp t/s | llama.cpp pp t/s | ours gen t/s | llama.cpp gen t/s | gen ratio | ratio range |"
    );
    println!(
        "|------:|------------:|-----------------:|-------------:|------------------:|----------:|------------:|"
    );
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for (i, &batch) in args.batch.iter().enumerate() {
        let ours_of = |f: fn(&BenchRow) -> f64| median(ours.iter().map(|run| f(&run[i])));
        let theirs_rows: Vec<&ReferenceRow> = theirs
            .iter()
            .filter_map(|run| run.iter().find(|t| t.batch == batch))
            .collect();
        let theirs_of = |f: fn(&ReferenceRow) -> f64| median(theirs_rows.iter().map(|r| f(r)));
        let ratios: Vec<f64> = ours
            .iter()
            .zip(&theirs)
            .filter_map(|(o, t)| {
                let t = t.iter().find(|t| t.batch == batch)?;
                Some(o[i].gen_tps / t.gen_tps)
            })
            .collect();
        let range = match (
            ratios.iter().copied().reduce(f64::min),
            ratios.iter().copied().reduce(f64::max),
        ) {
            (Some(lo), Some(hi)) => format!("{lo:.2}–{hi:.2}"),
            _ => "-".to_string(),
        };
        println!(
            "| {:>5} | {:>11} | {:>16} | {:>12} | {:>17} | {:>9} | {:>11} |",
            batch,
            cell(ours_of(|r| r.prompt_tps)),
            cell(theirs_of(|r| r.prompt_tps)),
            cell(ours_of(|r| r.gen_tps)),
            cell(theirs_of(|r| r.gen_tps)),
            median(ratios.iter().copied()).map_or("-".to_string(), |r| format!("{r:.2}x")),
            range,
        );
    }
    Ok(())
}

/// The median (the mean of the middle two for an even count); `None` for no values.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }
}
