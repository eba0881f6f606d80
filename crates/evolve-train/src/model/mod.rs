//! A differentiable Llama/Qwen2/Qwen3/Gemma 3/Phi-3 forward pass over the dequantized weights of
//! a GGUF file, numerically matching llama.cpp's graph for the same file: `llama.rs` holds the
//! model and its forward pass, `block.rs` one block's; `config.rs` reads the hyperparameters,
//! `load.rs` builds the model from a file's weights (or random ones), `weights.rs` gives them
//! back for export.

mod block;
pub(crate) mod config;
mod llama;
mod load;
mod weights;

pub use llama::LlamaModel;
#[cfg(test)]
pub(crate) use load::tiny_model_f64;
pub use weights::WeightSource;
