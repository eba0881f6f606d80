//! The candle forward pass must reproduce llama.cpp's logits on the same GGUF file: training
//! on a model that differs from the one served would optimise the wrong thing.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{llama_cpp, rel_error, tiny_gemma3, tiny_llama, tiny_phi3, tiny_qwen2, tiny_qwen3};
use evolve_gguf::tiny::WeightType;
use evolve_llama::{EngineOptions, LlamaEngine};
use evolve_train::{LlamaConfig, LlamaModel, TrainError};
use std::path::Path;

fn candle_last_logits(model: &LlamaModel, ids: &[i32]) -> Vec<f32> {
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let tokens = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&tokens).unwrap();
    let t = ids.len();
    logits
        .get(0)
        .unwrap()
        .get(t - 1)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn engine(path: &Path) -> LlamaEngine {
    LlamaEngine::load(
        path,
        EngineOptions {
            n_threads: 2,
            n_gpu_layers: 0,
            n_ctx: 256,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

fn inputs(engine: &LlamaEngine) -> Vec<Vec<i32>> {
    vec![
        engine.tokenize("hello world"),
        engine.tokenize("<|im_start|>user\nWhat is 2+2?<|im_end|>\n"),
        (0..40).map(|i| 1 + (i * 37 % 350)).collect(),
    ]
}

/// Compares with llama.cpp both ways: with its exact-f32 attention path against `max_rel`, and
/// through `LlamaEngine::last_logits` (f16 KV cache and flash attention, as users run it)
/// against `max_rel_f16_kv`.
fn assert_matches_llama_cpp(path: &Path, max_rel: f64, max_rel_f16_kv: f64) {
    assert_matches_llama_cpp_in(&[DType::F32, DType::F64], path, max_rel, max_rel_f16_kv);
}

/// [`assert_matches_llama_cpp`] for the models loaded in `dtypes`; returns the largest error.
fn assert_matches_llama_cpp_in(
    dtypes: &[DType],
    path: &Path,
    max_rel: f64,
    max_rel_f16_kv: f64,
) -> f64 {
    let engine = engine(path);
    let direct = llama_cpp::load(path);
    let mut largest: f64 = 0.0;
    for &dtype in dtypes {
        let model = LlamaModel::load(path, &Device::Cpu, dtype).unwrap();
        assert_eq!(model.config().n_vocab, engine.n_vocab());
        for ids in inputs(&engine) {
            assert!(ids.len() >= 3);
            let got = candle_last_logits(&model, &ids);
            let err = rel_error(&got, &llama_cpp::last_logits(&direct, None, &ids));
            let err_engine = rel_error(&got, &engine.last_logits(&ids).unwrap());
            eprintln!(
                "{} {dtype:?} {} tokens: rel. error {err:.2e} (f32 attention), {err_engine:.2e} (engine, f16 attention)",
                path.file_name().unwrap().to_string_lossy(),
                ids.len()
            );
            assert!(err < max_rel, "{dtype:?} {ids:?}: rel. error {err:e}");
            assert!(
                err_engine < max_rel_f16_kv,
                "{dtype:?} {ids:?}: rel. error {err_engine:e} vs the engine"
            );
            largest = largest.max(err);
        }
    }
    largest
}

#[test]
fn candle_logits_equal_llama_cpp_on_the_tiny_f32_llama() {
    let dir = tempfile::tempdir().unwrap();
    assert_matches_llama_cpp(&tiny_llama(dir.path(), WeightType::F32), 1e-4, 1e-3);
}

#[test]
fn candle_logits_equal_llama_cpp_on_a_qwen2_with_biases_and_neox_rope() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_qwen2(dir.path());
    let model = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.config().architecture.as_str(), "qwen2");
    assert_matches_llama_cpp(&path, 1e-4, 1e-3);
}

#[test]
fn candle_logits_equal_llama_cpp_on_a_qwen3_with_head_norms_and_its_own_head_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_qwen3(dir.path());
    let model = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(model.config().architecture.as_str(), "qwen3");
    assert_eq!((model.config().q_dim(), model.config().n_embd), (128, 64));
    assert_matches_llama_cpp(&path, 1e-4, 1e-3);
}

#[test]
fn candle_logits_equal_llama_cpp_on_a_gemma3_with_sliding_window_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_gemma3(dir.path());
    let model = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    let cfg = model.config();
    assert_eq!(cfg.architecture.as_str(), "gemma3");
    let window = cfg.sliding_window.expect("a sliding window");
    assert_eq!(
        (window.size, window.pattern, cfg.rope_freq_scale),
        (4, 2, 0.125)
    );
    // In f32 the GeGLU takes the values of ggml's f16 GELU table, as the llama.cpp CPU build
    // computes them; the f64 model keeps the smooth GELU and is off by the table's rounding.
    let f32_err = assert_matches_llama_cpp_in(&[DType::F32], &path, 1e-4, 1e-3);
    let f64_err = assert_matches_llama_cpp_in(&[DType::F64], &path, 1e-3, 1e-3);
    assert!(f64_err > 2.0 * f32_err, "f64 {f64_err:e}, f32 {f32_err:e}");
}

#[test]
fn candle_logits_equal_llama_cpp_on_a_phi3_with_fused_matrices_and_long_rope() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_phi3(dir.path());
    let model = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    let cfg = model.config();
    assert_eq!(cfg.architecture.as_str(), "phi3");
    assert_eq!((cfg.rope_dims, cfg.head_dim), (12, 16));
    assert!(cfg.long_rope() && (cfg.rope_attn_factor - 1.19).abs() < 1e-6);
    let file = evolve_gguf::read_path(&path).unwrap();
    let long: Vec<f32> = file
        .read_tensor_bytes("rope_factors_long.weight")
        .unwrap()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(model.rope_freq_factors(), Some(long.as_slice()));
    assert_matches_llama_cpp(&path, 1e-4, 1e-3);
}

#[test]
fn f16_weights_load_and_stay_close_to_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    assert_matches_llama_cpp(&tiny_llama(dir.path(), WeightType::F16), 1e-3, 2e-3);
}

#[test]
fn q8_0_weights_load_and_stay_close_to_the_f32_model() {
    let dir = tempfile::tempdir().unwrap();
    let full = common::tiny_f32_model(dir.path());
    let q8 = LlamaModel::load(
        &tiny_llama(dir.path(), WeightType::Q8_0),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let ids: Vec<i32> = (1..30).collect();
    let err = rel_error(
        &candle_last_logits(&q8, &ids),
        &candle_last_logits(&full, &ids),
    );
    assert!(err > 0.0 && err < 0.05, "q8_0 vs f32 rel. error {err}");
}

#[test]
fn config_is_read_from_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let file = evolve_gguf::read_path(&tiny_llama(dir.path(), WeightType::F32)).unwrap();
    let cfg = LlamaConfig::from_gguf(&file).unwrap();
    assert_eq!(
        (
            cfg.n_embd,
            cfg.n_layer,
            cfg.n_head,
            cfg.n_head_kv,
            cfg.head_dim,
            cfg.n_ff,
            cfg.n_vocab
        ),
        (64, 2, 4, 2, 16, 128, 356)
    );
    assert_eq!(
        (cfg.rope_dims, cfg.rope_freq_base, cfg.rope_freq_scale),
        (16, 10_000.0, 1.0)
    );
    assert!((cfg.rms_eps - 1e-5).abs() < 1e-12);
    assert!(!cfg.tied_embeddings);
}

#[test]
fn an_unsupported_architecture_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = evolve_gguf::GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        evolve_gguf::Value::String("gpt2".into()),
    );
    w.add_tensor(
        "token_embd.weight",
        vec![4, 2],
        evolve_gguf::TensorData::F32(vec![0.0; 8]),
    )
    .unwrap();
    let path = dir.path().join("gpt2.gguf");
    w.write_to_path(&path).unwrap();
    let err = LlamaModel::load(&path, &Device::Cpu, DType::F32)
        .err()
        .unwrap();
    assert!(
        matches!(err, TrainError::UnsupportedArchitecture(ref a) if a == "gpt2"),
        "{err}"
    );
    assert!(err.to_string().contains("gpt2"));
}

#[test]
fn a_missing_output_weight_ties_the_embedding() {
    // Rewrite the tiny model without output.weight; llama.cpp then ties it to token_embd too.
    let dir = tempfile::tempdir().unwrap();
    let src = evolve_gguf::read_path(&tiny_llama(dir.path(), WeightType::F32)).unwrap();
    let mut w = evolve_gguf::GgufWriter::new();
    for (k, v) in &src.metadata {
        w.add_metadata(k.clone(), v.clone());
    }
    for t in src.tensors.iter().filter(|t| t.name != "output.weight") {
        let bytes = src.read_tensor_bytes(&t.name).unwrap();
        w.add_tensor(
            t.name.clone(),
            t.dims.clone(),
            evolve_gguf::TensorData::Raw {
                ggml_type: t.ggml_type,
                bytes,
            },
        )
        .unwrap();
    }
    let path = dir.path().join("tied.gguf");
    w.write_to_path(&path).unwrap();
    let model = LlamaModel::load(&path, &Device::Cpu, DType::F32).unwrap();
    assert!(model.config().tied_embeddings);
    assert_matches_llama_cpp(&path, 1e-4, 1e-3);
}
