use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evolve::devtools::bench::train::{StepTiming, TrainBench};
use evolve::devtools::bench::{
    BenchRow, ReferenceRow, bench_sample, default_tools_dir, find_reference, run_reference,
};
use evolve::gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Batched sampling speed (one shared prompt, B samples), next to llama.cpp's batched-bench
    Sample(SampleArgs),
    /// One LoRA-DPO training step (reference forward, policy forward and backward, AdamW),
    /// next to PyTorch + PEFT (scripts/bench/dpo_reference.py)
    Train(TrainArgs),
    /// One round of the real-model study (SmolLM2 on `smallest`), each phase's wall time and
    /// tokens/s, on a fresh data folder
    Round(super::bench_round::RoundArgs),
}

#[derive(Args)]
pub struct TrainArgs {
    /// tiny, 0.5b (Qwen2.5-0.5B's shape), 1b, 8b (random weights) or a GGUF file
    #[arg(long, default_value = "tiny")]
    shape: String,
    /// Preference pairs per step
    #[arg(long, default_value_t = 4)]
    pairs: usize,
    /// Tokens per sequence (prompt + answer)
    #[arg(long, default_value_t = 256)]
    seq: usize,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// LoRA rank (alpha = 2 × rank; all seven linear modules)
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// CPU threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// cpu or cuda
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16"])]
    dtype: String,
    /// Alternating runs of ours and the reference (a process each); the table shows medians
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Untimed steps in each process before the timed ones
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Timed steps in each process (their median counts)
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// The reference's command line, to which the same flags are appended, e.g.
    /// "$HOME/.cache/evolve-studio/peft-venv/bin/python scripts/bench/dpo_reference.py"
    #[arg(long)]
    reference: Option<String>,
    /// Instead of timing: one DPO loss and its LoRA gradients on the same weights and pairs,
    /// ours against the reference's (relative error < 1e-4 in f32); tiny or a GGUF shape
    #[arg(long)]
    check: bool,
    /// Recompute each block's activations in the backward pass: auto, always or never (ours
    /// only; the reference keeps them, as TRL does by default)
    #[arg(long, default_value = "auto")]
    recompute: evolve::devtools::bench::train::Recompute,
    /// Measure in this process and print one JSON line (what each turn runs)
    #[arg(long, hide = true)]
    one: bool,
}

impl TrainArgs {
    fn threads(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()))
    }

    /// The flags both sides are run with.
    fn flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        for (k, v) in [
            ("--shape", self.shape.clone()),
            ("--pairs", self.pairs.to_string()),
            ("--seq", self.seq.to_string()),
            ("--prompt-tokens", self.prompt_tokens.to_string()),
            ("--rank", self.rank.to_string()),
            ("--threads", self.threads().to_string()),
            ("--device", self.device.clone()),
            ("--dtype", self.dtype.clone()),
            ("--warmup", self.warmup.to_string()),
            ("--steps", self.steps.to_string()),
        ] {
            f.push(k.to_string());
            f.push(v);
        }
        f
    }

    fn bench(&self) -> Result<TrainBench> {
        let bench = TrainBench {
            shape: self.shape.parse().map_err(anyhow::Error::msg)?,
            pairs: self.pairs,
            seq: self.seq,
            prompt_tokens: self.prompt_tokens,
            rank: self.rank,
            threads: self.threads(),
            dtype: evolve::devtools::bench::train::dtype(&self.dtype)?,
            device: evolve::devtools::bench::train::device(&self.device)?,
            recompute: self.recompute,
        };
        bench.validate()?;
        if self.repeat == 0 || self.steps == 0 {
            bail!("--repeat and --steps must be positive");
        }
        Ok(bench)
    }
}

/// `--check`: our loss and gradients written, the reference recomputes and compares them.
fn check(args: &TrainArgs, bench: &TrainBench) -> Result<()> {
    let Some(reference) = &args.reference else {
        bail!("--check needs --reference");
    };
    let dir = tempfile::tempdir()?;
    let model = match &bench.shape {
        evolve::devtools::bench::train::Shape::File(path) => path.clone(),
        evolve::devtools::bench::train::Shape::Tiny => {
            let path = dir.path().join("tiny.gguf");
            write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::F32)?;
            path
        }
        _ => {
            bail!("--check runs on tiny or a GGUF file (the reference must load the same weights)")
        }
    };
    let ours = bench.write_check(&model, dir.path())?;
    let cmd: Vec<&str> = reference.split_whitespace().collect();
    let mut a: Vec<String> = cmd[1..].iter().map(|s| s.to_string()).collect();
    a.extend(args.flags());
    a.extend(["--check".to_string(), dir.path().display().to_string()]);
    let out = std::process::Command::new(cmd[0])
        .args(&a)
        .output()
        .with_context(|| format!("cannot run {}", cmd[0]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| {
        format!(
            "the reference printed no result: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let loss_err = v["loss_rel_err"].as_f64().unwrap_or(f64::NAN);
    let grad_err = v["grad_rel_err_max"].as_f64().unwrap_or(f64::NAN);
    println!(
        "shape {}: loss ours {ours:.8} reference {:.8} (relative error {loss_err:.1e}); LoRA \
         gradients: {} tensors, largest relative error {grad_err:.1e}",
        args.shape, v["loss"], v["tensors"]
    );
    if !(loss_err < 1e-4 && grad_err < 1e-4) {
        bail!("ours and the reference differ by more than 1e-4");
    }
    println!("same loss and gradients (< 1e-4)");
    Ok(())
}

/// Runs `program args` and reads the JSON line it prints last.
fn timing_of(program: &str, args: &[String], env: &[(&str, String)]) -> Result<StepTiming> {
    let out = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("{program} printed no result: {stdout}"))
}

fn train(args: TrainArgs) -> Result<()> {
    let bench = args.bench()?;
    if args.one {
        let timing = bench.measure(args.warmup, args.steps)?;
        println!("{}", serde_json::to_string(&timing)?);
        return Ok(());
    }
    if args.check {
        return check(&args, &bench);
    }
    let exe = std::env::current_exe()?.display().to_string();
    let mut ours_args = vec!["bench".to_string(), "train".into(), "--one".into()];
    ours_args.extend(args.flags());
    ours_args.extend(["--recompute".into(), args.recompute.as_str().into()]);
    // The training engine's CPU kernels size their thread pool from this.
    let env = [("RAYON_NUM_THREADS", bench.threads.to_string())];
    let reference: Option<Vec<String>> = args
        .reference
        .as_ref()
        .map(|r| r.split_whitespace().map(String::from).collect());
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for turn in 0..args.repeat {
        ours.push(timing_of(&exe, &ours_args, &env)?);
        if let Some(cmd) = &reference {
            let mut a = cmd[1..].to_vec();
            a.extend(args.flags());
            theirs.push(timing_of(&cmd[0], &a, &[]).context("the reference")?);
        }
        eprintln!("turn {}/{} done", turn + 1, args.repeat);
    }
    // `ours` has at least one entry (--repeat > 0), `theirs` is only read when not empty.
    let med =
        |v: &[StepTiming], f: fn(&StepTiming) -> f64| median(v.iter().map(f)).unwrap_or(f64::NAN);
    let mib = |b: f64| b / (1u64 << 20) as f64;
    println!(
        "shape {}, {} parameters, {} pairs × 2 × {} tokens ({} prompt), rank {}, {} threads, {} {}; \
         medians of {} alternating runs ({} warm-up + {} timed steps each)",
        args.shape,
        ours[0].parameters,
        args.pairs,
        args.seq,
        args.prompt_tokens,
        args.rank,
        bench.threads,
        args.device,
        args.dtype,
        args.repeat,
        args.warmup,
        args.steps
    );
    println!("| side | ms/step | tokens/s | peak memory | loss |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, v: &[StepTiming]| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.0} MiB | {:.4} |",
            med(v, |t| t.ms_per_step),
            med(v, |t| t.tokens_per_s),
            mib(med(v, |t| t.peak_rss_bytes as f64)),
            med(v, |t| t.loss)
        )
    };
    row("ours (EVOLVE)", &ours);
    if !theirs.is_empty() {
        row("PyTorch + PEFT", &theirs);
        let ratios: Vec<f64> = ours
            .iter()
            .zip(&theirs)
            .map(|(o, t)| o.tokens_per_s / t.tokens_per_s)
            .collect();
        let (lo, hi) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "tokens/s ratio ours / reference: {:.2}× (per-turn range {lo:.2}–{hi:.2})",
            median(ratios.iter().copied()).unwrap_or(f64::NAN)
        );
    }
    Ok(())
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
    let args = match cmd {
        BenchCommand::Sample(args) => args,
        BenchCommand::Train(args) => return train(args),
        BenchCommand::Round(args) => return super::bench_round::run(args),
    };
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
