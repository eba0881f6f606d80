//! The memory pre-flight: a run whose training would not fit in the free memory is refused
//! when it is created, before any sampling. Its own test binary, since it sets
//! `EVOLVE_MEMORY_LIMIT` for the process.

use evolve::api::{Api, EventSink};
use evolve::core::DataDir;
use evolve::gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use serde_json::{Value, json};
use std::sync::Arc;

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    api: Api,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let sink: EventSink = Arc::new(|_: &str, _: Value| {});
    let api = Api::open(DataDir::new(root.join("data")), sink).unwrap();
    Fixture {
        _dir: dir,
        root,
        api,
    }
}

fn tiny_model(f: &Fixture) -> i64 {
    let path = f.root.join("tiny.gguf");
    write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    f.api.call("models_add", json!({"path": path})).unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_run_whose_training_would_not_fit_in_memory_is_refused_before_it_starts() {
    let f = fixture();
    let id = tiny_model(&f);
    let data = f.root.join("d.jsonl");
    let lines: String = (0..20)
        .map(|i| format!("{{\"prompt\": \"{i}+1=\", \"reference\": \"{}\"}}\n", i + 1))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let ds = f
        .api
        .call(
            "datasets_import",
            json!({"path": data, "format": null, "name": null}),
        )
        .unwrap();
    let start = || {
        f.api.call(
            "run_start",
            json!({"name": "r", "model_id": id, "dataset_id": ds["dataset_id"]}),
        )
    };
    let preflight = || {
        f.api
            .call("run_preflight", json!({"model_id": id}))
            .unwrap()
    };
    let ok = preflight();
    assert_eq!(ok["problem"], Value::Null, "{ok}");
    let total = ok["total_gib"].as_f64().unwrap();
    assert!(
        total > 0.0 && total < 1.0,
        "the tiny model needs well under 1 GiB: {ok}"
    );
    // SAFETY: this test binary's threads never read the environment concurrently with it.
    unsafe { std::env::set_var("EVOLVE_MEMORY_LIMIT", "1000000") };
    let refused = preflight();
    assert!(
        refused["problem"].as_str().unwrap().contains("needs about"),
        "{refused}"
    );
    assert!((refused["free_gib"].as_f64().unwrap() - 1e6 / 1073741824.0).abs() < 1e-9);
    let err = start().unwrap_err();
    unsafe { std::env::remove_var("EVOLVE_MEMORY_LIMIT") };
    assert!(
        err.message.contains("training this model needs about") && err.message.contains("free"),
        "{err}"
    );
    assert_eq!(f.api.call("runs_list", json!({})).unwrap(), json!([]));
    // With the machine's real free memory the tiny model fits.
    let run = start().unwrap();
    f.api
        .call("run_cancel", json!({"run_id": run["run_id"]}))
        .unwrap();
}
