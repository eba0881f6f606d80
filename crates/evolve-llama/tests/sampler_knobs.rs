//! Each sampler knob does what it says, through the batched path and the single-sequence path.

mod common;

use common::tiny_engine;
use evolve_core::{GenerationRequest, SamplerConfig};
use evolve_llama::LlamaEngine;

fn sample_batched(
    engine: &LlamaEngine,
    prompt: &str,
    cfg: &SamplerConfig,
) -> evolve_core::Completion {
    let mut out = engine
        .generate_batch(
            &[GenerationRequest::new(prompt, cfg.clone(), 1)],
            &mut |_| true,
        )
        .unwrap();
    out.remove(0).remove(0)
}

/// Random sampling that would wander if a knob did not pin it down.
fn hot(seed: u32, max_tokens: u32) -> SamplerConfig {
    SamplerConfig {
        seed,
        max_tokens,
        temperature: 1.5,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..Default::default()
    }
}

#[test]
fn knobs_that_keep_only_the_best_token_equal_greedy() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Pick.").unwrap();
    let greedy = sample_batched(&engine, &prompt, &SamplerConfig::greedy(16));
    assert_eq!(greedy.tokens.len(), 16, "precondition: no early end");
    let unpinned = sample_batched(&engine, &prompt, &hot(1, 16));
    assert_ne!(
        unpinned.tokens, greedy.tokens,
        "precondition: hot sampling differs from greedy"
    );
    for (name, cfg) in [
        (
            "top_k=1",
            SamplerConfig {
                top_k: 1,
                ..hot(1, 16)
            },
        ),
        (
            "top_p~0",
            SamplerConfig {
                top_p: 1e-6,
                ..hot(1, 16)
            },
        ),
        (
            "min_p=1",
            SamplerConfig {
                min_p: 1.0,
                ..hot(1, 16)
            },
        ),
        (
            "temperature~0",
            SamplerConfig {
                temperature: 1e-4,
                ..hot(1, 16)
            },
        ),
    ] {
        assert_eq!(
            sample_batched(&engine, &prompt, &cfg).tokens,
            greedy.tokens,
            "{name}"
        );
        assert_eq!(
            engine.generate(&prompt, &cfg, |_| true).unwrap().tokens,
            greedy.tokens,
            "{name} (single)"
        );
    }
}

#[test]
fn max_tokens_is_honoured_and_zero_gives_an_empty_answer() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Go on.").unwrap();
    for max in [0, 1, 7] {
        let c = sample_batched(&engine, &prompt, &SamplerConfig::greedy(max));
        assert_eq!(c.tokens.len(), max as usize);
        assert!(!c.stopped, "cut by max_tokens, not ended by the model");
    }
}

#[test]
fn a_stop_string_cuts_the_answer_before_it() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Write.").unwrap();
    let full = sample_batched(&engine, &prompt, &SamplerConfig::greedy(20)).text;
    let chars: Vec<char> = full.chars().collect();
    assert!(
        chars.len() >= 8,
        "precondition: a long enough answer: {full:?}"
    );
    let stop: String = chars[5..7].iter().collect();
    let cut_at = full.find(&stop).unwrap();
    let cfg = SamplerConfig {
        stop: vec![stop.clone()],
        ..SamplerConfig::greedy(20)
    };
    let batched = sample_batched(&engine, &prompt, &cfg);
    let single = engine.generate(&prompt, &cfg, |_| true).unwrap();
    for (text, stopped) in [
        (batched.text, batched.stopped),
        (single.text, single.stopped),
    ] {
        assert_eq!(text, full[..cut_at], "stop {stop:?}");
        assert!(stopped);
    }
}

#[test]
fn repeat_penalty_changes_a_repetitive_greedy_answer() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Repeat.").unwrap();
    let plain = sample_batched(&engine, &prompt, &SamplerConfig::greedy(40));
    let distinct: std::collections::HashSet<_> = plain.tokens.iter().collect();
    assert!(
        distinct.len() < plain.tokens.len(),
        "precondition: greedy repeats a token"
    );
    let penalised = sample_batched(
        &engine,
        &prompt,
        &SamplerConfig {
            repeat_penalty: 3.0,
            ..SamplerConfig::greedy(40)
        },
    );
    assert_ne!(plain.tokens, penalised.tokens);
    let distinct_p: std::collections::HashSet<_> = penalised.tokens.iter().collect();
    assert!(
        distinct_p.len() >= distinct.len(),
        "the penalty should not reduce variety"
    );
}

#[test]
fn an_end_of_generation_token_ends_a_sample_without_showing_up_in_it() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Anything.").unwrap();
    // Hot sampling over 356 tokens draws `</s>` now and then; these seeds do within 64 tokens.
    let out = engine
        .generate_batch(
            &[GenerationRequest::new(&prompt, hot(3, 64), 8)],
            &mut |_| true,
        )
        .unwrap();
    let ended: Vec<_> = out[0].iter().filter(|c| c.stopped).collect();
    assert!(
        !ended.is_empty(),
        "precondition: some sample drew an end token"
    );
    for c in ended {
        assert!(c.tokens.len() < 64);
        assert_eq!(engine.detokenize(&c.tokens), c.text);
        let end_tokens = [
            evolve_gguf::tiny::EOS_ID as i32,
            evolve_gguf::tiny::IM_END_ID as i32,
        ];
        assert!(
            c.tokens.iter().all(|t| !end_tokens.contains(t)),
            "end tokens are not part of the answer"
        );
    }
}

#[test]
fn ignore_eos_runs_every_sample_to_max_tokens_without_end_tokens() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Anything.").unwrap();
    let end_tokens = [
        evolve_gguf::tiny::EOS_ID as i32,
        evolve_gguf::tiny::IM_END_ID as i32,
    ];
    let ignoring = SamplerConfig {
        ignore_eos: true,
        ..hot(3, 64)
    };
    let plain = engine
        .generate_batch(
            &[GenerationRequest::new(&prompt, hot(3, 64), 8)],
            &mut |_| true,
        )
        .unwrap();
    assert!(
        plain[0].iter().any(|c| c.stopped),
        "precondition: without ignore_eos some sample ends early"
    );
    let out = engine
        .generate_batch(
            &[GenerationRequest::new(&prompt, ignoring.clone(), 8)],
            &mut |_| true,
        )
        .unwrap();
    for c in &out[0] {
        assert_eq!(c.tokens.len(), 64);
        assert!(!c.stopped);
        assert!(c.tokens.iter().all(|t| !end_tokens.contains(t)));
    }
    // The single-sequence path honours it too.
    let single = engine.generate(&prompt, &ignoring, |_| true).unwrap();
    assert_eq!(single.tokens.len(), 64);
    assert!(single.tokens.iter().all(|t| !end_tokens.contains(t)));
}

#[test]
fn the_engine_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<evolve_llama::LlamaEngine>();
}
