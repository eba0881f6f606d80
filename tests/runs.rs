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
    let json = serde_json::to_string(&evolve::demo::DemoSettings::default().run_config()).unwrap();
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
            "trained/direct_score",
            "trained/refined_score@1",
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
