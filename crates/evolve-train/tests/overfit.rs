//! The EVOLVE loss must be able to drive every pair's implicit reward margin positive: if it
//! cannot overfit 8 pairs, the gradients or the loss are wrong.

mod common;

use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use common::random_pairs;
use evolve_train::loss::{EvolveLossConfig, PreferencePair, evolve_loss, reference_logps};

#[test]
fn dpo_overfits_eight_pairs_to_full_reward_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_f32_model(dir.path());
    let lora = common::f32_lora(&model, 8, 16.0);
    let data = random_pairs(8, 3);
    let pairs: Vec<&PreferencePair> = data.iter().collect();
    // β 0.5 rather than TRL's 0.1: the tiny model's logits are bounded (|w_out|·|rms-normed x|
    // ≈ 1.3, and norms/LM head carry no adapter), so log-prob margins saturate near 10 nats and
    // a small β could never push the loss near 0.
    let cfg = EvolveLossConfig {
        beta: 0.5,
        lambda_refine: 1.0,
        nll_weight: 0.0,
        ..EvolveLossConfig::default()
    };
    let refs = reference_logps(&model, None, &pairs, cfg.kind, 0).unwrap();
    let mut opt = AdamW::new(
        lora.trainable_vars(),
        ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
    .unwrap();

    let first = evolve_loss(&model, &lora, &pairs, &refs, &cfg, 0).unwrap();
    let first_loss = first.loss.to_scalar::<f32>().unwrap();
    assert!(
        (first_loss - std::f32::consts::LN_2).abs() < 1e-5,
        "starts at log 2 (policy = reference): {first_loss}"
    );
    let started = std::time::Instant::now();
    let mut reached = None;
    let mut fitted = None;
    let mut last = first;
    let mut steps = 0;
    for step in 1..=60 {
        opt.backward_step(&last.loss).unwrap();
        steps = step;
        last = evolve_loss(&model, &lora, &pairs, &refs, &cfg, 0).unwrap();
        if last.metrics.rewards_accuracies == 1.0 && reached.is_none() {
            reached = Some(step);
        }
        // Fitted: every pair won by a wide margin (mean loss < 0.05).
        if last.loss.to_scalar::<f32>().unwrap() < 0.05 {
            fitted = Some(step);
            break;
        }
    }
    let loss = last.loss.to_scalar::<f32>().unwrap();
    eprintln!(
        "rewards/accuracies = 1.0 after {reached:?} steps, loss < 0.05 after {fitted:?}; loss {first_loss} → {loss}; \
         margin {:.3}; {:.1} ms/step (8 pairs, one forward+backward+AdamW)",
        last.metrics.rewards_margins,
        started.elapsed().as_secs_f64() * 1e3 / steps as f64
    );
    assert!(reached.is_some(), "rewards/accuracies never reached 1.0");
    assert!(
        fitted.is_some(),
        "the loss did not fall below 0.05 in 60 steps: {loss}"
    );
    assert_eq!(last.metrics.rewards_accuracies, 1.0);
    assert!(last.metrics.rewards_margins > 1.0);
}
