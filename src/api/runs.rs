//! EVOLVE runs: each active run is driven by its own worker thread (`Service::drive_run`), whose
//! progress callback turns the orchestrator's reports into `run_progress`, `run_metrics` and
//! `run_state` events and pauses the run when asked.

use super::chat::scorer_name;
use super::models::is_task_model;
use super::settings::Sampler;
use super::util::{lock, rfc3339};
use super::{ApiError, ApiResult, Inner};
use crate::Service;
use crate::demo::DemoSettings;
use evolve_core::{RoundState, RunState};
use evolve_loop::run::{Progress, ReferenceModel, RunConfig};
use evolve_store::{DatasetId, ModelId, Run, RunId, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Worker {
    pause: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

#[derive(Default)]
pub struct RunWorkers {
    workers: Mutex<HashMap<i64, Worker>>,
    /// The latest `run_progress` payload of each active run, for `run_status`.
    progress: Mutex<HashMap<i64, Value>>,
}

impl RunWorkers {
    pub fn is_active(&self, run: i64) -> bool {
        lock(&self.workers).contains_key(&run)
    }

    pub fn pause_all_and_wait(&self, timeout: Duration) {
        let handles: Vec<JoinHandle<()>> = lock(&self.workers)
            .values_mut()
            .filter_map(|w| {
                w.pause.store(true, Ordering::Relaxed);
                w.handle.take()
            })
            .collect();
        let deadline = Instant::now() + timeout;
        for h in handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// The part of a run's configuration the UI edits; the rest comes from the base configuration
/// that suits the model (the built-in task model has its own template and learning rate).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UiRunConfig {
    pub rounds: usize,
    pub prompts_per_round: usize,
    pub samples: usize,
    pub refine_steps: usize,
    pub scorer: String,
    pub sampler: Sampler,
    pub train: UiTrain,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UiTrain {
    pub lr: f64,
    pub beta: f64,
    pub lambda_refine: f64,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub epochs: usize,
    pub batch_size: usize,
    #[serde(default)]
    pub reference: ReferenceModel,
    #[serde(default)]
    pub sft_warmup: bool,
}

impl UiRunConfig {
    fn of(c: &RunConfig) -> Self {
        UiRunConfig {
            rounds: c.rounds,
            prompts_per_round: c.prompts_per_round,
            samples: c.samples,
            refine_steps: c.refine_steps,
            scorer: c.scorer.split(':').next().unwrap_or("numeric").to_string(),
            sampler: Sampler::from_config(&c.sampler),
            train: UiTrain {
                lr: c.train.lr,
                beta: c.train.beta,
                lambda_refine: c.train.lambda_refine,
                lora_rank: c.train.lora_rank,
                lora_alpha: c.train.lora_alpha,
                epochs: c.train.epochs,
                batch_size: c.train.batch_size,
                reference: c.train.reference,
                sft_warmup: c.train.sft_warmup,
            },
        }
    }

    fn validate(&self) -> ApiResult<()> {
        let positive = [
            ("rounds", self.rounds),
            ("prompts per round", self.prompts_per_round),
            ("samples", self.samples),
            ("LoRA rank", self.train.lora_rank),
            ("epochs", self.train.epochs),
            ("batch size", self.train.batch_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ApiError::bad(format!("{name} must be at least 1")));
        }
        if self.refine_steps > 5 {
            return Err(ApiError::bad("at most 5 refinement steps"));
        }
        // `is_nan` too: NaN compares false with everything.
        if self.train.lr.is_nan()
            || self.train.lr <= 0.0
            || self.train.beta.is_nan()
            || self.train.beta <= 0.0
        {
            return Err(ApiError::bad("learning rate and β must be above 0"));
        }
        self.sampler.validate()?;
        evolve_loop::verify::verifier_by_name(&scorer_name(&self.scorer)).map_err(ApiError::bad)?;
        Ok(())
    }

    /// The full configuration: `base` with the UI's choices applied.
    fn apply(&self, mut c: RunConfig) -> RunConfig {
        c.rounds = self.rounds;
        c.prompts_per_round = self.prompts_per_round;
        c.samples = self.samples;
        c.refine_steps = self.refine_steps;
        c.scorer = scorer_name(&self.scorer);
        c.sampler = self.sampler.apply(&c.sampler);
        c.eval_sampler.max_tokens = self.sampler.max_tokens;
        c.train.lr = self.train.lr;
        c.train.beta = self.train.beta;
        c.train.lambda_refine = self.train.lambda_refine;
        c.train.lora_rank = self.train.lora_rank;
        c.train.lora_alpha = self.train.lora_alpha;
        c.train.epochs = self.train.epochs;
        c.train.batch_size = self.train.batch_size;
        c.train.reference = self.train.reference;
        c.train.sft_warmup = self.train.sft_warmup;
        // The UI sets the effective batch directly.
        c.train.grad_accum = 1;
        c
    }
}

/// Base configuration for a model: the task model's own, else the loop's defaults with the
/// held-out evaluation capped (evaluating a whole large eval split every round takes hours).
fn base_config(model_path: &std::path::Path, display_name: Option<&str>) -> RunConfig {
    if is_task_model(model_path, display_name) {
        DemoSettings::default().run_config()
    } else {
        RunConfig {
            eval_prompts: 100,
            ..RunConfig::default()
        }
    }
}

/// The state the UI shows: `created` is `pending`, and a run the database says is running but
/// that has no worker here was interrupted (the app quit or crashed) and can be resumed.
fn ui_state(inner: &Inner, run: &Run) -> &'static str {
    match run.state {
        RunState::Created => "pending",
        RunState::Running if !inner.runs.is_active(run.id.0) => "paused",
        s => s.as_str(),
    }
}

fn summary(inner: &Inner, r: &Run) -> Value {
    json!({
        "id": r.id.0, "name": r.name, "state": ui_state(inner, r), "model_id": r.model_id.0,
        "dataset_id": r.dataset_id.0, "created_at": rfc3339(r.created_at),
    })
}

pub fn list(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    let mut runs = service.store().list_runs()?;
    runs.sort_by_key(|r| std::cmp::Reverse(r.id.0));
    Ok(Value::Array(
        runs.iter().map(|r| summary(inner, r)).collect(),
    ))
}

pub fn defaults(inner: &Inner) -> ApiResult {
    let mut c = UiRunConfig::of(&RunConfig::default());
    c.sampler = inner.settings().sampler;
    Ok(serde_json::to_value(c).expect("config serialises"))
}

#[derive(Deserialize)]
pub struct StartArgs {
    name: String,
    model_id: i64,
    dataset_id: i64,
    config: UiRunConfig,
}

pub fn start(inner: &Arc<Inner>, args: StartArgs) -> ApiResult {
    args.config.validate()?;
    let name = args.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad("give the run a name"));
    }
    let run = {
        let service = inner.service()?;
        let model = service
            .store()
            .get_model(ModelId(args.model_id))?
            .ok_or_else(|| ApiError::not_found(format!("no model with id {}", args.model_id)))?;
        let base = base_config(
            std::path::Path::new(&model.path),
            model.display_name.as_deref(),
        );
        let config = args.config.apply(base);
        service.create_run(name, model.id, DatasetId(args.dataset_id), &config)?
    };
    spawn(inner, run.0)?;
    Ok(json!({"run_id": run.0}))
}

#[derive(Deserialize)]
pub struct RunArgs {
    run_id: i64,
}

fn get_run(store: &Store, id: i64) -> ApiResult<Run> {
    store
        .get_run(RunId(id))?
        .ok_or_else(|| ApiError::not_found(format!("no run with id {id}")))
}

pub fn pause(inner: &Inner, args: RunArgs) -> ApiResult {
    match lock(&inner.runs.workers).get(&args.run_id) {
        Some(w) => w.pause.store(true, Ordering::Relaxed),
        None => {
            let service = inner.service()?;
            let run = get_run(service.store(), args.run_id)?;
            return Err(ApiError::conflict(format!(
                "run {} is not running (it is {})",
                args.run_id,
                ui_state(inner, &run)
            )));
        }
    }
    Ok(Value::Null)
}

pub fn resume(inner: &Arc<Inner>, args: RunArgs) -> ApiResult {
    {
        let service = inner.service()?;
        let run = get_run(service.store(), args.run_id)?;
        if matches!(run.state, RunState::Done | RunState::Cancelled) {
            return Err(ApiError::conflict(format!(
                "run {} is {}: start a new run instead",
                args.run_id, run.state
            )));
        }
    }
    spawn(inner, args.run_id)?;
    Ok(Value::Null)
}

pub fn cancel(inner: &Inner, args: RunArgs) -> ApiResult {
    if let Some(w) = lock(&inner.runs.workers).get(&args.run_id) {
        // The worker marks the run cancelled once the orchestrator has stopped.
        w.cancel.store(true, Ordering::Relaxed);
        w.pause.store(true, Ordering::Relaxed);
        return Ok(Value::Null);
    }
    let service = inner.service()?;
    let run = get_run(service.store(), args.run_id)?;
    if matches!(run.state, RunState::Done | RunState::Cancelled) {
        return Err(ApiError::conflict(format!(
            "run {} is already {}",
            args.run_id, run.state
        )));
    }
    service.store().set_run_state(run.id, RunState::Cancelled)?;
    inner.emit(
        "run_state",
        json!({"run_id": args.run_id, "state": "cancelled"}),
    );
    Ok(Value::Null)
}

fn spawn(inner: &Arc<Inner>, run: i64) -> ApiResult<()> {
    let mut workers = lock(&inner.runs.workers);
    if workers.contains_key(&run) {
        return Err(ApiError::conflict(format!("run {run} is already running")));
    }
    let pause = Arc::new(AtomicBool::new(false));
    let cancel = Arc::new(AtomicBool::new(false));
    let worker = inner.clone();
    let (p, c) = (pause.clone(), cancel.clone());
    let handle = std::thread::Builder::new()
        .name(format!("run {run}"))
        .spawn(move || drive(&worker, run, &p, &c))
        .map_err(|e| ApiError::bad(format!("cannot start the run worker: {e}")))?;
    workers.insert(
        run,
        Worker {
            pause,
            cancel,
            handle: Some(handle),
        },
    );
    Ok(())
}

/// The worker: drives the run to its end (or a pause), then reports the final state.
fn drive(inner: &Inner, run: i64, pause: &AtomicBool, cancel: &AtomicBool) {
    inner.emit("run_state", json!({"run_id": run, "state": "running"}));
    let engine = inner.settings().engine();
    let result = Service::open(inner.data_dir.clone()).and_then(|service| {
        let mut tracker = Tracker::new(run);
        let outcome = service.drive_run(RunId(run), &engine, &mut |p| {
            tracker.on(inner, service.store(), p);
            !pause.load(Ordering::Relaxed)
        });
        let store = service.store();
        let state = match &outcome {
            _ if cancel.load(Ordering::Relaxed) => {
                store.set_run_state(RunId(run), RunState::Cancelled)?;
                RunState::Cancelled
            }
            Ok(()) => RunState::Done,
            Err(e) => {
                let stored = store.get_run(RunId(run))?.map(|r| r.state);
                if !matches!(stored, Some(RunState::Paused | RunState::Failed)) {
                    // Failed before the orchestrator started (e.g. the model file is gone).
                    eprintln!("run {run} failed: {e:#}");
                    store.set_run_state(RunId(run), RunState::Failed)?;
                    RunState::Failed
                } else {
                    stored.unwrap_or(RunState::Failed)
                }
            }
        };
        Ok(state)
    });
    let state = result.unwrap_or_else(|e| {
        eprintln!("run {run}: {e:#}");
        RunState::Failed
    });
    lock(&inner.runs.workers).remove(&run);
    lock(&inner.runs.progress).remove(&run);
    inner.emit("run_state", json!({"run_id": run, "state": state.as_str()}));
}

/// The step names the UI shows next to the progress bar.
fn step_name(s: RoundState) -> &'static str {
    match s {
        RoundState::Collecting => "sampling",
        other => other.as_str(),
    }
}

/// Turns the orchestrator's reports into events, with tokens/s and an ETA for the current step.
struct Tracker {
    run: i64,
    round: usize,
    state: &'static str,
    step_started: Instant,
    tokens: usize,
    last_generated: usize,
    offsets: HashMap<usize, i64>,
    last_emit: Option<Instant>,
}

impl Tracker {
    fn new(run: i64) -> Self {
        Tracker {
            run,
            round: 0,
            state: "starting",
            step_started: Instant::now(),
            tokens: 0,
            last_generated: 0,
            offsets: HashMap::new(),
            last_emit: None,
        }
    }

    fn on(&mut self, inner: &Inner, store: &Store, p: Progress) {
        match p {
            Progress::Step { round, state } => {
                self.round = round;
                self.state = step_name(state);
                self.step_started = Instant::now();
                self.tokens = 0;
                self.last_generated = 0;
                self.progress(inner, 0, 0, None, true);
            }
            Progress::Work {
                round,
                state,
                done,
                total,
            } => {
                self.round = round;
                self.state = step_name(state);
                self.progress(inner, done, total, None, done == total);
            }
            Progress::Tokens { generated } => {
                // `generated` counts from the start of each generation call.
                self.tokens += generated.saturating_sub(self.last_generated);
                if generated < self.last_generated {
                    self.tokens += generated;
                }
                self.last_generated = generated;
            }
            Progress::Train(report) => {
                self.state = "training";
                let offset = *self
                    .offsets
                    .entry(self.round)
                    .or_insert_with(|| metric_offset(store, self.run, self.round).unwrap_or(0));
                inner.emit(
                    "run_metrics",
                    json!({
                        "run_id": self.run, "round": self.round, "step": report.step,
                        "global_step": offset + report.step as i64, "metrics": report.metrics,
                    }),
                );
                let tps = report.metrics.get("tokens_per_second").copied();
                let last = report.step == report.total_steps;
                self.progress(inner, report.step, report.total_steps, tps, last);
            }
            Progress::TrainingResumed { .. } | Progress::Evaluated { .. } => {}
        }
    }

    fn progress(
        &mut self,
        inner: &Inner,
        done: usize,
        total: usize,
        tps: Option<f64>,
        force: bool,
    ) {
        let elapsed = self.step_started.elapsed().as_secs_f64();
        let tps = tps.or_else(|| (self.tokens > 0).then(|| self.tokens as f64 / elapsed.max(1e-3)));
        let eta =
            (done > 0 && total >= done).then(|| elapsed / done as f64 * (total - done) as f64);
        let payload = json!({
            "run_id": self.run, "round": self.round, "state": self.state, "done": done,
            "total": total, "tokens_per_second": tps, "eta_seconds": eta,
        });
        lock(&inner.runs.progress).insert(self.run, payload.clone());
        // At most ten updates a second reach the UI; step changes and completions always do.
        if force
            || self
                .last_emit
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.last_emit = Some(Instant::now());
            inner.emit("run_progress", payload);
        }
    }
}

/// Training records of the rounds before `round`: where `round`'s global steps start.
fn metric_offset(store: &Store, run: i64, round: usize) -> ApiResult<i64> {
    let mut offset = 0;
    for r in store.rounds_of_run(RunId(run))? {
        if r.round_index as usize >= round {
            break;
        }
        if let Some(t) = store.training_runs_of_round(r.id)?.last() {
            offset += store.metrics_of(t.id)?.len() as i64;
        }
    }
    Ok(offset)
}

pub fn status(inner: &Inner, args: RunArgs) -> ApiResult {
    let service = inner.service()?;
    let run = get_run(service.store(), args.run_id)?;
    let s = service.run_status(run.id)?;
    let rounds: Vec<Value> = s
        .rounds
        .iter()
        .map(|r| json!({"index": r.index, "state": r.state.as_str(), "error": r.error}))
        .collect();
    let scoreboard: Vec<Value> = s
        .scoreboard
        .iter()
        .map(|r| {
            json!({"label": r.label, "direct": r.direct, "refined": r.refined,
                   "win_rate": r.win_rate})
        })
        .collect();
    let progress = lock(&inner.runs.progress).get(&args.run_id).cloned();
    Ok(json!({
        "run": summary(inner, &run),
        "rounds": rounds,
        "progress": progress,
        "scoreboard": scoreboard,
    }))
}

#[derive(Deserialize)]
pub struct MetricsArgs {
    run_id: i64,
    #[serde(default)]
    since: i64,
}

pub fn metrics(inner: &Inner, args: MetricsArgs) -> ApiResult {
    let service = inner.service()?;
    let store = service.store();
    let run = get_run(store, args.run_id)?;
    let mut out = Vec::new();
    let mut offset = 0i64;
    for r in store.rounds_of_run(run.id)? {
        let Some(t) = store.training_runs_of_round(r.id)?.last().cloned() else {
            continue;
        };
        let records = store.metrics_of(t.id)?;
        for m in &records {
            let global = offset + m.step;
            if global >= args.since {
                out.push(json!({
                    "round": r.round_index, "step": m.step, "global_step": global,
                    "metrics": m.metrics,
                }));
            }
        }
        offset += records.len() as i64;
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_sets_the_reference_and_the_sft_warm_up_and_may_leave_them_out() {
        let base = RunConfig::default();
        let mut ui = UiRunConfig::of(&base);
        assert_eq!(ui.train.reference, ReferenceModel::Base);
        ui.train.reference = ReferenceModel::Previous;
        ui.train.sft_warmup = true;
        let c = ui.apply(base.clone());
        assert_eq!(c.train.reference, ReferenceModel::Previous);
        assert!(c.train.sft_warmup);
        // A UI of before these settings sends neither: the defaults apply.
        let mut json = serde_json::to_value(UiRunConfig::of(&base)).unwrap();
        assert_eq!(json["train"]["reference"], "base");
        let train = json["train"].as_object_mut().unwrap();
        train.remove("reference");
        train.remove("sft_warmup");
        let old: UiRunConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.train.reference, ReferenceModel::Base);
        assert!(!old.train.sft_warmup);
    }
}
