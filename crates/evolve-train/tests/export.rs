//! Exported adapters must mean the same thing to their consumers as to candle: llama.cpp must
//! produce candle's adapted logits, and PEFT files must follow transformers' layout.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{
    assert_llama_cpp_applies_the_adapter, tiny_gemma3, tiny_llama, tiny_phi3, tiny_qwen2,
    tiny_qwen3, trained_adapter,
};
use evolve_gguf::tiny::WeightType;
use evolve_gguf::{GgmlType, Value, read_path};
use evolve_train::export::{
    PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, export_gguf_lora, export_peft, unpermute_gguf_to_hf,
};
use evolve_train::{LlamaModel, LoraConfig, LoraTarget};

#[test]
fn llama_cpp_with_the_exported_gguf_lora_reproduces_candle_logits() {
    let dir = tempfile::tempdir().unwrap();
    assert_llama_cpp_applies_the_adapter(
        &tiny_llama(dir.path(), WeightType::F32),
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            ..LoraConfig::default()
        },
    );
}

#[test]
fn rslora_scale_is_baked_into_b_for_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    assert_llama_cpp_applies_the_adapter(
        &tiny_llama(dir.path(), WeightType::F32),
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            use_rslora: true,
            targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Up],
            ..LoraConfig::default()
        },
    );
}

#[test]
fn qwen2_adapter_works_in_llama_cpp_too() {
    let dir = tempfile::tempdir().unwrap();
    assert_llama_cpp_applies_the_adapter(
        &tiny_qwen2(dir.path()),
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..LoraConfig::default()
        },
    );
}

#[test]
fn qwen3_adapter_works_in_llama_cpp_too() {
    let dir = tempfile::tempdir().unwrap();
    assert_llama_cpp_applies_the_adapter(
        &tiny_qwen3(dir.path()),
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            ..LoraConfig::default()
        },
    );
}

#[test]
fn gemma3_adapter_works_in_llama_cpp_too() {
    let dir = tempfile::tempdir().unwrap();
    assert_llama_cpp_applies_the_adapter(
        &tiny_gemma3(dir.path()),
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: LoraTarget::ALL.to_vec(),
            ..LoraConfig::default()
        },
    );
}

/// Phi-3's adapter goes to llama.cpp as one adapter per fused matrix; one on q and v only
/// leaves k's rows of the fused q/k/v at zero.
#[test]
fn phi3_adapter_on_fused_matrices_works_in_llama_cpp_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_phi3(dir.path());
    for targets in [
        LoraTarget::ALL.to_vec(),
        vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Up],
    ] {
        assert_llama_cpp_applies_the_adapter(
            &path,
            LoraConfig {
                rank: 4,
                alpha: 8.0,
                targets,
                ..LoraConfig::default()
            },
        );
    }
}

#[test]
fn gguf_lora_has_the_metadata_and_shapes_llama_cpp_expects() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_f32_model(dir.path());
    let lora = common::f32_lora(&model, 8, 16.0);
    let path = dir.path().join("a.gguf");
    export_gguf_lora(&lora, model.config(), &path).unwrap();
    let f = read_path(&path).unwrap();
    assert_eq!(f.get_str("general.architecture"), Some("llama"));
    assert_eq!(f.get_str("general.type"), Some("adapter"));
    assert_eq!(f.get_str("adapter.type"), Some("lora"));
    assert_eq!(f.get("adapter.lora.alpha"), Some(&Value::F32(16.0)));
    assert_eq!(f.tensors.len(), 2 * 7 * 2);
    let t = |n: &str| f.tensor(n).unwrap_or_else(|| panic!("{n} missing"));
    assert_eq!(
        t("blk.0.attn_q.weight.lora_a").dims,
        vec![64, 8],
        "ggml [n_in, r]"
    );
    assert_eq!(
        t("blk.0.attn_q.weight.lora_b").dims,
        vec![8, 64],
        "ggml [r, n_out]"
    );
    assert_eq!(t("blk.1.attn_k.weight.lora_b").dims, vec![8, 32]);
    assert_eq!(t("blk.1.ffn_down.weight.lora_a").dims, vec![128, 8]);
    assert_eq!(t("blk.1.ffn_down.weight.lora_b").dims, vec![8, 64]);
    assert!(f.tensors.iter().all(|t| t.ggml_type == GgmlType::F32));
}

#[test]
fn peft_export_has_transformers_keys_shapes_config_and_unpermuted_q_k() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_f32_model(dir.path());
    let lora = trained_adapter(
        &model,
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            ..LoraConfig::default()
        },
    );
    let out = dir.path().join("peft");
    export_peft(&lora, model.config(), &out, Some("evolve/tiny")).unwrap();

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(PEFT_CONFIG_FILE)).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], 8);
    assert_eq!(config["lora_alpha"], 16.0);
    assert_eq!(config["lora_dropout"], 0.05);
    assert_eq!(config["use_rslora"], false);
    assert_eq!(config["bias"], "none");
    assert_eq!(config["base_model_name_or_path"], "evolve/tiny");
    assert_eq!(
        config["target_modules"],
        serde_json::json!([
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj"
        ])
    );

    let tensors =
        candle_core::safetensors::load(out.join(PEFT_WEIGHTS_FILE), &Device::Cpu).unwrap();
    assert_eq!(tensors.len(), 2 * 7 * 2);
    let get = |k: &str| tensors.get(k).unwrap_or_else(|| panic!("{k} missing"));
    let p = "base_model.model.model.layers";
    assert_eq!(
        get(&format!("{p}.0.self_attn.q_proj.lora_A.weight")).dims(),
        &[8, 64]
    );
    assert_eq!(
        get(&format!("{p}.0.self_attn.q_proj.lora_B.weight")).dims(),
        &[64, 8]
    );
    assert_eq!(
        get(&format!("{p}.1.self_attn.k_proj.lora_B.weight")).dims(),
        &[32, 8]
    );
    assert_eq!(
        get(&format!("{p}.1.mlp.down_proj.lora_A.weight")).dims(),
        &[8, 128]
    );
    assert_eq!(
        get(&format!("{p}.1.mlp.gate_proj.lora_B.weight")).dims(),
        &[128, 8]
    );

    let same = |a: &Tensor, b: &Tensor| {
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let q = lora.pair(0, LoraTarget::Q).unwrap();
    let k = lora.pair(1, LoraTarget::K).unwrap();
    let v = lora.pair(0, LoraTarget::V).unwrap();
    // q/k B rows go back to HF's half layout (4 q heads, 2 kv heads); A and other B stay.
    assert!(same(
        get(&format!("{p}.0.self_attn.q_proj.lora_B.weight")),
        &unpermute_gguf_to_hf(q.b.as_tensor(), 4).unwrap()
    ));
    assert!(
        !same(
            get(&format!("{p}.0.self_attn.q_proj.lora_B.weight")),
            q.b.as_tensor()
        ),
        "trained B must actually move"
    );
    assert!(same(
        get(&format!("{p}.1.self_attn.k_proj.lora_B.weight")),
        &unpermute_gguf_to_hf(k.b.as_tensor(), 2).unwrap()
    ));
    assert!(same(
        get(&format!("{p}.0.self_attn.q_proj.lora_A.weight")),
        q.a.as_tensor()
    ));
    assert!(same(
        get(&format!("{p}.0.self_attn.v_proj.lora_B.weight")),
        v.b.as_tensor()
    ));
}

#[test]
fn qwen2_peft_export_keeps_q_k_rows_as_trained() {
    let dir = tempfile::tempdir().unwrap();
    let model = LlamaModel::load(&tiny_qwen2(dir.path()), &Device::Cpu, DType::F32).unwrap();
    let lora = trained_adapter(
        &model,
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: vec![LoraTarget::Q],
            ..LoraConfig::default()
        },
    );
    let out = dir.path().join("peft");
    export_peft(&lora, model.config(), &out, None).unwrap();
    let tensors =
        candle_core::safetensors::load(out.join(PEFT_WEIGHTS_FILE), &Device::Cpu).unwrap();
    let b = &tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"];
    let trained = lora.pair(0, LoraTarget::Q).unwrap().b.as_tensor();
    assert_eq!(
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        trained.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

/// Phi-3's PEFT adapter sits on transformers' fused `qkv_proj` / `gate_up_proj`: one adapter
/// each, whose rank and alpha (`rank_pattern`, `alpha_pattern`) make its update exactly the
/// stacked updates of the parts candle trained.
#[test]
fn phi3_peft_export_fuses_the_parts_into_transformers_modules() {
    let dir = tempfile::tempdir().unwrap();
    let model = LlamaModel::load(&tiny_phi3(dir.path()), &Device::Cpu, DType::F32).unwrap();
    let lora = trained_adapter(
        &model,
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: vec![
                LoraTarget::Q,
                LoraTarget::V,
                LoraTarget::Gate,
                LoraTarget::Up,
            ],
            ..LoraConfig::default()
        },
    );
    let out = dir.path().join("peft");
    export_peft(&lora, model.config(), &out, None).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(PEFT_CONFIG_FILE)).unwrap())
            .unwrap();
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["qkv_proj", "gate_up_proj"])
    );
    assert_eq!(config["rank_pattern"]["qkv_proj"], 8);
    assert_eq!(config["rank_pattern"]["gate_up_proj"], 8);
    let tensors =
        candle_core::safetensors::load(out.join(PEFT_WEIGHTS_FILE), &Device::Cpu).unwrap();
    let cfg = model.config();
    for (module, path, parts) in [
        (
            "qkv_proj",
            "self_attn.qkv_proj",
            vec![
                (LoraTarget::Q, cfg.q_dim()),
                (LoraTarget::K, cfg.kv_dim()),
                (LoraTarget::V, cfg.kv_dim()),
            ],
        ),
        (
            "gate_up_proj",
            "mlp.gate_up_proj",
            vec![(LoraTarget::Gate, cfg.n_ff), (LoraTarget::Up, cfg.n_ff)],
        ),
    ] {
        let scale = config["alpha_pattern"][module].as_f64().unwrap()
            / config["rank_pattern"][module].as_f64().unwrap();
        for layer in 0..cfg.n_layer {
            let key =
                |half: &str| format!("base_model.model.model.layers.{layer}.{path}.{half}.weight");
            let fused = (tensors[&key("lora_B")]
                .matmul(&tensors[&key("lora_A")])
                .unwrap()
                * scale)
                .unwrap();
            let mut row = 0;
            for (target, rows) in &parts {
                let got = fused.narrow(0, row, *rows).unwrap();
                let want = match lora.pair(layer, *target) {
                    Some(p) => {
                        (p.b.as_tensor().matmul(p.a.as_tensor()).unwrap() * lora.scale()).unwrap()
                    }
                    None => got.zeros_like().unwrap(),
                };
                let diff = common::max_abs_diff(&got, &want);
                assert!(diff < 1e-6, "layer {layer} {target:?}: {diff}");
                row += rows;
            }
        }
    }
}
