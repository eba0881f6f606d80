//! End-to-end tests of the `evolve` binary: real files, real SQLite, real llama.cpp.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn evolve(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(args)
        .env("EVOLVE_DATA_DIR", data_dir)
        .output()
        .expect("run evolve")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tiny_model(dir: &Path, weight_type: &str) -> PathBuf {
    let path = dir.join(format!("tiny-{weight_type}.gguf"));
    let out = evolve(
        dir,
        &[
            "fixture",
            "random",
            "--out",
            path.to_str().unwrap(),
            "--type",
            weight_type,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("wrote {}", path.display())),
        "{}",
        stdout(&out)
    );
    path
}

/// Runs `models info` and asserts it failed with exactly one `error:` line.
fn info_error(dir: &Path, file: &Path) -> String {
    let out = evolve(dir, &["models", "info", file.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "must exit non-zero for {}",
        file.display()
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one clear line, got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = evolve(dir.path(), &["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for cmd in ["start", "chat", "models", "db", "fixture"] {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
}

#[test]
fn fixture_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = tiny_model(dir.path(), "q8_0");
    let bytes_a = std::fs::read(&a).unwrap();
    std::fs::remove_file(&a).unwrap();
    let b = tiny_model(dir.path(), "q8_0");
    assert_eq!(bytes_a, std::fs::read(b).unwrap());
}

#[test]
fn models_info_prints_the_metadata_of_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "q8_0");
    let out = evolve(dir.path(), &["models", "info", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in ["llama", "evolve-tiny-random", "Q8_0", "512", "<|im_start|>"] {
        assert!(text.contains(needle), "info lacks {needle}:\n{text}");
    }
    let out = evolve(
        dir.path(),
        &["models", "info", model.to_str().unwrap(), "--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["architecture"], "llama");
    assert_eq!(json["context_length"], 512);
    assert_eq!(json["quantization"], "Q8_0");
    assert!(json["parameter_count"].as_u64().unwrap() > 100_000);
}

#[test]
fn models_info_rejects_bad_files_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "these are not weights\n").unwrap();
    let err = info_error(dir.path(), &text);
    assert!(
        err.contains("not a GGUF file") && err.contains("notes.txt"),
        "{err}"
    );

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = info_error(dir.path(), &empty);
    assert!(
        err.contains("not a GGUF file") && err.contains("is empty"),
        "{err}"
    );

    let model = tiny_model(dir.path(), "f32");
    let bytes = std::fs::read(&model).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = info_error(dir.path(), &truncated);
    assert!(
        err.contains("truncated GGUF file") && err.contains("truncated.gguf"),
        "{err}"
    );

    let missing = dir.path().join("missing.gguf");
    let err = info_error(dir.path(), &missing);
    assert!(err.contains("missing.gguf"), "{err}");
}

#[test]
fn models_add_and_info_refuse_a_fifo_instead_of_blocking_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for command in ["info", "add"] {
        // Opening a FIFO blocks until a writer comes: a check that is missing hangs, so the
        // command runs with a deadline.
        let mut child = Command::new(env!("CARGO_BIN_EXE_evolve"))
            .args(["models", command, fifo.to_str().unwrap()])
            .env("EVOLVE_DATA_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("`models {command}` blocked on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "models {command}");
        let err = stderr(&out);
        assert!(
            err.contains("is not a regular file (a FIFO, socket or device)")
                && err.contains("model.gguf"),
            "models {command}: {err}"
        );
    }
}

#[test]
fn models_add_registers_once_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "q8_0");
    for _ in 0..2 {
        let out = evolve(
            dir.path(),
            &["models", "add", model.to_str().unwrap(), "--name", "tiny"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).starts_with("registered model 1 'tiny'"),
            "{}",
            stdout(&out)
        );
    }
    let out = evolve(dir.path(), &["models", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["architecture"], "llama");
    assert_eq!(list[0]["sha256"].as_str().unwrap().len(), 64);
    // A registered id works wherever a model is expected.
    let out = evolve(dir.path(), &["models", "info", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("evolve-tiny-random"));
    let out = evolve(dir.path(), &["models", "info", "7"]);
    assert!(
        stderr(&out).contains("no registered model with id 7"),
        "{}",
        stderr(&out)
    );
}

/// A copy of the tiny model without `tokenizer.chat_template`, as `dir/name`.
fn model_without_template(dir: &Path, name: &str) -> PathBuf {
    evolve_testkit::vocab_gguf::without_chat_template(&tiny_model(dir, "q8_0"), &dir.join(name))
}

#[test]
fn a_model_without_a_template_gets_the_plain_format_with_one_warning_and_can_be_set() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_without_template(dir.path(), "base.gguf");
    let add = || evolve(dir.path(), &["models", "add", model.to_str().unwrap()]);
    let out = add();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "warning: evolve-tiny-random has no chat template and looks like a base model: \
         using the plain prompt format (change with `evolve models set-format 1 NAME`)"
    );
    let out = add();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "warned once, when it was registered");
    // Chatting with the registered model says nothing more; with a file not registered, it warns.
    let chat = |model: &str| {
        let args = [
            "chat",
            "--model",
            model,
            "--max-tokens",
            "4",
            "--threads",
            "1",
            "hi",
        ];
        let out = evolve(dir.path(), &args);
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    assert!(!chat("1").contains("warning"));
    let copy = model_without_template(dir.path(), "copy.gguf");
    let err = chat(copy.to_str().unwrap());
    assert!(
        err.contains("warning: copy.gguf has no chat template"),
        "{err}"
    );

    let format = || {
        let out = evolve(dir.path(), &["models", "list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            list[0]["prompt_format"].clone(),
            list[0]["prompt_format_chosen"].clone(),
        )
    };
    let info = || stdout(&evolve(dir.path(), &["models", "info", "1"]));
    assert_eq!(format(), ("plain".into(), false.into()));
    assert!(
        info().contains("prompt format: plain (no chat template, and it looks like a base model)"),
        "{}",
        info()
    );
    let set = |f: &str| evolve(dir.path(), &["models", "set-format", "1", f]);
    let out = set("llama3");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(format(), ("llama3".into(), true.into()));
    assert!(
        info().contains("prompt format: llama3 (chosen)"),
        "{}",
        info()
    );
    for (bad, says) in [
        ("template", "model 1 has no chat template of its own"),
        ("nonsense", "unknown prompt format 'nonsense'"),
    ] {
        let out = set(bad);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    assert_eq!(format(), ("llama3".into(), true.into()));
    assert!(set("default").status.success());
    assert_eq!(format(), ("plain".into(), false.into()));
    // A file not registered shows its default too.
    let out = evolve(dir.path(), &["models", "info", copy.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("prompt format: plain"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn db_status_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = evolve(&data, &["db", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("not created yet"), "{}", stdout(&out));
    assert!(
        !data.join("evolve.db").exists(),
        "status must not create the database"
    );

    let out = evolve(&data, &["db", "migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("migrated from schema version 0 to"),
        "{}",
        stdout(&out)
    );
    let out = evolve(&data, &["db", "migrate"]);
    assert!(stdout(&out).contains("is up to date"), "{}", stdout(&out));

    let out = evolve(&data, &["db", "status"]);
    let text = stdout(&out);
    assert!(text.contains("0 pending"), "{text}");
    assert!(
        text.contains("generations") && text.contains("pairs"),
        "{text}"
    );
}

#[test]
fn data_dir_flag_overrides_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let flag_dir = dir.path().join("flag");
    let out = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(["--data-dir", flag_dir.to_str().unwrap(), "db", "migrate"])
        .env("EVOLVE_DATA_DIR", dir.path().join("env"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(flag_dir.join("evolve.db").exists());
    assert!(!dir.path().join("env").exists());
}

#[test]
fn chat_answers_deterministically_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "q8_0");
    let ask = |seed: &str| {
        let out = evolve(
            dir.path(),
            &[
                "chat",
                "--model",
                model.to_str().unwrap(),
                "--max-tokens",
                "16",
                "--seed",
                seed,
                "--threads",
                "2",
                "2+2?",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("tokens/s"), "{}", stderr(&out));
        stdout(&out)
    };
    let a = ask("3");
    assert_eq!(a, ask("3"));
    assert!(!a.trim().is_empty());
    assert_ne!(a, ask("4"));
}

#[test]
fn start_uses_the_built_in_task_model_and_answers_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    // The built-in model is trained on first use (minutes): hand it the tests' trained copy.
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::copy(
        support::task_model(),
        dir.path().join("models").join("tiny-task.gguf"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args([
            "start",
            "--temperature",
            "0",
            "--max-tokens",
            "48",
            "--threads",
            "2",
        ])
        .env("EVOLVE_DATA_DIR", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"23+45=?\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("training the built-in model"),
        "reused, not retrained"
    );
    assert!(
        stdout(&out).contains("two-digit addition"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("#### "),
        "answers in the task's format: {}",
        stdout(&out)
    );
    assert_eq!(
        stderr(&out).matches("tokens/s").count(),
        1,
        "one answer: {}",
        stderr(&out)
    );
    let out = evolve(dir.path(), &["models", "list"]);
    assert!(
        stdout(&out).contains("tiny task (built in)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn unsupported_files_are_refused_clearly() {
    use evolve::gguf::{GgufWriter, TensorData, Value};
    let dir = tempfile::tempdir().unwrap();

    // A well-formed GGUF of an architecture the trainer cannot rebuild: `info` shows it, `add` refuses it.
    let bert = dir.path().join("bert.gguf");
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("bert".into()));
    w.add_tensor(
        "token_embd.weight",
        vec![32, 4],
        TensorData::F32(vec![0.0; 128]),
    )
    .unwrap();
    w.write_to_path(&bert).unwrap();
    let out = evolve(dir.path(), &["models", "info", bert.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("note: unsupported architecture 'bert'"),
        "{}",
        stdout(&out)
    );
    let out = evolve(dir.path(), &["models", "add", bert.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: unsupported architecture 'bert'") && err.contains("llama, qwen2"),
        "{err}"
    );
    let out = evolve(dir.path(), &["models", "list", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[]",
        "nothing registered"
    );

    // A future GGUF version.
    let future = dir.path().join("future.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&9u32.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 16]);
    std::fs::write(&future, bytes).unwrap();
    let err = info_error(dir.path(), &future);
    assert!(err.contains("unsupported GGUF version 9"), "{err}");
}

#[test]
fn chat_refines_step_by_step_and_stores_the_chain_with_parent_links() {
    use evolve::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "q8_0");
    let out = evolve(
        dir.path(),
        &[
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "12",
            "--refine",
            "3",
            "--threads",
            "1",
            "2+2?",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("── ")).collect();
    assert_eq!(
        headers,
        [
            "── answer ──",
            "── refinement 1 ──",
            "── refinement 2 ──",
            "── refinement 3 ──"
        ],
        "{text}"
    );
    assert_eq!(
        stderr(&out).matches("tokens/s]").count(),
        4,
        "{}",
        stderr(&out)
    );

    let store = Store::open_readonly(&dir.path().join("evolve.db")).unwrap();
    let chat = &store.list_chats().unwrap()[0];
    assert_eq!(chat.title, "2+2?");
    let messages = store.messages_of(chat.id).unwrap();
    assert_eq!(
        messages.len(),
        5,
        "the question, the answer and 3 refinements"
    );
    let last = messages.last().unwrap();
    assert_eq!(last.step_index, 3);
    assert_eq!(
        last.refinement_of,
        Some(messages[1].id),
        "refinements hang off the direct answer"
    );
    let chain = store.refinement_chain(last.generation_id.unwrap()).unwrap();
    assert_eq!(
        chain.iter().map(|g| g.step_index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    for pair in chain.windows(2) {
        assert_eq!(pair[1].parent_id, Some(pair[0].id));
        assert!(
            pair[1].prompt_text.contains(&pair[0].text),
            "step {} refines the previous answer",
            pair[1].step_index
        );
    }
}

#[test]
fn chat_applies_an_adapter_and_refuses_one_that_does_not_fit() {
    use evolve::gguf::{GgufWriter, TensorData, Value};
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "f32");
    let write_adapter = |name: &str, n_in: u64| {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", Value::String("llama".into()));
        w.add_metadata("general.type", Value::String("adapter".into()));
        w.add_metadata("adapter.type", Value::String("lora".into()));
        w.add_metadata("adapter.lora.alpha", Value::F32(4.0));
        let a: Vec<f32> = (0..n_in * 4)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.05)
            .collect();
        let b: Vec<f32> = (0..64 * 4).map(|i| ((i % 5) as f32 - 2.0) * 0.05).collect();
        w.add_tensor(
            "blk.0.attn_q.weight.lora_a",
            vec![n_in, 4],
            TensorData::F32(a),
        )
        .unwrap();
        w.add_tensor(
            "blk.0.attn_q.weight.lora_b",
            vec![4, 64],
            TensorData::F32(b),
        )
        .unwrap();
        let path = dir.path().join(name);
        w.write_to_path(&path).unwrap();
        path
    };
    let ask = |adapter: Option<&Path>| {
        let mut args = vec![
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "24",
            "--temperature",
            "0",
            "--threads",
            "1",
        ];
        if let Some(a) = adapter {
            args.extend(["--adapter", a.to_str().unwrap(), "--adapter-scale", "8"]);
        }
        args.push("hello");
        evolve(dir.path(), &args)
    };
    let base = ask(None);
    let good = write_adapter("good.gguf", 64);
    let adapted = ask(Some(&good));
    assert!(adapted.status.success(), "{}", stderr(&adapted));
    assert_ne!(
        stdout(&base),
        stdout(&adapted),
        "a strong adapter changes the greedy answer"
    );

    let bad = write_adapter("bad.gguf", 32);
    let out = ask(Some(&bad));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not fit the model") && err.contains("blk.0.attn_q.weight"),
        "{err}"
    );
}

#[test]
fn data_import_keeps_good_lines_reports_bad_ones_and_reimports_only_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("math.jsonl");
    let mut lines: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"question": "What is {i}+1?", "answer": "{i}+1={}\n#### {}"}}"#,
                i + 1,
                i + 1
            )
        })
        .collect();
    lines[4] = "{not json".into();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = evolve(dir.path(), &["data", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "dataset 'math' (gsm8k): kept 19 prompts; skipped 1 bad lines: line 5: malformed JSON"
        ),
        "{text}"
    );
    assert!(text.contains("19 new"), "{text}");

    lines.push(r#####"{"question": "What is 99+1?", "answer": "#### 100"}"#####.into());
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = evolve(dir.path(), &["data", "import", file.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("kept 20 prompts") && stdout(&out).contains("1 new"),
        "{}",
        stdout(&out)
    );

    let out = evolve(dir.path(), &["data", "list"]);
    let list = stdout(&out);
    assert!(list.contains("math") && list.contains("gsm8k"), "{list}");

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = evolve(dir.path(), &["data", "import", empty.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no usable prompts (the file is empty)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn built_in_tasks_are_listed_and_become_datasets_with_their_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let out = evolve(dir.path(), &["tasks", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for task in ["add", "larger", "smallest", "count-letter", "units"] {
        assert!(text.lines().any(|l| l.starts_with(task)), "{task}: {text}");
    }
    // A dry run on a built-in task: its problems, scored by numeric_any; nothing stored but
    // the dataset (a small task gets a quarter of its problems held out).
    let model = support::task_model();
    let out = evolve(
        dir.path(),
        &[
            "run",
            "start",
            "--dry-run",
            "--threads",
            "2",
            "--samples",
            "2",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "task:units",
        ],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("dry run: 4 train prompts × 2 samples"),
        "{text}"
    );
    assert!(text.contains("scored by numeric_any"), "{text}");
    assert!(text.contains("How many "), "{text}");
    assert!(text.contains(" of 4 prompts would make pairs"), "{text}");
    let out = evolve(dir.path(), &["data", "list"]);
    assert!(stdout(&out).contains("units-95-47"), "{}", stdout(&out));
    let out = evolve(dir.path(), &["run", "list"]);
    assert_eq!(stdout(&out).trim(), "", "a dry run creates no run");
    let out = evolve(
        dir.path(),
        &[
            "run",
            "start",
            "--dry-run",
            "--model",
            model.to_str().unwrap(),
            "--data",
            "task:sort",
        ],
    );
    assert!(
        stderr(&out).contains("unknown task 'sort'"),
        "{}",
        stderr(&out)
    );
    let out = evolve(dir.path(), &["models", "fetch", "llama-70b"]);
    assert!(
        stderr(&out).contains("no fetchable model named 'llama-70b' (known: smollm2)"),
        "{}",
        stderr(&out)
    );
}

/// TRL preference pairs on the task model's arithmetic, in the forms TRL accepts, with two bad
/// lines (5: not JSON; 9: no rejected answer).
fn trl_pairs(dir: &Path) -> PathBuf {
    let mut lines = Vec::new();
    for i in 0..14u32 {
        let (a, b) = (11 + 7 * i % 80, 23 + 5 * i % 70);
        let q = format!("What is {a} + {b}?");
        let good = format!("{a} + {b} = {}\n#### {}", a + b, a + b);
        let bad = format!("{a} + {b} = {}\n#### {}", a + b + 10, a + b + 10);
        let line = match i % 3 {
            0 => serde_json::json!({"prompt": [{"role": "user", "content": q}],
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}]}),
            1 => {
                serde_json::json!({"prompt": format!("Q: {q}\nA: "), "chosen": good, "rejected": bad})
            }
            _ => serde_json::json!({
                "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
                "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}]}),
        };
        lines.push(line.to_string());
    }
    lines[4] = "{\"prompt\": \"cut off".into();
    lines[8] = serde_json::json!({"prompt": "x", "chosen": "y"}).to_string();
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn train_on_trl_pairs_gives_an_adapter_llama_cpp_applies_and_ctrl_c_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::task_model();
    let pairs = trl_pairs(dir.path());
    let train_args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--model",
            model.to_str().unwrap(),
            "--pairs",
            pairs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "8",
            "--batch-size",
            "2",
            "--checkpoint-every",
            "1000",
        ]
        .map(String::from)
        .to_vec()
    };
    let whole = dir.path().join("whole");
    let mut args = train_args(&whole);
    args.push("--peft".into());
    let out = evolve(
        dir.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("pairs.jsonl:5: skipped: not JSON"), "{err}");
    assert!(
        err.contains("pairs.jsonl:9: skipped: a pair needs 'chosen' and 'rejected'"),
        "{err}"
    );
    assert!(
        stdout(&out).contains("training on 12 pairs"),
        "{}",
        stdout(&out)
    );
    let adapter = whole.join("adapter.gguf");
    assert!(whole.join("peft/adapter_config.json").is_file());
    let chat = evolve(
        dir.path(),
        &[
            "chat",
            "--model",
            model.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--max-tokens",
            "8",
            "--temperature",
            "0",
            "What is 12 + 30?",
        ],
    );
    assert!(
        chat.status.success(),
        "llama.cpp applies the adapter: {}",
        stderr(&chat)
    );
    // The same output folder again is refused: it would mix two trainings.
    let again = evolve(
        dir.path(),
        &train_args(&whole)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        stderr(&again).contains("already holds a trained adapter"),
        "{}",
        stderr(&again)
    );

    // Ctrl-C mid-training: a checkpoint, no adapter; --resume ends on the same bytes.
    let parted = dir.path().join("parted");
    let mut child = Command::new(env!("CARGO_BIN_EXE_evolve"))
        .args(train_args(&parted))
        .env("EVOLVE_DATA_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("training on"), "{first}");
    // The output folder appears when training starts; Ctrl-C a moment later. (Stopped before
    // the first step ends, it still stops after that step: 48 steps are far from done.)
    while !parted.is_dir() && child.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(!status.success(), "stopped, not finished: {rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("interrupted at step")),
        "{rest:?}"
    );
    assert!(parted.join("checkpoint").is_dir() && !parted.join("adapter.gguf").exists());
    let mut resume = train_args(&parted);
    resume.push("--resume".into());
    let out = evolve(
        dir.path(),
        &resume.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(parted.join("adapter.gguf")).unwrap(),
        std::fs::read(&adapter).unwrap(),
        "interrupted and resumed = uninterrupted"
    );
    assert!(
        !parted.join("checkpoint").exists(),
        "a finished training removes its checkpoint"
    );
}

#[test]
fn bench_train_times_a_step_in_its_own_process_and_reports_the_fresh_adapters_loss() {
    let dir = tempfile::tempdir().unwrap();
    let out = evolve(
        dir.path(),
        &[
            "bench",
            "train",
            "--shape",
            "tiny",
            "--pairs",
            "2",
            "--seq",
            "32",
            "--prompt-tokens",
            "16",
            "--repeat",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("shape tiny, 119616 parameters, 2 pairs × 2 × 32 tokens"),
        "{text}"
    );
    // B = 0 at the first step: policy = reference, so the DPO loss is ln 2.
    let row = text
        .lines()
        .find(|l| l.starts_with("| ours (EVOLVE)"))
        .expect(&text);
    assert!(row.ends_with("| 0.6931 |"), "{row}");
    let bad = evolve(
        dir.path(),
        &["bench", "train", "--prompt-tokens", "300", "--seq", "256"],
    );
    assert!(
        stderr(&bad).contains("--prompt-tokens must be at least 1 and leave room"),
        "{}",
        stderr(&bad)
    );
}
