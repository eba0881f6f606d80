//! Fixtures shared by the integration tests: a temp database and small valid rows.
#![allow(dead_code)] // each test binary uses a different subset

use evolve_core::{GenerationKind, SamplerConfig};
use evolve_store::*;
use std::path::PathBuf;
use tempfile::TempDir;

/// A directory that lives as long as the test, and a database path inside it.
pub fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("evolve.sqlite");
    (dir, path)
}

pub fn new_model(path: &str, sha256: &str) -> NewModel {
    NewModel {
        path: path.to_string(),
        sha256: sha256.to_string(),
        file_size: 123_456,
        architecture: Some("llama".into()),
        name: Some("Tiny Llama".into()),
        parameter_count: Some(1_100_000_000),
        context_length: Some(2048),
        quantization: Some("Q4_K_M".into()),
        metadata: serde_json::json!({"general.architecture": "llama"}),
    }
}

pub fn new_prompt(idx: i64, split: &str) -> NewPrompt {
    NewPrompt {
        idx,
        split: split.to_string(),
        prompt: format!("What is {idx} + {idx}?"),
        reference: Some((2 * idx).to_string()),
        metadata: serde_json::json!({"source_line": idx + 1}),
    }
}

/// A generation for `(round, prompt)`; `parent` makes it a refinement at `step`.
pub fn new_generation(
    round: Option<RoundId>,
    prompt: Option<PromptId>,
    sample_index: i64,
    step: i64,
    parent: Option<GenerationId>,
    text: &str,
) -> NewGeneration {
    NewGeneration {
        round_id: round,
        prompt_id: prompt,
        kind: if parent.is_some() {
            GenerationKind::Refinement
        } else {
            GenerationKind::Sample
        },
        parent_id: parent,
        step_index: step,
        sample_index,
        text: text.to_string(),
        token_count: text.split_whitespace().count() as i64,
        token_ids: Some(vec![7, -1, i32::MAX]),
        finished: true,
        seed: 42 + sample_index,
        sampler: SamplerConfig::default(),
        prompt_text: format!("<|user|>prompt {prompt:?}<|assistant|>"),
        adapter_id: None,
        duration_ms: 17,
    }
}

/// A model, a dataset with four prompts (two train, two eval), a run and its round 0.
pub struct Seeded {
    pub model: ModelId,
    pub dataset: DatasetId,
    pub prompts: Vec<PromptId>,
    pub run: RunId,
    pub round: RoundId,
}

pub fn seed(store: &Store) -> Seeded {
    let model = store
        .add_model(&new_model("/models/tiny.gguf", "ab12"))
        .unwrap();
    let dataset = store
        .create_dataset("arith", Some("/data/arith.jsonl"), "jsonl")
        .unwrap();
    let prompts: Vec<NewPrompt> = (0..4)
        .map(|i| new_prompt(i, if i < 2 { "train" } else { "eval" }))
        .collect();
    assert_eq!(store.add_prompts(dataset, &prompts).unwrap(), 4);
    let prompts = store
        .list_prompts(dataset, None)
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect();
    let run = store
        .create_run(&NewRun {
            name: "first".into(),
            model_id: model,
            dataset_id: dataset,
            config: serde_json::json!({"rounds": 2, "beta": 0.1}),
        })
        .unwrap();
    let round = store.create_round(run, 0).unwrap();
    Seeded {
        model,
        dataset,
        prompts,
        run,
        round,
    }
}

pub fn count(store: &Store, table: &str) -> i64 {
    store
        .conn()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

pub fn user_version(path: &std::path::Path) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}
