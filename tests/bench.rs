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

/// `evolve bench sample` on the tiny model, batches 1 and 2, 16 prompt and 8 generated tokens,
/// one thread, `repeat` alternating runs, then `extra`.
fn bench_small(repeat: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
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
        "--repeat",
        repeat,
    ];
    args.extend_from_slice(extra);
    evolve(&args)
}

/// The cells of the printed table's data rows (those starting with a batch size).
fn table_rows(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix('|'))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c[0].parse::<usize>().is_ok())
        .collect()
}

#[test]
fn bench_sample_prints_a_row_per_batch_size_with_positive_speeds() {
    let out = bench_small("2", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = table_rows(&stdout);
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
fn bench_sample_puts_the_reference_beside_ours_with_the_median_ratio() {
    // A stand-in for llama-batched-bench that always reports 100 t/s of generation.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("llama-batched-bench");
    std::fs::write(
        &fake,
        "#!/bin/sh\n\
         echo '|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |'\n\
         echo '|-------|--------|------|--------|----------|----------|----------|----------|----------|----------|'\n\
         echo '|    16 |      8 |    1 |     24 |    0.010 |   1600.0 |    0.080 |   100.00 |    0.090 |   266.67 |'\n\
         echo '|    16 |      8 |    2 |     32 |    0.010 |   1600.0 |    0.080 |   100.00 |    0.090 |   355.56 |'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = bench_small("3", &["--reference", fake.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("medians of 3 alternating runs"), "{stdout}");
    let rows = table_rows(&stdout);
    assert_eq!(rows.len(), 2, "{stdout}");
    for c in &rows {
        assert_eq!((c[2], c[4]), ("1600.0", "100.0"), "{stdout}");
        // The median of per-run ratios lies within the printed range, and near ours / 100.
        let ratio: f64 = c[5].trim_end_matches('x').parse().unwrap();
        let (lo, hi) = c[6].split_once('–').unwrap();
        let (lo, hi): (f64, f64) = (lo.parse().unwrap(), hi.parse().unwrap());
        assert!(lo <= ratio && ratio <= hi, "{stdout}");
        let ours: f64 = c[3].parse().unwrap();
        assert!(
            lo <= ours / 100.0 + 0.01 && ours / 100.0 - 0.01 <= hi,
            "{stdout}"
        );
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

/// `evolve bench round` on the tiny task model, shrunk to 2 prompts × 2 samples × 1 refinement
/// and 2 held-out problems: a row per phase, in the round's order, tokens where it generates.
#[test]
fn bench_round_prints_each_phase_with_its_time_and_tokens() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-task.gguf");
    let out = evolve(&[
        "bench",
        "round",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        "2",
        "--samples",
        "2",
        "--refine",
        "1",
        "--eval",
        "2",
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
        .filter(|c| c[1].parse::<f64>().is_ok())
        .collect();
    let phases: Vec<&str> = rows.iter().map(|c| c[0]).collect();
    for wanted in [
        "sampling",
        "scoring",
        "pairing",
        "training",
        "evaluating",
        "round",
    ] {
        assert!(phases.contains(&wanted), "{wanted} missing: {stdout}");
    }
    assert!(
        phases.iter().position(|p| *p == "sampling") < phases.iter().position(|p| *p == "training"),
        "{stdout}"
    );
    let tokens = |phase: &str| -> usize {
        rows.iter()
            .filter(|c| c[0] == phase)
            .map(|c| c[2].parse::<usize>().unwrap())
            .sum()
    };
    // Sampling generates the answers and their refinements; evaluation the held-out answers.
    assert!(tokens("sampling") > 0, "{stdout}");
    assert!(tokens("evaluating") > 0, "{stdout}");
    assert_eq!(tokens("training"), 0, "{stdout}");
    let secs = |c: &Vec<&str>| c[1].parse::<f64>().unwrap();
    let round = rows.iter().find(|c| c[0] == "round").unwrap();
    let phases_total: f64 = rows.iter().filter(|c| c[0] != "round").map(secs).sum();
    assert!(secs(round) >= phases_total * 0.99, "{stdout}");
}
