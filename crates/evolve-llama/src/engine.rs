//! One loaded model, its LoRA adapters, and the single-sequence decode loop used for chat.
//!
//! Contexts are created per call: llama.cpp loads an adapter through `&mut model`, which is
//! impossible while a context borrows the model, so the engine owns the model and the adapters
//! and every call builds a fresh context with the active adapter applied. (Batched sampling is
//! in `batch.rs`, log-probabilities in `logprob.rs`.)

use crate::LlamaError;
use crate::adapter::{AdapterId, Adapters, LoadedAdapter};
use crate::chat_template::{ChatTemplate, RenderOptions};
use crate::sampler::build_sampler;
use crate::stream::TextStream;
use evolve_core::{ChatMessage, PromptFormat, SamplerConfig};
use evolve_gguf::GgufFile;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend (llama.cpp refuses a second initialisation).
/// Its logging is silenced unless `EVOLVE_LLAMA_LOG=1`, because it writes model dumps to stderr.
pub fn backend() -> Result<&'static LlamaBackend, LlamaError> {
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("EVOLVE_LLAMA_LOG").is_none_or(|v| v != "1") {
                b.void_logs();
            }
            Ok(b)
        })
        .as_ref()
        .map_err(|e| LlamaError::Backend(e.clone()))
}

/// Where the work runs: CPU threads, layers offloaded to a GPU, context size.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub n_threads: i32,
    pub n_gpu_layers: u32,
    /// Context length in tokens per sequence; 0 uses the model's training context.
    pub n_ctx: u32,
    /// Most sequences batched sampling decodes together (its slots).
    pub n_parallel: usize,
    /// How conversations are formatted; `None`: the file's default
    /// ([`PromptFormat::default_for`]).
    pub prompt_format: Option<PromptFormat>,
    /// Batched sampling starts a prompt from the longest prefix some sequence's cache holds
    /// (a shared system prompt, a chain's conversation so far); off, only a whole prompt shared
    /// by several samples is reused.
    pub reuse_prefix: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self {
            n_threads: cores as i32,
            n_gpu_layers: 0,
            n_ctx: 0,
            n_parallel: 8,
            prompt_format: None,
            reuse_prefix: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    pub text: String,
    pub tokens: Vec<i32>,
    pub prompt_tokens: usize,
    /// True when the model ended the answer itself (end-of-generation token or a stop string).
    pub stopped: bool,
    pub duration_ms: u64,
}

/// Work counters, so tests and the UI can see what batching saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Prompts evaluated (a prompt shared by several samples counts once).
    pub prompt_evals: u64,
    pub prompt_tokens_evaluated: u64,
    /// Prompt tokens whose cells were already in the cache (not evaluated).
    pub prompt_tokens_reused: u64,
    pub generated_tokens: u64,
    /// `llama_decode` calls.
    pub decode_calls: u64,
}

pub struct LlamaEngine {
    pub(crate) model: LlamaModel,
    path: PathBuf,
    pub(crate) options: EngineOptions,
    adapters: Adapters,
    /// The vocabulary's end-of-generation tokens (EOS, EOT, …), for `ignore_eos`.
    pub(crate) eog_tokens: Vec<LlamaToken>,
    /// The file's own chat template (`None`: it has none; `Err`: it does not compile).
    jinja: Option<Result<ChatTemplate, String>>,
    /// The file's default prompt format, and the one in use.
    default_format: PromptFormat,
    format: PromptFormat,
    stats: Mutex<EngineStats>,
}

impl LlamaEngine {
    pub fn load(path: &Path, options: EngineOptions) -> Result<Self, LlamaError> {
        if !path.is_file() {
            return Err(LlamaError::NotFound(path.to_path_buf()));
        }
        let header = check_before_llama_cpp(path)?;
        let jinja = model_chat_template(&header);
        let default_format = default_prompt_format(&header, path);
        let format = options
            .prompt_format
            .clone()
            .unwrap_or(default_format.clone());
        let params = LlamaModelParams::default().with_n_gpu_layers(options.n_gpu_layers);
        let model = LlamaModel::load_from_file(backend()?, path, &params).map_err(|e| {
            LlamaError::Load {
                path: path.to_path_buf(),
                reason: format!("{e} (run `evolve models info` on the file for details)"),
            }
        })?;
        let eog_tokens = {
            let vocab = model.vocab();
            (0..model.n_vocab())
                .map(LlamaToken)
                .filter(|&t| vocab.is_eog(t))
                .collect()
        };
        Ok(Self {
            model,
            eog_tokens,
            path: path.to_path_buf(),
            options,
            adapters: Adapters::default(),
            format,
            default_format,
            jinja,
            stats: Mutex::new(EngineStats::default()),
        })
    }

    /// Loads a GGUF LoRA adapter after checking it fits this model.
    /// Loaded adapters stay in memory until the engine is dropped; loading does not activate.
    pub fn load_adapter(&mut self, path: &Path) -> Result<AdapterId, LlamaError> {
        self.adapters.load(&mut self.model, &self.path, path)
    }

    /// Chooses the adapter later calls run with (`None`: the base model). Switching never
    /// reloads the base; `scale` multiplies the adapter's update (1.0 = as trained).
    pub fn set_adapter(
        &mut self,
        adapter: Option<AdapterId>,
        scale: f32,
    ) -> Result<(), LlamaError> {
        self.adapters.set_active(adapter, scale)
    }

    pub fn active_adapter(&self) -> Option<(AdapterId, f32)> {
        self.adapters.active()
    }

    pub fn adapter_info(&self, id: AdapterId) -> Option<&LoadedAdapter> {
        self.adapters.info(id)
    }

    pub fn stats(&self) -> EngineStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = EngineStats::default();
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut EngineStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// `llama_decode`, counted.
    pub(crate) fn decode(
        &self,
        ctx: &mut LlamaContext<'_>,
        batch: &mut LlamaBatch<'_>,
    ) -> Result<(), LlamaError> {
        self.count(|s| s.decode_calls += 1);
        ctx.decode(batch)
            .map_err(|e| LlamaError::Decode(e.to_string()))
    }

    /// Tokens one sequence may hold (prompt plus answer).
    pub fn n_ctx_per_sequence(&self) -> u32 {
        if self.options.n_ctx == 0 {
            self.model.n_ctx_train()
        } else {
            self.options.n_ctx
        }
    }

    /// Refuses a request that cannot fit one sequence, before any work is done.
    pub(crate) fn check_fits(
        &self,
        prompt_tokens: usize,
        max_tokens: u32,
    ) -> Result<(), LlamaError> {
        let n_ctx = self.n_ctx_per_sequence();
        if prompt_tokens + max_tokens as usize > n_ctx as usize {
            return Err(LlamaError::ContextOverflow {
                prompt_tokens,
                max_tokens,
                n_ctx,
            });
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab() as usize
    }
    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }

    /// Tokenizes with the model's own vocabulary, adding BOS as the model asks and parsing
    /// special tokens such as `<|im_start|>` (prompts are formatted by us, not typed raw).
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    pub fn detokenize(&self, tokens: &[i32]) -> String {
        let vocab = self.model.vocab();
        let bytes: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| vocab.token_to_piece(LlamaToken(t), false, None))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Formats a single user turn with the model's chat template and a generation prompt.
    pub fn format_user_prompt(&self, user: &str) -> Result<String, LlamaError> {
        self.format_chat(&[ChatMessage::user(user)])
    }

    /// The prompt format in use.
    pub fn prompt_format(&self) -> &PromptFormat {
        &self.format
    }

    /// The format the file gets unless one is chosen ([`PromptFormat::default_for`]).
    pub fn default_prompt_format(&self) -> &PromptFormat {
        &self.default_format
    }

    /// Formats the following conversations as `format` (`None`: the file's default).
    pub fn set_prompt_format(&mut self, format: Option<PromptFormat>) {
        self.format = format.unwrap_or_else(|| self.default_format.clone());
    }

    /// A text stream ending at `stops` and at the prompt format's own stop strings.
    pub(crate) fn text_stream(&self, stops: &[String]) -> TextStream {
        let mut all = stops.to_vec();
        all.extend(self.format.stops().iter().map(|s| s.to_string()));
        TextStream::new(&all)
    }

    /// Formats a conversation as the prompt format says, ending where the assistant's answer
    /// starts: the model's own Jinja template rendered as transformers renders it
    /// ([`crate::chat_template`]), a llama.cpp built-in template, or plain text
    /// ([`evolve_core::prompt_format::render_plain`]). A template that cannot be applied is an
    /// error naming it, never a silently different prompt.
    pub fn format_chat(&self, messages: &[ChatMessage]) -> Result<String, LlamaError> {
        let template_error = |reason: String| LlamaError::ChatTemplate {
            path: self.path.clone(),
            reason,
        };
        match &self.format {
            PromptFormat::Plain => Ok(evolve_core::prompt_format::render_plain(messages)),
            PromptFormat::Builtin(name) => self.format_chat_builtin(name, messages),
            PromptFormat::Template => {
                let template = self
                    .jinja
                    .as_ref()
                    .ok_or_else(|| template_error("the model has no chat template".into()))?
                    .as_ref()
                    .map_err(|e| template_error(format!("the model's own template: {e}")))?;
                let text = template
                    .render(messages, RenderOptions::default())
                    .map_err(|e| template_error(format!("the model's own template: {e}")))?;
                // The template prints BOS itself, and tokenising adds one when the vocabulary
                // asks: keep one, as transformers' tokenizer does.
                let bos = template.bos_token();
                Ok(match text.strip_prefix(bos) {
                    Some(rest) if !bos.is_empty() && self.model.vocab().should_add_bos() => {
                        rest.to_string()
                    }
                    _ => text,
                })
            }
        }
    }

    /// llama.cpp's built-in template `name`.
    fn format_chat_builtin(
        &self,
        name: &str,
        messages: &[ChatMessage],
    ) -> Result<String, LlamaError> {
        use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate};
        let template_error = |reason: String| LlamaError::ChatTemplate {
            path: self.path.clone(),
            reason,
        };
        let tmpl = LlamaChatTemplate::new(name).map_err(|e| template_error(e.to_string()))?;
        let msgs = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().into(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LlamaError::Decode(format!("chat message: {e}")))?;
        self.model
            .apply_chat_template(&tmpl, &msgs, true)
            .map_err(|e| template_error(format!("the '{name}' template cannot be applied ({e})")))
    }

    fn context(&self, n_tokens_needed: usize) -> Result<LlamaContext<'_>, LlamaError> {
        let n_ctx = self.n_ctx_per_sequence();
        self.new_context(n_ctx, (n_tokens_needed as u32).clamp(1, n_ctx.max(1)), 1)
    }

    /// A context with the active adapter applied; `n_ctx` cells split into one KV stream per
    /// sequence (see the batch module for why not llama.cpp's unified cache).
    pub(crate) fn new_context(
        &self,
        n_ctx: u32,
        n_batch: u32,
        n_seq: u32,
    ) -> Result<LlamaContext<'_>, LlamaError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch.min(512))
            .with_n_seq_max(n_seq)
            .with_kv_unified(false)
            .with_n_threads(self.options.n_threads)
            .with_n_threads_batch(self.options.n_threads);
        let mut ctx = self
            .model
            .new_context(backend()?, params)
            .map_err(|e| LlamaError::Context(e.to_string()))?;
        self.adapters.apply(&mut ctx)?;
        Ok(ctx)
    }

    /// Logits of the last position after evaluating `tokens` (used to compare engines and adapters).
    pub fn last_logits(&self, tokens: &[i32]) -> Result<Vec<f32>, LlamaError> {
        if tokens.is_empty() {
            return Err(LlamaError::EmptyPrompt);
        }
        let mut ctx = self.context(tokens.len())?;
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        for (i, &t) in tokens.iter().enumerate() {
            batch
                .add(LlamaToken(t), i as i32, &[0], i + 1 == tokens.len())
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
        }
        self.count(|s| {
            s.prompt_evals += 1;
            s.prompt_tokens_evaluated += tokens.len() as u64;
        });
        self.decode(&mut ctx, &mut batch)?;
        Ok(ctx.get_logits_ith(batch.n_tokens() - 1).to_vec())
    }

    /// Generates a completion of `prompt` (already formatted). `on_piece` is called once per
    /// sampled token with the text that became safe to show (possibly empty: see [`TextStream`])
    /// and returns `false` to cancel; the answer so far is then returned.
    pub fn generate(
        &self,
        prompt: &str,
        sampler_cfg: &SamplerConfig,
        mut on_piece: impl FnMut(&str) -> bool,
    ) -> Result<GenerationOutput, LlamaError> {
        let started = Instant::now();
        let prompt_tokens = self.tokenize(prompt);
        if prompt_tokens.is_empty() {
            return Err(LlamaError::EmptyPrompt);
        }
        // Policy: refuse up front rather than truncate silently or run out of KV cells mid-answer.
        self.check_fits(prompt_tokens.len(), sampler_cfg.max_tokens)?;
        let mut ctx = self.context(prompt_tokens.len())?;
        let mut sampler = build_sampler(sampler_cfg, self.model.n_vocab(), &self.eog_tokens);
        let mut batch = LlamaBatch::new(prompt_tokens.len().max(1), 1);
        for (i, &t) in prompt_tokens.iter().enumerate() {
            batch
                .add(LlamaToken(t), i as i32, &[0], i + 1 == prompt_tokens.len())
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
        }
        self.count(|s| {
            s.prompt_evals += 1;
            s.prompt_tokens_evaluated += prompt_tokens.len() as u64;
        });
        self.decode(&mut ctx, &mut batch)?;

        let vocab = self.model.vocab();
        let mut stream = self.text_stream(&sampler_cfg.stop);
        let mut out_tokens = Vec::new();
        let mut stopped = false;
        let mut pos = prompt_tokens.len() as i32;
        while out_tokens.len() < sampler_cfg.max_tokens as usize {
            let token = sampler.sample(&ctx, batch.n_tokens() - 1); // sample() also accepts the token
            if vocab.is_eog(token) {
                stopped = true;
                break;
            }
            out_tokens.push(token.0);
            self.count(|s| s.generated_tokens += 1);
            let pushed = stream.push(&vocab.token_to_piece(token, false, None));
            let keep_going = on_piece(&pushed.text); // called every token, so cancellation is immediate
            if pushed.stopped {
                stopped = true;
                break;
            }
            if !keep_going {
                break;
            }
            batch.clear();
            batch
                .add(token, pos, &[0], true)
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
            pos += 1;
            self.decode(&mut ctx, &mut batch)?;
        }
        let tail = stream.finish();
        if !tail.is_empty() {
            on_piece(&tail);
        }
        Ok(GenerationOutput {
            text: stream.text().to_string(),
            tokens: out_tokens,
            prompt_tokens: prompt_tokens.len(),
            stopped,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Reads and checks a model file before llama.cpp loads it: llama.cpp aborts the whole process
/// (not just the load) on headers and shapes it does not expect, so whatever our reader and
/// [`evolve_gguf::GgufFile::check_consistency`] refuse never reaches it.
/// Returns the header it read.
pub fn check_before_llama_cpp(path: &Path) -> Result<GgufFile, LlamaError> {
    let fail = |reason: String| LlamaError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let file = evolve_gguf::read_path(path).map_err(|e| fail(e.to_string()))?;
    file.check_consistency().map_err(fail)?;
    Ok(file)
}

/// The format `file` (at `path`) gets unless one is chosen: by its template, architecture,
/// `general.name` and file name ([`PromptFormat::default_for`]).
pub fn default_prompt_format(file: &GgufFile, path: &Path) -> PromptFormat {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let names: Vec<&str> = [file.get_str("general.name"), file_name.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    PromptFormat::default_for(
        file.get("tokenizer.chat_template").is_some(),
        file.get_str("general.architecture").unwrap_or_default(),
        &names,
    )
}

/// The file's `tokenizer.chat_template`, compiled, with the texts of its BOS and EOS tokens.
fn model_chat_template(file: &GgufFile) -> Option<Result<ChatTemplate, String>> {
    let source = file.get_str("tokenizer.chat_template")?;
    let token = |key: &str| file.token_text(key).unwrap_or_default().to_string();
    Some(ChatTemplate::new(
        source,
        &token("tokenizer.ggml.bos_token_id"),
        &token("tokenizer.ggml.eos_token_id"),
    ))
}
