//! One loaded model and the single-sequence decode loop used for chat and checks.
//! (Batched multi-sequence sampling builds on the same pieces.)

use crate::LlamaError;
use crate::stream::TextStream;
use evolve_core::SamplerConfig;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
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
    /// Context length in tokens; 0 uses the model's training context.
    pub n_ctx: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Self {
            n_threads: cores as i32,
            n_gpu_layers: 0,
            n_ctx: 0,
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

pub struct LlamaEngine {
    model: LlamaModel,
    path: PathBuf,
    options: EngineOptions,
}

impl LlamaEngine {
    pub fn load(path: &Path, options: EngineOptions) -> Result<Self, LlamaError> {
        if !path.is_file() {
            return Err(LlamaError::NotFound(path.to_path_buf()));
        }
        let params = LlamaModelParams::default().with_n_gpu_layers(options.n_gpu_layers);
        let model = LlamaModel::load_from_file(backend()?, path, &params).map_err(|e| {
            LlamaError::Load {
                path: path.to_path_buf(),
                reason: format!("{e} (run `evolve models info` on the file for details)"),
            }
        })?;
        Ok(Self {
            model,
            path: path.to_path_buf(),
            options,
        })
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
        use llama_cpp_2::model::LlamaChatMessage;
        let tmpl = self
            .model
            .chat_template(None)
            .map_err(|e| LlamaError::Load {
                path: self.path.clone(),
                reason: format!("chat template: {e}"),
            })?;
        let msg = LlamaChatMessage::new("user".into(), user.into())
            .map_err(|e| LlamaError::Decode(format!("chat message: {e}")))?;
        self.model
            .apply_chat_template(&tmpl, &[msg], true)
            .map_err(|e| LlamaError::Decode(format!("cannot apply the model's chat template: {e}")))
    }

    fn context(&self, n_tokens_needed: usize) -> Result<LlamaContext<'_>, LlamaError> {
        let n_ctx = if self.options.n_ctx == 0 {
            self.model.n_ctx_train()
        } else {
            self.options.n_ctx
        };
        let n_batch = (n_tokens_needed as u32).clamp(1, n_ctx.max(1));
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_threads(self.options.n_threads)
            .with_n_threads_batch(self.options.n_threads);
        self.model
            .new_context(backend()?, params)
            .map_err(|e| LlamaError::Context(e.to_string()))
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
        ctx.decode(&mut batch)
            .map_err(|e| LlamaError::Decode(e.to_string()))?;
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
        let n_ctx = if self.options.n_ctx == 0 {
            self.model.n_ctx_train()
        } else {
            self.options.n_ctx
        };
        // Policy: refuse up front rather than truncate silently or run out of KV cells mid-answer.
        if prompt_tokens.len() + sampler_cfg.max_tokens as usize > n_ctx as usize {
            return Err(LlamaError::ContextOverflow {
                prompt_tokens: prompt_tokens.len(),
                max_tokens: sampler_cfg.max_tokens,
                n_ctx,
            });
        }
        let mut ctx = self.context(prompt_tokens.len())?;
        let mut sampler = build_sampler(sampler_cfg, self.model.n_vocab());
        let mut batch = LlamaBatch::new(prompt_tokens.len().max(1), 1);
        for (i, &t) in prompt_tokens.iter().enumerate() {
            batch
                .add(LlamaToken(t), i as i32, &[0], i + 1 == prompt_tokens.len())
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| LlamaError::Decode(e.to_string()))?;

        let vocab = self.model.vocab();
        let mut stream = TextStream::new(&sampler_cfg.stop);
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
            ctx.decode(&mut batch)
                .map_err(|e| LlamaError::Decode(e.to_string()))?;
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

/// The sampler chain in llama.cpp's usual order: penalties, top-k, top-p, min-p, temperature, draw.
fn build_sampler(cfg: &SamplerConfig, n_vocab: i32) -> LlamaSampler {
    if cfg.is_greedy() {
        return LlamaSampler::greedy();
    }
    let mut chain = Vec::new();
    if cfg.repeat_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            64,
            cfg.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if cfg.top_k > 0 {
        chain.push(LlamaSampler::top_k(cfg.top_k));
    }
    chain.push(LlamaSampler::top_p(cfg.top_p, 1));
    chain.push(LlamaSampler::min_p(cfg.min_p, 1));
    chain.push(LlamaSampler::temp(cfg.temperature));
    chain.push(LlamaSampler::dist(cfg.seed));
    LlamaSampler::chain_simple(chain)
}
