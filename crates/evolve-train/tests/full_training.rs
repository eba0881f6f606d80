//! Full-parameter training from scratch and whole-model GGUF export: the model that was trained
//! must be the model llama.cpp then serves, and a merged adapter must mean what the adapter did.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{llama_cpp, random_pairs, rel_error, tiny_llama, tiny_qwen2};
use evolve_core::rng::SplitMix64;
use evolve_gguf::{GgmlType, read_path};
use evolve_train::export::{
    TokenizerMetadata, WeightType, export_gguf_lora, export_gguf_merged, export_gguf_model,
};
use evolve_train::{
    LlamaConfig, LlamaModel, Lora, LoraConfig, OptimConfig, SftExample, TrainConfig, TrainError,
    Trainer, optim::LrSchedule, train_sft,
};
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn config_of(path: &Path) -> LlamaConfig {
    LlamaConfig::from_gguf(&read_path(path).unwrap()).unwrap()
}

fn last_logits(model: &LlamaModel, ids: &[i32]) -> Vec<f32> {
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&x).unwrap();
    logits
        .get(0)
        .unwrap()
        .get(ids.len() - 1)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Sequences of random tokens: only memorisation can bring their loss down.
fn sequences(n: usize, seed: u64) -> Vec<SftExample> {
    let mut rng = SplitMix64::new(seed);
    let mut tok = || 5 + (rng.next_u64() % 350) as u32;
    (0..n)
        .map(|_| SftExample {
            prompt: vec![1, tok(), tok()],
            answer: (0..6).map(|_| tok()).collect(),
        })
        .collect()
}

fn sft(model: &LlamaModel, data: &[SftExample], steps: usize) -> Vec<f64> {
    let cfg = OptimConfig {
        lr: 1e-2,
        warmup_steps: 0,
        schedule: LrSchedule::Constant,
        batch_size: 4,
        epochs: steps,
        ..OptimConfig::from_scratch()
    };
    let mut losses = vec![];
    let outcome = train_sft(model, data, &cfg, &AtomicBool::new(false), |m| {
        losses.push(m.loss);
        true
    })
    .unwrap();
    assert_eq!(outcome.steps, steps * data.len().div_ceil(4));
    losses
}

fn probe_inputs() -> Vec<Vec<i32>> {
    vec![
        vec![1, 40, 41, 42, 43],
        (0..30).map(|i| 1 + (i * 53 % 350)).collect(),
    ]
}

#[test]
fn a_random_model_memorises_a_handful_of_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(&tiny_llama(dir.path(), WeightType::F32));
    let model = LlamaModel::new_random(&cfg, 7, DType::F32, &Device::Cpu).unwrap();
    assert!(model.is_trainable());
    // Same seed, same model; every weight is a variable (the output head is not tied here).
    let again = LlamaModel::new_random(&cfg, 7, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        last_logits(&model, &[1, 2, 3]),
        last_logits(&again, &[1, 2, 3])
    );
    assert_eq!(model.named_vars().len(), 3 + 9 * cfg.n_layer);

    let data = sequences(8, 3);
    let losses = sft(&model, &data, 40);
    let (first, last) = (losses[0], *losses.last().unwrap());
    eprintln!("sft loss {first:.3} -> {last:.4} in {} steps", losses.len());
    assert!(
        (first - (cfg.n_vocab as f64).ln()).abs() < 0.3,
        "starts near uniform: {first}"
    );
    assert!(last < 0.1, "must memorise 8 sequences: final loss {last}");
}

#[test]
fn a_frozen_model_is_refused_and_stays_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_llama(dir.path(), WeightType::F32);
    let frozen = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    assert!(!frozen.is_trainable() && frozen.named_vars().is_empty());
    let err = train_sft(
        &frozen,
        &sequences(2, 1),
        &OptimConfig::from_scratch(),
        &AtomicBool::new(false),
        |_| true,
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Config(_)), "{err}");
    // Made trainable, the loaded weights are unchanged and now learn.
    let before = last_logits(&frozen, &[1, 40, 41]);
    let model = frozen.trainable().unwrap();
    assert_eq!(last_logits(&model, &[1, 40, 41]), before);
    let losses = sft(&model, &sequences(4, 2), 5);
    assert!(losses[4] < losses[0], "{losses:?}");
    assert_ne!(last_logits(&model, &[1, 40, 41]), before);
}

#[test]
fn cancelling_stops_before_any_update() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(&tiny_llama(dir.path(), WeightType::F32));
    let model = LlamaModel::new_random(&cfg, 1, DType::F32, &Device::Cpu).unwrap();
    let before = last_logits(&model, &[1, 9, 10]);
    let out = train_sft(
        &model,
        &sequences(4, 1),
        &OptimConfig::from_scratch(),
        &AtomicBool::new(true),
        |_| true,
    )
    .unwrap();
    assert!(out.cancelled && out.steps == 0);
    assert_eq!(last_logits(&model, &[1, 9, 10]), before);
}

/// Trains a few steps, exports, and compares llama.cpp's logits with candle's.
fn assert_export_matches_llama_cpp(template: &Path, cfg: &LlamaConfig, dir: &Path) {
    let model = LlamaModel::new_random(cfg, 5, DType::F32, &Device::Cpu).unwrap();
    sft(&model, &sequences(8, 4), 3);
    // Measured: f32 ~1.5e-7, f16 ~5e-5, q8_0 ~9e-4.
    for (weight_type, max_rel) in [
        (WeightType::F32, 1e-4),
        (WeightType::F16, 5e-4),
        (WeightType::Q8_0, 5e-3),
    ] {
        let out = dir.join(format!(
            "trained-{}-{weight_type}.gguf",
            cfg.architecture.as_str()
        ));
        export_gguf_model(
            &model,
            &out,
            weight_type,
            TokenizerMetadata::CopyFrom(template),
        )
        .unwrap();
        let file = read_path(&out).unwrap();
        let q = file.tensor("blk.0.attn_q.weight").unwrap();
        let want_type = match weight_type {
            WeightType::F32 => GgmlType::F32,
            WeightType::F16 => GgmlType::F16,
            WeightType::Q8_0 => GgmlType::Q8_0,
        };
        assert_eq!(q.ggml_type, want_type);
        assert_eq!(
            config_of(&out),
            *cfg,
            "the config must survive the round trip"
        );

        let llama = llama_cpp::load(&out);
        for ids in probe_inputs() {
            let err = rel_error(
                &llama_cpp::last_logits(&llama, None, &ids),
                &last_logits(&model, &ids),
            );
            eprintln!(
                "{} exported {weight_type}: llama.cpp vs candle rel. error {err:.2e}",
                cfg.architecture.as_str()
            );
            assert!(err < max_rel, "{weight_type}: {err}");
        }
        if weight_type == WeightType::F32 {
            // Reloaded in candle, the f32 file is the same model bit for bit.
            let back = LlamaModel::load(&out, &Device::Cpu, DType::F32).unwrap();
            assert_eq!(
                last_logits(&back, &[1, 5, 6]),
                last_logits(&model, &[1, 5, 6])
            );
        }
    }
}

#[test]
fn an_exported_llama_gives_llama_cpp_candles_logits() {
    let dir = tempfile::tempdir().unwrap();
    let template = tiny_llama(dir.path(), WeightType::F32);
    assert_export_matches_llama_cpp(&template, &config_of(&template), dir.path());
}

#[test]
fn an_exported_qwen2_gives_llama_cpp_candles_logits() {
    let dir = tempfile::tempdir().unwrap();
    let template = tiny_qwen2(dir.path());
    assert_export_matches_llama_cpp(&template, &config_of(&template), dir.path());
}

#[test]
fn tied_embeddings_stay_one_variable_and_export_without_an_output_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let template = tiny_llama(dir.path(), WeightType::F32);
    let cfg = LlamaConfig {
        tied_embeddings: true,
        ..config_of(&template)
    };
    let model = LlamaModel::new_random(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
    let names: Vec<&str> = model.named_vars().iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"token_embd.weight") && !names.contains(&"output.weight"));
    sft(&model, &sequences(4, 5), 2);
    let out = dir.path().join("tied.gguf");
    export_gguf_model(
        &model,
        &out,
        WeightType::F32,
        TokenizerMetadata::CopyFrom(&template),
    )
    .unwrap();
    assert!(read_path(&out).unwrap().tensor("output.weight").is_none());
    let ids = [1, 40, 41, 42];
    let err = rel_error(
        &llama_cpp::last_logits(&llama_cpp::load(&out), None, &ids),
        &last_logits(&model, &ids),
    );
    assert!(err < 1e-4, "{err}");
}

#[test]
fn export_without_a_vocabulary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_of(&tiny_llama(dir.path(), WeightType::F32));
    let model = LlamaModel::new_random(&cfg, 1, DType::F32, &Device::Cpu).unwrap();
    let err = export_gguf_model(
        &model,
        &dir.path().join("x.gguf"),
        WeightType::F32,
        TokenizerMetadata::Given(vec![]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");
}

/// A merged GGUF must give llama.cpp the logits that base + adapter give it.
#[test]
fn a_merged_gguf_equals_base_plus_adapter_in_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let base_path = tiny_llama(dir.path(), WeightType::F32);
    let base = LlamaModel::load(&base_path, &Device::Cpu, DType::F32).unwrap();
    let lora = Lora::new(
        base.config(),
        LoraConfig::default(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
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
    let mut trainer = Trainer::new(&base, lora, cfg).unwrap();
    trainer.train(&random_pairs(8, 11), |_| true).unwrap();
    let lora = trainer.into_lora();
    let adapter_path = dir.path().join("adapter.gguf");
    export_gguf_lora(&lora, base.config(), &adapter_path).unwrap();
    let merged = base.merged(&lora).unwrap();
    assert!(!merged.is_trainable());
    // In candle, W + s·B·A is the adapted model up to f32 rounding.
    for ids in probe_inputs() {
        let ids32: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        let x = Tensor::new(ids32.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let adapted: Vec<f32> = base
            .forward_with(&x, Some(&lora))
            .unwrap()
            .get(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let err = rel_error(&last_logits(&merged, &ids), &adapted);
        assert!(err < 1e-5, "candle merged vs adapted: {err}");
    }

    let mut llama = llama_cpp::load(&base_path);
    let mut adapter = llama.lora_adapter_init(&adapter_path).unwrap();
    // Measured: f32 ~2e-7, f16 ~1e-3, q8_0 ~1.3e-2 (the DPO-trained adapter moves the logits by
    // ~100%, and the merged weights are rounded where the separate adapter is not).
    for (weight_type, max_rel) in [
        (WeightType::F32, 1e-4),
        (WeightType::F16, 5e-3),
        (WeightType::Q8_0, 3e-2),
    ] {
        // Streamed (a tensor at a time, what users get) and from the merged model in memory:
        // the same file to the byte.
        let out = dir.path().join(format!("merged-{weight_type}.gguf"));
        let tokenizer = TokenizerMetadata::CopyFrom(&base_path);
        export_gguf_merged(&base, &lora, &out, weight_type, tokenizer).unwrap();
        let whole = dir.path().join(format!("whole-{weight_type}.gguf"));
        let tokenizer = TokenizerMetadata::CopyFrom(&base_path);
        export_gguf_model(&merged, &whole, weight_type, tokenizer).unwrap();
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&whole).unwrap(),
            "{weight_type}: streamed and whole merges differ"
        );
        let merged_llama = llama_cpp::load(&out);
        for ids in probe_inputs() {
            let with_adapter = llama_cpp::last_logits(&llama, Some((&mut adapter, 1.0)), &ids);
            let base_logits = llama_cpp::last_logits(&llama, None, &ids);
            let effect = rel_error(&with_adapter, &base_logits);
            let err = rel_error(
                &llama_cpp::last_logits(&merged_llama, None, &ids),
                &with_adapter,
            );
            eprintln!(
                "merged {weight_type}: vs base+adapter {err:.2e} (the adapter moves logits {effect:.2e})"
            );
            assert!(effect > 1e-2, "the adapter must matter: {effect}");
            assert!(err < max_rel, "{weight_type}: {err}");
        }
    }
    let _ = &mut llama;
}
