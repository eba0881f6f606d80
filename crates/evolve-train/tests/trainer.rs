//! The training loop: schedule, cancellation, checkpoints and that it actually learns.

mod common;

use candle_core::{DType, Device};
use common::{random_pairs, tiny_llama};
use evolve_gguf::tiny::WeightType;
use evolve_train::OptimConfig;
use evolve_train::optim::{LrSchedule, learning_rate};
use evolve_train::{LlamaModel, Lora, Reference, StepMetrics, TrainConfig, Trainer};
use std::sync::atomic::Ordering;

fn model(dir: &std::path::Path) -> LlamaModel {
    LlamaModel::load(&tiny_llama(dir, WeightType::F32), &Device::Cpu, DType::F32).unwrap()
}

fn lora(model: &LlamaModel) -> Lora {
    common::f32_lora(model, 4, 8.0)
}

fn config() -> TrainConfig {
    TrainConfig {
        beta: 0.5,
        optim: OptimConfig {
            lr: 1e-2,
            warmup_steps: 2,
            batch_size: 2,
            grad_accum: 2,
            epochs: 3,
            ..OptimConfig::default()
        },
        ..TrainConfig::default()
    }
}

fn weights(lora: &Lora) -> Vec<Vec<f32>> {
    lora.trainable_vars()
        .iter()
        .map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn training_reports_trl_metrics_follows_the_schedule_and_learns() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(8, 5);
    let cfg = TrainConfig {
        optim: OptimConfig {
            epochs: 8,
            ..config().optim
        },
        ..config()
    };
    let mut trainer = Trainer::new(&model, lora(&model), cfg.clone()).unwrap();
    let mut log: Vec<StepMetrics> = vec![];
    let outcome = trainer
        .train(&data, |m| {
            log.push(m.clone());
            true
        })
        .unwrap();
    assert!(!outcome.cancelled);
    // 8 pairs / (2 pairs × 2 micro-batches) = 2 steps per epoch.
    assert_eq!(outcome.steps, 16);
    assert_eq!(log.len(), 16);
    for (i, m) in log.iter().enumerate() {
        assert_eq!(m.step, i + 1);
        assert_eq!(
            m.learning_rate,
            learning_rate(LrSchedule::Cosine, 1e-2, i, 2, 16)
        );
        assert!(m.grad_norm > 0.0 && m.tokens_per_second > 0.0);
        assert_eq!(m.dpo.n_pairs, 4);
    }
    assert_eq!(log[0].learning_rate, 0.0, "warm-up starts at 0");
    assert!((log[0].loss - std::f64::consts::LN_2).abs() < 1e-5);
    assert!((log[1].epoch - 1.0).abs() < 1e-12);
    let names: Vec<&str> = log[0].named().iter().map(|(n, _)| *n).collect();
    for want in [
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "grad_norm",
        "learning_rate",
        "tokens_per_second",
    ] {
        assert!(names.contains(&want), "missing metric {want}");
    }
    let last = log.last().unwrap();
    eprintln!("last step: {:?}", last.named());
    assert!(
        last.loss < 0.5 * log[0].loss,
        "{} → {}",
        log[0].loss,
        last.loss
    );
    assert_eq!(last.dpo.rewards_accuracies, 1.0);
}

#[test]
fn returning_false_after_step_two_stops_training() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(8, 6);
    let mut trainer = Trainer::new(&model, lora(&model), config()).unwrap();
    let mut seen = 0;
    let outcome = trainer
        .train(&data, |m| {
            seen = m.step;
            m.step < 2
        })
        .unwrap();
    assert!(outcome.cancelled);
    assert_eq!((outcome.steps, seen, trainer.step()), (2, 2, 2));
}

#[test]
fn the_cancel_flag_stops_before_the_next_update() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(8, 6);
    let mut trainer = Trainer::new(
        &model,
        lora(&model),
        TrainConfig {
            optim: OptimConfig {
                warmup_steps: 0,
                ..config().optim
            },
            ..config()
        },
    )
    .unwrap();
    let cancel = trainer.cancel_handle();
    let before = weights(trainer.lora());
    let outcome = trainer
        .train(&data, |m| {
            if m.step == 1 {
                cancel.store(true, Ordering::Relaxed);
            }
            true
        })
        .unwrap();
    assert!(outcome.cancelled);
    assert_eq!(trainer.step(), 1);
    assert!(
        weights(trainer.lora()) != before,
        "step 1 updated the adapter"
    );
    // Already cancelled: nothing more happens, not even a partial step.
    let after_one = weights(trainer.lora());
    let again = trainer.train(&data, |_| panic!("no step may run")).unwrap();
    assert_eq!((again.steps, again.cancelled), (1, true));
    assert_eq!(weights(trainer.lora()), after_one);
}

#[test]
fn a_resumed_run_ends_exactly_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(8, 7);
    let mut straight = Trainer::new(&model, lora(&model), config()).unwrap();
    let mut straight_steps = vec![];
    straight
        .train(&data, |m| {
            straight_steps.push((m.step, m.loss));
            true
        })
        .unwrap();
    assert_eq!(straight.step(), 6, "3 epochs × 2 steps");

    let ckpt = dir.path().join("ckpt");
    let mut first = Trainer::new(&model, lora(&model), config()).unwrap();
    first.train(&data, |m| m.step < 3).unwrap();
    first.save_checkpoint(&ckpt).unwrap();
    let saved = weights(first.lora());
    for f in [
        evolve_train::CHECKPOINT_WEIGHTS,
        evolve_train::CHECKPOINT_OPTIMIZER,
        evolve_train::CHECKPOINT_STATE,
    ] {
        assert!(ckpt.join(f).is_file(), "{f}");
    }

    let mut resumed = Trainer::resume(&model, &ckpt).unwrap();
    assert_eq!(resumed.step(), 3);
    assert_eq!(resumed.config(), &config());
    assert_eq!(weights(resumed.lora()), saved);
    assert_eq!(
        resumed.cached_reference_logps().len(),
        8,
        "reference log-probs travel with the checkpoint"
    );
    let mut steps = vec![];
    let outcome = resumed
        .train(&data, |m| {
            steps.push((m.step, m.loss));
            true
        })
        .unwrap();
    assert_eq!(outcome.steps, 6);
    assert_eq!(
        steps,
        straight_steps[3..].to_vec(),
        "same steps, same losses"
    );
    assert_eq!(
        weights(resumed.lora()),
        weights(straight.lora()),
        "same final adapter"
    );
    assert!(Trainer::resume(&model, &dir.path().join("nowhere")).is_err());
}

#[test]
fn reference_log_probs_are_the_base_models_and_computed_once_per_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(8, 8);
    let mut trainer = Trainer::new(&model, lora(&model), config()).unwrap();
    trainer.train(&data, |_| true).unwrap();
    let cached = trainer.cached_reference_logps().clone();
    assert_eq!(cached.len(), 8);
    // The adapter has moved a lot by now; the cache must still hold the adapter-off values.
    let pairs: Vec<_> = data.iter().collect();
    let fresh =
        evolve_train::loss::reference_logps(&model, None, &pairs, Default::default(), 0).unwrap();
    for (i, r) in fresh.iter().enumerate() {
        assert!(
            (cached[&i].chosen - r.chosen).abs() < 1e-4
                && (cached[&i].rejected - r.rejected).abs() < 1e-4
        );
    }
    // New data invalidates the cache instead of reusing values by index.
    let other = random_pairs(4, 9);
    let mut t2 = Trainer::new(&model, lora(&model), config()).unwrap();
    t2.train(&data, |m| m.step < 1).unwrap();
    t2.train(&other, |m| m.step < 2).unwrap();
    let other_pairs: Vec<_> = other.iter().collect();
    let want =
        evolve_train::loss::reference_logps(&model, None, &other_pairs, Default::default(), 0)
            .unwrap();
    let got = t2.cached_reference_logps();
    assert!(got.len() <= 4 && !got.is_empty());
    for (i, r) in got {
        assert!(
            (r.chosen - want[*i].chosen).abs() < 1e-4,
            "pair {i} reused a stale reference"
        );
    }
}

#[test]
fn the_initial_reference_is_the_adapter_training_starts_from_and_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(8, 11);
    // "The previous round": an adapter trained away from the base.
    let mut previous = Trainer::new(&model, lora(&model), config()).unwrap();
    previous.train(&data, |_| true).unwrap();
    let saved = dir.path().join("previous.safetensors");
    previous.lora().varmap().save(&saved).unwrap();
    let start = || {
        let mut l = lora(&model);
        l.load_weights(&saved).unwrap();
        l
    };
    let pairs: Vec<_> = data.iter().collect();
    let on_start =
        evolve_train::loss::reference_logps(&model, Some(&start()), &pairs, Default::default(), 0)
            .unwrap();
    let initial = TrainConfig {
        reference: Reference::Initial,
        optim: OptimConfig {
            warmup_steps: 0,
            ..config().optim
        },
        ..config()
    };
    let first_step = |reference: Reference| {
        let mut t = Trainer::new(
            &model,
            start(),
            TrainConfig {
                reference,
                ..initial.clone()
            },
        )
        .unwrap();
        let mut first = None;
        t.train(&data, |m| {
            first.get_or_insert(m.clone());
            false
        })
        .unwrap();
        (first.unwrap(), t.cached_reference_logps().clone())
    };
    // Against its own starting point the policy has no reward yet: loss ln 2, margin 0.
    let (m, cached) = first_step(Reference::Initial);
    assert!(
        m.dpo.rewards_margins.abs() < 1e-5,
        "{}",
        m.dpo.rewards_margins
    );
    assert!((m.loss - std::f64::consts::LN_2).abs() < 1e-5);
    assert_eq!(cached.len(), 8, "all computed before the first step");
    for (i, r) in on_start.iter().enumerate() {
        assert!((cached[&i].chosen - r.chosen).abs() < 1e-4);
        assert!((cached[&i].rejected - r.rejected).abs() < 1e-4);
    }
    // Against the base, the same start already has the previous round's margin.
    let (m, _) = first_step(Reference::Base);
    assert!(m.dpo.rewards_margins > 0.05, "{}", m.dpo.rewards_margins);

    // Resumed from a checkpoint, the run keeps the starting point's log-probs.
    let ckpt = dir.path().join("ckpt");
    let mut straight = Trainer::new(&model, start(), initial.clone()).unwrap();
    let mut want = vec![];
    straight
        .train(&data, |m| {
            want.push(m.loss);
            true
        })
        .unwrap();
    let mut first = Trainer::new(&model, start(), initial.clone()).unwrap();
    first.train(&data, |m| m.step < 2).unwrap();
    first.save_checkpoint(&ckpt).unwrap();
    let mut resumed = Trainer::resume(&model, &ckpt).unwrap();
    let mut got = vec![];
    resumed
        .train(&data, |m| {
            got.push(m.loss);
            true
        })
        .unwrap();
    assert_eq!(got, want[2..].to_vec());
    // Other pairs after steps were taken: the starting point is gone, so it is refused.
    let err = resumed.train(&random_pairs(16, 12), |_| true).unwrap_err();
    assert!(err.to_string().contains("initial adapter"), "{err}");
}

#[test]
fn two_accumulated_micro_batches_equal_one_batch_of_the_same_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(4, 10);
    let run = |batch_size, grad_accum| {
        let cfg = TrainConfig {
            optim: OptimConfig {
                batch_size,
                grad_accum,
                warmup_steps: 0,
                max_grad_norm: 0.0,
                epochs: 1,
                ..config().optim
            },
            ..config()
        };
        let mut t = Trainer::new(&model, lora(&model), cfg).unwrap();
        let mut m = None;
        t.train(&data, |s| {
            m = Some(s.clone());
            true
        })
        .unwrap();
        (weights(t.lora()), m.unwrap())
    };
    let (w_accum, m_accum) = run(2, 2);
    let (w_batch, m_batch) = run(4, 1);
    assert_eq!(m_accum.step, 1);
    assert!(
        (m_accum.grad_norm - m_batch.grad_norm).abs() < 1e-5 * m_batch.grad_norm,
        "{} vs {}",
        m_accum.grad_norm,
        m_batch.grad_norm
    );
    assert!((m_accum.loss - m_batch.loss).abs() < 1e-6);
    let max_diff = w_accum
        .iter()
        .flatten()
        .zip(w_batch.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_diff < 1e-5, "{max_diff}");
}

#[test]
fn bad_configs_and_empty_data_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    assert!(
        Trainer::new(
            &model,
            lora(&model),
            TrainConfig {
                optim: OptimConfig {
                    batch_size: 0,
                    ..config().optim
                },
                ..config()
            }
        )
        .is_err()
    );
    assert!(
        Trainer::new(
            &model,
            lora(&model),
            TrainConfig {
                beta: 0.0,
                ..config()
            }
        )
        .is_err()
    );
    let mut t = Trainer::new(&model, lora(&model), config()).unwrap();
    assert!(t.train(&[], |_| true).is_err());
}

#[test]
fn another_thread_can_cancel_a_running_training_within_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let data = random_pairs(8, 12);
    let mut trainer = Trainer::new(
        &model,
        lora(&model),
        TrainConfig {
            optim: OptimConfig {
                epochs: 50,
                ..config().optim
            },
            ..config()
        },
    )
    .unwrap();
    let cancel = trainer.cancel_handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            trainer
                .train(&data, |m| {
                    let _ = tx.send(m.step);
                    true
                })
                .unwrap()
        });
        assert_eq!(rx.recv().unwrap(), 1);
        cancel.store(true, Ordering::Relaxed);
        worker.join().unwrap()
    });
    assert!(outcome.cancelled);
    // Step 1 was done when the flag was set; at most the step then running could finish.
    assert!(outcome.steps <= 2, "ran {} of 100 steps", outcome.steps);
}
