//! Hyper-parameters and tensor shapes checked against each other before a native engine sees a
//! file: llama.cpp asserts (and aborts the whole process) on values a reader accepts, such as
//! zero layers, head counts that do not divide the width, or an embedding whose shape disagrees
//! with the vocabulary. Checked for the architectures EVOLVE runs (Llama family and Qwen2);
//! other architectures are left to llama.cpp.

use crate::{GgufFile, Value};

/// Architectures whose shapes are checked.
const CHECKED: &[&str] = &["llama", "qwen2", "qwen3"];

/// A sanity bound on every hyper-parameter (far beyond any real model).
const MAX_DIM: u64 = 1 << 24;

impl GgufFile {
    /// Refuses a file llama.cpp would abort on, naming the first problem in one line: a
    /// vocabulary with a repeated token (any architecture), or a Llama-family file whose
    /// hyper-parameters and tensor shapes disagree. Other architectures' shapes pass unchecked.
    pub fn check_consistency(&self) -> Result<(), String> {
        self.check_vocabulary()?;
        let Some(arch) = self.architecture().filter(|a| CHECKED.contains(a)) else {
            return Ok(());
        };
        let key = |k: &str| format!("{arch}.{k}");
        let need = |k: &str| -> Result<u64, String> {
            let v = self
                .get_u64(&key(k))
                .ok_or_else(|| format!("{} is missing", key(k)))?;
            if v == 0 || v > MAX_DIM {
                return Err(format!(
                    "{} is {v}: it must be between 1 and {MAX_DIM}",
                    key(k)
                ));
            }
            Ok(v)
        };
        let n_layer = need("block_count")?;
        let n_embd = need("embedding_length")?;
        let n_head = need("attention.head_count")?;
        let n_head_kv = match self.get_u64(&key("attention.head_count_kv")) {
            None => n_head,
            Some(_) => need("attention.head_count_kv")?,
        };
        need("context_length")?;
        let n_ff = need("feed_forward_length")?;
        if n_head % n_head_kv != 0 {
            return Err(format!(
                "{} ({n_head}) is not a multiple of {} ({n_head_kv})",
                key("attention.head_count"),
                key("attention.head_count_kv")
            ));
        }
        let head_dim = match self.get_u64(&key("attention.key_length")) {
            Some(k) if k > 0 && k <= MAX_DIM => k,
            Some(k) => return Err(format!("{} is {k}", key("attention.key_length"))),
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(format!(
                    "{} ({n_embd}) is not a multiple of {} ({n_head})",
                    key("embedding_length"),
                    key("attention.head_count")
                ));
            }
        };
        let vocab = match self.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(tokens) if !tokens.is_empty() => tokens.len() as u64,
            _ => return Err("tokenizer.ggml.tokens is missing or empty".into()),
        };
        let expect = |name: &str, dims: &[u64]| -> Result<(), String> {
            let t = self
                .tensor(name)
                .ok_or_else(|| format!("tensor {name} is missing"))?;
            if t.dims != dims {
                return Err(format!(
                    "tensor {name} has shape {:?}, the hyper-parameters say {dims:?}",
                    t.dims
                ));
            }
            Ok(())
        };
        expect("token_embd.weight", &[n_embd, vocab])?;
        if self.tensor("output.weight").is_some() {
            expect("output.weight", &[n_embd, vocab])?;
        }
        let (q, kv) = (n_head * head_dim, n_head_kv * head_dim);
        for i in 0..n_layer {
            let b = |t: &str| format!("blk.{i}.{t}.weight");
            expect(&b("attn_q"), &[n_embd, q])?;
            expect(&b("attn_k"), &[n_embd, kv])?;
            expect(&b("attn_v"), &[n_embd, kv])?;
            expect(&b("attn_output"), &[q, n_embd])?;
            expect(&b("ffn_gate"), &[n_embd, n_ff])?;
            expect(&b("ffn_up"), &[n_embd, n_ff])?;
            expect(&b("ffn_down"), &[n_ff, n_embd])?;
        }
        if let Some(extra) = self.tensors.iter().find(|t| {
            t.name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= n_layer)
        }) {
            return Err(format!(
                "tensor {} belongs to a layer beyond {} ({n_layer})",
                extra.name,
                key("block_count")
            ));
        }
        Ok(())
    }

    /// llama.cpp maps token strings to ids and asserts that no two ids share a string. It reads
    /// each token as a C string (cut at the first NUL) and names an empty one `[EMPTY_<id>]`.
    fn check_vocabulary(&self) -> Result<(), String> {
        let Some(tokens) = self.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) else {
            return Ok(());
        };
        let mut seen = std::collections::HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            let text = match token {
                Value::String(s) => match s.split('\0').next().unwrap_or("") {
                    "" => format!("[EMPTY_{id}]"),
                    c_string => c_string.to_string(),
                },
                _ => return Err("tokenizer.ggml.tokens is not an array of strings".into()),
            };
            if let Some(first) = seen.insert(text, id) {
                return Err(format!(
                    "tokenizer.ggml.tokens repeats token {first} at {id}: every token must be unique"
                ));
            }
        }
        Ok(())
    }
}
