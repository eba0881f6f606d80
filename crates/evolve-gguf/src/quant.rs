//! F16 and Q8_0 encode/decode.
//!
//! Q8_0 must match ggml's `quantize_row_q8_0_ref` bit for bit: llama.cpp dequantises with the
//! same formula, so any drift here would silently change what the model computes.

use crate::{GgmlType, GgufError, TensorInfo};

/// Elements per Q8_0 block (ggml `QK8_0`).
pub const Q8_0_BLOCK: usize = 32;
/// Bytes per Q8_0 block: an f16 scale then 32 signed bytes.
const Q8_0_BLOCK_BYTES: usize = 2 + Q8_0_BLOCK;

/// Quantise to Q8_0. `values.len()` must be a multiple of 32.
pub fn quantize_q8_0(values: &[f32]) -> Result<Vec<u8>, GgufError> {
    if !values.len().is_multiple_of(Q8_0_BLOCK) {
        return Err(GgufError::Invalid(format!(
            "Q8_0 needs a multiple of {Q8_0_BLOCK} values, got {}",
            values.len()
        )));
    }
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * Q8_0_BLOCK_BYTES);
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        // `round` is C's roundf (half away from zero); `as i8` cannot overflow since |x*id| <= 127.
        out.extend(block.iter().map(|&x| (x * id).round() as i8 as u8));
    }
    Ok(out)
}

/// Inverse of [`quantize_q8_0`]; a trailing partial block is ignored.
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / Q8_0_BLOCK_BYTES * Q8_0_BLOCK);
    for block in bytes.chunks_exact(Q8_0_BLOCK_BYTES) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
    }
    out
}

pub(crate) fn f32_to_f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

pub(crate) fn f32_to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decode little-endian IEEE half floats.
pub fn f16_bytes_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect()
}

/// Decode one tensor's raw bytes (as from [`crate::GgufFile::read_tensor_bytes`]) to f32.
/// Only the types this crate writes are supported; others are an error, not a guess.
pub fn tensor_to_f32(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>, GgufError> {
    let expected = info.n_bytes();
    if bytes.len() as u64 != expected {
        return Err(GgufError::Invalid(format!(
            "tensor '{}' should have {expected} bytes, got {}",
            info.name,
            bytes.len()
        )));
    }
    Ok(match info.ggml_type {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => f16_bytes_to_f32(bytes),
        GgmlType::Q8_0 => dequantize_q8_0(bytes),
        other => {
            return Err(GgufError::Invalid(format!(
                "cannot convert tensor '{}' of type {other} to f32 (supported: F32, F16, Q8_0)",
                info.name
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trip_error_is_within_half_a_step() {
        // Two blocks with different ranges, including exact extremes and tiny values.
        let values: Vec<f32> = (0..64)
            .map(|i| {
                let x = (i as f32 * 0.731).sin();
                if i < 32 { x * 3.0 } else { x * 0.01 }
            })
            .collect();
        let bytes = quantize_q8_0(&values).unwrap();
        assert_eq!(bytes.len(), 2 * 34);
        let back = dequantize_q8_0(&bytes);
        assert_eq!(back.len(), values.len());
        for (block_in, block_out) in values.chunks(32).zip(back.chunks(32)) {
            let amax = block_in.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let step = amax / 127.0;
            // Half a step from rounding, plus up to 127 * (f16 rounding of the scale, 2^-11 relative).
            let bound = step / 2.0 + step * 127.0 / 2048.0 + 1e-7;
            for (a, b) in block_in.iter().zip(block_out) {
                assert!((a - b).abs() <= bound, "{a} vs {b}, bound {bound}");
            }
        }
    }

    #[test]
    fn q8_0_zero_block_stays_zero() {
        let bytes = quantize_q8_0(&[0.0; 32]).unwrap();
        assert!(bytes.iter().all(|&b| b == 0));
        assert!(dequantize_q8_0(&bytes).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn q8_0_block_matches_hand_computed_bytes() {
        // amax = 127 -> d = 1.0 (f16 0x3C00), so q = round(x) with half away from zero.
        let mut block = [0.0f32; 32];
        block[0] = 127.0;
        block[1] = -127.0;
        block[2] = 2.5;
        block[3] = -2.5;
        block[4] = 0.49;
        block[5] = 1.0;
        let bytes = quantize_q8_0(&block).unwrap();
        let mut expected = vec![0x00, 0x3C, 127, (-127i8) as u8, 3, (-3i8) as u8, 0, 1];
        expected.resize(34, 0);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn q8_0_rejects_partial_blocks() {
        let err = quantize_q8_0(&[1.0; 33]).unwrap_err();
        assert!(err.to_string().contains("multiple of 32"), "{err}");
    }

    #[test]
    fn f16_round_trip_of_representable_values() {
        let values = [0.0, 1.0, -2.5, 0.000_061_035_156, 65504.0];
        assert_eq!(f16_bytes_to_f32(&f32_to_f16_bytes(&values)), values);
    }
}
