//! EVOLVE runs end to end through the `evolve` binary on the tiny task model: every table of a
//! round, `kill -9` and resume (during collection and during training) against an uninterrupted
//! run, and bad input that must fail clearly without losing finished work.

mod support;

use evolve::method::arithmetic::{gsm8k_jsonl, problems_split};
use evolve::store::{PairFilter, Store};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::task_model;

fn evolve_cmd<S: AsRef<std::ffi::OsStr>>(data_dir: &Path, args: &[S]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evolve"));
    c.args(args)
        .env("EVOLVE_DATA_DIR", data_dir)
        // Same thread count in every process: sampling and training are then bit-reproducible.
        .env("RAYON_NUM_THREADS", "2");
    c
}

fn evolve<S: AsRef<std::ffi::OsStr>>(data_dir: &Path, args: &[S]) -> Output {
    evolve_cmd(data_dir, args).output().expect("run evolve")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A GSM8K-layout file of addition problems (train problems, then held-out ones).
fn arithmetic_file(dir: &Path, train: usize, eval: usize) -> PathBuf {
    let mut problems = problems_split(train, 2, 11, false);
    problems.extend(problems_split(eval, 2, 12, true));
    let path = dir.join("arithmetic.jsonl");
    std::fs::write(&path, gsm8k_jsonl(&problems)).unwrap();
    path
}

/// `evolve run start` on the task model's own run configuration (`evolve demo`'s: the short
/// refinement instruction it was trained with), with `extra` flags overriding it.
fn start_args(model: &Path, data: &Path, extra: &[&str]) -> Vec<String> {
    let config = data.with_extension("config.json");
    let json = serde_json::to_string(&evolve::builtin::demo::DemoSettings::default().run_config(0))
        .unwrap();
    std::fs::write(&config, json).unwrap();
    let mut v: Vec<String> = ["run", "start", "--threads", "2", "--model"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for p in [model, data] {
        v.push(p.display().to_string());
        if p == model {
            v.push("--data".into());
        }
    }
    v.push("--config".into());
    v.push(config.display().to_string());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

const SMALL_RUN: &[&str] = &[
    "--rounds",
    "1",
    "--prompts-per-round",
    "8",
    "--samples",
    "3",
    "--refine",
    "1",
    "--eval-prompts",
    "6",
    "--lr",
    "0.002",
    "--epochs",
    "2",
];

#[test]
fn one_round_fills_every_table_consistently() {
    let model = task_model();
    let dir = tempfile::tempdir().unwrap();
    let data = arithmetic_file(dir.path(), 40, 8);
    let out = evolve(dir.path(), &start_args(&model, &data, SMALL_RUN));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("held-out scoreboard"), "{stdout}");

    let store = Store::open(&dir.path().join("evolve.db")).unwrap();
    let run = &store.list_runs().unwrap()[0];
    assert_eq!(run.state.as_str(), "done");
    let rounds = store.rounds_of_run(run.id).unwrap();
    assert_eq!(rounds.len(), 1);
    let round = &rounds[0];
    assert_eq!(round.state.as_str(), "done");

    // 8 prompts × 3 samples, each refined once, every answer scored once.
    let gens = store.generations_of_round(round.id).unwrap();
    assert_eq!(gens.len(), 8 * 3 * 2);
    for g in &gens {
        assert_eq!(
            store.scores_of(g.id).unwrap().len(),
            1,
            "generation {:?}",
            g.id
        );
        if g.step_index == 1 {
            let parent = store.get_generation(g.parent_id.unwrap()).unwrap().unwrap();
            assert_eq!(
                (parent.step_index, parent.sample_index),
                (0, g.sample_index)
            );
        }
    }

    // Pairs: chosen scored above rejected, both from this round's prompt.
    let pairs = store
        .list_pairs(&PairFilter {
            round_id: Some(round.id),
            ..Default::default()
        })
        .unwrap();
    assert!(
        !pairs.is_empty(),
        "a partly accurate model gives correct and wrong samples"
    );
    for p in &pairs {
        let score = |id| store.scores_of(id).unwrap()[0].value;
        assert!(score(p.chosen_id) > score(p.rejected_id));
        let (c, r) = (
            store.get_generation(p.chosen_id).unwrap().unwrap(),
            store.get_generation(p.rejected_id).unwrap().unwrap(),
        );
        assert_eq!(
            (c.prompt_id, r.prompt_id),
            (Some(p.prompt_id), Some(p.prompt_id))
        );
    }

    // Training: done, one metrics row per step, an adapter whose file matches its checksum.
    let training = store.training_runs_of_round(round.id).unwrap();
    assert_eq!(training.len(), 1);
    assert_eq!(training[0].state.as_str(), "done");
    let metrics = store.metrics_of(training[0].id).unwrap();
    let steps = (pairs.len().div_ceil(8)) * 2;
    assert_eq!(metrics.len(), steps);
    assert!(metrics.iter().all(|m| m.metrics["loss"].is_finite()));
    let adapters = store.list_adapters().unwrap();
    assert_eq!(adapters.len(), 1);
    let bytes = std::fs::read(&adapters[0].path).unwrap();
    assert_eq!(bytes.len() as i64, adapters[0].file_size);
    assert_eq!(&bytes[..4], b"GGUF");

    // Evaluations: the base model and the trained adapter, direct and after one refinement.
    // And the judged win rate of the trained adapter's direct answers over the base model's.
    let evals = store.evaluations_of_run(run.id).unwrap();
    let mut names: Vec<&str> = evals.iter().map(|e| e.metric.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "base/direct_score",
            "base/refined_score@1",
            "base/sampled_score",
            "trained/direct_score",
            "trained/refined_score@1",
            "trained/sampled_score",
            "trained/win_rate_vs_previous"
        ]
    );
    let n = evals[0].n;
    assert!(
        (1..=6).contains(&n),
        "at most --eval-prompts held-out prompts: {n}"
    );
    assert!(
        evals
            .iter()
            .all(|e| e.n == n && (0.0..=1.0).contains(&e.value))
    );
    let win = evals
        .iter()
        .find(|e| e.metric == "trained/win_rate_vs_previous")
        .unwrap();
    let count = |k: &str| win.details[k].as_i64().unwrap();
    assert_eq!(count("wins") + count("ties") + count("losses"), n);
    assert_eq!(win.details["previous"], "base");
    // Every evaluation keeps its answers, one per held-out prompt.
    let direct = evals
        .iter()
        .find(|e| e.metric == "trained/direct_score")
        .unwrap();
    assert_eq!(
        direct.details["answers"].as_array().unwrap().len() as i64,
        n
    );

    // The status JSON says the same as the tables.
    let status = evolve(dir.path(), &["run", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["rounds"][0]["generations"], 48);
    assert_eq!(json["scoreboard"][0]["label"], "base");
    assert_eq!(json["scoreboard"][1]["label"], "round 0");
    // Round 0 against the base, problem by problem, and what refinement fixed and broke.
    let vs = &json["scoreboard"][1]["vs_base"];
    assert_eq!(vs["n"], n);
    let (wins, losses) = (vs["wins"].as_i64().unwrap(), vs["losses"].as_i64().unwrap());
    assert_eq!(
        wins + losses + count("ties"),
        n,
        "the win rate counts the same problems"
    );
    assert!(vs["ci_low"].as_f64().unwrap() <= vs["diff"].as_f64().unwrap());
    assert!((0.0..=1.0).contains(&vs["p_value"].as_f64().unwrap()));
    assert_eq!(
        json["scoreboard"][1]["refine_steps"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // TRL export: one line per pair, refinement pairs with the refinement conversation.
    let trl = dir.path().join("pairs.jsonl");
    let out = evolve(
        dir.path(),
        &["run", "export-pairs", "1", "--out", trl.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&trl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), pairs.len());
    assert!(
        lines
            .iter()
            .all(|l| l["chosen"].is_array() || l["chosen"].is_string())
    );

    // What the app's pair and adapter screens do, from the CLI.
    let listed = evolve(dir.path(), &["pairs", "list", "--run", "1", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), pairs.len());
    let first = listed[0]["id"].to_string();
    let vetoed = evolve(dir.path(), &["pairs", "veto", &first]);
    assert!(
        text(&vetoed.stdout).contains("is now vetoed"),
        "{}",
        text(&vetoed.stderr)
    );
    let edited = evolve(dir.path(), &["pairs", "edit", &first, "--text", "1+1=2"]);
    assert!(edited.status.success(), "{}", text(&edited.stderr));
    let only = evolve(
        dir.path(),
        &["pairs", "list", "--review", "edited", "--json"],
    );
    let only: serde_json::Value = serde_json::from_slice(&only.stdout).unwrap();
    assert_eq!(only.as_array().unwrap().len(), 1);
    assert_eq!(only[0]["edited_chosen_text"], "1+1=2");
    let missing = evolve(dir.path(), &["pairs", "approve", "999999"]);
    assert!(text(&missing.stderr).contains("no pair with id 999999"));

    let listed = evolve(dir.path(), &["adapters", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["run_id"], 1);
    assert_eq!(listed[0]["round"], 0);
    let id = listed[0]["id"].to_string();
    let exports = dir.path().join("exports");
    for (format, written) in [
        ("gguf_lora", format!("adapter-{id}.gguf")),
        ("peft", format!("adapter-{id}-peft/adapter_config.json")),
    ] {
        let out = evolve(
            dir.path(),
            &[
                "adapters",
                "export",
                &id,
                "--format",
                format,
                "--out",
                exports.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
        assert!(exports.join(&written).is_file(), "{written}");
    }
    let args = [
        "adapters",
        "export",
        &id,
        "--out",
        exports.to_str().unwrap(),
    ];
    let again = evolve(dir.path(), &args);
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    let forced = evolve(dir.path(), &[&args[..], &["--force"]].concat());
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let check = evolve(dir.path(), &["adapters", "check", &id, "--threads", "2"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("is applied"),
        "{}",
        text(&check.stdout)
    );
}

/// Everything a run produced, keyed so that two runs can be compared row by row.
fn snapshot(db: &Path) -> Vec<String> {
    let store = Store::open(db).unwrap();
    let run = &store.list_runs().unwrap()[0];
    let mut rows = vec![format!("run {}", run.state.as_str())];
    for round in store.rounds_of_run(run.id).unwrap() {
        rows.push(format!(
            "round {} {}",
            round.round_index,
            round.state.as_str()
        ));
        for g in store.generations_of_round(round.id).unwrap() {
            let prompt = store.get_prompt(g.prompt_id.unwrap()).unwrap().unwrap();
            // Answers of a killed run may not be scored yet.
            let score = store.scores_of(g.id).unwrap().first().map(|s| s.value);
            rows.push(format!(
                "gen r{} p{} s{} k{} score {score:?}: {:?}",
                round.round_index, prompt.idx, g.sample_index, g.step_index, g.text
            ));
        }
        for p in store
            .list_pairs(&PairFilter {
                round_id: Some(round.id),
                ..Default::default()
            })
            .unwrap()
        {
            let t = |id| store.get_generation(id).unwrap().unwrap().text;
            rows.push(format!(
                "pair {:?} {:?} > {:?}",
                p.kind,
                t(p.chosen_id),
                t(p.rejected_id)
            ));
        }
        let done: Vec<_> = store
            .training_runs_of_round(round.id)
            .unwrap()
            .into_iter()
            .filter(|t| t.state.as_str() == "done")
            .collect();
        assert!(done.len() <= 1);
        for t in done {
            for m in store.metrics_of(t.id).unwrap() {
                rows.push(format!("step {} loss {:.6}", m.step, m.metrics["loss"]));
            }
        }
    }
    for a in store.list_adapters().unwrap() {
        rows.push(format!("adapter {}", a.sha256));
    }
    for e in store.evaluations_of_run(run.id).unwrap() {
        rows.push(format!("eval {} {}", e.metric, e.value));
    }
    rows.sort();
    rows
}

/// Counts rows through a read-only connection beside the writing process (WAL); 0 while the
/// database or the table does not exist yet.
fn count(db: &Path, sql: &str) -> i64 {
    use rusqlite::{Connection, OpenFlags};
    if !db.exists() {
        return 0;
    }
    let Ok(conn) = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

const RESUME_RUN: &[&str] = &[
    "--rounds",
    "2",
    "--prompts-per-round",
    "12",
    "--samples",
    "3",
    "--refine",
    "2",
    "--eval-prompts",
    "6",
    "--lr",
    "0.002",
    "--epochs",
    "6",
];

/// [`start_args`] for the resume tests: training checkpoints every 2 steps.
fn resume_args(model: &Path, data: &Path) -> Vec<String> {
    let args = start_args(model, data, RESUME_RUN);
    let config = data.with_extension("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["train"]["checkpoint_every"] = 2.into();
    std::fs::write(&config, json.to_string()).unwrap();
    args
}

/// Kills `evolve run start` with SIGKILL once `sql` counts at least one row, resumes the run
/// and compares everything with an uninterrupted run of the same configuration. Returns what
/// the resumed run printed.
fn kill_and_resume_matches_uninterrupted(sql: &str) -> String {
    let model = task_model();
    let reference = tempfile::tempdir().unwrap();
    let data = arithmetic_file(reference.path(), 40, 8);
    let args = resume_args(&model, &data);
    let out = evolve(reference.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let data = arithmetic_file(dir.path(), 40, 8);
    let args = resume_args(&model, &data);
    let db = dir.path().join("evolve.db");
    let mut child = evolve_cmd(dir.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if count(&db, sql) > 0 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill point"
        );
        // Generous: on a loaded 2-core CI machine this file's tests run side by side.
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "kill point never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = snapshot(&db);
    assert!(
        before.iter().all(|r| !r.starts_with("run done")),
        "killed before the end"
    );

    let out = evolve(dir.path(), &["run", "resume", "1", "--threads", "2"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(snapshot(&db), snapshot(&reference.path().join("evolve.db")));
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn killed_during_collection_resumes_to_the_same_result() {
    kill_and_resume_matches_uninterrupted("SELECT count(*) FROM generations WHERE step_index = 0");
}

#[test]
fn killed_during_training_resumes_from_its_checkpoint_to_the_same_result() {
    // Step 3 logged: the checkpoint of step 2 (at least) is on disk.
    let printed =
        kill_and_resume_matches_uninterrupted("SELECT count(*) >= 3 FROM training_metrics");
    assert!(
        printed.contains("training resumes from its checkpoint after step"),
        "the resumed run went on from the checkpoint, not from step 0:\n{printed}"
    );
}

#[test]
fn a_scorer_that_cannot_score_fails_clearly_and_keeps_the_answers() {
    let model = task_model();
    let dir = tempfile::tempdir().unwrap();
    // Plain prompts without references: the numeric verifier has nothing to compare with.
    let data = dir.path().join("plain.jsonl");
    let lines: String = (0..10)
        .map(|i| format!("{{\"prompt\": \"{i}+{i}=?\"}}\n"))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let extra = [
        "--rounds",
        "1",
        "--prompts-per-round",
        "4",
        "--samples",
        "2",
        "--refine",
        "1",
    ];
    let out = evolve(dir.path(), &start_args(&model, &data, &extra));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("scoring failed") && err.contains("no reference answer"),
        "{err}"
    );
    assert!(
        err.contains("evolve run resume 1"),
        "says how to continue: {err}"
    );
    let store = Store::open(&dir.path().join("evolve.db")).unwrap();
    let round = &store
        .rounds_of_run(store.list_runs().unwrap()[0].id)
        .unwrap()[0];
    assert_eq!(round.state.as_str(), "failed");
    assert!(
        round
            .error
            .as_deref()
            .unwrap()
            .contains("no reference answer")
    );
    assert_eq!(
        store.generations_of_round(round.id).unwrap().len(),
        4 * 2 * 2,
        "answers kept"
    );
}

#[test]
fn an_empty_or_malformed_dataset_is_refused_clearly() {
    let model = task_model();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = evolve(dir.path(), &start_args(&model, &empty, &[]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no train prompts") || err.contains("empty"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );

    // A bad line is reported by number; the good ones make a run.
    let mixed = dir.path().join("mixed.jsonl");
    let mut good = gsm8k_jsonl(&problems_split(12, 2, 5, false));
    good.insert_str(0, "{\"question\": \"1+1=?\", \"answer\": \n");
    std::fs::write(&mixed, good).unwrap();
    let extra = [
        "--rounds",
        "1",
        "--prompts-per-round",
        "2",
        "--samples",
        "2",
        "--refine",
        "0",
        "--eval-prompts",
        "1",
    ];
    let out = evolve(dir.path(), &start_args(&model, &mixed, &extra));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_by_name() {
    let model = task_model();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("long.jsonl");
    let long = "1+".repeat(400) + "1=?";
    let lines = format!(
        "{{\"question\": \"2+2=?\", \"answer\": \"#### 4\"}}\n{{\"question\": \"{long}\", \"answer\": \"#### 401\"}}\n"
    );
    std::fs::write(&data, lines).unwrap();
    let extra = [
        "--rounds",
        "1",
        "--prompts-per-round",
        "2",
        "--samples",
        "2",
        "--refine",
        "0",
    ];
    let out = evolve(dir.path(), &start_args(&model, &data, &extra));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("context"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
}

#[test]
fn an_unknown_scorer_or_a_missing_judge_model_is_refused_before_any_work() {
    let model = task_model();
    let dir = tempfile::tempdir().unwrap();
    let data = arithmetic_file(dir.path(), 10, 2);
    for (scorer, expected) in [
        ("vibes", "unknown scorer 'vibes' (expected numeric"),
        (
            "judge:/nowhere/judge.gguf",
            "model file not found: /nowhere/judge.gguf",
        ),
    ] {
        let out = evolve(
            dir.path(),
            &start_args(&model, &data, &["--scorer", scorer]),
        );
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
    let store = Store::open(&dir.path().join("evolve.db")).unwrap();
    assert!(store.list_runs().unwrap().is_empty(), "no run was created");
}

#[test]
fn demo_compare_reports_paired_results_and_keeps_sizes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    let small = |prompts: &str| -> Vec<String> {
        [
            "demo",
            "--threads",
            "2",
            "--rounds",
            "1",
            "--eval-prompts",
            "8",
            "--seeds",
            "1",
            "--prompts-per-round",
            prompts,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut compare = small("4");
    compare.extend([
        "--compare".into(),
        "--json".into(),
        json.display().to_string(),
    ]);
    let out = evolve(dir.path(), &compare);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("== side by side"), "{stdout}");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let fixture = std::fs::read(task_model()).unwrap();
    let sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&fixture))
    };
    assert_eq!(results["model"]["sha256"], sha.as_str());
    let runs = results["runs"].as_array().unwrap();
    let variants: Vec<&str> = runs
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, ["evolve", "iterative_dpo", "rft"]);
    for run in runs {
        let rows = run["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "base and round 0: {run}");
        for row in rows {
            // The demo's own columns (the scoreboard row's, less round, win rate and the step
            // comparisons, which it writes as counts), whatever the scoreboard adds.
            let columns: Vec<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                columns,
                [
                    "direct",
                    "label",
                    "n",
                    "refined",
                    "refined_vs_base",
                    "refined_vs_previous",
                    "right_to_wrong",
                    "sampled",
                    "vs_base",
                    "vs_previous",
                    "wall_s",
                    "wrong_to_right"
                ],
                "{row}"
            );
            assert_eq!(row["n"], 8, "{row}");
            assert_eq!(row["refined"].as_array().unwrap().len(), 2, "refine@1, @2");
            assert_eq!(row["wrong_to_right"].as_array().unwrap().len(), 2);
            assert!(row["sampled"].is_number(), "{row}");
        }
        let vs = &rows[1]["vs_base"];
        let (lo, d, hi) = (
            vs["ci_low"].as_f64().unwrap(),
            vs["diff"].as_f64().unwrap(),
            vs["ci_high"].as_f64().unwrap(),
        );
        assert!(lo <= d && d <= hi, "{vs}");
        assert!(rows[1]["wall_s"].as_f64().unwrap() > 0.0);
        // Same base, same problems: every variant's untrained row is the same.
        assert_eq!(rows[0], runs[0]["rows"][0]);
    }
    // Iterative DPO trains direct pairs only.
    let dpo_refine_pairs: u64 = runs[1]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(dpo_refine_pairs, 0, "{}", runs[1]);
    let against: Vec<&str> = results["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["evolve_vs"].as_str().unwrap())
        .collect();
    assert_eq!(against, ["iterative_dpo", "rft"]);
    assert_eq!(results["comparisons"][0]["direct"]["n"], 8);
    assert_eq!(
        results["comparisons"][0]["refined"]["n"], 8,
        "refine@1 compared too"
    );

    // `run compare` gives the same paired comparison, and pools pairs of runs problem by problem.
    let id = |i: usize| runs[i]["run_id"].as_i64().unwrap().to_string();
    let (dpo, evo) = (id(1), id(0));
    let (dpo, evo) = (dpo.as_str(), evo.as_str());
    let out = evolve(dir.path(), &["run", "compare", dpo, evo, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let measures: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["measure"].as_str().unwrap())
        .collect();
    assert_eq!(measures, ["direct", "refine@1", "refine@2"]);
    assert_eq!(rows[0]["comparison"], results["comparisons"][0]["direct"]);
    let (dpo2, evo2) = (format!("{dpo},{dpo}"), format!("{evo},{evo}"));
    let (dpo2, evo2) = (dpo2.as_str(), evo2.as_str());
    let out = evolve(dir.path(), &["run", "compare", dpo2, evo2, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pooled = &rows[2];
    assert_eq!(pooled["runs"], "pooled", "{rows}");
    assert_eq!(pooled["comparison"]["n"], 16);
    assert_eq!(
        pooled["comparison"]["diff"],
        results["comparisons"][0]["direct"]["diff"]
    );
    let out = evolve(dir.path(), &["run", "compare", dpo2, evo]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("must be as many (2 against 1)"),
        "{}",
        text(&out.stderr)
    );

    // Another size in the same data directory gets its own dataset; the first is untouched,
    // and rerunning the first command reuses its finished runs.
    let out = evolve(dir.path(), &small("6"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let store = Store::open(&dir.path().join("evolve.db")).unwrap();
    let sizes: Vec<(String, usize, usize)> = store
        .list_datasets()
        .unwrap()
        .into_iter()
        .map(|d| {
            let n = |s| store.list_prompts(d.id, Some(s)).unwrap().len();
            (d.name, n("train"), n("eval"))
        })
        .collect();
    assert_eq!(
        sizes,
        [
            ("arithmetic-4-8".to_string(), 4, 8),
            ("arithmetic-6-8".to_string(), 6, 8)
        ]
    );
    let runs_before = store.list_runs().unwrap().len();
    let out = evolve(dir.path(), &compare);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        store.list_runs().unwrap().len(),
        runs_before,
        "finished runs are reused"
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The same numbers; a reused run has no round times to report.
    let without_times = |v: &serde_json::Value| {
        let mut rows = v["runs"][0]["rows"].clone();
        for row in rows.as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("wall_s");
        }
        rows
    };
    assert_eq!(without_times(&again), without_times(&results));
}

/// The stored `config_json` of every run, in order.
fn stored_configs(dir: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(dir.join("evolve.db")).unwrap();
    let mut q = db
        .prepare("SELECT config_json FROM runs ORDER BY id")
        .unwrap();
    q.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `evolve run start` with no flags but the model and the data, stopped once the run exists.
fn cli_start_without_flags(dir: &Path, model: &Path, data: &Path) {
    use std::io::BufRead;
    let mut child = evolve_cmd(dir, &["run", "start", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let created = stdout
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("created"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(created, "evolve run start did not create a run");
}

#[test]
fn cli_and_app_start_the_same_run_on_the_same_model() {
    use evolve::api::Api;
    use serde_json::json;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let data = arithmetic_file(dir.path(), 10, 4);
    let random = dir.path().join("plain.gguf");
    let out = evolve(
        dir.path(),
        &["fixture", "random", "--out", random.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for model in [task_model(), random] {
        cli_start_without_flags(dir.path(), &model, &data);
        let api = Api::open(
            evolve::core::DataDir::new(dir.path().to_path_buf()),
            Arc::new(|_: &str, _| {}),
        )
        .unwrap();
        let models = api.call("models_list", json!({})).unwrap();
        let model_id = models
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["path"] == model.display().to_string())
            .expect("the CLI registered the model")["id"]
            .clone();
        let dataset_id = api.call("datasets_list", json!({})).unwrap()[0]["id"].clone();
        let start = |config: Option<serde_json::Value>| {
            let mut args = json!({"name": "app", "model_id": model_id, "dataset_id": dataset_id});
            if let Some(c) = config {
                args["config"] = c;
            }
            let run = api.call("run_start", args).unwrap()["run_id"].clone();
            api.call("run_cancel", json!({"run_id": run})).unwrap();
        };
        // No fields at all, and the wizard's defaults for that model sent back untouched.
        start(None);
        let defaults = api
            .call("run_defaults", json!({"model_id": model_id}))
            .unwrap();
        start(Some(defaults));
        let configs = stored_configs(dir.path());
        let last = &configs[configs.len() - 3..];
        assert_eq!(
            last[1],
            last[0],
            "app without fields vs CLI on {}",
            model.display()
        );
        assert_eq!(
            last[2],
            last[0],
            "app defaults vs CLI on {}",
            model.display()
        );
    }
    let configs = stored_configs(dir.path());
    assert_ne!(
        configs[0], configs[3],
        "the task model has its own settings"
    );
}

#[test]
fn bad_run_settings_fail_at_once_naming_the_field() {
    let model = task_model();
    let dir = tempfile::tempdir().unwrap();
    let data = arithmetic_file(dir.path(), 10, 2);
    for (flags, field) in [
        (&["--beta", "0"][..], "train.beta"),
        (&["--lr", "-1"][..], "train.lr"),
        (&["--samples", "0"][..], "samples"),
        (&["--scorer", "vibes"][..], "unknown scorer 'vibes'"),
        (
            &["--scorer", "judge:/nowhere/j.gguf"][..],
            "model file not found",
        ),
    ] {
        let mut args: Vec<String> = ["run", "start", "--model"].map(String::from).to_vec();
        args.push(model.display().to_string());
        args.push("--data".into());
        args.push(data.display().to_string());
        args.extend(flags.iter().map(|s| s.to_string()));
        let started = Instant::now();
        let out = evolve(dir.path(), &args);
        let took = started.elapsed();
        assert!(!out.status.success(), "{flags:?}");
        let err = text(&out.stderr);
        assert!(err.contains(field), "{flags:?}: {err}");
        assert!(took < Duration::from_secs(1), "{flags:?} took {took:?}");
    }
    let store = Store::open(&dir.path().join("evolve.db")).unwrap();
    assert!(store.list_runs().unwrap().is_empty(), "no run was created");
}

#[test]
fn a_run_is_driven_by_one_process_and_a_dead_drivers_lease_is_taken_over() {
    let model = task_model();
    let dir = tempfile::tempdir().unwrap();
    let data = arithmetic_file(dir.path(), 40, 8);
    let mut first = evolve_cmd(dir.path(), &start_args(&model, &data, SMALL_RUN))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = dir.path().join("evolve.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder = loop {
        if let Ok(conn) = rusqlite::Connection::open(&db)
            && let Ok(pid) =
                conn.query_row("SELECT pid FROM run_leases WHERE run_id = 1", [], |r| {
                    r.get::<_, u32>(0)
                })
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the first process never took the lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(holder, first.id());

    // A second process is refused at once, naming the holder; the run is left alone.
    let started = Instant::now();
    let second = evolve(dir.path(), &["run", "resume", "1", "--threads", "2"]);
    assert!(!second.status.success());
    let err = text(&second.stderr);
    assert!(
        err.contains(&format!("being driven by process {holder}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Killed, its lease is stale: the next process takes the run over and finishes it.
    first.kill().unwrap();
    first.wait().unwrap();
    let resumed = evolve(dir.path(), &["run", "resume", "1", "--threads", "2"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let store = Store::open(&db).unwrap();
    assert_eq!(store.list_runs().unwrap()[0].state.as_str(), "done");
    assert!(
        store.run_lease(evolve::store::RunId(1)).unwrap().is_none(),
        "released at the end"
    );
}
