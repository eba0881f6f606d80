//! `evolve run …`: start, resume, watch and export EVOLVE runs.

use super::compare::{paired, pct};
use super::progress::RunProgress;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use evolve::Service;
use evolve::engines::EngineSettings;
use evolve::method::pairs::PairStrategy;
use evolve::method::run::{Progress, RunConfig, RunError};
use evolve::runs::progress::RunTracker;
use evolve::runs::{RunStatus, ScoreRow};
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
    /// The last rounds' held-out answers of runs B against runs A, problem by problem: each
    /// pair of runs (A's i-th with B's i-th, e.g. the same seed) and all pairs pooled
    Compare {
        /// Runs A, comma-separated (e.g. a baseline's seeds: 1,4)
        #[arg(value_parser = super::compare::run_list)]
        a: super::compare::RunList,
        /// Runs B, as many as A, in the same order
        #[arg(value_parser = super::compare::run_list)]
        b: super::compare::RunList,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
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
    /// Evaluate every prompt whole, without the prompt cache (to measure what it saves)
    #[arg(long)]
    no_prompt_cache: bool,
}

impl EngineArgs {
    pub fn settings(&self) -> EngineSettings {
        EngineSettings {
            threads: self.threads,
            gpu_layers: self.gpu_layers,
            n_ctx: 0,
            no_prompt_cache: self.no_prompt_cache,
        }
    }
}

#[derive(Args)]
pub struct StartArgs {
    /// A GGUF path or a registered model id
    #[arg(long)]
    model: String,
    /// A dataset id or name, a JSONL/CSV file to import, or task:NAME (a built-in task,
    /// `evolve tasks list`)
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
    /// Learning rate (checked before any work: above 0, at most 1)
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// DPO β (checked before any work: above 0)
    #[arg(long, allow_negative_numbers = true)]
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
    /// Create nothing: sample a few train prompts as round 0 would and show each answer with
    /// the scorer's verdict, and whether pairs would form
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

impl StartArgs {
    /// The model's defaults, then `--config`'s fields laid over them, then the flags.
    fn config(&self, base: RunConfig) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let patch: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", path.display()))?;
                base.overlay(&patch)
                    .with_context(|| format!("{}", path.display()))?
            }
            None => base,
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
            c.scorer = s.parse().map_err(|e| anyhow::anyhow!("--scorer: {e}"))?;
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

const GIB: f64 = (1u64 << 30) as f64;

pub fn run(cmd: RunCommand, service: &Service) -> Result<()> {
    match cmd {
        RunCommand::Start(args) => {
            let model_path = service.resolve_model(&args.model)?;
            let added = service.add_model(&model_path, None)?;
            if let Some(warning) = &added.warning {
                eprintln!("warning: {warning}");
            }
            let model = added.model;
            let mut config = args.config(service.run_config_for(&model))?;
            // A built-in task brings its verifier unless another scorer is asked for.
            if let Some(task) = args.data.strip_prefix("task:")
                && args.scorer.is_none()
            {
                let task: evolve::method::tasks::BuiltinTask = task.parse()?;
                config.scorer = task.scorer();
            }
            let dataset = dataset_arg(service, &args.data)?;
            if args.dry_run {
                return dry_run(service, model.id, dataset, &config, &args.engine);
            }
            let run = service.create_run(&args.name, model.id, dataset, &config)?;
            println!(
                "run {} created; resume it any time with `evolve run resume {}`",
                run.0, run.0
            );
            let header = evolve::models::inspect(&model_path)?;
            let need = evolve::models::training_memory(&header, &config)?.total();
            let free = evolve::models::available_memory().map_or(String::new(), |f| {
                format!(" of {:.1} GiB free", f as f64 / GIB)
            });
            println!("training memory: about {:.1} GiB{free}", need as f64 / GIB);
            drive(service, run, &args.engine)
        }
        RunCommand::Resume { run, engine } => drive(service, RunId(run), &engine),
        RunCommand::Status { run, json } => {
            let run = match run {
                Some(id) => RunId(id),
                None => service
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
            for r in service.list_runs()? {
                println!("{:>4}  {:<10} {}", r.id.0, r.state.as_str(), r.name);
            }
            Ok(())
        }
        RunCommand::Compare { a, b, json } => super::compare::compare(service, &a.0, &b.0, json),
        RunCommand::ExportPairs { run, out } => {
            let n = service.export_trl_pairs(RunId(run), &out)?;
            println!("wrote {n} pairs to {}", out.display());
            Ok(())
        }
    }
}

/// `run start --dry-run`: every sampled answer with the scorer's verdict, then the verdict on
/// the run: would pairs form, and if not, why.
fn dry_run(
    service: &Service,
    model: evolve::store::ModelId,
    dataset: DatasetId,
    config: &RunConfig,
    engine: &EngineArgs,
) -> Result<()> {
    let preflight = service.training_preflight(model, config)?;
    let d = service.dry_run(model, dataset, config, &engine.settings())?;
    println!(
        "dry run: {} train prompts × {} samples at temperature {}, scored by {} (nothing is stored)",
        d.rows.len(),
        config.samples,
        config.sampler.temperature,
        d.scorer
    );
    for (i, row) in d.rows.iter().enumerate() {
        println!(
            "\nprompt {}: {}{}",
            i + 1,
            row.question,
            row.reference
                .as_deref()
                .map_or(String::new(), |r| format!("   [gold: {r}]"))
        );
        for (k, chain) in row.samples.iter().enumerate() {
            let Some(a) = chain.first() else { continue };
            let text: String = a.text.split_whitespace().collect::<Vec<_>>().join(" ");
            let text = match text.char_indices().nth(100) {
                Some((at, _)) => format!("{}…", &text[..at]),
                None => text,
            };
            let cut = if a.stopped {
                ""
            } else {
                " (cut at max tokens)"
            };
            println!(
                "  {}. score {} {}{cut}  \"{text}\"",
                k + 1,
                a.score,
                verdict_details(&a.details)
            );
        }
        println!("  → {} pair(s)", row.pairs);
    }
    let s = &d.summary;
    println!(
        "\n{} of {} prompts would make pairs; {:.0}% of the sampled answers scored as right",
        s.with_pairs,
        s.prompts,
        100.0 * s.sampled.unwrap_or(0.0)
    );
    if let Some(why) = &s.no_pairs {
        println!("warning: a round would make no pairs and train nothing: {why}");
    }
    if let Some(problem) = &preflight.problem {
        println!("warning: the run would be refused: {problem}");
    }
    Ok(())
}

/// A verifier's evidence in a few words: `read 847 (last_number), expected 874`.
fn verdict_details(details: &serde_json::Value) -> String {
    match (details.get("extracted"), details.get("expected")) {
        (Some(got), Some(want)) => {
            let got = got
                .as_str()
                .map_or("nothing".to_string(), |g| g.to_string());
            let via = details
                .get("via")
                .and_then(|v| v.as_str())
                .map_or(String::new(), |v| format!(" ({v})"));
            format!("read {got}{via}, expected {}", want.as_str().unwrap_or("?"))
        }
        _ => String::new(),
    }
}

/// A dataset id, a dataset name, or a file to import (its import report on stderr).
fn dataset_arg(service: &Service, spec: &str) -> Result<DatasetId> {
    let (dataset, report) = service.resolve_dataset(spec)?;
    if let Some(report) = report {
        eprintln!("{}", report.summary());
    }
    Ok(dataset)
}

/// Set by Ctrl-C: runs pause at the next safe point and resume where they stopped. One
/// handler per process (the `ctrlc` crate allows one), shared by every run it drives.
pub(super) fn ctrl_c_flag() -> &'static AtomicBool {
    static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    STOP.get_or_init(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
        stop
    })
}

pub fn drive(service: &Service, run: RunId, engine: &EngineArgs) -> Result<()> {
    drive_with(service, run, engine, &mut |_| {})
}

/// [`drive`], with `observe` seeing every progress event too.
pub fn drive_with(
    service: &Service,
    run: RunId,
    engine: &EngineArgs,
    observe: &mut dyn FnMut(&Progress),
) -> Result<()> {
    let stop = ctrl_c_flag();
    let mut bars = RunProgress::new();
    let mut tracker = RunTracker::new(run);
    let result = service.drive_run(run, &engine.settings(), &mut |p| {
        observe(&p);
        tracker.on(service, &p, &mut |e| bars.on(&e));
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
        if let Some(note) = &r.note {
            println!("      warning: {note}");
        }
    }
    if s.scoreboard.is_empty() {
        return;
    }
    print_scoreboard(&s.scoreboard, s.config.refine_steps);
}

/// The held-out scoreboard: scores, then each row against the base and the row above, and
/// what each refinement step fixed and broke.
pub fn print_scoreboard(rows: &[ScoreRow], refine_steps: usize) {
    println!(
        "\nheld-out scoreboard (mean score ×100; accuracy for a 0/1 verifier; greedy unless marked)"
    );
    let mut header = format!("{:<9} {:>5} {:>7}", "model", "n", "direct");
    for k in 1..=refine_steps {
        header += &format!(" {:>9}", format!("refine@{k}"));
    }
    println!(
        "{header} {:>8}  {:<26} {:<26}",
        "sampled", "direct vs base", "direct vs previous"
    );
    for row in rows {
        let mut line = format!("{:<9} {:>5} {:>7}", row.label, row.n, pct(row.direct));
        for k in 0..refine_steps {
            line += &format!(" {:>9}", row.refined.get(k).map_or("-".into(), |v| pct(*v)));
        }
        let sampled = row.sampled.map_or("-".into(), pct);
        println!(
            "{line} {sampled:>8}  {:<26} {:<26}",
            paired(row.vs_base.as_ref()),
            paired(row.vs_previous.as_ref())
        );
    }
    println!(
        "(difference in points [paired bootstrap 95 % CI] wins/losses; sampled: one answer per \
         problem at the collection temperature)"
    );
    if refine_steps > 0 {
        println!(
            "\n{:<9} {:<26} {:<26}",
            "",
            format!("refine@{refine_steps} vs base"),
            format!("refine@{refine_steps} vs previous")
        );
        for row in rows.iter().filter(|r| r.round.is_some()) {
            println!(
                "{:<9} {:<26} {:<26}",
                row.label,
                paired(row.refined_vs_base.as_ref()),
                paired(row.refined_vs_previous.as_ref())
            );
        }
        println!("\nrefinement, problem by problem (wrong→right / right→wrong per step)");
        for row in rows {
            let steps: Vec<String> = row
                .refine_steps
                .iter()
                .enumerate()
                .map(|(k, c)| format!("step {}: {}/{}", k + 1, c.wins, c.losses))
                .collect();
            println!("{:<9} {}", row.label, steps.join("   "));
        }
    }
    if rows.iter().any(|r| r.win_rate.is_some()) {
        println!("\njudged win rate of the direct answers over the row above (wins/ties/losses)");
        for row in rows {
            if let Some(w) = &row.win_rate {
                let d = &w.details;
                println!(
                    "{:<9} {:.0}% {}/{}/{} ({}, {})",
                    row.label,
                    w.rate * 100.0,
                    d.wins,
                    d.ties,
                    d.losses,
                    d.judge,
                    d.method
                );
            }
        }
    }
}
