// Throwaway: time the phases of one LoRA-DPO step.
use candle_core::{DType, Device};
use evolve_core::PairKind;
use evolve_core::rng::SplitMix64;
use evolve_train::loss::{DpoKind, EvolveLossConfig, PreferencePair, evolve_loss, reference_logps};
use evolve_train::{LlamaModel, Lora, LoraConfig};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    if path == "attn" {
        attn_bench();
        return;
    }
    if path == "mm" {
        mm_bench();
        return;
    }
    let recompute = args.get(2).map(|s| s == "on").unwrap_or(true);
    let model = if path == "tiny" {
        let dir = std::env::temp_dir().join("phases-tiny.gguf");
        evolve_gguf::tiny::write_tiny_llama(
            &dir,
            &evolve_gguf::tiny::TinyLlamaConfig::default(),
            evolve_gguf::tiny::WeightType::F32,
        )
        .unwrap();
        LlamaModel::load(&dir, &Device::Cpu, DType::F32).unwrap()
    } else {
        LlamaModel::load(std::path::Path::new(path), &Device::Cpu, DType::F32).unwrap()
    };
    let n_vocab = model.config().n_vocab;
    let mut rng = SplitMix64::new(1);
    let mut ids = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| (rng.next_u64() % n_vocab as u64) as u32)
            .collect()
    };
    let data: Vec<PreferencePair> = (0..4)
        .map(|_| {
            let p = ids(128);
            PreferencePair::new(PairKind::Direct, p, ids(128), ids(128))
        })
        .collect();
    let pairs: Vec<&PreferencePair> = data.iter().collect();
    let cfg = EvolveLossConfig {
        beta: 0.1,
        lambda_refine: 1.0,
        nll_weight: 0.0,
        dpo_weight: 1.0,
        kind: DpoKind::Sigmoid,
    };
    for _ in 0..3 {
        let lora = Lora::new(
            model.config(),
            LoraConfig {
                rank: 16,
                alpha: 32.0,
                dropout: 0.0,
                ..LoraConfig::default()
            },
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        lora.set_training(true);
        lora.set_recompute(recompute);
        let t0 = Instant::now();
        let refs = reference_logps(&model, None, &pairs, DpoKind::Sigmoid, 0).unwrap();
        let t1 = Instant::now();
        let out = evolve_loss(&model, &lora, &pairs, &refs, &cfg, 0).unwrap();
        let t2 = Instant::now();
        let g = lora.backward(&out.loss).unwrap();
        let t3 = Instant::now();
        drop(g);
        drop(out);
        let t4 = Instant::now();
        println!(
            "ref {:.0} ms, policy fwd {:.0} ms, backward {:.0} ms, drop {:.0} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            (t4 - t3).as_secs_f64() * 1e3
        );
    }
}

#[allow(dead_code)]
pub fn attn_bench() {
    use candle_core::Tensor;
    let dev = Device::Cpu;
    for (h, d, kvh) in [(4usize, 16usize, 4usize), (9, 64, 3)] {
        let q = Tensor::randn(0f32, 1., (8, h, 256, d), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (8, kvh, 256, d), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (8, kvh, 256, d), &dev).unwrap();
        let mask = evolve_train::ops::causal_mask(256, DType::F32, &dev).unwrap();
        for _ in 0..3 {
            let t0 = Instant::now();
            let o = evolve_train::ops::causal_attention(&q, &k, &v, &mask, 0.125).unwrap();
            let t1 = Instant::now();
            let qv = candle_core::Var::from_tensor(&q).unwrap();
            let o2 =
                evolve_train::ops::causal_attention(qv.as_tensor(), &k, &v, &mask, 0.125).unwrap();
            let g = o2.sum_all().unwrap().backward().unwrap();
            let t2 = Instant::now();
            drop((o, g));
            println!(
                "h{h} d{d}: attention fwd {:.1} ms, fwd+bwd {:.1} ms",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3
            );
        }
    }
}

#[allow(dead_code)]
pub fn mm_bench() {
    use candle_core::Tensor;
    let dev = Device::Cpu;
    for (m, k, n) in [
        (2048usize, 576usize, 1536usize),
        (2048, 1536, 576),
        (2048, 576, 576),
        (1024, 576, 49152),
    ] {
        let x = Tensor::randn(0f32, 1., (m, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
        for _ in 0..2 {
            let t0 = Instant::now();
            let a = x.matmul(&w.t().unwrap()).unwrap();
            let fl = 2.0 * (m * k * n) as f64;
            println!(
                "{m}x{k}x{n}: {:.1} GFLOP/s",
                fl / t0.elapsed().as_secs_f64() / 1e9
            );
            drop(a);
        }
    }
}
