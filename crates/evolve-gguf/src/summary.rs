//! The metadata summary behind `evolve models info` (text for people, JSON via serde).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::GgufFile;

/// What a user wants to know about a model file before loading it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub path: String,
    pub file_size: u64,
    pub gguf_version: u32,
    /// `general.architecture`, or "unknown" when the key is missing.
    pub architecture: String,
    pub name: Option<String>,
    /// Sum of all tensor element counts.
    pub parameter_count: u64,
    pub context_length: Option<u64>,
    pub embedding_length: Option<u64>,
    pub block_count: Option<u64>,
    pub feed_forward_length: Option<u64>,
    pub head_count: Option<u64>,
    pub head_count_kv: Option<u64>,
    /// `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<u64>,
    pub tokenizer_model: Option<String>,
    pub chat_template: Option<String>,
    /// `general.file_type` in llama.cpp's naming (e.g. "Q4_K_M").
    pub file_type: Option<String>,
    /// ggml type name -> number of tensors of that type.
    pub tensor_types: BTreeMap<String, u64>,
    /// `file_type` if present, else the type holding most parameters among 2-D tensors
    /// (1-D norms are F32 in every variant and would otherwise dominate small models' counts).
    pub quantization: String,
    pub tensor_count: usize,
}

impl GgufFile {
    pub fn summary(&self) -> ModelSummary {
        let mut tensor_types = BTreeMap::new();
        let mut params_2d: BTreeMap<&str, u64> = BTreeMap::new();
        for t in &self.tensors {
            *tensor_types
                .entry(t.ggml_type.name().to_string())
                .or_insert(0) += 1;
            if t.dims.len() >= 2 {
                *params_2d.entry(t.ggml_type.name()).or_insert(0) += t.n_elements();
            }
        }
        let file_type = self.get_u64("general.file_type").map(file_type_name);
        let dominant = params_2d
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name)))
            .map(|(name, _)| name.to_string());
        let quantization = file_type
            .clone()
            .or(dominant)
            .unwrap_or_else(|| "unknown".to_string());
        let vocab_size = self.arch_u64("vocab_size").or_else(|| {
            self.get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(|a| a.len() as u64)
        });
        ModelSummary {
            path: self.path.display().to_string(),
            file_size: self.file_size,
            gguf_version: self.version,
            architecture: self.architecture().unwrap_or("unknown").to_string(),
            name: self.get_str("general.name").map(str::to_string),
            parameter_count: self
                .tensors
                .iter()
                .map(|t| t.n_elements())
                .fold(0, u64::saturating_add),
            context_length: self.arch_u64("context_length"),
            embedding_length: self.arch_u64("embedding_length"),
            block_count: self.arch_u64("block_count"),
            feed_forward_length: self.arch_u64("feed_forward_length"),
            head_count: self.arch_u64("attention.head_count"),
            head_count_kv: self.arch_u64("attention.head_count_kv"),
            vocab_size,
            tokenizer_model: self.get_str("tokenizer.ggml.model").map(str::to_string),
            chat_template: self.get_str("tokenizer.chat_template").map(str::to_string),
            file_type,
            tensor_types,
            quantization,
            tensor_count: self.tensors.len(),
        }
    }
}

/// llama.cpp's `llama_ftype` names (llama_model_ftype_name). Bit 10 marks a guessed type.
fn file_type_name(ftype: u64) -> String {
    const GUESSED: u64 = 1024;
    let name = match ftype & !GUESSED {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        other => return format!("unknown file type {other}"),
    };
    if ftype & GUESSED != 0 {
        format!("{name} (guessed)")
    } else {
        name.to_string()
    }
}

impl ModelSummary {
    /// Aligned `key: value` lines for the terminal.
    pub fn to_text(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
        let tensor_types = self
            .tensor_types
            .iter()
            .map(|(name, n)| format!("{name} x{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: Vec<(&str, String)> = vec![
            ("path", self.path.clone()),
            ("file size", human_size(self.file_size)),
            ("gguf version", self.gguf_version.to_string()),
            ("architecture", self.architecture.clone()),
            ("name", self.name.clone().unwrap_or_else(|| "none".into())),
            ("parameters", human_count(self.parameter_count)),
            ("quantization", self.quantization.clone()),
            ("context length", opt(self.context_length)),
            ("embedding length", opt(self.embedding_length)),
            ("layers", opt(self.block_count)),
            ("feed-forward length", opt(self.feed_forward_length)),
            ("attention heads", opt(self.head_count)),
            ("kv heads", opt(self.head_count_kv)),
            ("vocab size", opt(self.vocab_size)),
            (
                "tokenizer",
                self.tokenizer_model
                    .clone()
                    .unwrap_or_else(|| "none".into()),
            ),
            (
                "chat template",
                template_preview(self.chat_template.as_deref()),
            ),
            ("tensors", format!("{} ({tensor_types})", self.tensor_count)),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        rows.iter()
            .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
            .collect()
    }
}

/// "1.23 M (1234567)": the scale for reading, the exact number for comparing.
fn human_count(n: u64) -> String {
    let (scale, unit) = match n {
        0..1_000 => return n.to_string(),
        1_000..1_000_000 => (1e3, "K"),
        1_000_000..1_000_000_000 => (1e6, "M"),
        _ => (1e9, "B"),
    };
    format!("{:.2} {unit} ({n})", n as f64 / scale)
}

fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    let scaled = if b < KIB * KIB {
        format!("{:.2} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.2} MiB", b / (KIB * KIB))
    } else {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    };
    format!("{scaled} ({bytes} bytes)")
}

/// Templates are long Jinja; show only the first line and how long it is.
fn template_preview(template: Option<&str>) -> String {
    match template {
        None => "none".to_string(),
        Some(t) => {
            let lines = t.lines().count().max(1);
            let first = t.lines().next().unwrap_or("");
            let first = if first.chars().count() > 60 {
                format!("{}...", first.chars().take(60).collect::<String>())
            } else {
                first.to_string()
            };
            format!(
                "{first} ({lines} line{})",
                if lines == 1 { "" } else { "s" }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_type_names_follow_llama_cpp() {
        assert_eq!(file_type_name(0), "F32");
        assert_eq!(file_type_name(7), "Q8_0");
        assert_eq!(file_type_name(15), "Q4_K_M");
        assert_eq!(file_type_name(1024 + 15), "Q4_K_M (guessed)");
        assert_eq!(file_type_name(99), "unknown file type 99");
    }

    #[test]
    fn human_formats() {
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(1_234_567), "1.23 M (1234567)");
        assert_eq!(human_size(2048), "2.00 KiB (2048 bytes)");
        assert_eq!(human_size(3 * 1024 * 1024), "3.00 MiB (3145728 bytes)");
        assert_eq!(template_preview(Some("a\nb\nc")), "a (3 lines)");
        assert_eq!(template_preview(None), "none");
    }
}
