//! The adapter starts at the base model, changes it once trained, and is the only thing trained.

mod common;

use candle_core::{DType, Device, Tensor};
use common::max_abs_diff;
use evolve_train::{Lora, LoraConfig, LoraTarget};

fn tokens() -> Tensor {
    Tensor::new(
        &[[1u32, 30, 31, 32, 33, 34], [1, 90, 91, 92, 0, 0]],
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn a_fresh_adapter_is_the_base_model_and_a_nonzero_b_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_f32_model(dir.path());
    let lora = common::f32_lora(&model, 4, 8.0);
    let base = model.forward(&tokens()).unwrap();
    let with = model.forward_with(&tokens(), Some(&lora)).unwrap();
    assert_eq!(
        max_abs_diff(&base, &with),
        0.0,
        "B = 0 must give exactly the base logits"
    );

    let b = &lora.pair(1, LoraTarget::V).unwrap().b;
    b.set(&Tensor::ones(b.shape(), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    let changed = model.forward_with(&tokens(), Some(&lora)).unwrap();
    assert!(max_abs_diff(&base, &changed) > 1e-3);
    // The adapter off is still the base model: the reference policy needs no second copy.
    assert_eq!(
        max_abs_diff(&base, &model.forward_with(&tokens(), None).unwrap()),
        0.0
    );
}

#[test]
fn adapter_shapes_init_and_scale_follow_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_f32_model(dir.path());
    let cfg = LoraConfig {
        rank: 8,
        alpha: 16.0,
        targets: vec![LoraTarget::Q, LoraTarget::K, LoraTarget::Down],
        ..LoraConfig::default()
    };
    let lora = Lora::new(model.config(), cfg.clone(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(lora.scale(), 2.0);
    assert_eq!(
        LoraConfig {
            use_rslora: true,
            ..cfg.clone()
        }
        .scale(),
        16.0 / 8f64.sqrt()
    );
    let k = lora.pair(0, LoraTarget::K).unwrap();
    assert_eq!(k.a.dims(), &[8, 64]);
    assert_eq!(k.b.dims(), &[32, 8], "kv_dim = 2 heads × 16");
    let down = lora.pair(1, LoraTarget::Down).unwrap();
    assert_eq!(
        (down.a.dims(), down.b.dims()),
        (&[8, 128][..], &[64, 8][..])
    );
    assert!(lora.pair(0, LoraTarget::V).is_none());
    // 2 layers × 3 targets × (A + B)
    assert_eq!(lora.trainable_vars().len(), 12);
    assert_eq!(
        lora.n_params(),
        2 * (8 * 64 + 64 * 8 + 8 * 64 + 32 * 8 + 8 * 128 + 64 * 8)
    );
    // A ~ U(±1/√n_in): bounded, not constant, and reproducible from the seed.
    let a =
        k.a.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
    assert!(a.iter().all(|v| v.abs() <= 1.0 / 8.0));
    assert!(a.iter().any(|v| v.abs() > 0.1));
    let again = Lora::new(model.config(), cfg.clone(), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        again
            .pair(0, LoraTarget::K)
            .unwrap()
            .a
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        a
    );
    let other = Lora::new(
        model.config(),
        LoraConfig { seed: 1, ..cfg },
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_ne!(
        other
            .pair(0, LoraTarget::K)
            .unwrap()
            .a
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        a
    );
    assert!(
        Lora::new(
            model.config(),
            LoraConfig {
                rank: 0,
                ..LoraConfig::default()
            },
            DType::F32,
            &Device::Cpu
        )
        .is_err()
    );
}

#[test]
fn gradients_reach_every_adapter_variable() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_f32_model(dir.path());
    let lora = Lora::new(
        model.config(),
        LoraConfig {
            rank: 2,
            ..LoraConfig::default()
        },
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    for (_, _, p) in lora.pairs() {
        p.b.set(&(Tensor::ones(p.b.shape(), DType::F32, &Device::Cpu).unwrap() * 0.01).unwrap())
            .unwrap();
    }
    let loss = model
        .forward_with(&tokens(), Some(&lora))
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for v in lora.trainable_vars() {
        let g = grads
            .get(v.as_tensor())
            .expect("every LoRA var gets a gradient");
        assert!(
            g.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }
    // The optimizer is built from exactly these variables; the VarMap holds nothing else.
    assert_eq!(lora.varmap().all_vars().len(), lora.trainable_vars().len());
}

#[test]
fn dropout_is_active_only_in_training_mode() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_f32_model(dir.path());
    let lora = Lora::new(
        model.config(),
        LoraConfig {
            rank: 4,
            dropout: 0.5,
            ..LoraConfig::default()
        },
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    for (_, _, p) in lora.pairs() {
        p.b.set(&(Tensor::ones(p.b.shape(), DType::F32, &Device::Cpu).unwrap() * 0.05).unwrap())
            .unwrap();
    }
    let eval1 = model.forward_with(&tokens(), Some(&lora)).unwrap();
    let eval2 = model.forward_with(&tokens(), Some(&lora)).unwrap();
    assert_eq!(max_abs_diff(&eval1, &eval2), 0.0);
    lora.set_training(true);
    let train1 = model.forward_with(&tokens(), Some(&lora)).unwrap();
    let train2 = model.forward_with(&tokens(), Some(&lora)).unwrap();
    lora.set_training(false);
    assert!(
        max_abs_diff(&train1, &train2) > 1e-4,
        "fresh masks each forward"
    );
    assert!(max_abs_diff(&train1, &eval1) > 1e-4);
}
