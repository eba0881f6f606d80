//! The web UI end to end in headless Chromium against a real `evolve serve` (ui/e2e/run.mjs):
//! register the tiny task model, chat with 2 refinement steps, run 1 round to the end, veto a
//! pair, check and export the adapter. Screenshots go to `<target>/e2e-screenshots/`.
//!
//! Needs Node.js with ui/node_modules (scripts/build-ui.sh) and Debian's chromium; it fails,
//! naming the package, when one is missing (scripts/test.sh installs them).

mod support;

use evolve::method::arithmetic::{gsm8k_jsonl, problems_split};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::Server;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_tools() -> PathBuf {
    let chromium = std::env::var_os("CHROMIUM").map_or("/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        chromium.is_file(),
        "{} is missing: install it with `apt-get install -y chromium` (scripts/test.sh does)",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install it with `apt-get install -y nodejs npm` (scripts/test.sh does)"
    );
    assert!(
        repo().join("ui/node_modules/playwright-core").is_dir(),
        "ui/node_modules/playwright-core is missing: run scripts/build-ui.sh (npm ci) first"
    );
    chromium
}

/// `<target>/e2e-screenshots`, next to the profile directory of the test binaries.
fn screenshot_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_evolve"));
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("e2e-screenshots")
}

fn dataset(dir: &Path) -> PathBuf {
    let mut problems = problems_split(24, 2, 21, false);
    problems.extend(problems_split(4, 2, 22, true));
    let path = dir.join("arithmetic.jsonl");
    std::fs::write(&path, gsm8k_jsonl(&problems)).unwrap();
    path
}

/// A home with an LM Studio model, an Ollama model and a broken Ollama manifest, for the
/// Models screen's discovery.
fn fake_home(dir: &Path, model: &Path) -> PathBuf {
    let home = dir.join("home");
    let lms = home.join(".lmstudio/models/bartowski/Tiny-GGUF");
    let ollama = home.join(".ollama/models");
    let manifests = ollama.join("manifests/registry.ollama.ai/library");
    for d in [
        &lms,
        &ollama.join("blobs"),
        &manifests.join("tiny"),
        &manifests.join("broken"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(model, lms.join("tiny-Q8_0.gguf")).unwrap();
    let digest = "a".repeat(64);
    std::fs::copy(model, ollama.join(format!("blobs/sha256-{digest}"))).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:{digest}","size":1}}]}}"#
    );
    std::fs::write(manifests.join("tiny/latest"), manifest).unwrap();
    std::fs::write(manifests.join("broken/latest"), "{").unwrap();
    home
}

#[test]
fn the_web_ui_chats_runs_reviews_and_exports_in_chromium() {
    let chromium = require_tools();
    let model = support::task_model();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let exports = tmp.path().join("exports");
    let data_file = dataset(tmp.path());
    let shots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let home = fake_home(tmp.path(), &model);
    let server = Server::start(&data, &[("HOME", home.to_str().unwrap())]);
    let status = Command::new("node")
        .arg(repo().join("ui/e2e/run.mjs"))
        .arg(&server.url)
        .arg(&shots)
        .env("E2E_MODEL", &model)
        .env("E2E_DATASET", &data_file)
        .env("E2E_EXPORT_DIR", &exports)
        .env("E2E_DISCOVER", "1")
        .env("CHROMIUM", &chromium)
        .status()
        .expect("run node ui/e2e/run.mjs");
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots in {}",
        shots.display()
    );
    drop(server);

    // What the browser did is in the database and on disk.
    let exported: Vec<_> = std::fs::read_dir(&exports).unwrap().collect();
    assert_eq!(
        exported.len(),
        1,
        "one exported adapter in {}",
        exports.display()
    );
    let store = evolve::store::Store::open(&evolve::core::DataDir::new(&data).database())
        .expect("open the database");
    let vetoed = store
        .list_pairs(&evolve::store::PairFilter {
            review: Some(evolve::core::ReviewState::Vetoed),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(vetoed.len(), 1, "the vetoed pair is stored");
    let from_ollama = store
        .list_models()
        .unwrap()
        .into_iter()
        .find(|m| m.display_name.as_deref() == Some("tiny:latest"));
    assert!(
        from_ollama.is_some_and(|m| m.path.ends_with(&format!("sha256-{}", "a".repeat(64)))),
        "the Ollama model registered from the Models screen, its blob not copied"
    );
    for name in [
        "02-chat-refinements",
        "06-run-done",
        "07-pairs-vetoed",
        "08-models-exported",
    ] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "screenshot {name} missing"
        );
    }
}
