//! Batched sampling (shared prompt KV, continuous batching) and self-refinement on the tiny model.

mod common;

use common::{options, tiny_engine, tiny_path};
use evolve_core::{
    ChainStart, ChatMessage, GenerationEvent, GenerationRequest, PromptFormat, RefinementTemplate,
    SamplerConfig, refine_chain, refine_chains,
};
use evolve_gguf::tiny::WeightType;
use evolve_llama::{EngineOptions, LlamaEngine, LlamaError};
use std::collections::HashMap;

fn sampling(seed: u32, max_tokens: u32) -> SamplerConfig {
    SamplerConfig {
        seed,
        max_tokens,
        temperature: 1.0,
        min_p: 0.0,
        ..Default::default()
    }
}

type Streamed = HashMap<(usize, usize), String>;

/// Runs a batch and returns the texts plus the text streamed per (request, sample).
fn run(
    engine: &LlamaEngine,
    requests: &[GenerationRequest],
) -> (Vec<Vec<evolve_core::Completion>>, Streamed) {
    let mut streamed = Streamed::new();
    let out = engine
        .generate_batch(requests, &mut |e| {
            if let GenerationEvent::Token {
                request,
                sample,
                text,
            } = e
            {
                streamed
                    .entry((request, sample))
                    .or_default()
                    .push_str(&text);
            }
            true
        })
        .unwrap();
    (out, streamed)
}

#[test]
fn eight_samples_of_one_prompt_evaluate_the_prompt_once() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("What is 12+30?").unwrap();
    let n_prompt = engine.tokenize(&prompt).len();
    engine.reset_stats();
    let (out, streamed) = run(
        &engine,
        &[GenerationRequest::new(&prompt, sampling(100, 12), 8)],
    );

    let stats = engine.stats();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 8);
    assert_eq!(stats.prompt_evals, 1, "{stats:?}");
    assert_eq!(stats.prompt_tokens_evaluated, n_prompt as u64);
    let generated: usize = out[0].iter().map(|c| c.tokens.len()).sum();
    assert_eq!(stats.generated_tokens, generated as u64);
    // One prompt decode, then one decode per step for all sequences together
    // (one at a time would need a decode per generated token).
    assert!(stats.decode_calls <= 1 + 12, "{stats:?}");
    assert!(
        generated > 13,
        "the samples should produce more tokens than decode steps"
    );
    for (i, c) in out[0].iter().enumerate() {
        assert_eq!(c.seed, 100 + i as u32);
        assert_eq!(c.prompt_tokens, n_prompt);
        assert!(c.tokens.len() <= 12);
        assert_eq!(
            streamed.get(&(0, i)).map_or("", String::as_str),
            c.text,
            "sample {i}"
        );
    }
}

#[test]
fn requests_with_the_same_prompt_share_one_evaluation() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Shared.").unwrap();
    let other = engine.format_user_prompt("Not shared.").unwrap();
    let requests = [
        GenerationRequest::new(&prompt, sampling(1, 6), 2),
        GenerationRequest::new(&other, sampling(2, 6), 1),
        GenerationRequest::new(&prompt, SamplerConfig::greedy(6), 2),
    ];
    engine.reset_stats();
    let out = engine.generate_batch(&requests, &mut |_| true).unwrap();
    assert_eq!(engine.stats().prompt_evals, 2, "{:?}", engine.stats());
    assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1, 2]);
    let greedy = engine
        .generate(&prompt, &SamplerConfig::greedy(6), |_| true)
        .unwrap();
    assert_eq!(
        out[2][0].tokens, greedy.tokens,
        "each request keeps its own sampler"
    );
    assert_eq!(out[2][1].tokens, greedy.tokens);
}

#[test]
fn same_seed_gives_the_same_eight_texts_and_samples_differ() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Name a colour.").unwrap();
    let request = GenerationRequest::new(&prompt, sampling(7, 10), 8);
    let (a, _) = run(&engine, std::slice::from_ref(&request));
    let (b, _) = run(&engine, std::slice::from_ref(&request));
    let strip = |out: &Vec<Vec<evolve_core::Completion>>| -> Vec<(String, Vec<i32>, bool, u32)> {
        out[0]
            .iter()
            .map(|c| (c.text.clone(), c.tokens.clone(), c.stopped, c.seed))
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    let distinct: std::collections::HashSet<&Vec<i32>> = a[0].iter().map(|c| &c.tokens).collect();
    assert!(
        distinct.len() > 1,
        "eight seeds should not all give the same answer"
    );
}

#[test]
fn batched_sample_equals_single_sequence_generate_with_its_seed() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Say something.").unwrap();
    let cfg = sampling(21, 10);
    let (batched, _) = run(&engine, &[GenerationRequest::new(&prompt, cfg.clone(), 4)]);
    for (i, c) in batched[0].iter().enumerate() {
        let single = engine
            .generate(
                &prompt,
                &SamplerConfig {
                    seed: cfg.seed + i as u32,
                    ..cfg.clone()
                },
                |_| true,
            )
            .unwrap();
        assert_eq!(c.tokens, single.tokens, "sample {i}");
        assert_eq!(c.text, single.text);
        assert_eq!(c.stopped, single.stopped);
    }
}

#[test]
fn more_samples_than_slots_all_complete_and_each_prompt_is_evaluated_once() {
    let engine = LlamaEngine::load(
        &tiny_path(WeightType::F32),
        EngineOptions {
            n_parallel: 3,
            ..options()
        },
    )
    .unwrap();
    let prompts =
        ["first", "the second prompt", "third"].map(|p| engine.format_user_prompt(p).unwrap());
    // Short answers first, so that later prompts are evaluated while other samples are mid-answer.
    let requests = [
        GenerationRequest::new(&prompts[0], sampling(1, 3), 2),
        GenerationRequest::new(&prompts[1], sampling(50, 12), 3),
        GenerationRequest::new(&prompts[1], sampling(60, 6), 0),
        GenerationRequest::new(&prompts[2], sampling(70, 5), 2),
    ];
    let mut finished = Vec::new();
    let out = engine
        .generate_batch(&requests, &mut |e| {
            if let GenerationEvent::Finished {
                request, sample, ..
            } = e
            {
                finished.push((request, sample));
            }
            true
        })
        .unwrap();
    assert_eq!(out.iter().map(Vec::len).collect::<Vec<_>>(), [2, 3, 0, 2]);
    finished.sort();
    assert_eq!(
        finished,
        [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (3, 0), (3, 1)]
    );
    assert_eq!(out[1][2].seed, 52);
    for (r, samples) in out.iter().enumerate() {
        let n_prompt = engine.tokenize(&requests[r].prompt).len();
        assert!(
            samples
                .iter()
                .all(|c| c.tokens.len() <= requests[r].sampler.max_tokens as usize)
        );
        assert!(samples.iter().all(|c| c.prompt_tokens == n_prompt));
    }
    assert_eq!(engine.stats().prompt_evals, 3, "{:?}", engine.stats());

    // The slot layout must not change what a sample is: the same requests on 8 slots, and
    // each sample alone.
    let wide = LlamaEngine::load(&tiny_path(WeightType::F32), options()).unwrap();
    let out_wide = wide.generate_batch(&requests, &mut |_| true).unwrap();
    for (a, b) in out.iter().flatten().zip(out_wide.iter().flatten()) {
        assert_eq!(a.tokens, b.tokens);
    }
    let alone = engine
        .generate(
            &prompts[2],
            &SamplerConfig {
                seed: 71,
                ..requests[3].sampler.clone()
            },
            |_| true,
        )
        .unwrap();
    assert_eq!(out[3][1].tokens, alone.tokens);
}

#[test]
fn cancelling_stops_every_sample_at_once() {
    let engine = tiny_engine();
    let prompt = engine.format_user_prompt("Count.").unwrap();
    let mut tokens_seen = 0;
    let out = engine
        .generate_batch(
            &[GenerationRequest::new(&prompt, sampling(3, 40), 4)],
            &mut |e| {
                if matches!(e, GenerationEvent::Token { .. }) {
                    tokens_seen += 1;
                }
                tokens_seen < 6
            },
        )
        .unwrap();
    assert_eq!(tokens_seen, 6, "no event after the cancelling one");
    let total: usize = out[0].iter().map(|c| c.tokens.len()).sum();
    assert!((4..=6).contains(&total), "{total}");
    assert!(out[0].iter().all(|c| !c.stopped || c.tokens.len() < 40));
}

#[test]
fn a_request_that_cannot_fit_its_sequence_is_refused_up_front() {
    let engine = tiny_engine();
    let ok = GenerationRequest::new("abc", sampling(1, 4), 2);
    let too_long = GenerationRequest::new("abc", sampling(1, 300), 1);
    engine.reset_stats();
    let err = engine
        .generate_batch(&[ok, too_long], &mut |_| true)
        .unwrap_err();
    // The error names the request, so the loop can say which prompt does not fit.
    let LlamaError::Request { request, source } = &err else {
        panic!("{err}");
    };
    assert_eq!(*request, 1);
    assert!(
        matches!(
            **source,
            LlamaError::ContextOverflow {
                max_tokens: 300,
                n_ctx: 256,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(engine.stats().decode_calls, 0, "nothing ran");
}

#[test]
fn three_step_refinement_chain_links_parents_and_shows_each_previous_answer() {
    let mut engine = tiny_engine();
    let question = "What is 2+3?";
    let mut streamed: HashMap<usize, String> = HashMap::new();
    let chain = refine_chain(
        &mut engine,
        question,
        None,
        3,
        &RefinementTemplate::default(),
        &sampling(5, 8),
        &mut |e| {
            if let GenerationEvent::Token { request, text, .. } = e {
                streamed.entry(request).or_default().push_str(&text);
            }
            true
        },
    )
    .unwrap();
    assert_eq!(chain.len(), 4);
    assert_eq!(
        chain[0].prompt,
        engine.format_chat(&[ChatMessage::user(question)]).unwrap()
    );
    for (k, step) in chain.iter().enumerate() {
        assert_eq!(step.step_index, k);
        assert_eq!(step.parent_index, k.checked_sub(1));
        assert_eq!(
            streamed.get(&k).map_or("", String::as_str),
            step.completion.text
        );
        if k > 0 {
            let previous = &chain[k - 1].completion.text;
            let turn = format!("<|im_start|>assistant\n{previous}<|im_end|>");
            assert!(
                step.prompt.contains(&turn),
                "step {k} prompt lacks the previous answer: {}",
                step.prompt
            );
            assert!(
                step.prompt
                    .starts_with(&format!("<|im_start|>user\n{question}<|im_end|>"))
            );
        }
    }

    let mut seen = 0;
    let cut = refine_chain(
        &mut engine,
        question,
        Some("five"),
        3,
        &RefinementTemplate::default(),
        &sampling(5, 8),
        &mut |e| {
            seen += matches!(e, GenerationEvent::Token { .. }) as usize;
            seen < 2
        },
    )
    .unwrap();
    assert_eq!(
        cut.len(),
        2,
        "the given answer plus the cancelled first refinement"
    );
    assert!(
        cut[1]
            .prompt
            .contains("<|im_start|>assistant\nfive<|im_end|>")
    );
    assert!(cut[1].completion.tokens.len() <= 2);
}

#[test]
fn refinement_chains_run_together_and_chain_zero_equals_a_lone_chain() {
    let mut engine = tiny_engine();
    let question = "What is 7*6?";
    let starts = [ChainStart {
        question,
        first_answer: None,
        first_seed: None,
    }; 4];
    let cfg = sampling(9, 8);
    engine.reset_stats();
    let chains = refine_chains(
        &mut engine,
        &starts,
        2,
        &RefinementTemplate::default(),
        &cfg,
        &mut |_, _| true,
    )
    .unwrap();
    let stats = engine.stats();
    assert_eq!(chains.len(), 4);
    assert!(chains.iter().all(|c| c.len() == 3));
    // Step 0: the four chains share the question's prompt; steps 1 and 2: one prompt per chain.
    assert_eq!(stats.prompt_evals, 1 + 4 + 4, "{stats:?}");
    let seeds: Vec<u32> = chains.iter().map(|c| c[1].completion.seed).collect();
    assert_eq!(seeds, [10, 13, 16, 19]);

    let lone = refine_chain(
        &mut engine,
        question,
        None,
        2,
        &RefinementTemplate::default(),
        &cfg,
        &mut |_| true,
    )
    .unwrap();
    let texts = |chain: &[evolve_core::RefinementStep]| -> Vec<String> {
        chain.iter().map(|s| s.completion.text.clone()).collect()
    };
    assert_eq!(texts(&chains[0]), texts(&lone));
}

/// Not an assertion: prints tokens/s for eight answers one at a time vs eight in one batch, on
/// the tiny model and on a wider random one (where compute, not per-call overhead, dominates).
/// `cargo test -p evolve-llama --test batched throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput_single_vs_batched() {
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("wide.gguf");
    let wide_cfg = evolve_gguf::tiny::TinyLlamaConfig {
        n_embd: 512,
        n_layer: 8,
        n_head: 8,
        n_head_kv: 4,
        n_ff: 1536,
        ..Default::default()
    };
    evolve_gguf::tiny::write_tiny_llama(&wide, &wide_cfg, WeightType::Q8_0).unwrap();
    for (name, path) in [
        ("tiny f32", tiny_path(WeightType::F32)),
        ("n_embd 512 x 8 layers q8_0", wide),
    ] {
        // One thread: on a shared 2-core machine ggml's spinning worker threads distort timings.
        let engine = LlamaEngine::load(
            &path,
            EngineOptions {
                n_threads: 1,
                ..options()
            },
        )
        .unwrap();
        let prompt = engine.format_user_prompt("Tell me a story.").unwrap();
        let cfg = sampling(1, 128);
        let start = std::time::Instant::now();
        let mut n = 0;
        for i in 0..8 {
            let cfg = SamplerConfig {
                seed: 1 + i,
                ..cfg.clone()
            };
            n += engine
                .generate(&prompt, &cfg, |_| true)
                .unwrap()
                .tokens
                .len();
        }
        let single = n as f64 / start.elapsed().as_secs_f64();
        engine.reset_stats();
        let start = std::time::Instant::now();
        let out = engine
            .generate_batch(&[GenerationRequest::new(&prompt, cfg, 8)], &mut |_| true)
            .unwrap();
        let m: usize = out[0].iter().map(|c| c.tokens.len()).sum();
        let batched = m as f64 / start.elapsed().as_secs_f64();
        println!(
            "{name}: one at a time {n} tokens, {single:.0} tok/s; 8 parallel {m} tokens, {batched:.0} tok/s; {:?}",
            engine.stats()
        );
    }
}

/// What [`chains_with_cache`] measured.
struct CachedChains {
    /// Text and tokens of every step.
    steps: Vec<Vec<(String, Vec<i32>)>>,
    evaluated: u64,
    reused: u64,
    /// Tokens of each refinement's question turn (its prompt's least shared prefix), summed.
    question_turns: u64,
}

/// Chains of answers and refinements with the prompt cache on or off.
fn chains_with_cache(reuse_prefix: bool, chat_template: Option<&str>) -> CachedChains {
    let mut engine = LlamaEngine::load(
        &tiny_path(WeightType::F32),
        EngineOptions {
            reuse_prefix,
            prompt_format: chat_template.map(|n| PromptFormat::Builtin(n.into())),
            n_parallel: 3,
            // Byte-soup answers re-tokenise long in the tiny vocabulary.
            n_ctx: 512,
            ..options()
        },
    )
    .unwrap();
    // Distinct questions: with greedy answers, equal questions would make equal prompts that
    // are shared with or without the cache.
    let starts = [
        "What is 7*6?",
        "Name a colour.",
        "What is 2+2?",
        "Count to three.",
    ]
    .map(|question| ChainStart {
        question,
        first_answer: None,
        first_seed: None,
    });
    let short = RefinementTemplate::MultiTurn {
        system: None,
        instruction: "Better?".into(),
    };
    let chains = refine_chains(
        &mut engine,
        &starts,
        2,
        &short,
        // Greedy: the cache changes how a prompt's cells are computed (one decode or two), which
        // moves logits in their last bits; a temperature draw can then land on a neighbour token,
        // an argmax practically never.
        &SamplerConfig::greedy(10),
        &mut |_, _| true,
    )
    .unwrap();
    for chain in &chains {
        for step in chain {
            // The sequence the answer came from is the template's rendering of the whole
            // conversation, however much of it was in the cache.
            assert_eq!(
                step.completion.prompt_tokens,
                engine.tokenize(&step.prompt).len()
            );
        }
    }
    let stats = engine.stats();
    CachedChains {
        steps: chains
            .iter()
            .map(|c| {
                c.iter()
                    .map(|s| (s.completion.text.clone(), s.completion.tokens.clone()))
                    .collect()
            })
            .collect(),
        evaluated: stats.prompt_tokens_evaluated,
        reused: stats.prompt_tokens_reused,
        question_turns: chains
            .iter()
            .map(|c| 2 * engine.tokenize(&c[0].prompt).len() as u64)
            .sum(),
    }
}

#[test]
fn a_refinement_continues_from_its_answers_cache_and_samples_the_same_answers() {
    // The tiny model has no template of its own: `None` is the plain format.
    for template in [None, Some("chatml"), Some("llama3"), Some("gemma")] {
        let cached = chains_with_cache(true, template);
        let fresh = chains_with_cache(false, template);
        assert_eq!(
            cached.steps, fresh.steps,
            "{template:?}: the cache changed an answer"
        );
        assert!(cached.steps.iter().all(|c| c.len() == 3));
        // Same prompts either way; with the cache every refinement starts at least from its
        // question's turn, which its slot holds. (The random model's answers are byte soup
        // that re-tokenises differently, so here little of the answer itself is shared.)
        assert_eq!(
            cached.evaluated + cached.reused,
            fresh.evaluated + fresh.reused
        );
        assert!(cached.evaluated < fresh.evaluated, "{template:?}");
        assert!(
            cached.reused >= cached.question_turns,
            "{template:?}: reused {} with the cache, question turns {}",
            cached.reused,
            cached.question_turns
        );
    }
}

#[test]
fn a_follow_up_longer_than_its_slot_runs_in_a_later_pass_with_the_same_answer() {
    // A refinement instruction far longer than the question and answer: the follow-up cannot
    // fit the slot sized for them, and must run in a pass of its own rather than fail.
    let long = RefinementTemplate::MultiTurn {
        system: None,
        instruction: "Please improve it. ".repeat(5),
    };
    let run = |reuse_prefix| {
        let mut engine = LlamaEngine::load(
            &tiny_path(WeightType::F32),
            EngineOptions {
                reuse_prefix,
                ..options()
            },
        )
        .unwrap();
        let starts = [ChainStart {
            question: "Hi?",
            first_answer: None,
            first_seed: None,
        }; 2];
        refine_chains(
            &mut engine,
            &starts,
            1,
            &long,
            &sampling(3, 6),
            &mut |_, _| true,
        )
        .unwrap()
        .into_iter()
        .map(|c| {
            c.into_iter()
                .map(|s| s.completion.tokens)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
    };
    let cached = run(true);
    assert!(cached.iter().all(|c| c.len() == 2));
    assert_eq!(cached, run(false));
}
