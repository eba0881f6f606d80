//! LoRA adapters (validation, switching) and sequence log-probabilities on the tiny model.

mod common;

use common::tiny_engine;
use evolve_gguf::tiny::TinyLlamaConfig;
use evolve_gguf::{GgufWriter, TensorData, Value};
use evolve_llama::{LlamaError, log_softmax_at};
use std::path::{Path, PathBuf};

/// A tensor of the adapter: name and ggml dims.
type Spec = (String, Vec<u64>);

/// Deterministic values in [-scale, scale).
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Rank-`r` LoRA on the q and v projections of every layer of a model with `n_embd`.
fn qv_specs(n_embd: u64, r: u64) -> Vec<Spec> {
    let cfg = TinyLlamaConfig::default();
    let kv_out = (cfg.n_head_kv * cfg.head_dim()) as u64;
    (0..cfg.n_layer)
        .flat_map(|i| {
            [
                (format!("blk.{i}.attn_q.weight.lora_a"), vec![n_embd, r]),
                (format!("blk.{i}.attn_q.weight.lora_b"), vec![r, n_embd]),
                (format!("blk.{i}.attn_v.weight.lora_a"), vec![n_embd, r]),
                (format!("blk.{i}.attn_v.weight.lora_b"), vec![r, kv_out]),
            ]
        })
        .collect()
}

fn write_adapter(
    dir: &Path,
    name: &str,
    meta: &[(&str, Value)],
    specs: &[Spec],
    seed: u64,
) -> PathBuf {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .add_metadata("general.type", Value::String("adapter".into()))
        .add_metadata("adapter.type", Value::String("lora".into()))
        .add_metadata("adapter.lora.alpha", Value::F32(4.0));
    for (k, v) in meta {
        w.add_metadata(*k, v.clone());
    }
    for (j, (tensor, dims)) in specs.iter().enumerate() {
        let n = dims.iter().product::<u64>() as usize;
        w.add_tensor(
            tensor.clone(),
            dims.clone(),
            TensorData::F32(noise(n, seed + j as u64, 0.5)),
        )
        .unwrap();
    }
    let path = dir.join(name);
    w.write_to_path(&path).unwrap();
    path
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn adapter_changes_logits_and_switching_back_restores_the_base_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = tiny_engine();
    let tokens = engine.tokenize("The answer is 42.");
    let base = engine.last_logits(&tokens).unwrap();

    let a = engine
        .load_adapter(&write_adapter(
            dir.path(),
            "a.gguf",
            &[],
            &qv_specs(64, 4),
            1,
        ))
        .unwrap();
    let b = engine
        .load_adapter(&write_adapter(
            dir.path(),
            "b.gguf",
            &[],
            &qv_specs(64, 4),
            99,
        ))
        .unwrap();
    let info = engine.adapter_info(a).unwrap();
    assert_eq!(
        (info.rank, info.alpha, info.targets.len()),
        (4, Some(4.0), 4)
    );
    assert_eq!(
        base,
        engine.last_logits(&tokens).unwrap(),
        "loading alone activates nothing"
    );

    engine.set_adapter(Some(a), 1.0).unwrap();
    let with_a = engine.last_logits(&tokens).unwrap();
    assert!(
        max_abs_diff(&base, &with_a) > 1e-3,
        "adapter A had no effect"
    );
    engine.set_adapter(Some(b), 1.0).unwrap();
    let with_b = engine.last_logits(&tokens).unwrap();
    assert!(
        max_abs_diff(&with_a, &with_b) > 1e-3,
        "adapters A and B gave the same logits"
    );
    engine.set_adapter(Some(a), 0.0).unwrap();
    assert!(
        max_abs_diff(&base, &engine.last_logits(&tokens).unwrap()) < 1e-5,
        "scale 0 is the base"
    );

    engine.set_adapter(None, 1.0).unwrap();
    assert_eq!(
        base,
        engine.last_logits(&tokens).unwrap(),
        "switching back restores the base bit for bit"
    );
    engine.set_adapter(Some(a), 1.0).unwrap();
    assert_eq!(
        with_a,
        engine.last_logits(&tokens).unwrap(),
        "and A again gives A's logits"
    );
}

#[test]
fn adapters_that_do_not_fit_are_refused_naming_the_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = tiny_engine();
    let refuse = |engine: &mut evolve_llama::LlamaEngine, path: PathBuf| {
        let err = engine.load_adapter(&path).unwrap_err();
        assert!(matches!(err, LlamaError::AdapterMismatch { .. }), "{err}");
        err.to_string()
    };

    // Made for a model with n_embd 32.
    let err = refuse(
        &mut engine,
        write_adapter(dir.path(), "small.gguf", &[], &qv_specs(32, 4), 1),
    );
    assert!(
        err.contains("'blk.0.attn_q.weight.lora_a' is [32, 4]"),
        "{err}"
    );
    assert!(
        err.contains("base 'blk.0.attn_q.weight' is [64, 64]"),
        "{err}"
    );

    // Rank of A and B disagree.
    let mut specs = qv_specs(64, 4);
    specs[1].1 = vec![3, 64];
    let err = refuse(
        &mut engine,
        write_adapter(dir.path(), "rank.gguf", &[], &specs, 1),
    );
    assert!(
        err.contains("'blk.0.attn_q.weight.lora_b' is [3, 64]"),
        "{err}"
    );

    // Targets a tensor the model does not have.
    let mut specs = qv_specs(64, 4);
    specs[0].0 = "blk.7.attn_q.weight.lora_a".into();
    specs[1].0 = "blk.7.attn_q.weight.lora_b".into();
    let err = refuse(
        &mut engine,
        write_adapter(dir.path(), "ghost.gguf", &[], &specs, 1),
    );
    assert!(
        err.contains("'blk.7.attn_q.weight', which the model does not have"),
        "{err}"
    );

    // Another architecture, and a file that is not an adapter at all.
    let arch = [("general.architecture", Value::String("qwen2".into()))];
    let err = refuse(
        &mut engine,
        write_adapter(dir.path(), "arch.gguf", &arch, &qv_specs(64, 4), 1),
    );
    assert!(
        err.contains("architecture 'qwen2', the model is 'llama'"),
        "{err}"
    );
    let err = refuse(
        &mut engine,
        common::tiny_path(evolve_gguf::tiny::WeightType::F32),
    );
    assert!(err.contains("not an adapter"), "{err}");

    // A missing half and an alpha of the wrong type (llama.cpp would abort on the latter).
    let specs = qv_specs(64, 4)[..3].to_vec();
    let err = refuse(
        &mut engine,
        write_adapter(dir.path(), "half.gguf", &[], &specs, 1),
    );
    assert!(
        err.contains("'blk.1.attn_q.weight.lora_b' is missing")
            || err.contains("lora_b' is missing"),
        "{err}"
    );
    let alpha = [("adapter.lora.alpha", Value::U32(4))];
    let err = refuse(
        &mut engine,
        write_adapter(dir.path(), "alpha.gguf", &alpha, &qv_specs(64, 4), 1),
    );
    assert!(err.contains("adapter.lora.alpha must be an f32"), "{err}");

    // The engine still works and none of them was loaded.
    assert!(engine.active_adapter().is_none());
    assert!(engine.last_logits(&engine.tokenize("ok")).is_ok());
}

#[test]
fn sequence_logprob_equals_stepwise_log_softmax_and_the_adapter_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = tiny_engine();
    let prompt = engine.tokenize(&engine.format_user_prompt("Spell a word.").unwrap());
    let completion = engine.tokenize("hello")[1..].to_vec(); // without BOS
    assert_eq!(completion.len(), 5);

    engine.reset_stats();
    let scored = engine.sequence_logprob(&prompt, &completion).unwrap();
    assert_eq!(
        engine.stats().decode_calls,
        1,
        "one decode for all positions"
    );
    assert_eq!(scored.per_token.len(), 5);
    let mut stepwise = Vec::new();
    for j in 0..completion.len() {
        let prefix: Vec<i32> = prompt.iter().chain(&completion[..j]).copied().collect();
        stepwise.push(log_softmax_at(
            &engine.last_logits(&prefix).unwrap(),
            completion[j] as usize,
        ));
    }
    for (j, (a, b)) in scored.per_token.iter().zip(&stepwise).enumerate() {
        assert!((a - b).abs() < 1e-4, "token {j}: {a} vs {b}");
        assert!(*a < 0.0);
    }
    assert!((scored.sum - stepwise.iter().sum::<f64>()).abs() < 1e-4);

    let id = engine
        .load_adapter(&write_adapter(
            dir.path(),
            "a.gguf",
            &[],
            &qv_specs(64, 4),
            3,
        ))
        .unwrap();
    engine.set_adapter(Some(id), 1.0).unwrap();
    let adapted = engine.sequence_logprob(&prompt, &completion).unwrap();
    assert!(
        (adapted.sum - scored.sum).abs() > 1e-3,
        "{} vs {}",
        adapted.sum,
        scored.sum
    );
}

#[test]
fn log_softmax_is_normalised_and_stable_for_large_logits() {
    let logits = [1000.0f32, 1001.0, 999.0];
    let total: f64 = (0..3).map(|i| log_softmax_at(&logits, i).exp()).sum();
    assert!((total - 1.0).abs() < 1e-12);
    assert!(
        (log_softmax_at(&logits, 1) - (-(1.0 + (-1f64).exp() + (-2f64).exp()).ln())).abs() < 1e-9
    );
}

#[test]
fn batched_sampling_runs_with_the_active_adapter() {
    use evolve_core::{GenerationRequest, SamplerConfig};
    let dir = tempfile::tempdir().unwrap();
    let mut engine = tiny_engine();
    let prompt = engine.format_user_prompt("Hi.").unwrap();
    let request = [GenerationRequest::new(
        &prompt,
        SamplerConfig::greedy(12),
        2,
    )];
    let tokens = |engine: &evolve_llama::LlamaEngine| -> Vec<Vec<i32>> {
        let out = engine.generate_batch(&request, &mut |_| true).unwrap();
        out[0].iter().map(|c| c.tokens.clone()).collect()
    };
    let base = tokens(&engine);
    let id = engine
        .load_adapter(&write_adapter(
            dir.path(),
            "a.gguf",
            &[],
            &qv_specs(64, 4),
            5,
        ))
        .unwrap();
    engine.set_adapter(Some(id), 2.0).unwrap();
    let adapted = tokens(&engine);
    assert_ne!(
        adapted, base,
        "a strong adapter should change the greedy answer"
    );
    let single = engine
        .generate(&prompt, &SamplerConfig::greedy(12), |_| true)
        .unwrap();
    assert_eq!(
        adapted[0], single.tokens,
        "single-sequence generation uses the adapter too"
    );
    engine.set_adapter(None, 1.0).unwrap();
    assert_eq!(tokens(&engine), base);
}
