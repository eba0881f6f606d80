//! EVOLVE runs: each active run is driven by its own worker thread (`Service::drive_run`), whose
//! progress callback turns the orchestrator's reports into `run_progress`, `run_metrics` and
//! `run_state` events and pauses the run when asked.

use super::chat::scorer_name;
use super::protocol::{RoundBrief, RunPreflight, RunStateEvent, RunStatus, RunSummary};
use super::settings::Sampler;
use super::util::{lock, rfc3339};
use super::{ApiError, ApiResult, Inner, to_json};
use crate::Service;
use crate::runs::progress::RunProgress;
use crate::runs::progress::{RunEvent, RunTracker};
use evolve_core::RunState;
use evolve_core::ScorerSpec;
use evolve_loop::run::{ReferenceModel, RunConfig};
use evolve_store::{DatasetId, ModelId, Run, RunId};
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
    progress: Mutex<HashMap<i64, RunProgress>>,
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

/// The UI's name for a scorer: the kind, without a pattern or a model path.
fn ui_scorer(spec: &ScorerSpec) -> String {
    let text = spec.to_string();
    text.split(':').next().unwrap_or("numeric").to_string()
}

/// The part of a run's configuration the UI edits; the rest comes from the base configuration
/// that suits the model (the built-in task model has its own template and learning rate).
#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[ts(export, rename = "RunConfig")]
pub struct UiRunConfig {
    pub rounds: usize,
    pub prompts_per_round: usize,
    pub samples: usize,
    pub refine_steps: usize,
    pub scorer: String,
    pub sampler: Sampler,
    pub train: UiTrain,
}

#[derive(Debug, Clone, Serialize, Deserialize, ts_rs::TS)]
#[ts(rename = "TrainConfig")]
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
            scorer: ui_scorer(&c.scorer),
            sampler: Sampler::from_config(&c.sampler),
            train: UiTrain {
                lr: c.train.lr,
                beta: c.train.beta,
                lambda_refine: c.train.lambda_refine,
                lora_rank: c.train.lora_rank,
                lora_alpha: c.train.lora_alpha,
                epochs: c.train.epochs,
                // The UI shows the effective batch.
                batch_size: c.train.batch_size * c.train.grad_accum,
                reference: c.train.reference,
                sft_warmup: c.train.sft_warmup,
            },
        }
    }
}

/// The wizard's choices laid over the model's defaults; a field left out keeps the default,
/// so `run_start` without a config starts the run `evolve run start` would.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UiRunPatch {
    pub rounds: Option<usize>,
    pub prompts_per_round: Option<usize>,
    pub samples: Option<usize>,
    pub refine_steps: Option<usize>,
    pub scorer: Option<String>,
    pub sampler: Option<Sampler>,
    #[serde(default)]
    pub train: UiTrainPatch,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UiTrainPatch {
    pub lr: Option<f64>,
    pub beta: Option<f64>,
    pub lambda_refine: Option<f64>,
    pub lora_rank: Option<usize>,
    pub lora_alpha: Option<f64>,
    pub epochs: Option<usize>,
    /// The effective batch (batch size × gradient accumulation).
    pub batch_size: Option<usize>,
    pub reference: Option<ReferenceModel>,
    pub sft_warmup: Option<bool>,
}

impl UiRunPatch {
    /// Model `model_id` and its run settings (the model's defaults) with the choices applied.
    fn for_model(&self, service: &Service, model_id: i64) -> ApiResult<(ModelId, RunConfig)> {
        let model = service.model(ModelId(model_id))?;
        Ok((model.id, self.apply(service.run_config_for(&model))?))
    }

    /// `base` with the choices applied and validated (`RunConfig::validate` names the field).
    fn apply(&self, base: RunConfig) -> ApiResult<RunConfig> {
        let mut c = base;
        let set = |v: Option<usize>, f: &mut usize| v.into_iter().for_each(|v| *f = v);
        set(self.rounds, &mut c.rounds);
        set(self.prompts_per_round, &mut c.prompts_per_round);
        set(self.samples, &mut c.samples);
        set(self.refine_steps, &mut c.refine_steps);
        if let Some(s) = &self.scorer {
            c.scorer = scorer_name(s)
                .parse()
                .map_err(|e: evolve_core::ParseScorerError| ApiError::bad(e.0))?;
        }
        if let Some(sampler) = &self.sampler {
            sampler.validate()?;
            if sampler.max_tokens != c.sampler.max_tokens {
                c.eval_sampler.max_tokens = sampler.max_tokens;
            }
            c.sampler = sampler.apply(&c.sampler);
        }
        let t = &self.train;
        let setf = |v: Option<f64>, f: &mut f64| v.into_iter().for_each(|v| *f = v);
        setf(t.lr, &mut c.train.lr);
        setf(t.beta, &mut c.train.beta);
        setf(t.lambda_refine, &mut c.train.lambda_refine);
        setf(t.lora_alpha, &mut c.train.lora_alpha);
        set(t.lora_rank, &mut c.train.lora_rank);
        set(t.epochs, &mut c.train.epochs);
        if let Some(b) = t.batch_size
            && b != c.train.batch_size * c.train.grad_accum
        {
            c.train.batch_size = b;
            c.train.grad_accum = 1;
        }
        if let Some(r) = t.reference {
            c.train.reference = r;
        }
        if let Some(w) = t.sft_warmup {
            c.train.sft_warmup = w;
        }
        c.validate().map_err(|e| ApiError::bad(e.to_string()))?;
        Ok(c)
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

fn summary(inner: &Inner, r: &Run) -> RunSummary {
    RunSummary {
        id: r.id.0,
        name: r.name.clone(),
        state: ui_state(inner, r),
        model_id: r.model_id.0,
        dataset_id: r.dataset_id.0,
        created_at: rfc3339(r.created_at),
    }
}

pub fn list(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    let mut runs = service.list_runs()?;
    runs.sort_by_key(|r| std::cmp::Reverse(r.id.0));
    Ok(to_json(
        runs.iter().map(|r| summary(inner, r)).collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize, Default)]
pub struct DefaultsArgs {
    #[serde(default)]
    model_id: Option<i64>,
}

/// The settings a run on `model_id` starts with (`Service::run_config_for`); without a model,
/// those of a model other than the built-in one.
pub fn defaults(inner: &Inner, args: DefaultsArgs) -> ApiResult {
    let service = inner.service()?;
    let config = match args.model_id {
        Some(id) => service.run_config_for(&service.model(ModelId(id))?),
        None => crate::runs::user_model_run_config(),
    };
    Ok(serde_json::to_value(UiRunConfig::of(&config)).expect("config serialises"))
}

#[derive(Deserialize)]
pub struct PreflightArgs {
    model_id: i64,
    /// The wizard's choices, as for `run_start`.
    #[serde(default)]
    config: UiRunPatch,
}

/// `run_start`'s checks without starting anything, and the training memory.
pub fn preflight(inner: &Inner, args: PreflightArgs) -> ApiResult {
    let service = inner.service()?;
    let (model, config) = args.config.for_model(&service, args.model_id)?;
    let p = service.training_preflight(model, &config)?;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Ok(to_json(RunPreflight {
        problem: p.problem,
        base_gib: p.memory.map(|m| gib(m.base_bytes)),
        adapter_gib: p.memory.map(|m| gib(m.adapter_bytes)),
        working_gib: p.memory.map(|m| gib(m.working_bytes)),
        total_gib: p.memory.map(|m| gib(m.total())),
        free_gib: p.free_bytes.map(gib),
    }))
}

#[derive(Deserialize)]
pub struct DryRunArgs {
    model_id: i64,
    dataset_id: i64,
    #[serde(default)]
    config: UiRunPatch,
}

/// A few train prompts sampled as round 0 would, each answer with the scorer's verdict, and
/// whether pairs would form; nothing is stored (see [`Service::dry_run`]).
pub fn dry_run(inner: &Inner, args: DryRunArgs) -> ApiResult {
    let service = inner.service()?;
    let (model, config) = args.config.for_model(&service, args.model_id)?;
    let engine = inner.settings().engine();
    Ok(to_json(service.dry_run(
        model,
        DatasetId(args.dataset_id),
        &config,
        &engine,
    )?))
}

#[derive(Deserialize)]
pub struct StartArgs {
    name: String,
    model_id: i64,
    dataset_id: i64,
    /// The wizard's choices; fields left out keep the model's defaults.
    #[serde(default)]
    config: UiRunPatch,
}

pub fn start(inner: &Arc<Inner>, args: StartArgs) -> ApiResult {
    let name = args.name.trim();
    if name.is_empty() {
        return Err(ApiError::bad("give the run a name"));
    }
    let run = {
        let service = inner.service()?;
        let (model, config) = args.config.for_model(&service, args.model_id)?;
        service.create_run(name, model, DatasetId(args.dataset_id), &config)?
    };
    spawn(inner, run.0)?;
    Ok(json!({"run_id": run.0}))
}

#[derive(Deserialize)]
pub struct RunArgs {
    run_id: i64,
}

pub fn pause(inner: &Inner, args: RunArgs) -> ApiResult {
    match lock(&inner.runs.workers).get(&args.run_id) {
        Some(w) => w.pause.store(true, Ordering::Relaxed),
        None => {
            let service = inner.service()?;
            let run = service.run(RunId(args.run_id))?;
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
        let run = service.run(RunId(args.run_id))?;
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
    let run = service.run(RunId(args.run_id))?;
    if matches!(run.state, RunState::Done | RunState::Cancelled) {
        return Err(ApiError::conflict(format!(
            "run {} is already {}",
            args.run_id, run.state
        )));
    }
    service.cancel_run(run.id)?;
    inner.emit(
        "run_state",
        to_json(RunStateEvent {
            run_id: args.run_id,
            state: "cancelled",
        }),
    );
    Ok(Value::Null)
}

fn spawn(inner: &Arc<Inner>, run: i64) -> ApiResult<()> {
    // Another window or a CLI drives it: say so now rather than from a failed worker.
    if let Some(busy) = inner.service()?.run_driven_elsewhere(RunId(run))? {
        return Err(ApiError::conflict(busy.to_string()));
    }
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

/// The worker: drives the run to its end (or a pause), sending the run's progress stream as
/// events, then reports the final state.
fn drive(inner: &Inner, run: i64, pause: &AtomicBool, cancel: &AtomicBool) {
    let state_event = |state| to_json(RunStateEvent { run_id: run, state });
    inner.emit("run_state", state_event("running"));
    let engine = inner.settings().engine();
    let id = RunId(run);
    let result = Service::open(inner.data_dir.clone()).and_then(|service| {
        let mut tracker = RunTracker::new(id);
        let mut last_emit: Option<Instant> = None;
        let outcome = service.drive_run(id, &engine, &mut |p| {
            tracker.on(&service, &p, &mut |event| match event {
                RunEvent::Progress {
                    progress,
                    milestone,
                } => {
                    lock(&inner.runs.progress).insert(run, progress.clone());
                    let payload = to_json(progress);
                    // At most ten updates a second reach the UI; phase starts and ends always do.
                    if milestone
                        || last_emit.is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
                    {
                        last_emit = Some(Instant::now());
                        inner.emit("run_progress", payload);
                    }
                }
                RunEvent::Metrics(point) => inner.emit(
                    "run_metrics",
                    serde_json::to_value(point).expect("metrics serialise"),
                ),
                _ => {}
            });
            !pause.load(Ordering::Relaxed)
        });
        if let Err(e) = &outcome {
            eprintln!("run {run} stopped: {e:#}");
        }
        service.settle_run(id, &outcome, cancel.load(Ordering::Relaxed))
    });
    let state = result.unwrap_or_else(|e| {
        eprintln!("run {run}: {e:#}");
        RunState::Failed
    });
    lock(&inner.runs.workers).remove(&run);
    lock(&inner.runs.progress).remove(&run);
    inner.emit("run_state", state_event(state.as_str()));
}

pub fn status(inner: &Inner, args: RunArgs) -> ApiResult {
    let service = inner.service()?;
    let run = service.run(RunId(args.run_id))?;
    let s = service.run_status(run.id)?;
    let rounds = s
        .rounds
        .iter()
        .map(|r| RoundBrief {
            index: r.index,
            state: r.state.as_str().to_string(),
            error: r.error.clone(),
            note: r.note.clone(),
            direct_pairs: r.direct_pairs,
            refine_pairs: r.refine_pairs,
        })
        .collect();
    let progress = lock(&inner.runs.progress).get(&args.run_id).cloned();
    Ok(to_json(RunStatus {
        run: summary(inner, &run),
        rounds,
        progress,
        scoreboard: s.scoreboard,
    }))
}

#[derive(Deserialize)]
pub struct MetricsArgs {
    run_id: i64,
    #[serde(default)]
    since: i64,
}

pub fn metrics(inner: &Inner, args: MetricsArgs) -> ApiResult {
    let points = inner
        .service()?
        .run_metrics(RunId(args.run_id), args.since)?;
    Ok(serde_json::to_value(points).expect("metrics serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_sets_the_reference_and_the_sft_warm_up_and_may_leave_them_out() {
        let base = RunConfig::default();
        let patch: UiRunPatch =
            serde_json::from_value(json!({"train": {"reference": "previous", "sft_warmup": true}}))
                .unwrap();
        let c = patch.apply(base.clone()).unwrap();
        assert_eq!(c.train.reference, ReferenceModel::Previous);
        assert!(c.train.sft_warmup);
        // Nothing sent, or the defaults sent back unchanged: the defaults, to the byte.
        assert_eq!(UiRunPatch::default().apply(base.clone()).unwrap(), base);
        let echoed: UiRunPatch =
            serde_json::from_value(serde_json::to_value(UiRunConfig::of(&base)).unwrap()).unwrap();
        assert_eq!(echoed.apply(base.clone()).unwrap(), base);
    }

    #[test]
    fn a_bad_choice_is_refused_naming_the_field() {
        for (patch, says) in [
            (json!({"train": {"beta": 0.0}}), "train.beta"),
            (json!({"train": {"lr": -1.0}}), "train.lr"),
            (json!({"samples": 0}), "samples"),
            (json!({"scorer": "vibes"}), "unknown scorer 'vibes'"),
        ] {
            let p: UiRunPatch = serde_json::from_value(patch).unwrap();
            let e = p.apply(RunConfig::default()).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
