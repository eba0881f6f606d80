//! [`RemoteGenerator`]: one streamed `POST /v1/completions` per sample, several at once.

use crate::RemoteError;
use crate::sse::{Chunk, Event, next_event};
use evolve_core::{
    ChatMessage, Completion, GenerateError, GenerationEvent, GenerationRequest, Generator,
    SamplerConfig,
};
use serde_json::{Value, json};
use std::io::BufReader;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the server is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// `https://host[:port]`, or `http://host:port` for a server on this machine (or any server
    /// when no API key is set), without `/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` (llama-server `--api-key`, vLLM `--api-key`).
    pub api_key: Option<String>,
    /// The `model` field; llama-server ignores it, vLLM needs the served model name.
    pub model: Option<String>,
    pub connect_timeout: Duration,
    /// Longest silence while waiting for the next bytes (prompt evaluation, one token): an idle
    /// timeout, so that long answers that keep streaming are never cut.
    pub read_timeout: Duration,
    /// Samples streamed at once. llama-server batches concurrent requests over its slots
    /// (`--parallel N`), so this should match the server's slot count.
    pub parallel: usize,
    /// Longest a whole request may take, streaming included: a server that trickles bytes
    /// forever is cut here.
    pub deadline: Duration,
    /// Largest response body read (one streamed sample, one template): a server that streams
    /// without end is cut here instead of filling memory.
    pub max_response_bytes: u64,
}

impl RemoteOptions {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            model: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(120),
            parallel: 4,
            deadline: Duration::from_secs(600),
            max_response_bytes: 16 << 20,
        }
    }
}

/// Refuses an address an API key would travel to in clear: `http://` is for loopback only once
/// a key is set (`https://` everywhere else).
fn check_address(base: &str, has_key: bool) -> Result<(), RemoteError> {
    let bad = || RemoteError::BadAddress(base.to_string());
    if base.strip_prefix("https://").is_some_and(|r| !r.is_empty()) {
        return Ok(());
    }
    let rest = base.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if has_key && !loopback {
        return Err(RemoteError::KeyInClear(base.to_string()));
    }
    Ok(())
}

pub struct RemoteGenerator {
    agent: ureq::Agent,
    options: RemoteOptions,
}

/// What one streamed sample produced.
struct Streamed {
    text: String,
    tokens: Vec<i32>,
    prompt_tokens: usize,
    stopped: bool,
    cancelled: bool,
}

impl RemoteGenerator {
    pub fn new(options: RemoteOptions) -> Result<Self, RemoteError> {
        check_address(&options.base_url, options.api_key.is_some())?;
        let agent = ureq::Agent::config_builder()
            // Error statuses are read here, to show the server's own message.
            .http_status_as_error(false)
            // A redirect could carry the key elsewhere; OpenAI-style servers never send one.
            .max_redirects(0)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .timeout_global(Some(options.deadline))
            .build()
            .into();
        Ok(Self { agent, options })
    }

    pub fn base_url(&self) -> &str {
        &self.options.base_url
    }

    /// `POST path` with a JSON body; returns the response once its status is a success.
    fn post(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let url = format!("{}{path}", self.options.base_url);
        let mut req = self.agent.post(&url);
        if let Some(key) = &self.options.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut resp = req.send_json(body).map_err(|e| self.transport(&url, e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let raw = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(RemoteError::Status {
                url,
                status,
                message: server_message(&raw),
            });
        }
        Ok(resp)
    }

    /// A response body, read at most up to [`RemoteOptions::max_response_bytes`].
    fn capped(&self, resp: ureq::http::Response<ureq::Body>) -> ureq::BodyReader<'static> {
        resp.into_body()
            .into_with_config()
            .limit(self.options.max_response_bytes)
            .reader()
    }

    /// An error while reading a body: ureq's own (limit, deadline) when it wraps one.
    fn read_error(&self, url: &str, e: std::io::Error) -> RemoteError {
        if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
            return self.transport(url, ureq::Error::from(e));
        }
        match e.kind() {
            std::io::ErrorKind::TimedOut => RemoteError::Timeout {
                url: url.to_string(),
                secs: self.options.read_timeout.as_secs(),
            },
            _ => RemoteError::Transport {
                url: url.to_string(),
                reason: format!("stream broke: {e}"),
            },
        }
    }

    fn transport(&self, url: &str, e: ureq::Error) -> RemoteError {
        match e {
            ureq::Error::BodyExceedsLimit(limit) => RemoteError::TooLarge {
                url: url.to_string(),
                limit,
            },
            ureq::Error::Timeout(ureq::Timeout::Global) => RemoteError::Deadline {
                url: url.to_string(),
                secs: self.options.deadline.as_secs(),
            },
            ureq::Error::Io(io) if is_unreachable(&io) => RemoteError::Unreachable {
                base: self.options.base_url.clone(),
                reason: io.to_string(),
            },
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => RemoteError::Unreachable {
                base: self.options.base_url.clone(),
                reason: e.to_string(),
            },
            ureq::Error::Timeout(_) => RemoteError::Timeout {
                url: url.to_string(),
                secs: self.options.read_timeout.as_secs(),
            },
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                RemoteError::Timeout {
                    url: url.to_string(),
                    secs: self.options.read_timeout.as_secs(),
                }
            }
            ureq::Error::Json(j) => RemoteError::Malformed {
                url: url.to_string(),
                reason: j.to_string(),
            },
            other => RemoteError::Transport {
                url: url.to_string(),
                reason: other.to_string(),
            },
        }
    }

    /// Streams one sample; `on_text` returns `false` to cancel, which drops the connection so
    /// the server stops generating.
    fn stream_sample(
        &self,
        prompt: &str,
        sampler: &SamplerConfig,
        on_text: &mut dyn FnMut(String) -> bool,
    ) -> Result<Streamed, RemoteError> {
        let url = format!("{}/v1/completions", self.options.base_url);
        let resp = self.post("/v1/completions", &self.completion_body(prompt, sampler))?;
        let mut reader = BufReader::new(self.capped(resp));
        let mut out = Streamed {
            text: String::new(),
            tokens: Vec::new(),
            prompt_tokens: 0,
            stopped: false,
            cancelled: false,
        };
        let mut silent_tail = None;
        loop {
            let event = next_event(&mut reader).map_err(|e| self.read_error(&url, e))?;
            let data = match event {
                None | Some(Event::Done) => return Ok(out),
                Some(Event::Data(d)) => d,
            };
            let chunk: Chunk = serde_json::from_str(&data).map_err(|e| RemoteError::Malformed {
                url: url.clone(),
                reason: format!("{e} in {}", truncate(&data, 200)),
            })?;
            if let Some(err) = chunk.error {
                return Err(RemoteError::Status {
                    url,
                    status: err.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
                    message: server_message(&json!({ "error": err }).to_string()),
                });
            }
            if let Some(usage) = chunk.usage {
                out.prompt_tokens = usage.prompt_tokens;
            }
            let Some(choice) = chunk.choices.into_iter().next() else {
                continue; // a usage-only chunk
            };
            let ids = choice.token_ids();
            // llama-server lists the model's end token too, as a chunk without text; the local
            // engine (like OpenAI) does not count it as part of the answer.
            if !ids.is_empty() {
                silent_tail = choice.text.is_empty().then_some(out.tokens.len());
                out.tokens.extend(ids);
            }
            if let Some(reason) = choice.finish_reason {
                out.stopped = reason == "stop";
                if let (true, Some(len)) = (out.stopped, silent_tail) {
                    out.tokens.truncate(len);
                }
            }
            if !choice.text.is_empty() {
                out.text.push_str(&choice.text);
                if !on_text(choice.text) {
                    out.cancelled = true;
                    out.stopped = false;
                    return Ok(out); // dropping the reader closes the connection
                }
            }
        }
    }

    /// The request body. Every sampler field is sent explicitly: server defaults differ from
    /// ours (llama-server: repeat_penalty 1.1, top_k 40, min_p 0.05).
    fn completion_body(&self, prompt: &str, s: &SamplerConfig) -> Value {
        let mut body = json!({
            "prompt": prompt,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "repeat_penalty": s.repeat_penalty,      // llama-server
            "repetition_penalty": s.repeat_penalty,  // vLLM
            "repeat_last_n": 64,                      // as the local engine's penalty window
            "seed": s.seed,
            "stop": s.stop,
            "ignore_eos": s.ignore_eos,
            "stream": true,
            "stream_options": { "include_usage": true },
            // llama-server: token ids in each chunk (`return_tokens` in some versions, the ids
            // of `logprobs` in others), and a fresh prompt evaluation so that the logits (and a
            // greedy answer) do not depend on what an earlier request left cached.
            "return_tokens": true,
            "logprobs": 1,
            "cache_prompt": false,
        });
        if let Some(model) = &self.options.model {
            body["model"] = json!(model);
        }
        body
    }
}

impl Generator for RemoteGenerator {
    /// Uses llama-server's `POST /apply-template` (the model's own template, applied by the
    /// server). OpenAI-style servers without it get a clear error: chat prompts must then be
    /// formatted locally, because `/v1/chat/completions` would hide the exact prompt EVOLVE stores.
    fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        let url = format!("{}/apply-template", self.options.base_url);
        let resp = self
            .post("/apply-template", &json!({ "messages": messages }))
            .map_err(|e| match e {
                RemoteError::Status {
                    status: 404, url, ..
                } => RemoteError::Status {
                    url,
                    status: 404,
                    message:
                        "this server cannot format chats (only llama-server has /apply-template); \
                              format the prompt locally"
                            .into(),
                },
                other => other,
            })?;
        let v: Value =
            serde_json::from_reader(self.capped(resp)).map_err(|e| match e.io_error_kind() {
                Some(_) => self.read_error(&url, e.into()),
                None => RemoteError::Malformed {
                    url: url.clone(),
                    reason: e.to_string(),
                },
            })?;
        v.get("prompt")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                RemoteError::Malformed {
                    url,
                    reason: "no \"prompt\" string in the answer".into(),
                }
                .into()
            })
    }

    /// Streams up to [`RemoteOptions::parallel`] samples at once (the server's slots batch
    /// them); events reach `events` on this thread, in arrival order. Cancelling stops every
    /// stream at its next chunk. As with the local engine, the result keeps, per request, the
    /// samples that started, up to the first that did not.
    fn generate_batch(
        &mut self,
        requests: &[GenerationRequest],
        events: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, GenerateError> {
        if let Some(r) = requests.iter().position(|q| q.prompt.is_empty() && q.n > 0) {
            return Err(GenerateError::InvalidRequest {
                request: r,
                reason: "empty prompt".into(),
            });
        }
        let started = Instant::now();
        let jobs: Vec<(usize, usize)> = requests
            .iter()
            .enumerate()
            .flat_map(|(r, q)| (0..q.n).map(move |i| (r, i)))
            .collect();
        let mut results: Vec<Vec<Option<Completion>>> =
            requests.iter().map(|q| vec![None; q.n]).collect();
        // What reached `events`: a stream cut by a cancel may have read one chunk more.
        let mut delivered: Vec<Vec<String>> =
            requests.iter().map(|q| vec![String::new(); q.n]).collect();
        let next_job = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<Message>();
        let this = &*self;
        let mut failure = None;
        std::thread::scope(|scope| {
            for _ in 0..self.options.parallel.clamp(1, jobs.len().max(1)) {
                let tx = tx.clone();
                let (jobs, next_job, cancel) = (&jobs, &next_job, &cancel);
                scope.spawn(move || {
                    while !cancel.load(Ordering::Relaxed) {
                        let Some(&(r, i)) = jobs.get(next_job.fetch_add(1, Ordering::Relaxed))
                        else {
                            break;
                        };
                        let req = &requests[r];
                        let sampler = SamplerConfig {
                            seed: req.sample_seed(i),
                            ..req.sampler.clone()
                        };
                        let mut on_text = |text: String| {
                            let _ = tx.send(Message::Text { r, i, text });
                            !cancel.load(Ordering::Relaxed)
                        };
                        let outcome = this
                            .stream_sample(&req.prompt, &sampler, &mut on_text)
                            .map(|s| (s, sampler.seed));
                        let _ = tx.send(Message::Done { r, i, outcome });
                    }
                });
            }
            drop(tx);
            // Messages of one sample arrive in order: its texts, then its end.
            for message in rx {
                match message {
                    Message::Text { r, i, text } => {
                        if cancel.load(Ordering::Relaxed) {
                            continue;
                        }
                        delivered[r][i].push_str(&text);
                        let go_on = events(GenerationEvent::Token {
                            request: r,
                            sample: i,
                            text,
                        });
                        if !go_on {
                            cancel.store(true, Ordering::Relaxed);
                        }
                    }
                    // An error after a cancel is the cancel's doing (a dropped connection).
                    Message::Done {
                        outcome: Err(e), ..
                    } => {
                        if !cancel.swap(true, Ordering::Relaxed) {
                            failure = Some(e);
                        }
                    }
                    Message::Done {
                        r,
                        i,
                        outcome: Ok((s, seed)),
                    } => {
                        let cut = s.cancelled || cancel.load(Ordering::Relaxed);
                        let stopped = s.stopped && !cut;
                        results[r][i] = Some(Completion {
                            text: std::mem::take(&mut delivered[r][i]),
                            tokens: s.tokens,
                            prompt_tokens: s.prompt_tokens,
                            stopped,
                            duration_ms: started.elapsed().as_millis() as u64,
                            seed,
                        });
                        if !cut
                            && !events(GenerationEvent::Finished {
                                request: r,
                                sample: i,
                                stopped,
                            })
                        {
                            cancel.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(results
            .into_iter()
            .map(|r| r.into_iter().map_while(|c| c).collect())
            .collect())
    }
}

/// What a streaming worker tells the calling thread.
enum Message {
    Text {
        r: usize,
        i: usize,
        text: String,
    },
    Done {
        r: usize,
        i: usize,
        outcome: Result<(Streamed, u32), RemoteError>,
    },
}

fn is_unreachable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
            | AddrNotAvailable
    )
}

/// The server's own words: OpenAI-style `{"error":{"message":…}}`, else the raw body.
fn server_message(raw: &str) -> String {
    serde_json::from_str::<Value>(raw)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            e.get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| e.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| truncate(raw.trim(), 300).to_string())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
