//! Opening, migrating and refusing database files.

mod common;

use common::*;
use evolve_core::{AdapterFormat, PairKind, RoundState, RunState};
use evolve_store::*;
use rusqlite::types::Value;
use std::collections::BTreeMap;

const ALL_TABLES: &[&str] = &[
    "models",
    "datasets",
    "prompts",
    "runs",
    "rounds",
    "generations",
    "scores",
    "pairs",
    "training_runs",
    "training_metrics",
    "adapters",
    "evaluations",
    "chats",
    "messages",
    "run_leases",
];

#[test]
fn fresh_database_is_migrated_to_latest_in_wal_mode_and_reopening_is_a_no_op() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(LATEST_VERSION, 9);
    assert_eq!(store.path(), path.as_path());
    let counts = store.counts().unwrap();
    for table in ALL_TABLES {
        assert_eq!(
            counts.get(*table),
            Some(&0),
            "table {table} missing: {counts:?}"
        );
    }
    let mode: String = store
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = store
        .conn()
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = store
        .conn()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    // Waiting for the write lock is a busy handler (PRAGMA busy_timeout reads 0); its behaviour
    // is tested in durability.rs (`a_big_import_keeps_other_writers_waiting_…`).
    assert!(migrate::pending(store.conn()).unwrap().is_empty());
    let schema = |s: &Store| -> Vec<String> {
        let mut stmt = s
            .conn()
            .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let before = schema(&store);
    store.add_model(&new_model("/m.gguf", "00")).unwrap();
    drop(store);

    let again = Store::open(&path).unwrap();
    assert_eq!(again.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(
        schema(&again),
        before,
        "re-opening must not change the schema"
    );
    assert_eq!(again.list_models().unwrap().len(), 1);
}

#[test]
fn in_memory_store_is_migrated() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(store.counts().unwrap().len(), ALL_TABLES.len());
}

/// Every row of `table` with the columns it has now, keyed by rowid.
fn dump(store: &Store, table: &str) -> BTreeMap<i64, BTreeMap<String, Value>> {
    let mut stmt = store
        .conn()
        .prepare(&format!("SELECT rowid AS _rowid_, * FROM {table}"))
        .unwrap();
    let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
    let mut rows = stmt.query([]).unwrap();
    let mut out = BTreeMap::new();
    while let Some(row) = rows.next().unwrap() {
        let mut cols = BTreeMap::new();
        for (i, name) in names.iter().enumerate().skip(1) {
            cols.insert(name.clone(), row.get::<_, Value>(i).unwrap());
        }
        out.insert(row.get(0).unwrap(), cols);
    }
    out
}

#[test]
fn populated_v1_database_upgrades_with_every_row_intact() {
    let (_dir, path) = temp_db();
    let v1_tables = [
        "models",
        "datasets",
        "prompts",
        "runs",
        "rounds",
        "generations",
        "scores",
        "pairs",
    ];
    let (seeded, chain, before) = {
        let store = Store::open_at_version(&path, 1).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
        assert_eq!(
            migrate::pending(store.conn()).unwrap().len() as i64,
            LATEST_VERSION - 1
        );
        assert!(
            !store.counts().unwrap().contains_key("training_runs"),
            "v1 has no training tables"
        );
        let s = seed(&store);
        // Through SQL as the version-1 code wrote them: today's API writes columns v1 lacks.
        let root = insert_v1_generation(&store, &s, 0, None, "3");
        let r1 = insert_v1_generation(&store, &s, 1, Some(root), "maybe 1");
        let r2 = insert_v1_generation(&store, &s, 2, Some(r1), "it is 0");
        store
            .add_score(
                root,
                "exact_match",
                0.0,
                &serde_json::json!({"expected": "0"}),
            )
            .unwrap();
        store
            .add_score(r2, "exact_match", 1.0, &serde_json::json!({}))
            .unwrap();
        store
            .insert_pair(&NewPair {
                round_id: s.round,
                prompt_id: s.prompts[0],
                kind: PairKind::Refine,
                chosen_id: r2,
                rejected_id: root,
                margin: 1.0,
            })
            .unwrap();
        store
            .set_round_state(s.round, RoundState::Pairing, None)
            .unwrap();
        store.set_run_state(s.run, RunState::Running).unwrap();
        let before: BTreeMap<&str, _> = v1_tables.iter().map(|t| (*t, dump(&store, t))).collect();
        assert_eq!(before["generations"].len(), 3);
        (s, [root, r1, r2], before)
    };
    assert_eq!(user_version(&path), 1, "closing must not migrate further");

    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    for table in v1_tables {
        let after = dump(&store, table);
        assert_eq!(after.len(), before[table].len(), "{table} row count");
        for (rowid, old) in &before[table] {
            let new = &after[rowid];
            for (column, value) in old {
                assert_eq!(&new[column], value, "{table} row {rowid} column {column}");
            }
        }
    }
    // The typed API reads the upgraded rows, including the refinement chain; v5's stop
    // reason defaults to "finished" for answers written before it existed.
    let upgraded = store.refinement_chain(chain[2]).unwrap();
    let ids: Vec<_> = upgraded.iter().map(|g| g.id).collect();
    assert_eq!(ids, chain);
    assert!(upgraded.iter().all(|g| g.finished));
    assert_eq!(
        store.get_round(seeded.round).unwrap().unwrap().state,
        RoundState::Pairing
    );

    // v2: training with metrics, an adapter and an evaluation.
    let training = store
        .create_training_run(Some(seeded.round), &serde_json::json!({"lr": 5e-5}))
        .unwrap();
    store
        .set_training_state(training, TrainingState::Running, None)
        .unwrap();
    let metric = TrainingMetric {
        step: 1,
        epoch: 0.1,
        metrics: BTreeMap::from([("loss".to_string(), 0.69)]),
    };
    store
        .append_metrics(training, std::slice::from_ref(&metric))
        .unwrap();
    assert_eq!(store.metrics_of(training).unwrap(), vec![metric]);
    let adapter = store
        .add_adapter(&NewAdapter {
            training_run_id: Some(training),
            base_model_id: seeded.model,
            base_sha256: "ab12".into(),
            format: AdapterFormat::GgufLora,
            path: "/adapters/r0.gguf".into(),
            sha256: "cd34".into(),
            file_size: 9,
            rank: 8,
            alpha: 16.0,
        })
        .unwrap();
    assert_eq!(store.adapters_of_model(seeded.model).unwrap().len(), 1);
    // v3: chat with messages, display_name on an old model row.
    let chat = store
        .create_chat("hello", Some(seeded.model), Some(adapter))
        .unwrap();
    store
        .add_message(&NewMessage {
            chat_id: chat,
            role: ChatRole::User,
            content: "hi".into(),
            generation_id: None,
            refinement_of: None,
            step_index: 0,
            score: None,
        })
        .unwrap();
    assert_eq!(store.messages_of(chat).unwrap().len(), 1);
    store
        .set_model_display_name(seeded.model, Some("My tiny llama"))
        .unwrap();
    let model = store.get_model(seeded.model).unwrap().unwrap();
    assert_eq!(model.display_name.as_deref(), Some("My tiny llama"));
    assert_eq!(model.name.as_deref(), Some("Tiny Llama"));
    // v4: keep pairs next to the old refine pair of the same answers.
    store
        .insert_pair(&NewPair {
            round_id: seeded.round,
            prompt_id: seeded.prompts[0],
            kind: PairKind::Keep,
            chosen_id: chain[2],
            rejected_id: chain[0],
            margin: 1.0,
        })
        .unwrap();
    let kinds: Vec<PairKind> = store
        .list_pairs(&Default::default())
        .unwrap()
        .iter()
        .map(|p| p.kind)
        .collect();
    assert_eq!(kinds, [PairKind::Refine, PairKind::Keep]);
}

/// A generation row as schema version 1 stores it (step `step` of sample 0 of prompt 0).
fn insert_v1_generation(
    store: &Store,
    s: &Seeded,
    step: i64,
    parent: Option<GenerationId>,
    text: &str,
) -> GenerationId {
    store
        .conn()
        .execute(
            "INSERT INTO generations (round_id, prompt_id, kind, parent_id, step_index, sample_index,
                                      text, token_count, seed, sampler_json, prompt_text, adapter_id,
                                      duration_ms, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 1, 42, ?7, 'q', NULL, 17, 1)",
            rusqlite::params![
                s.round,
                s.prompts[0],
                if parent.is_some() { "refinement" } else { "sample" },
                parent,
                step,
                text,
                serde_json::to_string(&evolve_core::SamplerConfig::default()).unwrap()
            ],
        )
        .unwrap();
    GenerationId(store.conn().last_insert_rowid())
}

fn file_bytes(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn newer_database_is_refused_and_left_unchanged() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
    }
    let bytes = file_bytes(&path);

    let expected = format!(
        "database {} has schema version {}, newer than this build of EVOLVE Studio supports ({LATEST_VERSION}); \
         upgrade EVOLVE Studio or use another --data-dir",
        path.display(),
        LATEST_VERSION + 1
    );
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found, supported, .. } if found == LATEST_VERSION + 1 && supported == LATEST_VERSION),
        "{err:?}"
    );
    assert_eq!(err.to_string(), expected);
    let err = Store::open_readonly(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("newer than this build of EVOLVE Studio supports"),
        "{err}"
    );

    assert_eq!(user_version(&path), LATEST_VERSION + 1);
    assert_eq!(
        file_bytes(&path),
        bytes,
        "a refused file must not be touched"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_with_its_path_and_left_unchanged() {
    let (_dir, path) = temp_db();
    let junk = "this is a text file, not a database\n".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    for err in [
        Store::open(&path).unwrap_err(),
        Store::open_readonly(&path).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{} is not an EVOLVE Studio database: ",
                path.display()
            )),
            "{msg}"
        );
        assert!(
            msg.contains("file is not a database"),
            "the SQLite reason is kept: {msg}"
        );
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), junk);
}

#[test]
fn another_applications_sqlite_file_is_refused() {
    let (_dir, path) = temp_db();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE bookmarks (url TEXT); INSERT INTO bookmarks VALUES ('x');",
        )
        .unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        err.to_string()
            .contains("is not an EVOLVE Studio database: it has 1 tables"),
        "{err}"
    );
    assert_eq!(user_version(&path), 0, "no migration was applied");
}

#[test]
fn open_readonly_of_a_missing_file_says_not_found_and_creates_nothing() {
    let (_dir, path) = temp_db();
    let err = Store::open_readonly(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("database not found: {}", path.display())
    );
    assert!(!path.exists());
}

#[test]
fn open_in_a_missing_directory_names_the_path() {
    let (dir, _) = temp_db();
    let path = dir.path().join("no-such-dir").join("evolve.sqlite");
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot open database {}", path.display())),
        "{err}"
    );
}

#[test]
fn open_readonly_refuses_an_unmigrated_database_and_does_not_migrate_it() {
    let (_dir, path) = temp_db();
    drop(Store::open_at_version(&path, 1).unwrap());
    let err = Store::open_readonly(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooOld { found: 1, .. }),
        "{err:?}"
    );
    assert_eq!(user_version(&path), 1);
}

#[test]
fn open_readonly_reads_but_cannot_write() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.add_model(&new_model("/m.gguf", "00")).unwrap();
    let reader = Store::open_readonly(&path).unwrap();
    assert_eq!(reader.list_models().unwrap().len(), 1);
    let err = reader.add_model(&new_model("/n.gguf", "01")).unwrap_err();
    assert_eq!(
        err.sqlite_error().and_then(|e| e.sqlite_error_code()),
        Some(rusqlite::ErrorCode::ReadOnly),
        "{err}"
    );
}

#[test]
fn open_at_version_rejects_versions_this_build_does_not_have() {
    let (_dir, path) = temp_db();
    assert!(matches!(
        Store::open_at_version(&path, LATEST_VERSION + 1),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        Store::open_at_version(&path, -1),
        Err(StoreError::Invalid(_))
    ));
}
