use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LlamaError {
    #[error("cannot start llama.cpp: {0}")]
    Backend(String),
    #[error("model file not found: {}", .0.display())]
    NotFound(PathBuf),
    #[error("llama.cpp could not load {}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("llama.cpp could not create a context: {0}")]
    Context(String),
    #[error(
        "prompt of {prompt_tokens} tokens plus {max_tokens} new tokens exceeds the context of {n_ctx} tokens"
    )]
    ContextOverflow {
        prompt_tokens: usize,
        max_tokens: u32,
        n_ctx: u32,
    },
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),
    #[error(
        "cannot format a chat for {}: {reason}; choose another prompt format: `evolve models set-format MODEL plain|template|NAME` (NAME a llama.cpp built-in template such as chatml, llama3, gemma), or `--prompt-format` for one chat",
        path.display()
    )]
    ChatTemplate { path: PathBuf, reason: String },
    #[error("empty prompt: nothing to condition the model on")]
    EmptyPrompt,
    /// A chain's request asked for `n` answers; a chain step is one.
    #[error("a chain step is one answer, not n = {0}")]
    ChainStep(usize),
    /// A batch request that cannot run, with its index, so callers can name the prompt.
    #[error("request {request}: {source}")]
    Request {
        request: usize,
        source: Box<LlamaError>,
    },
    #[error("LoRA adapter {} does not fit the model: {reason}", path.display())]
    AdapterMismatch { path: PathBuf, reason: String },
}
