//! Chat: `chat_send` answers on a worker thread and streams `chat` events; the loaded llama.cpp
//! engine is kept between messages (loading a real model takes seconds).

use super::util::{lock, rfc3339};
use super::{ApiError, ApiResult, Flags, Inner};
use crate::Service;
use anyhow::Context;
use evolve_core::{
    GenerationEvent, GenerationKind, GenerationRequest, Generator, RefinementTemplate, ScoreInput,
    Scorer,
};
use evolve_llama::{AdapterId, EngineOptions, LlamaEngine};
use evolve_store::{
    AdapterId as StoreAdapterId, ChatId, ChatRole, ModelId, NewGeneration, NewMessage,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One loaded model, reused while the UI keeps chatting with it.
pub struct CachedEngine {
    pub path: PathBuf,
    pub options: (i32, u32),
    pub engine: LlamaEngine,
    /// Adapters loaded into this engine, by file (llama.cpp keeps them until the model is freed).
    pub adapters: HashMap<PathBuf, AdapterId>,
}

#[derive(Default)]
pub struct ChatState {
    /// One engine at a time: a second model replaces the first (memory is the limit).
    pub engine: Mutex<Option<CachedEngine>>,
    pub cancels: Flags,
}

/// Loads `model` unless it is the cached one, and selects `adapter` (or the base model).
pub fn engine_for<'a>(
    slot: &'a mut Option<CachedEngine>,
    model: &Path,
    adapter: Option<&Path>,
    inner: &Inner,
) -> anyhow::Result<&'a mut CachedEngine> {
    let settings = inner.settings();
    let options = (settings.threads, settings.gpu_layers);
    if slot
        .as_ref()
        .is_none_or(|c| c.path != model || c.options != options)
    {
        // Drop the old model first: two real models at once may not fit in memory.
        *slot = None;
        let trained = crate::models::inspect(model)?
            .summary()
            .context_length
            .unwrap_or(4096) as u32;
        let engine = LlamaEngine::load(
            model,
            EngineOptions {
                n_threads: settings.threads,
                n_gpu_layers: settings.gpu_layers,
                n_ctx: trained.min(4096),
                n_parallel: 2,
                ..EngineOptions::default()
            },
        )?;
        *slot = Some(CachedEngine {
            path: model.to_path_buf(),
            options,
            engine,
            adapters: HashMap::new(),
        });
    }
    let cached = slot.as_mut().expect("loaded above");
    let id = match adapter {
        None => None,
        Some(p) => Some(match cached.adapters.get(p) {
            Some(id) => *id,
            None => {
                let id = cached.engine.load_adapter(p)?;
                cached.adapters.insert(p.to_path_buf(), id);
                id
            }
        }),
    };
    cached.engine.set_adapter(id, 1.0)?;
    Ok(cached)
}

#[derive(Deserialize)]
pub struct SendArgs {
    #[serde(default)]
    chat_id: Option<i64>,
    model_id: i64,
    #[serde(default)]
    adapter_id: Option<i64>,
    message: String,
    #[serde(default)]
    refine_steps: usize,
    #[serde(default)]
    scorer: Option<String>,
    #[serde(default)]
    compare: bool,
}

/// What the worker needs, resolved on the caller's thread so bad ids fail the command itself.
struct Job {
    request_id: String,
    chat: ChatId,
    question: String,
    model: PathBuf,
    template: RefinementTemplate,
    /// `(variant name, adapter id and file)` in the order they stream.
    variants: Vec<(&'static str, Option<(StoreAdapterId, PathBuf)>)>,
    refine_steps: usize,
    scorer: Option<String>,
    cancel: Arc<AtomicBool>,
}

pub fn send(inner: &Arc<Inner>, args: SendArgs) -> ApiResult {
    let question = args.message.trim().to_string();
    if question.is_empty() {
        return Err(ApiError::bad("the message is empty"));
    }
    if args.refine_steps > 5 {
        return Err(ApiError::bad("at most 5 refinement steps"));
    }
    if let Some(s) = &args.scorer {
        evolve_loop::verify::verifier_by_name(&scorer_name(s)).map_err(ApiError::bad)?;
    }
    let service = inner.service()?;
    let store = service.store();
    let model = store
        .get_model(ModelId(args.model_id))?
        .ok_or_else(|| ApiError::not_found(format!("no model with id {}", args.model_id)))?;
    let model_path = PathBuf::from(&model.path);
    let adapter = match args.adapter_id {
        None => None,
        Some(id) => {
            let a = store
                .get_adapter(StoreAdapterId(id))?
                .ok_or_else(|| ApiError::not_found(format!("no adapter with id {id}")))?;
            if a.base_model_id != model.id {
                return Err(ApiError::bad(format!(
                    "adapter {id} was trained on another model (id {}); pick that model",
                    a.base_model_id.0
                )));
            }
            Some((a.id, PathBuf::from(a.path)))
        }
    };
    let variants = match (&adapter, args.compare) {
        (None, true) => return Err(ApiError::bad("compare needs an adapter")),
        (Some(_), true) => vec![("base", None), ("adapter", adapter)],
        (Some(_), false) => vec![("adapter", adapter)],
        (None, false) => vec![("base", None)],
    };
    let chat = match args.chat_id {
        Some(id) => {
            store
                .get_chat(ChatId(id))?
                .ok_or_else(|| ApiError::not_found(format!("no chat with id {id}")))?
                .id
        }
        None => service.create_chat(&question, &model_path)?,
    };
    store.add_message(&NewMessage {
        chat_id: chat,
        role: ChatRole::User,
        content: question.clone(),
        generation_id: None,
        refinement_of: None,
        step_index: 0,
        score: None,
    })?;
    drop(service);

    let n = inner.next_request.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("req-{n}");
    let cancel = Arc::new(AtomicBool::new(false));
    lock(&inner.chat.cancels).insert(request_id.clone(), cancel.clone());
    let job = Job {
        request_id: request_id.clone(),
        chat,
        question,
        template: crate::demo::refinement_template_for(&model_path, model.display_name.as_deref()),
        model: model_path,
        variants,
        refine_steps: args.refine_steps,
        scorer: args.scorer.map(|s| scorer_name(&s)),
        cancel,
    };
    let worker = inner.clone();
    std::thread::Builder::new()
        .name(format!("chat {request_id}"))
        .spawn(move || {
            run_job(&worker, &job);
            lock(&worker.chat.cancels).remove(&job.request_id);
        })
        .map_err(|e| ApiError::bad(format!("cannot start the chat worker: {e}")))?;
    Ok(json!({"chat_id": chat.0, "request_id": request_id}))
}

/// The UI offers `pattern` without a pattern; alone it checks for a final `Answer:` line.
pub fn scorer_name(s: &str) -> String {
    match s {
        "pattern" => "pattern:Answer:".into(),
        other => other.into(),
    }
}

/// One `chat` event payload (docs/api.md); the fields are the protocol's, hence the arity.
#[allow(clippy::too_many_arguments)]
fn event(
    request_id: &str,
    variant: &str,
    kind: &str,
    step: usize,
    text: &str,
    score: Option<f64>,
    tps: Option<f64>,
    error: Option<&str>,
) -> Value {
    json!({
        "request_id": request_id, "variant": variant, "kind": kind, "step": step, "text": text,
        "score": score, "tokens_per_second": tps, "error": error,
    })
}

fn run_job(inner: &Inner, job: &Job) {
    let mut slot = lock(&inner.chat.engine);
    for (variant, adapter) in &job.variants {
        let result = Service::open(inner.data_dir.clone()).and_then(|service| {
            let cached = engine_for(
                &mut slot,
                &job.model,
                adapter.as_ref().map(|(_, p)| p.as_path()),
                inner,
            )?;
            answer(inner, &service, &mut cached.engine, job, variant, adapter)
        });
        let (kind, error) = match &result {
            Ok(()) => ("done", None),
            Err(e) => ("error", Some(format!("{e:#}").replace('\n', " "))),
        };
        inner.emit(
            "chat",
            event(
                &job.request_id,
                variant,
                kind,
                0,
                "",
                None,
                None,
                error.as_deref(),
            ),
        );
        if job.cancel.load(Ordering::Relaxed) {
            break;
        }
    }
}

/// Streams the direct answer and each refinement of one variant, storing and scoring each step.
fn answer(
    inner: &Inner,
    service: &Service,
    generator: &mut dyn Generator,
    job: &Job,
    variant: &str,
    adapter: &Option<(StoreAdapterId, PathBuf)>,
) -> anyhow::Result<()> {
    let settings = inner.settings();
    let base = settings
        .sampler
        .apply(&evolve_core::SamplerConfig::default());
    let mut scorer: Option<Box<dyn Scorer + Send>> = match &job.scorer {
        Some(s) => Some(evolve_loop::verify::verifier_by_name(s).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let store = service.store();
    let mut previous: Option<(String, evolve_store::GenerationId, evolve_store::MessageId)> = None;
    let mut first_message = None;
    for step in 0..=job.refine_steps {
        let messages = match &previous {
            None => job.template.render_question(&job.question),
            Some((text, ..)) => job.template.render_messages(&job.question, text),
        };
        let prompt = generator.format_chat(&messages)?;
        let sampler = evolve_core::SamplerConfig {
            seed: base.seed.wrapping_add(step as u32),
            ..base.clone()
        };
        let started = Instant::now();
        let mut tokens = 0usize;
        let cancel = &job.cancel;
        let mut on_event = |e: GenerationEvent| {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            if let GenerationEvent::Token { text, .. } = e {
                tokens += 1;
                let tps = tokens as f64 / started.elapsed().as_secs_f64().max(1e-3);
                inner.emit(
                    "chat",
                    event(
                        &job.request_id,
                        variant,
                        "token",
                        step,
                        &text,
                        None,
                        Some(tps),
                        None,
                    ),
                );
            }
            true
        };
        let results = generator
            .generate_batch(
                &[GenerationRequest::new(prompt.clone(), sampler.clone(), 1)],
                &mut on_event,
            )
            .context("generation failed")?;
        let Some(c) = results
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
        else {
            return Ok(()); // cancelled before the first token
        };
        let tps = c.tokens.len() as f64 / (c.duration_ms as f64 / 1000.0).max(1e-3);
        // A verifier that cannot score free chat (no reference answer) leaves the score empty.
        let reference = arithmetic_reference(&job.question);
        let score = scorer.as_mut().and_then(|s| {
            s.score(&ScoreInput {
                prompt: &job.question,
                reference: reference.as_deref(),
                answer: &c.text,
            })
            .ok()
            .map(|v| v.value)
        });
        let generation_id = store.insert_generation(&NewGeneration {
            round_id: None,
            prompt_id: None,
            kind: if step == 0 {
                GenerationKind::Chat
            } else {
                GenerationKind::Refinement
            },
            parent_id: previous.as_ref().map(|p| p.1),
            step_index: step as i64,
            sample_index: 0,
            text: c.text.clone(),
            token_count: c.tokens.len() as i64,
            seed: c.seed as i64,
            sampler: sampler.clone(),
            prompt_text: prompt,
            adapter_id: adapter.as_ref().map(|a| a.0),
            duration_ms: c.duration_ms as i64,
        })?;
        let message_id = store.add_message(&NewMessage {
            chat_id: job.chat,
            role: ChatRole::Assistant,
            content: c.text.clone(),
            generation_id: Some(generation_id),
            refinement_of: first_message,
            step_index: step as i64,
            score,
        })?;
        first_message.get_or_insert(message_id);
        inner.emit(
            "chat",
            event(
                &job.request_id,
                variant,
                "step_done",
                step,
                &c.text,
                score,
                Some(tps),
                None,
            ),
        );
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        previous = Some((c.text, generation_id, message_id));
    }
    Ok(())
}

/// Chat has no reference answers, so `numeric` and `exact` cannot score it, except for the
/// built-in task's own questions (`23+45=?`), whose answer is known: that makes the scorer
/// visible on the built-in model.
fn arithmetic_reference(question: &str) -> Option<String> {
    let (a, b) = question.trim().strip_suffix("=?")?.split_once('+')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    Some(a.checked_add(b)?.to_string())
}

#[derive(Deserialize)]
pub struct CancelArgs {
    request_id: String,
}

/// Stops the request within one token (the worker checks the flag on every token).
pub fn cancel(inner: &Inner, args: CancelArgs) -> ApiResult {
    if let Some(flag) = lock(&inner.chat.cancels).get(&args.request_id) {
        flag.store(true, Ordering::Relaxed);
    }
    Ok(Value::Null)
}

pub fn list(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    let rows: Vec<Value> = service
        .store()
        .list_chats()?
        .into_iter()
        .map(|c| json!({"id": c.id.0, "title": c.title, "created_at": rfc3339(c.created_at)}))
        .collect();
    Ok(Value::Array(rows))
}

#[derive(Deserialize)]
pub struct HistoryArgs {
    chat_id: i64,
}

pub fn history(inner: &Inner, args: HistoryArgs) -> ApiResult {
    let service = inner.service()?;
    let store = service.store();
    store
        .get_chat(ChatId(args.chat_id))?
        .ok_or_else(|| ApiError::not_found(format!("no chat with id {}", args.chat_id)))?;
    let mut rows = Vec::new();
    for m in store.messages_of(ChatId(args.chat_id))? {
        // The variant is where the answer came from: an adapter, or the base model.
        let adapter = match m.generation_id {
            Some(g) => store.get_generation(g)?.and_then(|g| g.adapter_id),
            None => None,
        };
        rows.push(json!({
            "role": if m.role == ChatRole::User { "user" } else { "assistant" },
            "text": m.content,
            "step": m.step_index,
            "variant": if adapter.is_some() { "adapter" } else { "base" },
            "score": m.score,
        }));
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_task_questions_have_a_reference() {
        assert_eq!(
            super::arithmetic_reference("23+45=?").as_deref(),
            Some("68")
        );
        assert_eq!(
            super::arithmetic_reference(" 7 + 8 =?").as_deref(),
            Some("15")
        );
        assert_eq!(super::arithmetic_reference("What is 2+3?"), None);
    }
}
