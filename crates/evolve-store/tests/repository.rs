//! Behaviour of the typed repository API: idempotent inserts, chains, constraints, filters.

mod common;

use common::*;
use evolve_core::{AdapterFormat, GenerationKind, PairKind, ReviewState, RoundState, RunState};
use evolve_store::*;
use rusqlite::ffi;
use std::collections::BTreeMap;

fn open() -> (tempfile::TempDir, Store) {
    let (dir, path) = temp_db();
    (dir, Store::open(&path).unwrap())
}

#[test]
fn add_model_is_idempotent_on_sha_and_path() {
    let (_dir, store) = open();
    let a = store.add_model(&new_model("/m/a.gguf", "aa")).unwrap();
    assert_eq!(store.add_model(&new_model("/m/a.gguf", "aa")).unwrap(), a);
    let replaced = store.add_model(&new_model("/m/a.gguf", "bb")).unwrap();
    assert_ne!(replaced, a, "same path, new content is a new model");
    assert_eq!(store.list_models().unwrap().len(), 2);
    assert_eq!(
        store.find_model_by_path("/m/a.gguf").unwrap().unwrap().id,
        replaced,
        "newest row wins"
    );
    assert!(store.find_model_by_path("/m/none.gguf").unwrap().is_none());

    let m = store.get_model(a).unwrap().unwrap();
    assert_eq!(
        (m.sha256.as_str(), m.file_size, m.context_length),
        ("aa", 123_456, Some(2048))
    );
    assert_eq!(m.metadata["general.architecture"], "llama");
    assert!(
        m.added_at > 1_600_000_000_000,
        "timestamps are unix milliseconds"
    );

    store.remove_model(a).unwrap();
    assert!(store.get_model(a).unwrap().is_none());
    assert!(matches!(
        store.remove_model(a),
        Err(StoreError::NotFound { what: "model", .. })
    ));
}

#[test]
fn a_models_prompt_format_defaults_from_its_file_and_can_be_chosen() {
    let (_dir, store) = open();
    let base = store.add_model(&new_model("/m/base.gguf", "aa")).unwrap();
    let mut with_template = new_model("/m/chat.gguf", "bb");
    with_template.metadata = serde_json::json!({"chat_template": "{{ messages }}"});
    let chat = store.add_model(&with_template).unwrap();
    let instruct = store
        .add_model(&new_model("/m/tiny-llama-instruct.gguf", "cc"))
        .unwrap();
    let format = |id| {
        let m = store.get_model(id).unwrap().unwrap();
        (m.prompt_format.to_string(), m.prompt_format_chosen)
    };
    assert_eq!(format(base), ("plain".into(), false));
    assert_eq!(format(chat), ("template".into(), false));
    assert_eq!(format(instruct), ("chatml".into(), false));

    let llama3 = evolve_core::PromptFormat::Builtin("llama3".into());
    store.set_model_prompt_format(base, Some(&llama3)).unwrap();
    assert_eq!(format(base), ("llama3".into(), true));
    store.set_model_prompt_format(base, None).unwrap();
    assert_eq!(format(base), ("plain".into(), false));
    assert!(matches!(
        store.set_model_prompt_format(ModelId(99), None),
        Err(StoreError::NotFound { what: "model", .. })
    ));
}

#[test]
fn a_model_used_by_a_run_cannot_be_removed() {
    let (_dir, store) = open();
    let s = seed(&store);
    let err = store.remove_model(s.model).unwrap_err();
    assert_eq!(
        err.sqlite_extended_code(),
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
        "{err}"
    );
    assert!(err.to_string().contains("removing model"), "{err}");
    assert!(store.get_model(s.model).unwrap().is_some());
}

#[test]
fn prompts_are_added_atomically_and_listed_by_split() {
    let (_dir, store) = open();
    let s = seed(&store);
    assert_eq!(
        store.dataset_by_name("arith").unwrap().unwrap().id,
        s.dataset
    );
    assert!(store.dataset_by_name("nope").unwrap().is_none());
    assert!(
        store.create_dataset("arith", None, "jsonl").is_err(),
        "names are unique"
    );

    let train = store.list_prompts(s.dataset, Some("train")).unwrap();
    assert_eq!(train.iter().map(|p| p.idx).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(train[1].reference.as_deref(), Some("2"));
    assert_eq!(
        store.list_prompts(s.dataset, Some("eval")).unwrap().len(),
        2
    );

    // Re-importing skips existing idx values.
    assert_eq!(
        store
            .add_prompts(s.dataset, &[new_prompt(0, "train"), new_prompt(9, "train")])
            .unwrap(),
        1
    );
    // A bad split in the middle of a batch rolls back the whole batch.
    let err = store
        .add_prompts(
            s.dataset,
            &[new_prompt(20, "train"), new_prompt(21, "test")],
        )
        .unwrap_err();
    assert_eq!(
        err.sqlite_extended_code(),
        Some(ffi::SQLITE_CONSTRAINT_CHECK),
        "{err}"
    );
    assert_eq!(store.list_prompts(s.dataset, None).unwrap().len(), 5);
}

#[test]
fn runs_and_rounds_keep_their_states_and_create_round_is_idempotent() {
    let (_dir, store) = open();
    let s = seed(&store);
    assert_eq!(store.create_round(s.run, 0).unwrap(), s.round);
    let r1 = store.create_round(s.run, 1).unwrap();
    assert_ne!(r1, s.round);
    assert_eq!(
        store
            .rounds_of_run(s.run)
            .unwrap()
            .iter()
            .map(|r| r.round_index)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );

    let round = store.get_round(s.round).unwrap().unwrap();
    assert_eq!(
        (round.state, round.started_at, round.finished_at),
        (RoundState::Pending, None, None)
    );
    store
        .set_round_state(s.round, RoundState::Collecting, None)
        .unwrap();
    let started = store
        .get_round(s.round)
        .unwrap()
        .unwrap()
        .started_at
        .expect("started_at stamped");
    store
        .set_round_state(s.round, RoundState::Failed, Some("llama.cpp crashed"))
        .unwrap();
    let round = store.get_round(s.round).unwrap().unwrap();
    assert_eq!(round.state, RoundState::Failed);
    assert_eq!(round.error.as_deref(), Some("llama.cpp crashed"));
    assert_eq!(
        round.started_at,
        Some(started),
        "a later state keeps the first start time"
    );
    assert!(round.finished_at.is_some());
    store
        .set_round_state(s.round, RoundState::Scoring, None)
        .unwrap();
    let round = store.get_round(s.round).unwrap().unwrap();
    assert_eq!(
        (round.error, round.finished_at),
        (None, None),
        "resuming clears the failure"
    );

    store.set_run_state(s.run, RunState::Paused).unwrap();
    let run = store.get_run(s.run).unwrap().unwrap();
    assert_eq!(run.state, RunState::Paused);
    assert_eq!(run.config["beta"], 0.1);
    assert_eq!(store.list_runs().unwrap().len(), 1);
    assert!(matches!(
        store.set_run_state(RunId(999), RunState::Done),
        Err(StoreError::NotFound { .. })
    ));
    // The CHECK guards the state column against names the code cannot parse.
    let err = store
        .conn()
        .execute("UPDATE rounds SET state = 'bogus'", [])
        .unwrap_err();
    assert_eq!(
        err.sqlite_error().map(|e| e.extended_code),
        Some(ffi::SQLITE_CONSTRAINT_CHECK)
    );
}

#[test]
fn insert_generation_is_idempotent_and_refinement_chains_come_back_root_first() {
    let (_dir, store) = open();
    let s = seed(&store);
    let p = Some(s.prompts[0]);
    let root = store
        .insert_generation(&new_generation(Some(s.round), p, 0, 0, None, "first"))
        .unwrap();
    let again = store
        .insert_generation(&new_generation(
            Some(s.round),
            p,
            0,
            0,
            None,
            "different text",
        ))
        .unwrap();
    assert_eq!(
        again, root,
        "re-running a step returns the stored generation"
    );
    let stored = store.get_generation(root).unwrap().unwrap();
    assert_eq!(stored.text, "first", "first write wins");
    assert_eq!(
        stored.token_ids,
        Some(vec![7, -1, i32::MAX]),
        "sampled token ids round-trip"
    );

    let step1 = store
        .insert_generation(&new_generation(
            Some(s.round),
            p,
            0,
            1,
            Some(root),
            "second",
        ))
        .unwrap();
    let step2 = store
        .insert_generation(&new_generation(
            Some(s.round),
            p,
            0,
            2,
            Some(step1),
            "third",
        ))
        .unwrap();
    let other_sample = store
        .insert_generation(&new_generation(Some(s.round), p, 1, 0, None, "other"))
        .unwrap();
    assert_ne!(other_sample, root);

    let chain = store.refinement_chain(step2).unwrap();
    assert_eq!(
        chain.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![root, step1, step2]
    );
    assert_eq!(
        chain.iter().map(|g| g.step_index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(chain[1].kind, GenerationKind::Refinement);
    assert_eq!(chain[0].sampler, evolve_core::SamplerConfig::default());
    assert_eq!(store.refinement_chain(root).unwrap().len(), 1);
    assert!(matches!(
        store.refinement_chain(GenerationId(999)),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.generations_of_round(s.round).unwrap().len(), 4);

    // Generations outside rounds (chat) never collide.
    let mut chat = new_generation(None, None, 0, 0, None, "hi");
    chat.kind = GenerationKind::Chat;
    assert_ne!(
        store.insert_generation(&chat).unwrap(),
        store.insert_generation(&chat).unwrap()
    );
    assert_eq!(store.generations_of_round(s.round).unwrap().len(), 4);
}

#[test]
fn scores_are_upserted_per_scorer() {
    let (_dir, store) = open();
    let s = seed(&store);
    let g = store
        .insert_generation(&new_generation(
            Some(s.round),
            Some(s.prompts[0]),
            0,
            0,
            None,
            "0",
        ))
        .unwrap();
    let first = store
        .add_score(g, "exact_match", 0.0, &serde_json::json!({"why": "wrong"}))
        .unwrap();
    let second = store
        .add_score(
            g,
            "exact_match",
            1.0,
            &serde_json::json!({"why": "rescored"}),
        )
        .unwrap();
    assert_eq!(first, second);
    store
        .add_score(g, "judge", 0.7, &serde_json::json!(null))
        .unwrap();
    let scores = store.scores_of(g).unwrap();
    assert_eq!(
        scores
            .iter()
            .map(|s| (s.scorer.as_str(), s.value))
            .collect::<Vec<_>>(),
        vec![("exact_match", 1.0), ("judge", 0.7)]
    );
    assert_eq!(scores[0].details["why"], "rescored");
    let err = store
        .add_score(GenerationId(999), "judge", 1.0, &serde_json::json!({}))
        .unwrap_err();
    assert_eq!(
        err.sqlite_extended_code(),
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
        "{err}"
    );
}

/// Round 0 with a chosen/rejected generation pair per prompt; returns (store, seeded, generations).
fn with_generations() -> (tempfile::TempDir, Store, Seeded, Vec<GenerationId>) {
    let (dir, store) = open();
    let s = seed(&store);
    let mut gens = Vec::new();
    for (i, p) in s.prompts.iter().enumerate() {
        for sample in 0..2 {
            let text = format!("answer {i}/{sample}");
            gens.push(
                store
                    .insert_generation(&new_generation(
                        Some(s.round),
                        Some(*p),
                        sample,
                        0,
                        None,
                        &text,
                    ))
                    .unwrap(),
            );
        }
    }
    (dir, store, s, gens)
}

fn pair(
    s: &Seeded,
    prompt: usize,
    kind: PairKind,
    chosen: GenerationId,
    rejected: GenerationId,
    margin: f64,
) -> NewPair {
    NewPair {
        round_id: s.round,
        prompt_id: s.prompts[prompt],
        kind,
        chosen_id: chosen,
        rejected_id: rejected,
        margin,
    }
}

#[test]
fn the_database_rejects_self_pairs_and_pairs_of_missing_generations() {
    let (_dir, store, s, g) = with_generations();
    let err = store
        .insert_pair(&pair(&s, 0, PairKind::Direct, g[0], g[0], 1.0))
        .unwrap_err();
    assert_eq!(
        err.sqlite_extended_code(),
        Some(ffi::SQLITE_CONSTRAINT_CHECK),
        "{err}"
    );
    let err = store
        .insert_pair(&pair(
            &s,
            0,
            PairKind::Direct,
            g[0],
            GenerationId(9999),
            1.0,
        ))
        .unwrap_err();
    assert_eq!(
        err.sqlite_extended_code(),
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
        "{err}"
    );
    assert!(err.to_string().contains("inserting direct pair"), "{err}");
    assert_eq!(count(&store, "pairs"), 0);

    let id = store
        .insert_pair(&pair(&s, 0, PairKind::Direct, g[0], g[1], 1.0))
        .unwrap();
    store
        .set_pair_review(id, ReviewState::Accepted, None)
        .unwrap();
    assert_eq!(
        store
            .insert_pair(&pair(&s, 0, PairKind::Direct, g[0], g[1], 0.5))
            .unwrap(),
        id,
        "idempotent"
    );
    let stored = store.get_pair(id).unwrap().unwrap();
    assert_eq!(
        (stored.review, stored.margin),
        (ReviewState::Accepted, 1.0),
        "re-insert keeps the review"
    );
}

#[test]
fn pair_reviews_require_text_exactly_when_edited() {
    let (_dir, store, s, g) = with_generations();
    let id = store
        .insert_pair(&pair(&s, 0, PairKind::Direct, g[0], g[1], 1.0))
        .unwrap();
    assert_eq!(
        store.get_pair(id).unwrap().unwrap().review,
        ReviewState::Pending
    );

    let err = store
        .set_pair_review(id, ReviewState::Edited, None)
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(
        store
            .set_pair_review(id, ReviewState::Vetoed, Some("text"))
            .is_err()
    );
    assert_eq!(
        store.get_pair(id).unwrap().unwrap().review,
        ReviewState::Pending,
        "a refused review changes nothing"
    );

    store
        .set_pair_review(id, ReviewState::Edited, Some("The answer is 0."))
        .unwrap();
    let p = store.get_pair(id).unwrap().unwrap();
    assert_eq!(
        (p.review, p.edited_chosen_text.as_deref()),
        (ReviewState::Edited, Some("The answer is 0."))
    );
    store
        .set_pair_review(id, ReviewState::Vetoed, None)
        .unwrap();
    assert_eq!(
        store.get_pair(id).unwrap().unwrap().edited_chosen_text,
        None
    );
    store.set_pair_note(id, Some("off-topic")).unwrap();
    assert_eq!(
        store.get_pair(id).unwrap().unwrap().note.as_deref(),
        Some("off-topic")
    );
    assert!(matches!(
        store.set_pair_review(PairId(999), ReviewState::Accepted, None),
        Err(StoreError::NotFound { .. })
    ));
    // The CHECK backs the rule up for raw SQL too.
    let err = store
        .conn()
        .execute(
            "UPDATE pairs SET review = 'edited', edited_chosen_text = NULL",
            [],
        )
        .unwrap_err();
    assert_eq!(
        err.sqlite_error().map(|e| e.extended_code),
        Some(ffi::SQLITE_CONSTRAINT_CHECK)
    );
}

#[test]
fn list_pairs_filters_by_round_kind_review_and_margin() {
    let (_dir, store, s, g) = with_generations();
    let round1 = store.create_round(s.run, 1).unwrap();
    let g1 = store
        .insert_generation(&new_generation(
            Some(round1),
            Some(s.prompts[0]),
            0,
            0,
            None,
            "a",
        ))
        .unwrap();
    let g2 = store
        .insert_generation(&new_generation(
            Some(round1),
            Some(s.prompts[0]),
            1,
            0,
            None,
            "b",
        ))
        .unwrap();

    let a = store
        .insert_pair(&pair(&s, 0, PairKind::Direct, g[0], g[1], 0.2))
        .unwrap();
    let b = store
        .insert_pair(&pair(&s, 1, PairKind::Direct, g[2], g[3], 0.9))
        .unwrap();
    let c = store
        .insert_pair(&pair(&s, 2, PairKind::Refine, g[4], g[5], 0.5))
        .unwrap();
    let d = store
        .insert_pair(&NewPair {
            round_id: round1,
            ..pair(&s, 0, PairKind::Refine, g1, g2, 1.0)
        })
        .unwrap();
    store.set_pair_review(c, ReviewState::Vetoed, None).unwrap();

    let ids = |f: PairFilter| {
        store
            .list_pairs(&f)
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(PairFilter::default()), vec![a, b, c, d]);
    assert_eq!(
        ids(PairFilter {
            round_id: Some(s.round),
            ..Default::default()
        }),
        vec![a, b, c]
    );
    assert_eq!(
        ids(PairFilter {
            kind: Some(PairKind::Refine),
            ..Default::default()
        }),
        vec![c, d]
    );
    assert_eq!(
        ids(PairFilter {
            min_margin: Some(0.5),
            ..Default::default()
        }),
        vec![b, c, d]
    );
    assert_eq!(
        ids(PairFilter {
            review: Some(ReviewState::Pending),
            ..Default::default()
        }),
        vec![a, b, d]
    );
    assert_eq!(
        ids(PairFilter {
            round_id: Some(s.round),
            kind: Some(PairKind::Direct),
            min_margin: Some(0.5),
            review: None
        }),
        vec![b]
    );
}

#[test]
fn training_metrics_append_upsert_and_page() {
    let (_dir, store) = open();
    let s = seed(&store);
    let run = store
        .create_training_run(Some(s.round), &serde_json::json!({"beta": 0.1}))
        .unwrap();
    let t = store.get_training_run(run).unwrap().unwrap();
    assert_eq!((t.state, t.started_at), (TrainingState::Pending, None));
    store
        .set_training_state(run, TrainingState::Running, None)
        .unwrap();
    store
        .set_checkpoint_path(run, Some("/ckpt/step-2"))
        .unwrap();

    let metric = |step: i64, loss: f64| TrainingMetric {
        step,
        epoch: step as f64 / 10.0,
        metrics: BTreeMap::from([
            ("loss".to_string(), loss),
            ("rewards/margins".to_string(), 0.1 * step as f64),
            ("learning_rate".to_string(), 5e-5),
        ]),
    };
    store
        .append_metrics(run, &[metric(1, 0.69), metric(2, 0.6), metric(3, 0.5)])
        .unwrap();
    store
        .append_metrics(run, &[metric(3, 0.55), metric(4, f64::NAN)])
        .unwrap(); // resumed: step 3 logged again
    let all = store.metrics_of(run).unwrap();
    assert_eq!(
        all.iter().map(|m| m.step).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(all[2].metrics["loss"], 0.55);
    assert!(
        all[3].metrics["loss"].is_nan(),
        "a diverged loss stays visible as NaN"
    );
    assert_eq!(
        store
            .metrics_since(run, 2)
            .unwrap()
            .iter()
            .map(|m| m.step)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    let (loss, lr): (Option<f64>, Option<f64>) = store
        .conn()
        .query_row(
            "SELECT loss, learning_rate FROM training_metrics WHERE step = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((loss, lr), (Some(0.6), Some(5e-5)), "promoted columns");

    // A batch that fails part-way (unknown run) leaves nothing behind.
    assert!(
        store
            .append_metrics(TrainingRunId(999), &[metric(1, 0.1)])
            .is_err()
    );
    assert_eq!(count(&store, "training_metrics"), 4);

    store
        .set_training_state(run, TrainingState::Failed, Some("out of memory"))
        .unwrap();
    let t = store.get_training_run(run).unwrap().unwrap();
    assert_eq!(
        (t.state, t.error.as_deref()),
        (TrainingState::Failed, Some("out of memory"))
    );
    assert!(t.started_at.is_some() && t.finished_at.is_some());
    assert_eq!(t.checkpoint_path.as_deref(), Some("/ckpt/step-2"));
    assert_eq!(store.training_runs_of_round(s.round).unwrap().len(), 1);
    assert_eq!(
        "cancelled".parse::<TrainingState>().unwrap(),
        TrainingState::Cancelled
    );
}

#[test]
fn adapters_and_evaluations_upsert() {
    let (_dir, store) = open();
    let s = seed(&store);
    let new_adapter = NewAdapter {
        training_run_id: None,
        base_model_id: s.model,
        base_sha256: "ab12".into(),
        format: AdapterFormat::Peft,
        path: "/adapters/r0".into(),
        sha256: "ff".into(),
        file_size: 10,
        rank: 16,
        alpha: 32.0,
    };
    let adapter = store.add_adapter(&new_adapter).unwrap();
    assert_eq!(store.add_adapter(&new_adapter).unwrap(), adapter);
    assert_eq!(
        store.get_adapter(adapter).unwrap().unwrap().format,
        AdapterFormat::Peft
    );
    assert_eq!(store.adapters_of_model(s.model).unwrap().len(), 1);

    let eval = |adapter_id, value| NewEvaluation {
        round_id: Some(s.round),
        adapter_id,
        model_id: s.model,
        split: "eval".into(),
        metric: "direct_accuracy".into(),
        value,
        n: 2,
        details: serde_json::json!({}),
    };
    let base = store.add_evaluation(&eval(None, 0.25)).unwrap();
    assert_eq!(
        store.add_evaluation(&eval(None, 0.5)).unwrap(),
        base,
        "NULL adapter still upserts"
    );
    let tuned = store.add_evaluation(&eval(Some(adapter), 0.75)).unwrap();
    assert_ne!(tuned, base);
    let evals = store.evaluations_of_run(s.run).unwrap();
    assert_eq!(
        evals
            .iter()
            .map(|e| (e.adapter_id, e.value))
            .collect::<Vec<_>>(),
        vec![(None, 0.5), (Some(adapter), 0.75)]
    );
}

#[test]
fn chats_keep_messages_and_step_cards_in_order() {
    let (_dir, store) = open();
    let s = seed(&store);
    let older = store.create_chat("older", None, None).unwrap();
    let chat = store.create_chat("math", Some(s.model), None).unwrap();
    let msg = |role, content: &str, refinement_of, step_index| NewMessage {
        chat_id: chat,
        role,
        content: content.into(),
        generation_id: None,
        refinement_of,
        step_index,
        score: Some(0.5),
    };
    store
        .add_message(&msg(ChatRole::User, "2+2?", None, 0))
        .unwrap();
    let answer = store
        .add_message(&msg(ChatRole::Assistant, "5", None, 0))
        .unwrap();
    store
        .add_message(&msg(ChatRole::Assistant, "4", Some(answer), 1))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    store
        .add_message(&msg(ChatRole::User, "thanks", None, 0))
        .unwrap();

    let messages = store.messages_of(chat).unwrap();
    assert_eq!(
        messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        vec!["2+2?", "5", "4", "thanks"]
    );
    assert_eq!(messages[2].refinement_of, Some(answer));
    assert_eq!(messages[1].role, ChatRole::Assistant);
    assert_eq!(
        store
            .list_chats()
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        vec![chat, older]
    );
    let err = store
        .add_message(&NewMessage {
            chat_id: ChatId(999),
            ..msg(ChatRole::User, "x", None, 0)
        })
        .unwrap_err();
    assert_eq!(
        err.sqlite_extended_code(),
        Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
        "{err}"
    );
}

#[test]
fn counts_cover_every_table() {
    let (_dir, store, s, _) = with_generations();
    store.create_chat("c", None, None).unwrap();
    let counts = store.counts().unwrap();
    let expected: BTreeMap<&str, i64> = [
        ("models", 1),
        ("datasets", 1),
        ("prompts", 4),
        ("runs", 1),
        ("rounds", 1),
        ("generations", 8),
        ("scores", 0),
        ("pairs", 0),
        ("training_runs", 0),
        ("training_metrics", 0),
        ("adapters", 0),
        ("evaluations", 0),
        ("chats", 1),
        ("messages", 0),
        ("run_leases", 0),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        counts
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<BTreeMap<_, _>>(),
        expected
    );
    let _ = s;
}

#[test]
fn transaction_helper_commits_on_ok_and_rolls_back_on_err() {
    let (_dir, mut store) = open();
    let s = seed(&store);
    let insert = |tx: &rusqlite::Transaction, idx: i64| -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO prompts (dataset_id, idx, split, prompt) VALUES (?1, ?2, 'eval', 'q')",
            rusqlite::params![s.dataset, idx],
        )?;
        Ok(())
    };
    let err = store
        .transaction(|tx| {
            insert(tx, 100)?;
            Err::<(), _>(StoreError::Invalid("changed my mind".into()))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert_eq!(count(&store, "prompts"), 4);
    let n = store.transaction(|tx| insert(tx, 100).map(|_| 7)).unwrap();
    assert_eq!((n, count(&store, "prompts")), (7, 5));
}

#[test]
fn ids_serialize_as_plain_numbers() {
    assert_eq!(serde_json::to_string(&PairId(7)).unwrap(), "7");
    assert_eq!(serde_json::from_str::<RunId>("3").unwrap(), RunId(3));
    assert_eq!(ModelId(12).to_string(), "12");
}

#[test]
fn a_training_is_done_with_its_adapter_or_not_at_all() {
    let (_dir, store) = open();
    let s = seed(&store);
    let adapter = |training_run_id| NewAdapter {
        training_run_id,
        base_model_id: s.model,
        base_sha256: "ab12".into(),
        format: AdapterFormat::GgufLora,
        path: "/adapters/round-0/adapter.gguf".into(),
        sha256: "ee".into(),
        file_size: 10,
        rank: 8,
        alpha: 16.0,
    };
    // The state update fails (no such training): the adapter row is rolled back with it.
    let missing = TrainingRunId(9999);
    assert!(store.finish_training(missing, &adapter(None)).is_err());
    assert!(store.list_adapters().unwrap().is_empty());

    let training = store
        .create_training_run(Some(s.round), &serde_json::json!({}))
        .unwrap();
    let id = store
        .finish_training(training, &adapter(Some(training)))
        .unwrap();
    let t = store.get_training_run(training).unwrap().unwrap();
    assert_eq!(t.state, TrainingState::Done);
    assert_eq!(
        store.get_adapter(id).unwrap().unwrap().training_run_id,
        Some(training)
    );
}

#[test]
fn a_run_lease_is_held_by_one_live_process_at_a_time() {
    let (_dir, store) = open();
    let s = seed(&store);
    let alive = |pid: u32| pid == 100;
    assert_eq!(
        store.acquire_run_lease(s.run, 100, "box", alive).unwrap(),
        Ok(())
    );
    // Taking it again is fine for the holder, refused for another process on the same host.
    assert_eq!(
        store.acquire_run_lease(s.run, 100, "box", alive).unwrap(),
        Ok(())
    );
    let held = store
        .acquire_run_lease(s.run, 200, "box", alive)
        .unwrap()
        .unwrap_err();
    assert_eq!((held.pid, held.host.as_str()), (100, "box"));
    // A dead holder's lease is taken over; another host's fresh heartbeat is respected.
    assert_eq!(
        store
            .acquire_run_lease(s.run, 200, "box", |_| false)
            .unwrap(),
        Ok(())
    );
    assert!(
        store
            .acquire_run_lease(s.run, 300, "other", |_| false)
            .unwrap()
            .is_err()
    );
    store.release_run_lease(s.run, 999).unwrap();
    assert!(
        store.run_lease(s.run).unwrap().is_some(),
        "only the holder releases"
    );
    store.release_run_lease(s.run, 200).unwrap();
    assert!(store.run_lease(s.run).unwrap().is_none());
}
