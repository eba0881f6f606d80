//! Adapter export: GGUF LoRA for llama.cpp / Ollama, PEFT for transformers.

mod gguf_lora;
mod peft;

pub use gguf_lora::export_gguf_lora;
pub use peft::{
    PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, export_peft, permute_hf_to_gguf, unpermute_gguf_to_hf,
};
