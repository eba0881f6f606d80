//! Chat: `chat_send` answers on a worker thread (`Service::answer_turn`, once per variant) and
//! streams `chat` events; the loaded llama.cpp engine is kept between messages.

use super::protocol::{ChatEvent as ProtocolChatEvent, ChatStarted, ChatSummary};
use super::util::{lock, rfc3339};
use super::{ApiError, ApiResult, Flags, Inner, to_json};
use crate::Service;
use crate::chat::{ChatEvent, TurnSettings, check_chat_settings};
use evolve_core::{PromptFormat, RefinementTemplate, ScorerSpec};
use evolve_store::{AdapterId, ChatId, ModelId};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub struct ChatState {
    pub cancels: Flags,
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
    format: PromptFormat,
    template: RefinementTemplate,
    /// `(variant name, adapter id and file)` in the order they stream.
    variants: Vec<(&'static str, Option<(AdapterId, PathBuf)>)>,
    refine_steps: usize,
    scorer: Option<ScorerSpec>,
    cancel: Arc<AtomicBool>,
}

/// The UI offers `pattern` without a pattern; alone it checks for a final `Answer:` line.
pub fn scorer_name(s: &str) -> String {
    match s {
        "pattern" => "pattern:Answer:".into(),
        other => other.into(),
    }
}

pub fn send(inner: &Arc<Inner>, args: SendArgs) -> ApiResult {
    let question = args.message.trim().to_string();
    if question.is_empty() {
        return Err(ApiError::bad("the message is empty"));
    }
    let scorer = args
        .scorer
        .as_deref()
        .map(|s| scorer_name(s).parse::<ScorerSpec>())
        .transpose()
        .map_err(|e| ApiError::bad(e.0))?;
    check_chat_settings(args.refine_steps, scorer.as_ref())?;
    let service = inner.service()?;
    let model = service.model(ModelId(args.model_id))?;
    let model_path = PathBuf::from(&model.path);
    let adapter = args
        .adapter_id
        .map(|id| service.adapter_for_chat(&model, AdapterId(id)))
        .transpose()?;
    let variants = match (&adapter, args.compare) {
        (None, true) => return Err(ApiError::bad("compare needs an adapter")),
        (Some(_), true) => vec![("base", None), ("adapter", adapter)],
        (Some(_), false) => vec![("adapter", adapter)],
        (None, false) => vec![("base", None)],
    };
    let chat = match args.chat_id {
        Some(id) => service.chat(ChatId(id))?.id,
        None => service.create_chat(&question, &model_path)?,
    };
    service.ask(chat, &question)?;
    let template = service.refinement_template_for(&model_path)?;
    drop(service);

    let n = inner.next_request.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("req-{n}");
    let cancel = Arc::new(AtomicBool::new(false));
    lock(&inner.chat.cancels).insert(request_id.clone(), cancel.clone());
    let job = Job {
        request_id: request_id.clone(),
        chat,
        question,
        template,
        model: model_path,
        format: model.prompt_format.clone(),
        variants,
        refine_steps: args.refine_steps,
        scorer,
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
    Ok(to_json(ChatStarted {
        chat_id: chat.0,
        request_id,
    }))
}

/// One `chat` event of `job`'s `variant`.
fn event(
    job: &Job,
    variant: &'static str,
    kind: &'static str,
    step: usize,
    text: &str,
) -> ProtocolChatEvent {
    ProtocolChatEvent {
        request_id: job.request_id.clone(),
        variant,
        kind,
        step,
        text: text.to_string(),
        score: None,
        tokens_per_second: None,
        error: None,
    }
}

fn run_job(inner: &Inner, job: &Job) {
    let mut guard = inner.engines.lock();
    let settings = inner.settings();
    let sampler = settings
        .sampler
        .apply(&evolve_core::SamplerConfig::default());
    let engine_settings = settings.engine();
    for (variant, adapter) in &job.variants {
        let turn = TurnSettings {
            refine_steps: job.refine_steps,
            template: &job.template,
            sampler: &sampler,
            scorer: job.scorer.as_ref(),
            adapter: adapter.as_ref().map(|a| a.0),
        };
        let result = Service::open(inner.data_dir.clone()).and_then(|service| {
            let engine = guard.select(
                &job.model,
                adapter.as_ref().map(|(_, p)| p.as_path()),
                &engine_settings,
                Some(&job.format),
            )?;
            service.answer_turn(engine, job.chat, &job.question, &turn, &mut |e| {
                if job.cancel.load(Ordering::Relaxed) {
                    return false;
                }
                let payload = match e {
                    ChatEvent::StepStarted { .. } => return true,
                    ChatEvent::Token {
                        step,
                        text,
                        tokens_per_second,
                    } => ProtocolChatEvent {
                        tokens_per_second: Some(tokens_per_second),
                        ..event(job, variant, "token", step, text)
                    },
                    ChatEvent::StepDone { step, stored } => ProtocolChatEvent {
                        score: stored.score,
                        tokens_per_second: Some(stored.tokens_per_second()),
                        ..event(job, variant, "step_done", step, &stored.text)
                    },
                };
                inner.emit("chat", to_json(payload));
                true
            })
        });
        let done = match &result {
            Ok(_) => event(job, variant, "done", 0, ""),
            Err(e) => ProtocolChatEvent {
                error: Some(format!("{e:#}").replace('\n', " ")),
                ..event(job, variant, "error", 0, "")
            },
        };
        inner.emit("chat", to_json(done));
        if job.cancel.load(Ordering::Relaxed) {
            break;
        }
    }
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
    let rows: Vec<ChatSummary> = inner
        .service()?
        .list_chats()?
        .into_iter()
        .map(|c| ChatSummary {
            id: c.id.0,
            title: c.title,
            created_at: rfc3339(c.created_at),
        })
        .collect();
    Ok(to_json(rows))
}

#[derive(Deserialize)]
pub struct HistoryArgs {
    chat_id: i64,
}

pub fn history(inner: &Inner, args: HistoryArgs) -> ApiResult {
    let rows = inner.service()?.chat_history(ChatId(args.chat_id))?;
    Ok(serde_json::to_value(rows).expect("history serialises"))
}
