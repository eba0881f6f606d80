//! Can this file be trained here? Answered from the header alone, in milliseconds, before a run
//! samples anything: otherwise an unsupported tokenizer or tensor type surfaces only at the
//! first training step, after a whole round of sampling.

use crate::{LlamaConfig, Result, TrainError, tokenizer_from_gguf};
use evolve_gguf::{GgmlType, GgufFile};
use std::collections::BTreeSet;

/// The tensor types candle reads (and dequantizes) from a GGUF file.
const TRAINABLE_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

/// Checks the architecture and hyper-parameters, every tensor's type and the tokenizer; the
/// error names what is unsupported.
pub fn check_trainable(file: &GgufFile) -> Result<()> {
    LlamaConfig::from_gguf(file)?;
    let unsupported: BTreeSet<&str> = file
        .tensors
        .iter()
        .filter(|t| !TRAINABLE_TYPES.contains(&t.ggml_type))
        .map(|t| t.ggml_type.name())
        .collect();
    if !unsupported.is_empty() {
        let names: Vec<&str> = unsupported.into_iter().collect();
        return Err(TrainError::Config(format!(
            "tensor type {} cannot be trained (supported: F32, F16, BF16, Q4_0…Q8_0 and the \
             K-quants Q2_K…Q6_K): use a Q4_K_M, Q5_K_M, Q8_0 or F16 file of this model",
            names.join(", ")
        )));
    }
    tokenizer_from_gguf(file)?;
    Ok(())
}
