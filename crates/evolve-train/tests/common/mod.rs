//! Shared helpers for the integration tests: tiny models on disk and error measures.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use evolve_core::rng::SplitMix64;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_train::export::export_gguf_lora;
use evolve_train::{LlamaModel, Lora, LoraConfig, OptimConfig, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

pub fn tiny_llama(dir: &Path, weight_type: WeightType) -> PathBuf {
    let path = dir.join(format!("tiny-{weight_type}.gguf"));
    write_tiny_llama(&path, &TinyLlamaConfig::default(), weight_type).unwrap();
    path
}

/// The tiny f32 Llama loaded in candle on the CPU.
pub fn tiny_f32_model(dir: &Path) -> evolve_train::LlamaModel {
    let path = tiny_llama(dir, WeightType::F32);
    evolve_train::LlamaModel::load(&path, &candle_core::Device::Cpu, candle_core::DType::F32)
        .unwrap()
}

/// A fresh f32 LoRA on the CPU with the default targets.
pub fn f32_lora(model: &evolve_train::LlamaModel, rank: usize, alpha: f64) -> evolve_train::Lora {
    let cfg = evolve_train::LoraConfig {
        rank,
        alpha,
        ..evolve_train::LoraConfig::default()
    };
    evolve_train::Lora::new(
        model.config(),
        cfg,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

/// The tiny Llama rewritten as a `qwen2` model: same weights, `qwen2.*` keys, and random
/// q/k/v biases (llama.cpp requires them for qwen2). llama.cpp runs it with NEOX RoPE.
pub fn tiny_qwen2(dir: &Path) -> PathBuf {
    let src = tiny_llama(dir, WeightType::F32);
    let path = dir.join("tiny-qwen2.gguf");
    evolve_gguf::tiny::rewrite_as_qwen2(&src, &path, 42).unwrap();
    path
}

/// `max |a − b|` of two f32 tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `‖a − b‖₂ / ‖b‖₂`.
pub fn rel_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

/// `n` pairs of random token sequences (half direct, half refinement): nothing to learn but
/// the preferences themselves, so they test that DPO can fit them.
pub fn random_pairs(n: usize, seed: u64) -> Vec<evolve_train::loss::PreferencePair> {
    use evolve_core::PairKind;
    let mut rng = SplitMix64::new(seed);
    let mut seq = |len: usize| -> Vec<u32> {
        (0..len)
            .map(|_| 3 + (rng.next_u64() % 350) as u32)
            .collect()
    };
    (0..n)
        .map(|i| {
            let mut prompt = vec![1];
            prompt.extend(seq(3 + i % 3));
            let kind = if i % 2 == 0 {
                PairKind::Direct
            } else {
                PairKind::Refine
            };
            let (chosen, rejected) = (seq(3 + i % 4), seq(4 + i % 2));
            evolve_train::loss::PreferencePair::new(kind, prompt, chosen, rejected)
        })
        .collect()
}

/// llama.cpp run directly (not through `LlamaEngine`) with an exact-f32 attention path: f32
/// KV cache and flash attention off. The defaults (f16 cache; flash attention, which works in
/// f16 on CPU even with an f32 cache) cost ~2-3e-4 relative error on the logits; with this
/// setting candle and llama.cpp agree to ~1e-7.
pub mod llama_cpp {
    use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
    use llama_cpp_2::token::LlamaToken;
    use std::num::NonZeroU32;
    use std::path::Path;

    pub fn load(path: &Path) -> LlamaModel {
        LlamaModel::load_from_file(
            evolve_llama::backend().unwrap(),
            path,
            &LlamaModelParams::default(),
        )
        .unwrap()
    }

    /// Last-position logits with an optional adapter at a scale.
    pub fn last_logits(
        model: &LlamaModel,
        adapter: Option<(&mut LlamaLoraAdapter, f32)>,
        tokens: &[i32],
    ) -> Vec<f32> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(256))
            .with_n_batch(tokens.len() as u32)
            .with_n_ubatch(tokens.len() as u32)
            .with_n_threads(2)
            .with_n_threads_batch(2)
            .with_type_k(KvCacheType::F32)
            .with_type_v(KvCacheType::F32)
            .with_flash_attention_policy(0 as _); // LLAMA_FLASH_ATTN_TYPE_DISABLED
        let mut ctx = model
            .new_context(evolve_llama::backend().unwrap(), params)
            .unwrap();
        if let Some((adapter, scale)) = adapter {
            ctx.lora_adapter_set(adapter, scale).unwrap();
        }
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        for (i, &t) in tokens.iter().enumerate() {
            batch
                .add(LlamaToken(t), i as i32, &[0], i + 1 == tokens.len())
                .unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        ctx.get_logits_ith(batch.n_tokens() - 1).to_vec()
    }
}

/// A tiny random Qwen3: no biases, RMS norms on every query and key head (random weights, so a
/// misplaced norm shows), and a head size (32) that is not the width over the heads (64 / 4).
pub fn tiny_qwen3(dir: &Path) -> PathBuf {
    let vocab_from = tiny_llama(dir, WeightType::F32);
    let path = dir.join("tiny-qwen3.gguf");
    evolve_train::tiny::write_tiny_qwen3(&vocab_from, &path).unwrap();
    path
}

/// A tiny random Gemma 3: scaled embedding, post-norms, GeGLU, q/k head norms, and a sliding
/// window of 4 on even layers with its own RoPE base beside globally attending, position-scaled
/// odd layers (every norm random).
pub fn tiny_gemma3(dir: &Path) -> PathBuf {
    let vocab_from = tiny_llama(dir, WeightType::F32);
    let path = dir.join("tiny-gemma3.gguf");
    evolve_train::tiny::write_tiny_gemma3(&vocab_from, &path).unwrap();
    path
}

/// A tiny random Phi-3: fused q/k/v and gate/up, RoPE over 12 of 16 head dimensions, LongRoPE
/// long/short factors and attention factor (the long set in use).
pub fn tiny_phi3(dir: &Path) -> PathBuf {
    let vocab_from = tiny_llama(dir, WeightType::F32);
    let path = dir.join("tiny-phi3.gguf");
    evolve_train::tiny::write_tiny_phi3(&vocab_from, &path).unwrap();
    path
}

/// A few real training steps, so the adapter is the product of the loop and clearly non-zero.
pub fn trained_adapter(model: &LlamaModel, lora_cfg: LoraConfig) -> Lora {
    let lora = Lora::new(model.config(), lora_cfg, DType::F32, &Device::Cpu).unwrap();
    let cfg = TrainConfig {
        beta: 0.5,
        optim: OptimConfig {
            lr: 2e-2,
            warmup_steps: 0,
            batch_size: 4,
            grad_accum: 1,
            epochs: 2,
            ..OptimConfig::default()
        },
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(model, lora, cfg).unwrap();
    let outcome = trainer.train(&random_pairs(8, 11), |_| true).unwrap();
    assert_eq!(outcome.steps, 4);
    trainer.into_lora()
}

pub fn candle_last(model: &LlamaModel, lora: Option<&Lora>, ids: &[i32]) -> Vec<f32> {
    let ids32: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let x = Tensor::new(ids32.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward_with(&x, lora).unwrap();
    logits
        .get(0)
        .unwrap()
        .get(ids.len() - 1)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Trains an adapter on `base_path` in candle, exports it as GGUF LoRA and checks that llama.cpp
/// (on `llama_cpp_path`, else the same file) applies it exactly as candle does.
pub fn assert_llama_cpp_applies_the_adapter_on(
    base_path: &Path,
    llama_cpp_path: Option<&Path>,
    lora_cfg: LoraConfig,
) {
    let model = LlamaModel::load(base_path, &Device::Cpu, DType::F32).unwrap();
    let lora = trained_adapter(&model, lora_cfg);
    // Beside the file llama.cpp loads (a temporary one when the base is a shared model).
    let adapter_path = llama_cpp_path
        .unwrap_or(base_path)
        .with_extension("lora.gguf");
    export_gguf_lora(&lora, model.config(), &adapter_path).unwrap();

    let mut llama = llama_cpp::load(llama_cpp_path.unwrap_or(base_path));
    let mut adapter = llama.lora_adapter_init(&adapter_path).unwrap();
    for ids in [
        vec![1, 40, 41, 42, 43],
        (0..30).map(|i| 1 + (i * 53 % 350)).collect::<Vec<i32>>(),
    ] {
        let base = candle_last(&model, None, &ids);
        let adapted = candle_last(&model, Some(&lora), &ids);
        let effect = rel_error(&adapted, &base);
        let with = llama_cpp::last_logits(&llama, Some((&mut adapter, 1.0)), &ids);
        let err = rel_error(&with, &adapted);
        let off = rel_error(
            &llama_cpp::last_logits(&llama, Some((&mut adapter, 0.0)), &ids),
            &base,
        );
        let removed = rel_error(&llama_cpp::last_logits(&llama, None, &ids), &base);
        eprintln!(
            "{}: adapter moves logits by {effect:.2e}; llama.cpp vs candle {err:.2e}; scale 0 {off:.2e}; removed {removed:.2e}",
            base_path.file_name().unwrap().to_string_lossy()
        );
        assert!(effect > 1e-2, "the trained adapter must matter: {effect}");
        assert!(
            err < 1e-3,
            "llama.cpp with the adapter differs from candle: {err}"
        );
        assert!(
            off < 1e-4 && removed < 1e-4,
            "scale 0 / no adapter must be the base: {off} {removed}"
        );
    }
    let _ = &mut llama;
}

pub fn assert_llama_cpp_applies_the_adapter(base_path: &Path, lora_cfg: LoraConfig) {
    assert_llama_cpp_applies_the_adapter_on(base_path, None, lora_cfg)
}
