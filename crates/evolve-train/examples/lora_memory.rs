//! Peak memory of one LoRA-DPO step on a model of a real shape with Q4_K base weights, kept
//! quantized (`LlamaModel::load_quantized`): what a user with an 8B Q4_K_M file needs.
//!
//!   cargo run --release -p evolve-train --example lora_memory -- write 8b /tmp/8b.gguf
//!   cargo run --release -p evolve-train --example lora_memory -- step /tmp/8b.gguf [always]
//!   cargo run --release -p evolve-train --example lora_memory -- merge /tmp/8b.gguf /tmp/m.gguf
//!
//! `write` builds the file with random weights (one block's tensors repeated in every layer:
//! the values do not matter, the sizes do); `step` loads it, runs one LoRA-DPO step (reference
//! forward with the adapter off, policy forward and backward, AdamW) on one pair of 64 prompt
//! and 64 answer tokens, and prints the process's peak resident memory (`VmHWM`); the optional
//! last argument is the trainer's `Recompute` mode (default `auto`). `merge` writes the model
//! with a random rank-16 adapter on every projection folded in, as a Q8_0 GGUF (what a merged
//! export does), and prints the peak.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use evolve_core::PairKind;
use evolve_gguf::{GgmlType, GgufWriter, TensorData, Value};
use evolve_train::export::{TokenizerMetadata, WeightType, export_gguf_merged};
use evolve_train::loss::PreferencePair;
use evolve_train::{LlamaModel, Lora, LoraConfig, LoraTarget, OptimConfig, TrainConfig, Trainer};
use std::time::Instant;

/// (n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab): Llama 3.1 8B, and a small one to try it.
fn shape(name: &str) -> (usize, usize, usize, usize, usize, usize) {
    match name {
        "8b" => (4096, 32, 32, 8, 14336, 128256),
        "1b" => (2048, 16, 32, 8, 8192, 128256),
        "tiny" => (256, 2, 4, 2, 512, 1024),
        other => panic!("unknown shape {other} (8b, 1b, tiny)"),
    }
}

/// Uniform values in ±0.035 (≈ N(0, 0.02²)'s spread) from a linear congruential generator:
/// cheap enough for billions of weights in a debug build.
fn q4k(rows: usize, cols: usize, seed: u64) -> TensorData {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07
        })
        .collect();
    let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, GgmlDType::Q4K).unwrap();
    TensorData::Raw {
        ggml_type: GgmlType::Q4_K,
        bytes: q.data().unwrap().into_owned(),
    }
}

fn write(name: &str, path: &str) {
    let (e, layers, heads, kv_heads, ff, vocab) = shape(name);
    let kv = e / heads * kv_heads;
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()));
    for (k, v) in [
        ("llama.embedding_length", e),
        ("llama.block_count", layers),
        ("llama.attention.head_count", heads),
        ("llama.attention.head_count_kv", kv_heads),
        ("llama.feed_forward_length", ff),
        ("llama.vocab_size", vocab),
        ("llama.context_length", 8192),
        ("llama.rope.dimension_count", e / heads),
    ] {
        w.add_metadata(k, Value::U32(v as u32));
    }
    w.add_metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .add_metadata("llama.rope.freq_base", Value::F32(500_000.0));
    let t = Instant::now();
    let ones = |n: usize| TensorData::F32(vec![1.0; n]);
    w.add_tensor(
        "token_embd.weight",
        vec![e as u64, vocab as u64],
        q4k(vocab, e, 1),
    )
    .unwrap();
    w.add_tensor("output_norm.weight", vec![e as u64], ones(e))
        .unwrap();
    w.add_tensor(
        "output.weight",
        vec![e as u64, vocab as u64],
        q4k(vocab, e, 2),
    )
    .unwrap();
    let block: Vec<(&str, usize, usize)> = vec![
        ("attn_q", e, e),
        ("attn_k", kv, e),
        ("attn_v", kv, e),
        ("attn_output", e, e),
        ("ffn_gate", ff, e),
        ("ffn_up", ff, e),
        ("ffn_down", e, ff),
    ];
    let data: Vec<TensorData> = block.iter().map(|&(_, r, c)| q4k(r, c, 3)).collect();
    for i in 0..layers {
        w.add_tensor(format!("blk.{i}.attn_norm.weight"), vec![e as u64], ones(e))
            .unwrap();
        w.add_tensor(format!("blk.{i}.ffn_norm.weight"), vec![e as u64], ones(e))
            .unwrap();
        for ((part, rows, cols), d) in block.iter().zip(&data) {
            let d = match d {
                TensorData::Raw { ggml_type, bytes } => TensorData::Raw {
                    ggml_type: *ggml_type,
                    bytes: bytes.clone(),
                },
                _ => unreachable!(),
            };
            w.add_tensor(
                format!("blk.{i}.{part}.weight"),
                vec![*cols as u64, *rows as u64],
                d,
            )
            .unwrap();
        }
    }
    w.write_to_path(std::path::Path::new(path)).unwrap();
    println!(
        "wrote {path} ({name}, Q4_K) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / (1024.0 * 1024.0))
}

fn step(path: &str, recompute: evolve_train::Recompute) {
    let header = evolve_gguf::read_path(std::path::Path::new(path)).unwrap();
    let estimate = evolve_train::training_memory(&header, 16, 128, 1).unwrap();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "estimate (evolve_train::training_memory): {:.2} GiB = base {:.2} + adapter {:.2} + working {:.2}",
        gib(estimate.total()),
        gib(estimate.base_bytes),
        gib(estimate.adapter_bytes),
        gib(estimate.working_bytes)
    );
    let t = Instant::now();
    let model =
        LlamaModel::load_quantized(std::path::Path::new(path), &Device::Cpu, DType::F32).unwrap();
    println!(
        "loaded in {:.1} s: resident weights {:.2} GiB, peak so far {:.2} GiB",
        t.elapsed().as_secs_f64(),
        model.weight_bytes() as f64 / (1u64 << 30) as f64,
        peak_rss_gib()
    );
    let lora = rank16_adapter(&model);
    let cfg = TrainConfig {
        optim: OptimConfig {
            batch_size: 1,
            grad_accum: 1,
            epochs: 1,
            warmup_steps: 0,
            ..OptimConfig::default()
        },
        recompute,
        ..TrainConfig::default()
    };
    let vocab = model.config().n_vocab as u32;
    let seq =
        |seed: u32, n: u32| -> Vec<u32> { (0..n).map(|i| (i * 7919 + seed) % vocab).collect() };
    let pair = PreferencePair::new(PairKind::Direct, seq(1, 64), seq(2, 64), seq(3, 64));
    let mut trainer = Trainer::new(&model, lora, cfg).unwrap();
    let t = Instant::now();
    let outcome = trainer.train(&[pair], |_| true).unwrap();
    println!(
        "{} LoRA-DPO step (rank 16, all 7 targets, 64+64 tokens) in {:.1} s; peak resident memory {:.2} GiB",
        outcome.steps,
        t.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
}

/// A rank-16 adapter (alpha 32) on all seven projections of `model`.
fn rank16_adapter(model: &LlamaModel) -> Lora {
    let config = LoraConfig {
        rank: 16,
        alpha: 32.0,
        targets: LoraTarget::ALL.to_vec(),
        ..LoraConfig::default()
    };
    Lora::new(model.config(), config, DType::F32, &Device::Cpu).unwrap()
}

fn merge(path: &str, out: &str) {
    let t = Instant::now();
    let model =
        LlamaModel::load_quantized(std::path::Path::new(path), &Device::Cpu, DType::F32).unwrap();
    let lora = rank16_adapter(&model);
    for (name, var) in lora.named_vars() {
        if name.ends_with("lora_b") {
            var.set(
                &var.as_tensor()
                    .ones_like()
                    .unwrap()
                    .affine(1e-3, 0.0)
                    .unwrap(),
            )
            .unwrap();
        }
    }
    println!(
        "loaded in {:.1} s; peak so far {:.2} GiB",
        t.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
    // The random file has no vocabulary; the export only needs the token list.
    let tokens = (0..model.config().n_vocab)
        .map(|i| Value::String(format!("t{i}")))
        .collect();
    let tokenizer = TokenizerMetadata::Given(vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
    ]);
    let t = Instant::now();
    let out = std::path::Path::new(out);
    export_gguf_merged(&model, &lora, out, WeightType::Q8_0, tokenizer).unwrap();
    println!(
        "merged Q8_0 export ({:.2} GiB) in {:.1} s; peak resident memory {:.2} GiB",
        std::fs::metadata(out).unwrap().len() as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64(),
        peak_rss_gib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["write", name, path] => write(name, path),
        ["step", path] => step(path, evolve_train::Recompute::default()),
        ["step", path, mode] => step(path, mode.parse().unwrap()),
        ["merge", path, out] => merge(path, out),
        _ => eprintln!(
            "usage: lora_memory write 8b|1b|tiny FILE | lora_memory step FILE [auto|always|never] \
             | lora_memory merge FILE OUT"
        ),
    }
}
