//! A base kept quantized in memory must train like its dequantized copy: same logits, same
//! adapter gradients, at a fraction of the memory.

mod common;

use candle_core::{DType, Device};
use common::{candle_last, random_pairs, rel_error, tiny_llama};
use evolve_gguf::tiny::WeightType;
use evolve_train::OptimConfig;
use evolve_train::{LlamaModel, StepMetrics, TrainConfig, Trainer};

fn train(model: &LlamaModel) -> Vec<StepMetrics> {
    let lora = common::f32_lora(model, 4, 8.0);
    let cfg = TrainConfig {
        beta: 0.5,
        optim: OptimConfig {
            lr: 1e-2,
            warmup_steps: 0,
            batch_size: 4,
            grad_accum: 1,
            epochs: 2,
            ..OptimConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, lora, cfg).unwrap();
    let mut steps = vec![];
    trainer
        .train(&random_pairs(8, 5), |m| {
            steps.push(m.clone());
            true
        })
        .unwrap();
    steps
}

#[test]
fn a_q8_0_base_kept_quantized_matches_the_dequantized_base_in_less_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_llama(dir.path(), WeightType::Q8_0);
    let dense = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    let quant = LlamaModel::load_quantized(&path, &Device::Cpu, DType::F32).unwrap();

    // Memory: the block matrices, the LM head and the (untied) embedding, read by rows, shrink
    // from 4 bytes to 34/32 bytes per weight.
    let (dense_bytes, quant_bytes) = (dense.weight_bytes(), quant.weight_bytes());
    eprintln!(
        "tiny q8_0 model weights: dequantized f32 {dense_bytes} B, kept quantized {quant_bytes} B"
    );
    let cfg = dense.config();
    let quantized_weights = cfg.n_layer
        * (2 * cfg.n_embd * cfg.n_embd + 2 * cfg.kv_dim() * cfg.n_embd + 3 * cfg.n_ff * cfg.n_embd)
        + 2 * cfg.n_vocab * cfg.n_embd;
    eprintln!(
        "quantized matrices: f32 {} B, q8_0 {} B",
        quantized_weights * 4,
        quantized_weights / 32 * 34
    );
    assert_eq!(
        dense_bytes - quant_bytes,
        quantized_weights * 4 - quantized_weights / 32 * 34
    );

    // The same dequantized values either way: logits agree to f32 rounding.
    for ids in [vec![1, 40, 41, 42], (1..40).collect()] {
        let err = rel_error(
            &candle_last(&quant, None, &ids),
            &candle_last(&dense, None, &ids),
        );
        eprintln!(
            "{} tokens: quantized vs dequantized logits rel. error {err:.1e}",
            ids.len()
        );
        assert!(err < 1e-5, "{err}");
    }

    // LoRA training on it follows the dequantized run step for step.
    let (a, b) = (train(&dense), train(&quant));
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        assert!(
            (x.loss - y.loss).abs() < 1e-4,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
        assert!((x.grad_norm - y.grad_norm).abs() / x.grad_norm < 1e-3);
    }
    assert!(b.last().unwrap().loss < b[0].loss, "it learns");

    // Made trainable (full fine-tuning), the quantized matrices are dequantized first.
    let full = quant.trainable().unwrap();
    assert_eq!(full.weight_bytes(), dense_bytes);
    assert_eq!(
        candle_last(&full, None, &[1, 40, 41, 42]),
        candle_last(&dense, None, &[1, 40, 41, 42])
    );
}

#[test]
fn f32_files_stay_dense_when_loaded_quantized() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_llama(dir.path(), WeightType::F32);
    let a = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    let b = LlamaModel::load_quantized(&path, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(a.weight_bytes(), b.weight_bytes());
}
