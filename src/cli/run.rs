//! `evolve run …`: start, resume, watch and export EVOLVE runs.

use super::progress::RunProgress;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evolve::Service;
use evolve::data::ImportOptions;
use evolve::method::pairs::PairStrategy;
use evolve::method::run::{RunConfig, RunError};
use evolve::runs::{EngineSettings, RunStatus};
use evolve::store::{DatasetId, RunId};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Subcommand)]
pub enum RunCommand {
    /// Create a run and drive it: rounds of sample → refine → score → pair → train → evaluate
    Start(Box<StartArgs>),
    /// Continue a paused, failed or killed run exactly where it stopped
    Resume {
        run: i64,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Rounds, pair counts, training and the held-out scoreboard of a run [default: the latest]
    Status {
        run: Option<i64>,
        /// Print JSON instead of tables
        #[arg(long)]
        json: bool,
    },
    /// List runs
    List,
    /// Write a run's preference pairs as TRL JSONL (`prompt` messages, `chosen`, `rejected`)
    ExportPairs {
        run: i64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct EngineArgs {
    /// CPU threads for sampling [default: all cores]
    #[arg(long)]
    threads: Option<i32>,
    /// Model layers offloaded to the GPU (needs a CUDA build)
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,
}

impl EngineArgs {
    fn settings(&self) -> EngineSettings {
        EngineSettings {
            threads: self.threads,
            gpu_layers: self.gpu_layers,
            n_ctx: 0,
        }
    }
}

#[derive(Args)]
pub struct StartArgs {
    /// A GGUF path or a registered model id
    #[arg(long)]
    model: String,
    /// A dataset id or name, or a JSONL/CSV file to import
    #[arg(long)]
    data: String,
    #[arg(long, default_value = "run")]
    name: String,
    /// A JSON file with the whole run configuration; the flags below override it
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    rounds: Option<usize>,
    /// Train prompts per round
    #[arg(long)]
    prompts_per_round: Option<usize>,
    /// Answers sampled per prompt (N)
    #[arg(long)]
    samples: Option<usize>,
    /// Self-refinement steps per answer (K)
    #[arg(long)]
    refine: Option<usize>,
    /// Held-out prompts evaluated per round (0 = all)
    #[arg(long)]
    eval_prompts: Option<usize>,
    /// numeric, exact, exact_nocase, json, pattern:<text>, judge:<model.gguf>,
    /// remote-judge:<http://host:port>[#model] or reward:<model.gguf>
    #[arg(long)]
    scorer: Option<String>,
    /// Pair selection: correct (verifier), best (best vs worst) or refined (refined vs initial)
    #[arg(long)]
    pairs: Option<String>,
    /// Also train "keep" pairs: asked to refine its correct answer, keep it (not in the paper)
    #[arg(long)]
    keep_pairs: bool,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    beta: Option<f64>,
    /// Preference loss: sigmoid (DPO) or ipo
    #[arg(long, value_parser = ["sigmoid", "ipo"])]
    loss: Option<String>,
    /// DPO reference: base (the untrained model) or previous (the model that sampled the
    /// round, as in the paper)
    #[arg(long, value_parser = ["base", "previous"])]
    reference: Option<String>,
    /// Step-DPO: train on the first line where the two answers differ (not in the paper)
    #[arg(long)]
    first_step_only: bool,
    /// Round 0 trains on the chosen answers alone (the paper's SFT warm-up), DPO afterwards
    #[arg(long)]
    sft_warmup: bool,
    #[arg(long)]
    lora_rank: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    #[command(flatten)]
    engine: EngineArgs,
}

impl StartArgs {
    fn config(&self) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a run configuration", path.display()))?
            }
            None => RunConfig::default(),
        };
        let set = |v: Option<usize>, f: &mut usize| v.into_iter().for_each(|v| *f = v);
        set(self.rounds, &mut c.rounds);
        set(self.prompts_per_round, &mut c.prompts_per_round);
        set(self.samples, &mut c.samples);
        set(self.refine, &mut c.refine_steps);
        set(self.eval_prompts, &mut c.eval_prompts);
        set(self.lora_rank, &mut c.train.lora_rank);
        set(self.epochs, &mut c.train.epochs);
        if let Some(s) = &self.scorer {
            c.scorer = s.clone();
        }
        if let Some(lr) = self.lr {
            c.train.lr = lr;
        }
        if let Some(beta) = self.beta {
            c.train.beta = beta;
        }
        if let Some(p) = &self.pairs {
            c.pair_strategy = match p.as_str() {
                "correct" => PairStrategy::default(),
                "best" => PairStrategy::BestVsWorst { min_margin: 0.1 },
                "refined" => PairStrategy::RefinedVsInitial { min_margin: 0.1 },
                other => {
                    bail!("unknown pair strategy '{other}' (expected correct, best or refined)")
                }
            };
        }
        c.pair_kinds.keep |= self.keep_pairs;
        c.train.first_step_only |= self.first_step_only;
        c.train.sft_warmup |= self.sft_warmup;
        // clap has checked the spelling; serde maps it onto the enums.
        if let Some(l) = &self.loss {
            c.train.loss = serde_json::from_value(serde_json::json!(l))?;
        }
        if let Some(r) = &self.reference {
            c.train.reference = serde_json::from_value(serde_json::json!(r))?;
        }
        Ok(c)
    }
}

pub fn run(cmd: RunCommand, service: &Service) -> Result<()> {
    match cmd {
        RunCommand::Start(args) => {
            let config = args.config()?;
            let model_path = service.resolve_model(&args.model)?;
            let (model, _) = service.add_model(&model_path, None)?;
            let dataset = dataset_arg(service, &args.data)?;
            let run = service.create_run(&args.name, model.id, dataset, &config)?;
            println!(
                "run {} created; resume it any time with `evolve run resume {}`",
                run.0, run.0
            );
            drive(service, run, &args.engine)
        }
        RunCommand::Resume { run, engine } => drive(service, RunId(run), &engine),
        RunCommand::Status { run, json } => {
            let run = match run {
                Some(id) => RunId(id),
                None => service
                    .store()
                    .list_runs()?
                    .last()
                    .map(|r| r.id)
                    .context("there are no runs yet (start one with `evolve run start`)")?,
            };
            let status = service.run_status(run)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        RunCommand::List => {
            for r in service.store().list_runs()? {
                println!("{:>4}  {:<10} {}", r.id.0, r.state.as_str(), r.name);
            }
            Ok(())
        }
        RunCommand::ExportPairs { run, out } => {
            let n = service.export_trl_pairs(RunId(run), &out)?;
            println!("wrote {n} pairs to {}", out.display());
            Ok(())
        }
    }
}

/// A dataset id, a dataset name, or a file to import.
fn dataset_arg(service: &Service, spec: &str) -> Result<DatasetId> {
    let store = service.store();
    if let Ok(id) = spec.parse::<i64>()
        && store.get_dataset(DatasetId(id))?.is_some()
    {
        return Ok(DatasetId(id));
    }
    if let Some(d) = store.dataset_by_name(spec)? {
        return Ok(d.id);
    }
    let path = std::path::Path::new(spec);
    if !path.is_file() {
        bail!("'{spec}' is neither a dataset id, a dataset name nor a file");
    }
    let outcome = service.import_dataset(path, &ImportOptions::default())?;
    eprintln!("{}", outcome.report.summary());
    Ok(outcome.dataset)
}

pub fn drive(service: &Service, run: RunId, engine: &EngineArgs) -> Result<()> {
    // Ctrl-C pauses at the next safe point; the run resumes where it stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
    let mut bars = RunProgress::new();
    let result = service.drive_run(run, &engine.settings(), &mut |p| {
        bars.on(&p);
        !stop.load(Ordering::Relaxed)
    });
    bars.finish();
    match result {
        Ok(()) => {
            print_status(&service.run_status(run)?);
            Ok(())
        }
        Err(e) if matches!(e.downcast_ref::<RunError>(), Some(RunError::Paused)) => {
            println!("paused; continue with `evolve run resume {}`", run.0);
            Ok(())
        }
        Err(e) => Err(e.context(format!(
            "run {} stopped; fix the cause and `evolve run resume {}`",
            run.0, run.0
        ))),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}", 100.0 * v))
}

pub fn print_status(s: &RunStatus) {
    println!(
        "run {} '{}' — {} — {}",
        s.id,
        s.name,
        s.state.as_str(),
        s.model_path
    );
    println!(
        "{:>5} {:<10} {:>11} {:>12} {:>12} {:>10} {:>6} {:>8}",
        "round",
        "state",
        "generations",
        "direct pairs",
        "refine pairs",
        "keep pairs",
        "steps",
        "loss"
    );
    for r in &s.rounds {
        println!(
            "{:>5} {:<10} {:>11} {:>12} {:>12} {:>10} {:>6} {:>8}",
            r.index,
            r.state.as_str(),
            r.generations,
            r.direct_pairs,
            r.refine_pairs,
            r.keep_pairs,
            r.training_steps,
            r.final_loss.map_or("-".into(), |l| format!("{l:.4}"))
        );
        if let Some(e) = &r.error {
            println!("      error: {e}");
        }
    }
    if s.scoreboard.is_empty() {
        return;
    }
    println!("\nheld-out scoreboard (mean score ×100; accuracy for a 0/1 verifier)");
    let mut header = format!("{:<10} {:>7}", "model", "direct");
    for k in 1..=s.config.refine_steps {
        header += &format!(" {:>9}", format!("refine@{k}"));
    }
    println!("{header} {:>12}", "win vs prev");
    for row in &s.scoreboard {
        let mut line = format!("{:<10} {:>7}", row.label, pct(row.direct));
        for v in &row.refined {
            line += &format!(" {:>9}", pct(*v));
        }
        let win = row.win_rate.as_ref().map_or("-".to_string(), |w| {
            let d = &w.details;
            format!("{:.0}% {}/{}/{}", w.rate * 100.0, d.wins, d.ties, d.losses)
        });
        println!("{line} {win:>12}  (n={})", row.n);
    }
    if let Some(w) = s.scoreboard.iter().find_map(|r| r.win_rate.as_ref()) {
        println!(
            "win vs prev: this row's direct answers against the row above (wins/ties/losses; \
             judged by {}, {})",
            w.details.judge, w.details.method
        );
    }
}
