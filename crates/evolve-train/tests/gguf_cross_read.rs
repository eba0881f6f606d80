//! candle is an independent GGUF reader: it must see exactly what our writer wrote.

use candle_core::Device;
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_train::load_gguf_f32;

#[test]
fn candle_reads_the_tiny_model_and_quantized_weights_stay_close() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyLlamaConfig::default();
    let f32_path = dir.path().join("f32.gguf");
    let q8_path = dir.path().join("q8.gguf");
    write_tiny_llama(&f32_path, &cfg, WeightType::F32).unwrap();
    write_tiny_llama(&q8_path, &cfg, WeightType::Q8_0).unwrap();

    let dev = Device::Cpu;
    let full = load_gguf_f32(&f32_path, &dev).unwrap();
    let quant = load_gguf_f32(&q8_path, &dev).unwrap();
    assert_eq!(full.len(), 3 + 9 * cfg.n_layer as usize);
    assert_eq!(
        full.keys().collect::<Vec<_>>(),
        quant.keys().collect::<Vec<_>>()
    );

    let (n_embd, kv_dim) = (
        cfg.n_embd as usize,
        (cfg.n_head_kv * cfg.head_dim()) as usize,
    );
    let k = &full["blk.0.attn_k.weight"];
    assert_eq!(k.dims(), &[kv_dim, n_embd], "PyTorch order [out, in]");
    assert_eq!(
        full["output_norm.weight"].to_vec1::<f32>().unwrap(),
        vec![1.0; n_embd]
    );

    for (name, w) in &full {
        let q = &quant[name];
        let diff = (w - q)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let amax = w
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Q8_0 rounds to amax/127 per block of 32; half a step is the worst case.
        assert!(
            diff <= amax / 127.0 * 0.5 + 1e-6,
            "{name}: max error {diff} vs amax {amax}"
        );
        let std = w
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        if w.rank() == 2 {
            assert!(
                (std - 0.02).abs() < 0.004,
                "{name}: std {std} should be about 0.02"
            );
        }
    }
}

#[test]
fn a_non_gguf_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "hello world\n").unwrap();
    let err = load_gguf_f32(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(err.starts_with("candle cannot read"), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
}
