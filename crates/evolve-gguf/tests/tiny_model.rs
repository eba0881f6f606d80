//! The tiny Llama model: written, read back, summarised, deterministic.

use std::path::Path;

use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, tiny_vocab, write_tiny_llama};
use evolve_gguf::{GgmlType, Value, read_path, tensor_to_f32};

/// Hand count for the default config: vocab 5 + 256 + 94 + 1 = 356, n_embd 64.
/// token_embd + output: 2 * 64 * 356; output_norm: 64;
/// per layer: 2 norms * 64 + q,o 2 * 64*64 + k,v 2 * 64*32 + gate,up,down 3 * 64*128 = 36,992.
const DEFAULT_PARAMS: u64 = 2 * 64 * 356 + 64 + 2 * 36_992;

fn write(dir: &Path, name: &str, cfg: &TinyLlamaConfig, wt: WeightType) -> std::path::PathBuf {
    let path = dir.join(name);
    write_tiny_llama(&path, cfg, wt).unwrap();
    path
}

#[test]
fn default_parameter_count_is_hand_computed() {
    assert_eq!(DEFAULT_PARAMS, 119_616);
    assert_eq!(tiny_vocab().len(), 356);
}

#[test]
fn each_weight_type_reads_back_with_expected_metadata_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    for (wt, matrix_type, file_type) in [
        (WeightType::F32, GgmlType::F32, 0),
        (WeightType::F16, GgmlType::F16, 1),
        (WeightType::Q8_0, GgmlType::Q8_0, 7),
    ] {
        let path = dir.path().join(format!("tiny-{wt}.gguf"));
        let returned = write_tiny_llama(&path, &TinyLlamaConfig::default(), wt).unwrap();
        assert!(!dir.path().join(format!("tiny-{wt}.gguf.tmp")).exists());
        let f = read_path(&path).unwrap();
        assert_eq!(returned, f.summary());

        assert_eq!(f.version, 3);
        assert_eq!(f.alignment, 32);
        assert_eq!(f.data_offset % 32, 0);
        assert_eq!(f.architecture(), Some("llama"));
        assert_eq!(f.get_str("general.name"), Some("evolve-tiny-random"));
        assert_eq!(f.get("general.file_type"), Some(&Value::U32(file_type)));
        assert_eq!(f.get("general.alignment"), Some(&Value::U32(32)));
        for (key, want) in [
            ("context_length", 512),
            ("embedding_length", 64),
            ("block_count", 2),
            ("feed_forward_length", 128),
            ("attention.head_count", 4),
            ("attention.head_count_kv", 2),
            ("rope.dimension_count", 16),
            ("vocab_size", 356),
        ] {
            assert_eq!(f.arch_u64(key), Some(want), "llama.{key}");
            assert!(
                matches!(f.get(&format!("llama.{key}")), Some(Value::U32(_))),
                "llama.{key} must be u32"
            );
        }
        assert_eq!(f.get("llama.rope.freq_base"), Some(&Value::F32(10000.0)));
        assert_eq!(
            f.get("llama.attention.layer_norm_rms_epsilon"),
            Some(&Value::F32(1e-5))
        );

        // Tokenizer arrays are parallel and match tiny_vocab().
        let vocab = tiny_vocab();
        let tokens = f.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
        let scores = f.get("tokenizer.ggml.scores").unwrap().as_array().unwrap();
        let types = f
            .get("tokenizer.ggml.token_type")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!((tokens.len(), scores.len(), types.len()), (356, 356, 356));
        assert_eq!(tokens[10].as_str(), Some(vocab[10].text.as_str()));
        assert_eq!(tokens[5 + 0x0A].as_str(), Some("<0x0A>"));
        assert_eq!(types[4], Value::I32(3));
        assert_eq!(f.get_str("tokenizer.ggml.model"), Some("llama"));
        assert_eq!(f.get_u64("tokenizer.ggml.bos_token_id"), Some(1));
        assert_eq!(f.get_u64("tokenizer.ggml.eos_token_id"), Some(2));
        assert_eq!(f.get_u64("tokenizer.ggml.eot_token_id"), Some(4));
        assert_eq!(
            f.get("tokenizer.ggml.add_space_prefix"),
            Some(&Value::Bool(false))
        );

        // Tensors: names, ggml-order dims, types.
        assert_eq!(f.tensors.len(), 21);
        let t = |name: &str| {
            f.tensors
                .iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(t("token_embd.weight").dims, vec![64, 356]);
        assert_eq!(t("output.weight").dims, vec![64, 356]);
        assert_eq!(t("blk.1.attn_k.weight").dims, vec![64, 32]);
        assert_eq!(t("blk.1.ffn_down.weight").dims, vec![128, 64]);
        assert_eq!(t("blk.0.ffn_gate.weight").dims, vec![64, 128]);
        assert_eq!(t("blk.0.attn_norm.weight").ggml_type, GgmlType::F32);
        assert_eq!(t("output_norm.weight").ggml_type, GgmlType::F32);
        assert_eq!(t("blk.1.attn_q.weight").ggml_type, matrix_type);
        for info in &f.tensors {
            assert_eq!(info.offset % 32, 0, "{}", info.name);
            let want = if info.dims.len() == 1 {
                GgmlType::F32
            } else {
                matrix_type
            };
            assert_eq!(info.ggml_type, want, "{}", info.name);
        }

        // Norms are exactly 1; matrices look like N(0, 0.02).
        let norm = tensor_to_f32(
            t("blk.0.ffn_norm.weight"),
            &f.read_tensor_bytes("blk.0.ffn_norm.weight").unwrap(),
        )
        .unwrap();
        assert!(norm.iter().all(|&v| v == 1.0));
        let q = tensor_to_f32(
            t("blk.0.attn_q.weight"),
            &f.read_tensor_bytes("blk.0.attn_q.weight").unwrap(),
        )
        .unwrap();
        let std = (q.iter().map(|v| v * v).sum::<f32>() / q.len() as f32).sqrt();
        assert!((0.017..0.023).contains(&std), "std {std}");

        let s = f.summary();
        assert_eq!(s.architecture, "llama");
        assert_eq!(s.parameter_count, DEFAULT_PARAMS);
        assert_eq!(s.context_length, Some(512));
        assert_eq!(s.vocab_size, Some(tokens.len() as u64));
        assert_eq!(s.block_count, Some(2));
        assert_eq!(s.head_count_kv, Some(2));
        assert_eq!(s.tokenizer_model.as_deref(), Some("llama"));
        assert!(
            s.chat_template
                .as_deref()
                .unwrap()
                .contains("<|im_start|>assistant")
        );
        assert_eq!(s.quantization, matrix_type.name());
        assert_eq!(s.file_type.as_deref(), Some(matrix_type.name()));
        assert_eq!(
            s.tensor_types.get("F32"),
            Some(&(if matrix_type == GgmlType::F32 { 21 } else { 5 }))
        );
        assert_eq!(s.tensor_count, 21);
        assert_eq!(s.file_size, std::fs::metadata(&path).unwrap().len());

        let text = s.to_text();
        assert!(
            text.contains("architecture:") && text.contains("llama"),
            "{text}"
        );
        assert!(text.contains("119.62 K (119616)"), "{text}");
        assert!(
            text.contains("(4 lines)"),
            "three newlines inside the template: {text}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["parameter_count"], 119_616);
    }
}

#[test]
fn quantization_falls_back_to_dominant_2d_type_without_file_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "q8.gguf",
        &TinyLlamaConfig::default(),
        WeightType::Q8_0,
    );
    let mut s = read_path(&path).unwrap().summary();
    assert_eq!(s.quantization, "Q8_0");
    // Rebuild without general.file_type by copying every KV except it.
    let f = read_path(&path).unwrap();
    let mut w = evolve_gguf::GgufWriter::new();
    for (k, v) in f.metadata.iter().filter(|(k, _)| k != "general.file_type") {
        w.add_metadata(k.clone(), v.clone());
    }
    for t in &f.tensors {
        let bytes = f.read_tensor_bytes(&t.name).unwrap();
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
    let copy = dir.path().join("copy.gguf");
    w.write_to_path(&copy).unwrap();
    s = read_path(&copy).unwrap().summary();
    assert_eq!(s.file_type, None);
    assert_eq!(
        s.quantization, "Q8_0",
        "5 F32 norms must not outvote 16 Q8_0 matrices"
    );
}

#[test]
fn same_config_gives_identical_bytes_and_other_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyLlamaConfig::default();
    for wt in [WeightType::F32, WeightType::Q8_0] {
        let a = std::fs::read(write(dir.path(), "a.gguf", &cfg, wt)).unwrap();
        let b = std::fs::read(write(dir.path(), "b.gguf", &cfg, wt)).unwrap();
        assert!(a == b, "{wt}: two writes differ");
        let other = TinyLlamaConfig {
            seed: cfg.seed + 1,
            ..cfg.clone()
        };
        let c = std::fs::read(write(dir.path(), "c.gguf", &other, wt)).unwrap();
        assert_eq!(a.len(), c.len());
        assert!(a != c, "{wt}: a different seed must change the weights");
    }
}

#[test]
fn weight_type_parses_and_rejects() {
    assert_eq!("f32".parse::<WeightType>().unwrap(), WeightType::F32);
    assert_eq!("F16".parse::<WeightType>().unwrap(), WeightType::F16);
    assert_eq!("q8_0".parse::<WeightType>().unwrap(), WeightType::Q8_0);
    let err = "q4".parse::<WeightType>().unwrap_err().to_string();
    assert!(err.contains("unknown weight type 'q4'"), "{err}");
}

#[test]
fn invalid_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyLlamaConfig {
        n_head: 3,
        ..TinyLlamaConfig::default()
    };
    let err = write_tiny_llama(&dir.path().join("x.gguf"), &cfg, WeightType::F32).unwrap_err();
    assert!(err.to_string().contains("multiple of n_head"), "{err}");
    // Q8_0 needs rows that are whole 32-element blocks.
    let cfg = TinyLlamaConfig {
        n_embd: 48,
        n_head: 4,
        n_head_kv: 2,
        ..TinyLlamaConfig::default()
    };
    let err = write_tiny_llama(&dir.path().join("y.gguf"), &cfg, WeightType::Q8_0).unwrap_err();
    assert!(err.to_string().contains("multiple of 32"), "{err}");
    assert!(!dir.path().join("y.gguf").exists());
}
