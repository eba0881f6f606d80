//! `evolve train`: LoRA on a TRL preference file, outside any run (`evolve::adapters::trl_train`).

use super::progress::steps_bar;
use anyhow::{Result, bail};
use clap::Args;
use evolve::adapters::trl_train::{TrainJob, read_trl_pairs};
use evolve::core::Objective;
use evolve::method::run::TrainSettings;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

#[derive(Args)]
pub struct TrainArgs {
    /// The base model (GGUF)
    #[arg(long)]
    model: PathBuf,
    /// TRL preference pairs, one JSON object a line: prompt / chosen / rejected as text or
    /// conversations (or chosen / rejected conversations sharing their prompt)
    #[arg(long)]
    pairs: PathBuf,
    /// Output folder: adapter.gguf (llama.cpp), adapter.safetensors, peft/ with --peft
    #[arg(long)]
    out: PathBuf,
    /// dpo (sigmoid), ipo, or sft (the chosen answers alone)
    #[arg(long, default_value = "dpo", value_parser = ["dpo", "ipo", "sft"])]
    loss: String,
    #[arg(long, allow_negative_numbers = true)]
    beta: Option<f64>,
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    rank: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    alpha: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Pairs longer than this (prompt + longer answer, in tokens) are left out
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Steps between checkpoints (Ctrl-C always saves one)
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Also export the adapter as PEFT (transformers) into <out>/peft
    #[arg(long)]
    peft: bool,
    /// Continue the training Ctrl-C stopped in --out (same pairs and settings)
    #[arg(long)]
    resume: bool,
}

impl TrainArgs {
    fn settings(&self) -> Result<TrainSettings> {
        let mut s = TrainSettings::default();
        let set = |v: Option<usize>, f: &mut usize| v.into_iter().for_each(|v| *f = v);
        set(self.epochs, &mut s.epochs);
        set(self.rank, &mut s.lora_rank);
        set(self.batch_size, &mut s.batch_size);
        set(self.max_tokens, &mut s.max_tokens);
        set(self.checkpoint_every, &mut s.checkpoint_every);
        for (v, f) in [
            (self.beta, &mut s.beta),
            (self.lr, &mut s.lr),
            (self.alpha, &mut s.lora_alpha),
        ] {
            if let Some(v) = v {
                *f = v;
            }
        }
        if let Some(seed) = self.seed {
            s.seed = seed;
        }
        if self.loss == "ipo" {
            s.loss = serde_json::from_value(serde_json::json!("ipo"))?;
        }
        Ok(s)
    }
}

pub fn train(args: TrainArgs) -> Result<()> {
    let file = read_trl_pairs(&args.pairs)?;
    for (line, why) in &file.bad_lines {
        eprintln!("{}:{line}: skipped: {why}", args.pairs.display());
    }
    let job = TrainJob {
        model: &args.model,
        pairs: &file.pairs,
        settings: args.settings()?,
        objective: if args.loss == "sft" {
            Objective::Sft
        } else {
            Objective::Preference
        },
        out_dir: &args.out,
        resume: args.resume,
        peft: args.peft,
    };
    job.check()?;
    // Installed before anything long starts: Ctrl-C stops between steps, with a checkpoint.
    let stop = super::run::ctrl_c_flag();
    println!(
        "training on {} pairs from {} ({} lines skipped), {} → {}",
        file.pairs.len(),
        args.pairs.display(),
        file.bad_lines.len(),
        args.loss,
        args.out.display()
    );
    let bar = steps_bar(1, "training");
    let outcome = job.run(&mut |r| {
        bar.set_length(r.total_steps as u64);
        let m = |k: &str| r.metrics.get(k).copied().unwrap_or(f64::NAN);
        bar.set_message(format!(
            "loss {:.3} acc {:.2} margin {:.2} {:.0} tok/s",
            m("loss"),
            m("rewards/accuracies"),
            m("rewards/margins"),
            m("tokens_per_second")
        ));
        bar.set_position(r.step as u64);
        !stop.load(Ordering::Relaxed)
    })?;
    bar.finish_and_clear();
    if !outcome.completed {
        println!(
            "interrupted at step {}: checkpoint saved; the same command with --resume continues it",
            outcome.steps
        );
        bail!("training interrupted");
    }
    println!(
        "wrote {} ({} steps)",
        outcome.adapter.display(),
        outcome.steps
    );
    if let Some(peft) = outcome.peft {
        println!("wrote {} (PEFT)", peft.display());
    }
    Ok(())
}
