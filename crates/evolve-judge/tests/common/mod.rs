//! Shared test helpers: a scripted generator, a scripted OpenAI-compatible server, tiny GGUFs.
#![allow(dead_code)]

use evolve_core::{
    ChatMessage, Completion, GenerateError, GenerationRequest, Generator, SamplerConfig,
};
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_gguf::{GgufWriter, TensorData, Value, read_path};
use evolve_llama::EngineOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

/// Replies with `script(user_prompt)`; records every formatted prompt and sampler it was sent.
pub struct Scripted {
    pub script: Box<dyn FnMut(&str) -> String + Send>,
    pub seen: Arc<Mutex<Vec<(String, SamplerConfig)>>>,
}

impl Scripted {
    pub fn new(script: impl FnMut(&str) -> String + Send + 'static) -> Self {
        Self {
            script: Box::new(script),
            seen: Arc::default(),
        }
    }
}

const USER_OPEN: &str = "<user>";

impl Generator for Scripted {
    fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, GenerateError> {
        Ok(messages
            .iter()
            .map(|m| format!("<{}>{}", m.role.as_str(), m.content))
            .collect())
    }

    fn generate_batch(
        &mut self,
        requests: &[GenerationRequest],
        _events: &mut dyn FnMut(evolve_core::GenerationEvent) -> bool,
    ) -> Result<Vec<Vec<Completion>>, GenerateError> {
        Ok(requests
            .iter()
            .map(|r| {
                self.seen
                    .lock()
                    .unwrap()
                    .push((r.prompt.clone(), r.sampler.clone()));
                let user = r.prompt.strip_prefix(USER_OPEN).unwrap_or(&r.prompt);
                (0..r.n)
                    .map(|i| Completion {
                        text: (self.script)(user),
                        tokens: Vec::new(),
                        prompt_tokens: 0,
                        stopped: true,
                        duration_ms: 0,
                        seed: r.sample_seed(i),
                    })
                    .collect()
            })
            .collect())
    }
}

/// The text shown as `[Answer A]` / `[Answer B]` in a pairwise prompt.
pub fn shown_answer<'a>(prompt: &'a str, label: &str) -> &'a str {
    let start = prompt.find(&format!("[Answer {label}]\n")).unwrap() + 11;
    let rest = &prompt[start..];
    &rest[..rest.find("\n\n").unwrap()]
}

// ---- tiny models ----

pub fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Writes each file once per test process (not reentrant: resolve sources before calling).
fn once(name: &str, write: impl FnOnce(&Path)) -> PathBuf {
    static WRITING: Mutex<()> = Mutex::new(());
    let _guard = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let path = dir().join(name);
    if !path.exists() {
        write(&path);
    }
    path
}

pub fn tiny_llama() -> PathBuf {
    once("tiny.gguf", |p| {
        write_tiny_llama(p, &TinyLlamaConfig::default(), WeightType::F32).unwrap();
    })
}

/// The tiny model rewritten as `arch`, plus `extra` metadata and tensors. Qwen3 adds per-head
/// q/k norms to the llama layout; everything else is copied byte for byte.
fn rewrite(
    src: &Path,
    path: &Path,
    arch: &str,
    extra_meta: Vec<(String, Value)>,
    cls_outputs: Option<u64>,
) {
    let src = read_path(src).unwrap();
    let cfg = TinyLlamaConfig::default();
    let mut w = GgufWriter::new();
    for (k, v) in &src.metadata {
        let k = match k.strip_prefix("llama.") {
            Some(rest) => format!("{arch}.{rest}"),
            None => k.clone(),
        };
        let v = if k == "general.architecture" {
            Value::String(arch.into())
        } else {
            v.clone()
        };
        w.add_metadata(k, v);
    }
    for (k, v) in extra_meta {
        w.add_metadata(k, v);
    }
    for t in &src.tensors {
        let bytes = src.read_tensor_bytes(&t.name).unwrap();
        let data = TensorData::Raw {
            ggml_type: t.ggml_type,
            bytes,
        };
        w.add_tensor(t.name.clone(), t.dims.clone(), data).unwrap();
    }
    if arch == "qwen3" {
        for i in 0..cfg.n_layer {
            for n in ["attn_q_norm", "attn_k_norm"] {
                let ones = vec![1.0; cfg.head_dim() as usize];
                w.add_tensor(
                    format!("blk.{i}.{n}.weight"),
                    vec![u64::from(cfg.head_dim())],
                    TensorData::F32(ones),
                )
                .unwrap();
            }
        }
    }
    if let Some(n_out) = cls_outputs {
        let n_embd = u64::from(cfg.n_embd);
        // Distinct weights per output, so the outputs differ and a softmax is not uniform.
        let values = (0..n_embd * n_out)
            .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.5)
            .collect();
        w.add_tensor(
            "cls.output.weight",
            vec![n_embd, n_out],
            TensorData::F32(values),
        )
        .unwrap();
    }
    w.write_to_path(path).unwrap();
}

fn rank_meta(arch: &str, labels: &[&str]) -> Vec<(String, Value)> {
    let mut m = vec![(format!("{arch}.pooling_type"), Value::U32(4))];
    if !labels.is_empty() {
        m.push((
            format!("{arch}.classifier.output_labels"),
            Value::Array(labels.iter().map(|l| Value::String((*l).into())).collect()),
        ));
    }
    m
}

/// A tiny Qwen3 reranker-style model: a two-output head ("yes", "no") and rank pooling.
pub fn tiny_qwen3_rm() -> PathBuf {
    let src = tiny_llama();
    once("tiny-qwen3-rm.gguf", |p| {
        rewrite(
            &src,
            p,
            "qwen3",
            rank_meta("qwen3", &["yes", "no"]),
            Some(2),
        )
    })
}

/// The same with a single output, which llama.cpp's softmax would pin to 1.
pub fn tiny_qwen3_one_output() -> PathBuf {
    let src = tiny_llama();
    once("tiny-qwen3-one.gguf", |p| {
        rewrite(&src, p, "qwen3", rank_meta("qwen3", &[]), Some(1))
    })
}

/// A llama file carrying a head tensor, which llama.cpp's llama loader does not know.
pub fn tiny_llama_with_head() -> PathBuf {
    let src = tiny_llama();
    once("tiny-llama-cls.gguf", |p| {
        rewrite(&src, p, "llama", Vec::new(), Some(1))
    })
}

/// One thread and the model's own 512-token context: the tiny model gains nothing from more.
pub fn engine_options() -> EngineOptions {
    EngineOptions {
        n_threads: 1,
        n_gpu_layers: 0,
        n_ctx: 0,
        n_parallel: 2,
        prompt_format: None,
        reuse_prefix: true,
    }
}

// ---- a scripted OpenAI-compatible server (evolve-testkit) ----

pub use evolve_testkit::Script;

/// Serves until the test process ends; sends each request's (path, body, authorization).
pub fn serve(script: Script) -> (String, mpsc::Receiver<evolve_testkit::Seen>) {
    evolve_testkit::serve(None, script)
}

/// A completions stream that sends `text` in two pieces.
pub fn sse(text: &str) -> Vec<String> {
    let mid = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(0, |(i, _)| i);
    let piece = evolve_testkit::completion_event;
    vec![
        piece(&text[..mid], None),
        piece(&text[mid..], None),
        piece("", Some("stop")),
        "data: [DONE]\n\n".into(),
    ]
}
