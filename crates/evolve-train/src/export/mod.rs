//! Export: GGUF LoRA for llama.cpp / Ollama, PEFT for transformers, and whole models (trained
//! from scratch or with a LoRA merged in) as GGUF.

mod adapter;
mod gguf_lora;
mod gguf_model;
mod peft;
mod phi3;

pub use adapter::AdapterFiles;
pub use gguf_lora::export_gguf_lora;
pub use gguf_model::{
    TokenizerMetadata, WeightType, export_gguf_merged, export_gguf_merged_into, export_gguf_model,
};
pub use peft::{
    PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, export_peft, permute_hf_to_gguf, unpermute_gguf_to_hf,
};
