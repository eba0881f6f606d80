//! `evolve bench sample` end to end on the tiny model, and the model shapes `evolve fixture random` writes for it.

use std::process::Command;

fn evolve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(args)
        // Keep the default reference out of the way: this test checks our side only.
        .env("EVOLVE_LLAMA_TOOLS", "/nonexistent-evolve-tools")
        .output()
        .expect("run evolve")
}

#[test]
fn bench_sample_prints_a_row_per_batch_size_with_positive_speeds() {
    let out = evolve(&[
        "bench",
        "sample",
        "--model",
        "tiny",
        "--batch",
        "1,2",
        "--prompt-tokens",
        "16",
        "--gen-tokens",
        "8",
        "--threads",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c[0].parse::<usize>().is_ok())
        .collect();
    assert_eq!(
        rows.iter().map(|c| c[0]).collect::<Vec<_>>(),
        ["1", "2"],
        "{stdout}"
    );
    for c in &rows {
        let pp: f64 = c[1].parse().unwrap();
        let tg: f64 = c[3].parse().unwrap();
        assert!(pp > 0.0 && tg > 0.0, "{stdout}");
        assert_eq!(c[2], "-", "no reference was given: {stdout}");
    }
}

#[test]
fn bench_sample_with_a_missing_reference_fails_with_one_clear_line() {
    let out = evolve(&[
        "bench",
        "sample",
        "--model",
        "tiny",
        "--batch",
        "1",
        "--reference",
        "/nonexistent/llama-batched-bench",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("reference /nonexistent/llama-batched-bench does not exist"),
        "{stderr}"
    );
}

#[test]
fn fixture_random_takes_the_model_shape_from_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shaped.gguf");
    let path = path.to_str().unwrap();
    let shape = [
        "--n-embd",
        "96",
        "--n-layer",
        "3",
        "--n-head",
        "6",
        "--n-head-kv",
        "3",
    ];
    let mut args = vec![
        "fixture", "random", "--out", path, "--n-ff", "200", "--ctx", "300",
    ];
    args.extend(shape);
    assert!(evolve(&args).status.success());
    let info = String::from_utf8_lossy(&evolve(&["models", "info", path]).stdout).into_owned();
    for line in [
        "context length:      300",
        "embedding length:    96",
        "layers:              3",
        "feed-forward length: 200",
        "attention heads:     6",
        "kv heads:            3",
    ] {
        assert!(info.contains(line), "{line:?} missing in:\n{info}");
    }
}
