//! Training on a bf16 base (halving the base's memory) must follow the f32 run closely. The
//! adapters, their optimizer state, logits and losses stay f32 (`LlamaModel::master_dtype`):
//! bf16 keeps 8 mantissa bits, which would round away most AdamW updates of a bf16 adapter.
//! Measured on the tiny model over 8 steps: loss Δ ≤ 5e-3, logps/chosen rel. Δ ≤ 8e-4,
//! grad-norm rel. Δ ≤ 9e-3; asserted with ~4-6x margin.

mod common;

use candle_core::{DType, Device};
use common::{random_pairs, tiny_llama};
use evolve_gguf::tiny::WeightType;
use evolve_train::OptimConfig;
use evolve_train::{LlamaModel, Lora, LoraConfig, StepMetrics, TrainConfig, Trainer};

fn run(dtype: DType, path: &std::path::Path) -> (Vec<StepMetrics>, DType) {
    let model = LlamaModel::load(path, &Device::Cpu, dtype).unwrap();
    let lora = Lora::new(
        model.config(),
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..LoraConfig::default()
        },
        model.master_dtype(),
        &Device::Cpu,
    )
    .unwrap();
    let cfg = TrainConfig {
        beta: 0.5,
        optim: OptimConfig {
            lr: 1e-2,
            warmup_steps: 0,
            batch_size: 4,
            grad_accum: 1,
            epochs: 4,
            ..OptimConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&model, lora, cfg).unwrap();
    let mut steps = vec![];
    trainer
        .train(&random_pairs(8, 5), |m| {
            steps.push(m.clone());
            true
        })
        .unwrap();
    let adapter_dtype = trainer.lora().trainable_vars()[0].dtype();
    (steps, adapter_dtype)
}

#[test]
fn bf16_base_training_tracks_the_f32_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_llama(dir.path(), WeightType::F32);
    let (f32_steps, _) = run(DType::F32, &path);
    let (bf16_steps, adapter_dtype) = run(DType::BF16, &path);
    assert_eq!(adapter_dtype, DType::F32);
    assert_eq!(f32_steps.len(), 8);
    for (a, b) in f32_steps.iter().zip(&bf16_steps) {
        let d_loss = (a.loss - b.loss).abs();
        let d_margin = (a.dpo.rewards_margins - b.dpo.rewards_margins).abs();
        let d_logps = (a.dpo.logps_chosen - b.dpo.logps_chosen).abs() / a.dpo.logps_chosen.abs();
        let d_norm = (a.grad_norm - b.grad_norm).abs() / a.grad_norm;
        eprintln!(
            "step {}: loss f32 {:.4} bf16 {:.4} (Δ {d_loss:.1e}); margin Δ {d_margin:.1e}; logps_chosen rel Δ {d_logps:.1e}; grad_norm rel Δ {d_norm:.1e}",
            a.step, a.loss, b.loss
        );
        assert!(
            d_loss < 0.02,
            "step {}: loss {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
        assert!(
            d_logps < 5e-3,
            "step {}: logps_chosen rel. Δ {d_logps}",
            a.step
        );
        assert!(d_norm < 0.05, "step {}: grad norm rel. Δ {d_norm}", a.step);
    }
    // Both runs learn the preferences.
    let last = bf16_steps.last().unwrap();
    assert!(
        last.loss < bf16_steps[0].loss - 0.1,
        "{} -> {}",
        bf16_steps[0].loss,
        last.loss
    );
}
