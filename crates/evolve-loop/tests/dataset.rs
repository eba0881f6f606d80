use evolve_loop::dataset::{
    DatasetError, DatasetFormat, import_file, import_jsonl, split_eval, trl_pair_json,
};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn gsm8k_lines_keep_the_final_answer_as_reference_and_bad_lines_are_reported() {
    let text = r#####"{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7"}
{"question": "broken", "answer": "no marker here"}
this is not json
{"question": "Big?", "answer": "#### 1,234"}

[1, 2]
"#####;
    let r = import_jsonl(text, None);
    assert_eq!(r.format, Some(DatasetFormat::Gsm8k));
    assert_eq!(r.prompts.len(), 2);
    assert_eq!(r.prompts[0].reference.as_deref(), Some("7"));
    assert_eq!(r.prompts[0].metadata["solution"], "3+4=7\n#### 7");
    assert_eq!(
        (r.prompts[1].line, r.prompts[1].reference.as_deref()),
        (4, Some("1234"))
    );
    let bad: Vec<usize> = r.errors.iter().map(|e| e.line).collect();
    assert_eq!(bad, [2, 3, 6], "blank line 5 is skipped, not an error");
    assert!(r.errors[0].message.contains("####"), "{:?}", r.errors[0]);
    assert!(
        r.errors[1].message.starts_with("malformed JSON"),
        "{:?}",
        r.errors[1]
    );
    assert!(r.errors[2].message.contains("not a JSON object"));
    let summary = r.summary();
    assert!(
        summary.starts_with("kept 2 prompts; skipped 3 bad lines: line 2:"),
        "{summary}"
    );
}

#[test]
fn alpaca_sharegpt_ultrafeedback_and_plain_are_detected() {
    let alpaca = import_jsonl(
        r#"{"instruction": "Translate", "input": "chat", "output": "cat"}"#,
        None,
    );
    assert_eq!(alpaca.format, Some(DatasetFormat::Alpaca));
    assert_eq!(alpaca.prompts[0].prompt, "Translate\n\nchat");
    assert_eq!(alpaca.prompts[0].reference.as_deref(), Some("cat"));

    let share = import_jsonl(
        r#"{"conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}"#,
        None,
    );
    assert_eq!(share.format, Some(DatasetFormat::ShareGpt));
    assert_eq!(
        (
            share.prompts[0].prompt.as_str(),
            share.prompts[0].reference.as_deref()
        ),
        ("hi", Some("hello"))
    );

    let uf = import_jsonl(
        r#"{"prompt": "Why?", "chosen": [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because."}], "rejected": "No."}"#,
        None,
    );
    assert_eq!(uf.format, Some(DatasetFormat::UltraFeedback));
    assert_eq!(uf.prompts[0].reference.as_deref(), Some("Because."));

    let plain = import_jsonl(r#"{"prompt": "2+2", "reference": "4"}"#, None);
    assert_eq!(plain.format, Some(DatasetFormat::Plain));

    let unknown = import_jsonl(r#"{"text": "hello"}"#, None);
    assert!(unknown.prompts.is_empty());
    assert!(
        unknown.errors[0]
            .message
            .contains("unrecognised record with keys [text]")
    );
}

#[test]
fn forcing_a_format_reports_records_of_another_shape() {
    let r = import_jsonl(
        "{\"prompt\": \"a\"}\n{\"question\": \"q\", \"answer\": \"#### 1\"}",
        Some(DatasetFormat::Gsm8k),
    );
    assert_eq!(r.prompts.len(), 1);
    assert_eq!(r.errors[0].line, 1);
    assert_eq!(r.errors[0].message, "missing 'question'");
}

#[test]
fn csv_files_import_with_their_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "data.csv",
        "question,answer\n\"What is 2+2?\",\"2+2=4\n#### 4\"\nonly one column\n",
    );
    let r = import_file(&p, None).unwrap();
    assert_eq!(r.prompts.len(), 1);
    assert_eq!(r.prompts[0].reference.as_deref(), Some("4"));
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].message.starts_with("bad CSV record"),
        "{:?}",
        r.errors
    );
}

#[test]
fn an_empty_or_all_bad_dataset_is_an_error_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.jsonl", "\n\n");
    let err = import_file(&empty, None).unwrap_err();
    assert!(matches!(err, DatasetError::Empty { .. }));
    assert!(
        err.to_string()
            .contains("has no usable prompts (the file is empty)"),
        "{err}"
    );

    let bad = write(dir.path(), "bad.jsonl", "{oops\n{\"x\": 1}\n");
    let err = import_file(&bad, None).unwrap_err().to_string();
    assert!(
        err.contains("all 2 records are bad; first: line 1: malformed JSON"),
        "{err}"
    );

    let err = import_file(&dir.path().join("missing.jsonl"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot read dataset") && err.contains("missing.jsonl"),
        "{err}"
    );
}

#[test]
fn eval_split_is_deterministic_stable_under_appends_and_never_one_sided() {
    let a = split_eval(200, 0.1, 7);
    assert_eq!(a, split_eval(200, 0.1, 7));
    let n_eval = a.iter().filter(|e| **e).count();
    assert!((8..=35).contains(&n_eval), "about 10%: {n_eval}");
    assert_eq!(
        &split_eval(300, 0.1, 7)[..200],
        &a[..],
        "appending lines keeps old assignments"
    );
    assert_ne!(split_eval(200, 0.1, 8), a, "the seed matters");
    let small = split_eval(2, 0.01, 1);
    assert_eq!(small.iter().filter(|e| **e).count(), 1);
    assert!(split_eval(5, 0.0, 1).iter().all(|e| !e));
}

#[test]
fn trl_pairs_use_the_conversational_format() {
    let v = trl_pair_json(
        &[
            ("user", "2+2?"),
            ("assistant", "5"),
            ("user", "Improve it."),
        ],
        "4",
        "5",
    );
    assert_eq!(v["prompt"][1]["role"], "assistant");
    assert_eq!(v["prompt"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["chosen"][0],
        serde_json::json!({"role": "assistant", "content": "4"})
    );
    assert_eq!(v["rejected"][0]["content"], "5");
}

#[test]
fn a_line_that_is_not_utf8_is_reported_by_number_and_the_rest_imports() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mixed.jsonl");
    let mut bytes = br#"{"prompt": "1+1", "reference": "2"}"#.to_vec();
    bytes.extend_from_slice(b"\n{\"prompt\": \"caf\xe9\"}\r\n");
    bytes.extend_from_slice(br#"{"prompt": "2+2", "reference": "4"}"#);
    bytes.push(b'\n');
    std::fs::write(&p, &bytes).unwrap();
    let r = import_file(&p, None).unwrap();
    assert_eq!(r.prompts.len(), 2);
    assert_eq!((r.prompts[0].line, r.prompts[1].line), (1, 3));
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].line, 2);
    assert!(
        r.errors[0].message.contains("not UTF-8"),
        "{}",
        r.errors[0].message
    );
}

#[test]
fn only_regular_files_within_the_size_limit_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let err = import_file(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("not a regular file (a directory)"), "{err}");

    // A FIFO would block the import (and the app) forever: refused before it is opened.
    let fifo = dir.path().join("pipe.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    let err = import_file(&fifo, None).unwrap_err().to_string();
    assert!(err.contains("a FIFO, socket or device"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));

    let p = write(
        dir.path(),
        "big.jsonl",
        "{\"prompt\": \"x\"}\n".repeat(100).as_str(),
    );
    let err = evolve_loop::dataset::import_file_capped(&p, None, 1000)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1600 bytes, over the 1000-byte limit"),
        "{err}"
    );
    assert!(evolve_loop::dataset::import_file_capped(&p, None, 1600).is_ok());
}
