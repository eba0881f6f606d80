//! Read-only opens as monitors use them: watching a database another connection writes (WAL),
//! and looking at a finished one whose writer has closed.

mod common;

use common::*;
use evolve_store::*;
use std::collections::BTreeMap;

fn steps(from: i64, n: i64) -> Vec<TrainingMetric> {
    (from..from + n)
        .map(|step| TrainingMetric {
            step,
            epoch: 0.0,
            metrics: BTreeMap::from([("loss".to_string(), 1.0 / step as f64)]),
        })
        .collect()
}

#[test]
fn a_reader_sees_each_commit_whole_while_another_connection_writes() {
    let (_dir, path) = temp_db();
    let writer = Store::open(&path).unwrap();
    let s = seed(&writer);
    let training = writer
        .create_training_run(Some(s.round), &serde_json::json!({}))
        .unwrap();
    let reader = Store::open_readonly(&path).unwrap();
    assert!(reader.metrics_of(training).unwrap().is_empty());

    const BATCH: i64 = 4;
    const BATCHES: i64 = 40;
    let seen = std::thread::scope(|scope| {
        let path = path.clone();
        let handle = scope.spawn(move || {
            // A second process in real use: its own connection.
            let w = Store::open(&path).unwrap();
            for b in 0..BATCHES {
                w.append_metrics(training, &steps(1 + b * BATCH, BATCH))
                    .unwrap();
            }
        });
        let mut seen = Vec::new();
        while !handle.is_finished() {
            // Never SQLITE_BUSY: WAL readers do not wait for the writer.
            let n = reader.metrics_of(training).unwrap().len() as i64;
            assert_eq!(n % BATCH, 0, "saw a partial batch of {n}");
            seen.push(n);
        }
        handle.join().unwrap();
        seen
    });
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let all = reader.metrics_of(training).unwrap();
    assert_eq!(all.len() as i64, BATCH * BATCHES);
    assert_eq!(
        reader.metrics_since(training, 150).unwrap().len() as i64,
        BATCH * BATCHES - 150
    );
}

#[test]
fn an_open_read_does_not_block_the_writer() {
    let (_dir, path) = temp_db();
    let writer = Store::open(&path).unwrap();
    writer.add_model(&new_model("/a.gguf", "0a")).unwrap();
    let reader = Store::open_readonly(&path).unwrap();
    let mut stmt = reader.conn().prepare("SELECT id FROM models").unwrap();
    let mut rows = stmt.query([]).unwrap();
    assert!(rows.next().unwrap().is_some(), "read transaction is open");
    // With a rollback journal this would wait for the reader and fail after the busy timeout.
    let started = std::time::Instant::now();
    writer.add_model(&new_model("/b.gguf", "0b")).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    drop(rows);
    drop(stmt);
    assert_eq!(reader.list_models().unwrap().len(), 2);
}

#[test]
fn a_finished_database_opens_read_only_after_its_writer_closed_and_is_not_changed() {
    let (dir, path) = temp_db();
    {
        let writer = Store::open(&path).unwrap();
        seed(&writer);
    }
    // The last connection to close checkpoints and removes the WAL files.
    assert!(!dir.path().join("evolve.sqlite-wal").exists());
    let bytes = std::fs::read(&path).unwrap();
    {
        let reader = Store::open_readonly(&path).unwrap();
        assert_eq!(reader.list_runs().unwrap().len(), 1);
        assert_eq!(reader.schema_version().unwrap(), LATEST_VERSION);
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "a reader never writes"
    );
}
