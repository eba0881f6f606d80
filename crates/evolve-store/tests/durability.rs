//! Crash safety (a SIGKILLed writer loses only its open transaction) and WAL concurrency
//! (readers never block on, or see half of, a writer's transaction).

mod common;

use common::*;
use evolve_store::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "EVOLVE_STORE_CRASH_CHILD";

/// Re-runs `test_name` of this binary as a child with `CHILD_ENV=db`, waits for it to print
/// READY (it is then inside an open transaction), and SIGKILLs it.
fn run_child_and_kill_it_when_ready(test_name: &str, db: &Path) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints "test NAME ... " without a newline, so READY ends the line rather than filling it.
            if line.trim_end().ends_with("READY") && tx.send(()).is_err() {
                break;
            }
        }
    });
    if let Err(e) = rx.recv_timeout(Duration::from_secs(120)) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "child never got READY ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no rollback by the child
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child must have died by the signal, not finished"
    );
}

/// In the child: sits inside the open transaction until killed.
fn announce_ready_and_wait_to_be_killed() -> ! {
    println!("READY");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(300));
    panic!("the parent should have killed this child long ago");
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

#[test]
fn killed_writer_loses_its_open_transaction_and_nothing_else() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        let mut store = Store::open(Path::new(&db)).unwrap();
        let dataset = store.dataset_by_name("arith").unwrap().unwrap().id;
        // A tiny page cache makes SQLite spill the uncommitted pages into the WAL before the
        // kill, so recovery really has to skip uncommitted frames.
        store.conn().pragma_update(None, "cache_size", 10).unwrap();
        store
            .transaction::<()>(|tx| {
                let mut stmt =
                    tx.prepare("INSERT INTO prompts (dataset_id, idx, split, prompt) VALUES (?1, ?2, 'train', ?3)")?;
                for idx in 1000..2000 {
                    stmt.execute(rusqlite::params![dataset, idx, "x".repeat(2000)])?;
                }
                announce_ready_and_wait_to_be_killed()
            })
            .unwrap();
        unreachable!();
    }

    let (_dir, path) = temp_db();
    {
        let store = Store::open(&path).unwrap();
        let s = seed(&store);
        assert_eq!(store.list_prompts(s.dataset, None).unwrap().len(), 4);
    }
    run_child_and_kill_it_when_ready(
        "killed_writer_loses_its_open_transaction_and_nothing_else",
        &path,
    );
    let wal = std::fs::metadata(wal_path(&path))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        wal > 100_000,
        "the child should have spilled uncommitted pages into the WAL (wal is {wal} bytes)"
    );

    let store = Store::open(&path).unwrap();
    assert_eq!(
        count(&store, "prompts"),
        4,
        "the uncommitted 1000 prompts must be gone, the 4 committed kept"
    );
    let integrity: String = store
        .conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // And the file is fully writable again (no stale lock).
    let dataset = store.dataset_by_name("arith").unwrap().unwrap().id;
    assert_eq!(
        store
            .add_prompts(dataset, &[new_prompt(4, "eval")])
            .unwrap(),
        1
    );
}

#[test]
fn migration_killed_half_way_leaves_the_previous_version_and_can_be_resumed() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        // Apply migration 2 by hand the way migrate.rs does, but die before COMMIT.
        let store = Store::open_at_version(Path::new(&db), 1).unwrap();
        let conn = store.conn();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.execute_batch(migrate::MIGRATIONS[1].sql).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        announce_ready_and_wait_to_be_killed();
    }

    let (_dir, path) = temp_db();
    {
        let store = Store::open_at_version(&path, 1).unwrap();
        seed(&store);
    }
    run_child_and_kill_it_when_ready(
        "migration_killed_half_way_leaves_the_previous_version_and_can_be_resumed",
        &path,
    );
    assert_eq!(
        user_version(&path),
        1,
        "the killed migration must not count as applied"
    );
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'training_runs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "no half-created tables");
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    assert_eq!(count(&store, "prompts"), 4);
    let integrity: String = store
        .conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn readers_see_the_last_commit_while_a_writer_holds_a_transaction() {
    let (_dir, path) = temp_db();
    let writer = Store::open(&path).unwrap();
    let s = seed(&writer);
    // A tiny cache makes the uncommitted rows spill to disk mid-transaction. With a rollback
    // journal that takes an exclusive lock and readers would get SQLITE_BUSY; with WAL they must not.
    writer.conn().pragma_update(None, "cache_size", 10).unwrap();
    writer.conn().execute_batch("BEGIN IMMEDIATE").unwrap();
    writer
        .add_prompts(s.dataset, &[new_prompt(9, "train")])
        .unwrap_err(); // nested transaction is refused, not silently merged
    for idx in 10..510 {
        writer
            .conn()
            .execute(
                "INSERT INTO prompts (dataset_id, idx, split, prompt) VALUES (?1, ?2, 'train', ?3)",
                rusqlite::params![s.dataset, idx, "p".repeat(2000)],
            )
            .unwrap();
    }

    // A monitor and a second read-write process both open and read without waiting.
    let started = Instant::now();
    let monitor = Store::open_readonly(&path).unwrap();
    let second = Store::open(&path).unwrap();
    assert_eq!(monitor.list_prompts(s.dataset, None).unwrap().len(), 4);
    assert_eq!(second.list_prompts(s.dataset, None).unwrap().len(), 4);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reads waited {:?} on the writer",
        started.elapsed()
    );

    writer.conn().execute_batch("COMMIT").unwrap();
    assert_eq!(monitor.list_prompts(s.dataset, None).unwrap().len(), 504);
    assert_eq!(
        second.list_prompts(s.dataset, Some("train")).unwrap().len(),
        502
    );
}

#[test]
fn a_polling_reader_sees_whole_batches_of_metrics_in_order_while_a_writer_appends() {
    const TOTAL: i64 = 200;
    const BATCH: i64 = 5;
    let (_dir, path) = temp_db();
    let run = Store::open(&path)
        .unwrap()
        .create_training_run(None, &serde_json::json!({}))
        .unwrap();

    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let store = Store::open(&writer_path).unwrap();
        for first in (1..=TOTAL).step_by(BATCH as usize) {
            let batch: Vec<TrainingMetric> = (first..first + BATCH)
                .map(|step| TrainingMetric {
                    step,
                    epoch: step as f64 / TOTAL as f64,
                    metrics: BTreeMap::from([
                        ("loss".to_string(), 1.0 / step as f64),
                        ("grad_norm".to_string(), 2.0),
                    ]),
                })
                .collect();
            store.append_metrics(run, &batch).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });

    let reader = std::thread::spawn(move || {
        let store = Store::open_readonly(&path).unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let metrics = store
                .metrics_of(run)
                .expect("a read during writes must never fail");
            let len = metrics.len() as i64;
            assert!(
                len >= seen.last().copied().unwrap_or(0),
                "the list shrank: {seen:?} then {len}"
            );
            assert_eq!(len % BATCH, 0, "a reader saw part of a batch ({len} rows)");
            for (i, m) in metrics.iter().enumerate() {
                assert_eq!(m.step, i as i64 + 1, "steps must be a gap-free prefix");
                assert_eq!(m.metrics["loss"], 1.0 / m.step as f64);
            }
            seen.push(len);
            if len == TOTAL {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "writer never finished; saw {seen:?}"
            );
        }
    });

    writer.join().unwrap();
    let seen = reader.join().unwrap();
    assert_eq!(*seen.last().unwrap(), TOTAL);
    assert!(
        seen.len() > 2,
        "the reader should have polled while the writer worked: {seen:?}"
    );
}

/// A big import (a million-line dataset, scaled down) is committed in slices: a run's small
/// writes on another connection wait milliseconds for the lock, never the whole import, so the
/// busy timeout always covers the longest write.
#[test]
fn a_big_import_keeps_other_writers_waiting_milliseconds_not_the_whole_import() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("evolve.db");
    let store = Store::open(&db).unwrap();
    let big = store.create_dataset("big", None, "plain").unwrap();
    let small = store.create_dataset("small", None, "plain").unwrap();
    drop(store);
    let prompt = |idx: i64| NewPrompt {
        idx,
        split: "train".into(),
        prompt: format!("prompt {idx} {}", "x".repeat(200)),
        reference: None,
        metadata: serde_json::json!({}),
    };
    let rows: Vec<NewPrompt> = (0..200_000).map(prompt).collect();
    let importer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let s = Store::open(&db).unwrap();
            let t = Instant::now();
            assert_eq!(s.add_prompts(big, &rows).unwrap(), 200_000);
            t.elapsed()
        })
    };
    let s = Store::open(&db).unwrap();
    let (mut longest, mut writes) = (Duration::ZERO, 0);
    while !importer.is_finished() {
        let t = Instant::now();
        s.add_prompts(small, &[prompt(writes)]).unwrap();
        longest = longest.max(t.elapsed());
        writes += 1;
    }
    let took = importer.join().unwrap();
    eprintln!("import {took:?}; {writes} small writes meanwhile, the slowest {longest:?}");
    // Long enough that a write waiting for the whole import (not a slice) shows: it would wait
    // about `took`, far over `took / 3`. (800 ms was too much for an idle machine: 774 ms.)
    assert!(
        took > Duration::from_millis(300),
        "too quick to tell: {took:?}"
    );
    assert!(writes > 5, "only {writes} small writes in {took:?}");
    assert!(
        longest < took / 3,
        "a small write waited {longest:?} during a {took:?} import"
    );
}
