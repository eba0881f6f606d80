//! The crate edges of docs/architecture.md, checked: shells → facade → method and engines →
//! core. A new dependency that crosses a layer fails here, naming the crate and the edge.

#[path = "support/tree.rs"]
mod tree;
use std::collections::BTreeMap;
use std::path::Path;
use tree::rust_files;

/// The `evolve*` crates a manifest's `[dependencies]` name (dev-dependencies are free).
fn evolve_deps(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[dependencies]"
            && let Some(name) = line.split(['=', '.', ' ']).next()
            && (name == "evolve" || name.starts_with("evolve-"))
        {
            deps.push(name.to_string());
        }
    }
    deps
}

#[test]
fn crates_depend_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // What each crate may depend on. Engines sit on core (and the GGUF reader); the method
    // (evolve-loop) on core and the store; the scorers (evolve-judge) on the inference engines;
    // the monitor on the method; only the facade (`evolve`) sees everything, and the desktop
    // shell sees only the facade.
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("evolve-core", &[][..]),
        // Test support: fixtures for the store and real vocabularies as GGUFs.
        (
            "evolve-testkit",
            &["evolve-core", "evolve-store", "evolve-gguf"][..],
        ),
        ("evolve-gguf", &["evolve-core"][..]),
        ("evolve-store", &["evolve-core"][..]),
        ("evolve-remote", &["evolve-core"][..]),
        ("evolve-llama", &["evolve-core", "evolve-gguf"][..]),
        (
            "evolve-train",
            &["evolve-core", "evolve-gguf", "evolve-llama"][..],
        ),
        ("evolve-loop", &["evolve-core", "evolve-store"][..]),
        (
            "evolve-judge",
            &[
                "evolve-core",
                "evolve-gguf",
                "evolve-llama",
                "evolve-remote",
            ][..],
        ),
        (
            "evolve-monitor",
            &["evolve-core", "evolve-store", "evolve-loop"][..],
        ),
    ]);
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(ok) = allowed.get(name.as_str()) else {
            panic!(
                "crate {name} has no place in the layers: add it here and to docs/architecture.md"
            );
        };
        for dep in evolve_deps(&dir.join("Cargo.toml")) {
            assert!(
                ok.contains(&dep.as_str()),
                "{name} must not depend on {dep}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, allowed.len());
    // The facade reaches training through evolve-train's API, never candle itself.
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap();
    let deps = deps.split("\n[").next().unwrap();
    assert!(
        !deps.contains("candle"),
        "the root package must not depend on candle"
    );
    assert_eq!(
        evolve_deps(&root.join("src-tauri/Cargo.toml")),
        ["evolve"],
        "the desktop shell goes through the facade only"
    );
}

/// Shells parse and print; the facade does the work. No file of `src/api/` or `src/cli/` may
/// reach the store or an engine.
#[test]
fn shells_do_not_reach_the_store_or_an_engine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let forbidden = [
        ".store()",
        "LlamaEngine",
        "evolve_llama",
        "evolve::llama",
        "candle",
        "evolve_train",
        "evolve::train",
    ];
    for dir in ["src/api", "src/cli"] {
        for path in rust_files(&root.join(dir)) {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            for f in forbidden {
                assert!(
                    !text.contains(f),
                    "{rel} uses {f}: call the facade (`Service`) instead"
                );
            }
        }
    }
}
