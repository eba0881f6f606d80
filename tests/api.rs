//! The API dispatcher (what the Tauri window and `evolve serve` call) on a temporary data
//! directory with the tiny random model; the tests seed the database through the store.

use evolve::Service;
use evolve::api::{Api, EventSink};
use evolve::core::{AdapterFormat, DataDir, GenerationKind, PairKind, SamplerConfig};
use evolve::gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve::store::{NewAdapter, NewGeneration, NewPair, NewPrompt, NewRun};
use serde_json::Value;
use serde_json::json;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    api: Api,
    events: mpsc::Receiver<(String, Value)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (tx, events) = mpsc::channel();
    let tx = Mutex::new(tx);
    let sink: EventSink = Arc::new(move |name: &str, payload: Value| {
        let _ = tx.lock().unwrap().send((name.to_string(), payload));
    });
    let api = Api::open(DataDir::new(root.join("data")), sink).unwrap();
    Fixture {
        _dir: dir,
        root,
        api,
        events,
    }
}

fn tiny_model(f: &Fixture) -> i64 {
    let path = f.root.join("tiny.gguf");
    write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let model = f.api.call("models_add", json!({"path": path})).unwrap();
    model["id"].as_i64().unwrap()
}

#[test]
fn models_register_list_and_refuse_bad_files() {
    let f = fixture();
    let status = f.api.call("status", Value::Null).unwrap();
    assert_eq!(status["models"], json!([]));
    assert_eq!(status["builtin_model_available"], true);
    let id = tiny_model(&f);
    let models = f.api.call("models_list", json!({})).unwrap();
    assert_eq!(models[0]["id"], id);
    assert_eq!(models[0]["architecture"], "llama");

    std::fs::write(f.root.join("bad.gguf"), b"not a model").unwrap();
    let err = f
        .api
        .call("models_add", json!({"path": f.root.join("bad.gguf")}))
        .unwrap_err();
    assert_eq!(err.status, 400);
    assert!(!err.message.contains('\n'), "{err}");
    let err = f.api.call("models_add", json!({})).unwrap_err();
    assert!(err.message.contains("bad arguments"), "{err}");
    let err = f.api.call("no_such_thing", json!({})).unwrap_err();
    assert_eq!(
        (err.status, err.message.as_str()),
        (404, "unknown command no_such_thing")
    );
}

#[test]
fn a_models_prompt_format_is_listed_and_set() {
    let f = fixture();
    let id = tiny_model(&f);
    let listed = f.api.call("models_list", json!({})).unwrap();
    assert_eq!(
        (
            &listed[0]["prompt_format"],
            &listed[0]["prompt_format_chosen"]
        ),
        (&json!("template"), &json!(false))
    );
    let set = |format: Value| {
        f.api
            .call("models_set_format", json!({"id": id, "format": format}))
    };
    let model = set(json!("plain")).unwrap();
    assert_eq!(
        (&model["prompt_format"], &model["prompt_format_chosen"]),
        (&json!("plain"), &json!(true))
    );
    assert_eq!(f.api.call("models_list", json!({})).unwrap()[0], model);
    let err = set(json!("no-such")).unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("unknown prompt format"), "{err}");
    assert_eq!(set(Value::Null).unwrap()["prompt_format"], "template");
}

#[test]
fn a_registered_models_format_reaches_the_engines_of_runs_and_chat() {
    use evolve::core::{ChatMessage, PromptFormat};
    use evolve::engines::{ChatEngineOptions, EngineSettings};
    let f = fixture();
    let id = tiny_model(&f);
    let path = f.root.join("tiny.gguf");
    let set = json!({"id": id, "format": "plain"});
    f.api.call("models_set_format", set).unwrap();
    let service = Service::open(f.api.data_dir().clone()).unwrap();
    // Runs, dry runs and `tasks measure` load their engine with these options.
    let options = service
        .engine_options(&path, &EngineSettings::default(), 1)
        .unwrap();
    assert_eq!(options.prompt_format, Some(PromptFormat::Plain));
    let (engine, warning) = service
        .load_chat_engine(&path, &ChatEngineOptions::default())
        .unwrap();
    let hi = [ChatMessage::user("hi")];
    assert_eq!(engine.format_chat(&hi).unwrap(), "Question: hi\nAnswer:");
    assert_eq!(warning, None, "a chosen format is no surprise");
    // A format given for one chat wins; a file not registered keeps its own default.
    let llama3 = PromptFormat::Builtin("llama3".into());
    let one_chat = ChatEngineOptions {
        prompt_format: Some(llama3.clone()),
        ..ChatEngineOptions::default()
    };
    let (engine, _) = service.load_chat_engine(&path, &one_chat).unwrap();
    assert_eq!(engine.prompt_format(), &llama3);
    let other = f.root.join("other.gguf");
    write_tiny_llama(&other, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let options = service
        .engine_options(&other, &EngineSettings::default(), 1)
        .unwrap();
    assert_eq!(options.prompt_format, None);
}

#[test]
fn dataset_import_reports_bad_lines_by_number() {
    let f = fixture();
    let file = f.root.join("gsm.jsonl");
    std::fs::write(
        &file,
        "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\nnot json\n{\"question\": \"2+2?\", \"answer\": \"#### 4\"}\n",
    )
    .unwrap();
    let out = f
        .api
        .call(
            "datasets_import",
            json!({"path": file, "format": null, "name": "mini"}),
        )
        .unwrap();
    assert_eq!(out["imported"], 2);
    assert_eq!(out["bad_lines"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["bad_lines"][0]["line"], 2, "{out}");
    let list = f.api.call("datasets_list", json!({})).unwrap();
    assert_eq!(list[0]["name"], "mini");
    assert_eq!(list[0]["prompts"], 2);
    let err = f
        .api
        .call(
            "datasets_import",
            json!({"path": file, "format": "nope", "name": null}),
        )
        .unwrap_err();
    assert!(err.message.contains("unknown dataset format"), "{err}");
}

/// Collects `chat` events of one request until its `done` (or `error`).
fn chat_events(f: &Fixture, request: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let (name, e) = f
            .events
            .recv_timeout(Duration::from_secs(120))
            .expect("chat events stopped");
        if name != "chat" || e["request_id"] != request {
            continue;
        }
        let end = e["kind"] == "done" || e["kind"] == "error";
        out.push(e);
        if end {
            return out;
        }
    }
}

#[test]
fn chat_streams_the_answer_then_each_refinement_and_stores_them() {
    let f = fixture();
    let model = tiny_model(&f);
    let mut settings = f.api.call("settings_get", json!({})).unwrap();
    settings["sampler"]["max_tokens"] = json!(8);
    settings["threads"] = json!(2);
    f.api
        .call("settings_set", json!({"settings": settings}))
        .unwrap();
    let started = f
        .api
        .call(
            "chat_send",
            json!({"chat_id": null, "model_id": model, "adapter_id": null, "message": "What is 2+3?",
                   "refine_steps": 2, "scorer": "json", "compare": false}),
        )
        .unwrap();
    let request = started["request_id"].as_str().unwrap().to_string();
    let events = chat_events(&f, &request);
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "done", "{last}");
    // Tokens of a step come before its step_done; steps come in order 0, 1, 2.
    let done: Vec<&Value> = events.iter().filter(|e| e["kind"] == "step_done").collect();
    assert_eq!(
        done.iter()
            .map(|e| e["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let mut step = 0;
    for e in &events {
        let s = e["step"].as_u64().unwrap();
        match e["kind"].as_str().unwrap() {
            "token" => assert_eq!(s, step, "token of step {s} while step {step} streams"),
            "step_done" => {
                assert_eq!(s, step);
                assert!(e["score"].is_number(), "json scorer gives a score: {e}");
                assert_eq!(e["variant"], "base");
                step += 1;
            }
            _ => {}
        }
    }
    assert!(events.iter().any(|e| e["kind"] == "token"));

    let chat_id = started["chat_id"].clone();
    let history = f
        .api
        .call("chat_history", json!({"chat_id": chat_id}))
        .unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 4, "{history:?}");
    assert_eq!(history[0]["role"], "user");
    assert_eq!(history[0]["text"], "What is 2+3?");
    for (i, m) in history[1..].iter().enumerate() {
        assert_eq!(m["step"], i as i64);
        assert_eq!(m["text"], done[i]["text"]);
        assert_eq!(m["score"], done[i]["score"]);
    }
    let chats = f.api.call("chats_list", json!({})).unwrap();
    assert_eq!(chats[0]["id"], chat_id);
    assert!(chats[0]["created_at"].as_str().unwrap().ends_with('Z'));

    // A second message reuses the chat (and the loaded engine); cancelling ends it early.
    let second = f
        .api
        .call(
            "chat_send",
            json!({"chat_id": chat_id, "model_id": model, "adapter_id": null, "message": "again",
                   "refine_steps": 5, "scorer": null, "compare": false}),
        )
        .unwrap();
    let request = second["request_id"].as_str().unwrap().to_string();
    f.api
        .call("chat_cancel", json!({"request_id": request}))
        .unwrap();
    let events = chat_events(&f, &request);
    assert!(
        events.iter().filter(|e| e["kind"] == "step_done").count() < 6,
        "cancel did not stop the refinements"
    );
    let err = f
        .api
        .call(
            "chat_send",
            json!({"chat_id": null, "model_id": 999, "adapter_id": null, "message": "x",
                   "refine_steps": 0, "scorer": null, "compare": false}),
        )
        .unwrap_err();
    assert_eq!(err.status, 404);
}

/// A run with one round, one prompt, two scored answers and a pair, written through the store.
fn seed_pair(f: &Fixture, model: i64) -> (i64, i64) {
    let service = Service::open(f.api.data_dir().clone()).unwrap();
    let store = service.store();
    let ds = store.create_dataset("d", None, "plain").unwrap();
    store
        .add_prompts(
            ds,
            &[NewPrompt {
                idx: 0,
                split: "train".into(),
                prompt: "2+2?".into(),
                reference: Some("4".into()),
                metadata: json!({}),
            }],
        )
        .unwrap();
    let prompt = store.list_prompts(ds, None).unwrap()[0].id;
    let run = store
        .create_run(&NewRun {
            name: "r".into(),
            model_id: evolve::store::ModelId(model),
            dataset_id: ds,
            config: json!({}),
        })
        .unwrap();
    let round = store.create_round(run, 0).unwrap();
    let answer = |text: &str, sample: i64, score: f64| {
        let id = store
            .insert_generation(&NewGeneration {
                round_id: Some(round),
                prompt_id: Some(prompt),
                kind: GenerationKind::Sample,
                parent_id: None,
                step_index: 0,
                sample_index: sample,
                text: text.into(),
                token_count: 1,
                token_ids: None,
                finished: true,
                seed: 0,
                sampler: SamplerConfig::default(),
                prompt_text: "2+2?".into(),
                adapter_id: None,
                duration_ms: 1,
            })
            .unwrap();
        store.add_score(id, "numeric", score, &json!({})).unwrap();
        id
    };
    let (good, bad) = (answer("4", 0, 1.0), answer("5", 1, 0.0));
    let pair = store
        .insert_pair(&NewPair {
            round_id: round,
            prompt_id: prompt,
            kind: PairKind::Direct,
            chosen_id: good,
            rejected_id: bad,
            margin: 1.0,
        })
        .unwrap();
    (run.0, pair.0)
}

#[test]
fn pairs_are_listed_filtered_and_reviewed() {
    let f = fixture();
    let model = tiny_model(&f);
    let (run, pair) = seed_pair(&f, model);
    let all =
        json!({"run_id": null, "round": null, "kind": null, "min_margin": null, "review": null});
    let pairs = f.api.call("pairs_list", all.clone()).unwrap();
    assert_eq!(pairs.as_array().unwrap().len(), 1);
    let p = &pairs[0];
    assert_eq!(p["id"], pair);
    assert_eq!(p["round"], 0);
    assert_eq!(p["prompt"], "2+2?");
    assert_eq!(p["chosen"]["text"], "4");
    assert_eq!(p["chosen"]["score"], 1.0);
    assert_eq!(p["rejected"]["score"], 0.0);
    assert_eq!(p["review"], "pending");

    let vetoed = f
        .api
        .call(
            "pair_review",
            json!({"pair_id": pair, "action": "veto", "text": null}),
        )
        .unwrap();
    assert_eq!(vetoed["review"], "vetoed");
    let only = |review: &str| {
        let mut q = all.clone();
        q["run_id"] = json!(run);
        q["review"] = json!(review);
        f.api
            .call("pairs_list", q)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((only("vetoed"), only("pending")), (1, 0));
    let edited = f
        .api
        .call(
            "pair_review",
            json!({"pair_id": pair, "action": "edit", "text": "2+2 = 4"}),
        )
        .unwrap();
    assert_eq!(edited["review"], "edited");
    assert_eq!(edited["edited_chosen_text"], "2+2 = 4");
    let approved = f
        .api
        .call(
            "pair_review",
            json!({"pair_id": pair, "action": "approve", "text": null}),
        )
        .unwrap();
    assert_eq!(
        (
            approved["review"].as_str(),
            approved["edited_chosen_text"].is_null()
        ),
        (Some("approved"), true)
    );
    assert_eq!(only("approved"), 1);
    assert!(
        f.api
            .call(
                "pair_review",
                json!({"pair_id": pair, "action": "edit", "text": null})
            )
            .is_err()
    );
    assert!(
        f.api
            .call(
                "pair_review",
                json!({"pair_id": 999, "action": "veto", "text": null})
            )
            .is_err()
    );
    let mut q = all.clone();
    q["kind"] = json!("refine");
    assert_eq!(f.api.call("pairs_list", q).unwrap(), json!([]));
}

#[test]
fn adapter_export_writes_inside_the_chosen_folder_only() {
    let f = fixture();
    let model = tiny_model(&f);
    let adapter_file = f.root.join("adapter.gguf");
    std::fs::write(&adapter_file, b"GGUF stand-in").unwrap();
    let id = register_adapter(&f, model, &adapter_file);
    let export = |dir: &str, format: &str| {
        f.api.call(
            "adapter_export",
            json!({"adapter_id": id.0, "format": format, "dir": dir}),
        )
    };
    let out_dir = f.root.join("exports/new");
    let out = export(out_dir.to_str().unwrap(), "gguf_lora").unwrap();
    let written = std::path::PathBuf::from(out["path"].as_str().unwrap());
    assert!(written.starts_with(&out_dir), "{}", written.display());
    assert_eq!(std::fs::read(&written).unwrap(), b"GGUF stand-in");
    // Never replaced silently; replaced when asked; no partial file is ever left behind.
    let again = export(out_dir.to_str().unwrap(), "gguf_lora").unwrap_err();
    assert!(again.message.contains("already exists"), "{again}");
    f.api
        .call(
            "adapter_export",
            json!({"adapter_id": id.0, "format": "gguf_lora", "dir": out_dir, "overwrite": true}),
        )
        .unwrap();
    let listing = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(listing(&out_dir), [format!("adapter-{}.gguf", id.0)]);

    assert!(
        export("../x", "gguf_lora")
            .unwrap_err()
            .message
            .contains("absolute")
    );
    let dotdot = format!("{}/exports/../../elsewhere", f.root.display());
    assert!(
        export(&dotdot, "gguf_lora")
            .unwrap_err()
            .message
            .contains("..")
    );
    // A link planted in the folder that points outside it is never written through.
    let trap = f.root.join("trap");
    let outside = f.root.join("outside");
    std::fs::create_dir_all(&trap).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(
        outside.join("stolen.gguf"),
        trap.join(format!("adapter-{}.gguf", id.0)),
    )
    .unwrap();
    let err = export(trap.to_str().unwrap(), "gguf_lora").unwrap_err();
    assert!(err.message.contains("symbolic link"), "{err}");
    assert!(!outside.join("stolen.gguf").exists());
    assert!(export(out_dir.to_str().unwrap(), "zip").is_err());
    // No run behind this adapter: there are no pairs to export.
    assert!(
        export(out_dir.to_str().unwrap(), "trl_pairs")
            .unwrap_err()
            .message
            .contains("no pairs")
    );
    assert_eq!(
        listing(&out_dir).len(),
        1,
        "a failed export leaves nothing behind"
    );
    let adapters = f.api.call("adapters_list", json!({})).unwrap();
    assert_eq!(adapters[0]["run_id"], Value::Null);
    assert_eq!(adapters[0]["format"], "gguf_lora");
}

#[test]
fn settings_persist_and_keep_the_data_dir() {
    let f = fixture();
    let mut s = f.api.call("settings_get", json!({})).unwrap();
    s["threads"] = json!(3);
    s["data_dir"] = json!("/elsewhere");
    s["sampler"]["temperature"] = json!(0.25);
    let stored = f.api.call("settings_set", json!({"settings": s})).unwrap();
    assert_eq!(stored["threads"], 3);
    assert_eq!(
        stored["data_dir"],
        f.root.join("data").display().to_string()
    );
    let file = f.root.join("data").join(evolve::api::SETTINGS_FILE);
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(on_disk["sampler"]["temperature"], 0.25);
    let reopened = Api::open(DataDir::new(f.root.join("data")), Arc::new(|_: &str, _| {})).unwrap();
    assert_eq!(reopened.call("settings_get", json!({})).unwrap(), stored);
    s["threads"] = json!(0);
    assert!(f.api.call("settings_set", json!({"settings": s})).is_err());
    let mut relative = stored.clone();
    relative["export_dir"] = json!("exports");
    let e = f
        .api
        .call("settings_set", json!({"settings": relative}))
        .unwrap_err();
    assert!(
        e.message
            .contains("the export folder must be an absolute path, not exports"),
        "{}",
        e.message
    );
    // Every engine and sampler value is range-checked, the error naming the field.
    for (field, value, says) in [
        ("threads", json!(5000), "threads must be between 1 and 1024"),
        ("gpu_layers", json!(20_000), "gpu_layers must be at most"),
    ] {
        let mut bad = stored.clone();
        bad[field] = value;
        let e = f
            .api
            .call("settings_set", json!({"settings": bad}))
            .unwrap_err();
        assert!(e.message.contains(says), "{}", e.message);
    }
    for (field, value, says) in [
        ("top_k", json!(-1), "sampler.top_k"),
        ("repeat_penalty", json!(0.0), "sampler.repeat_penalty"),
        ("temperature", json!(99.0), "sampler.temperature"),
        ("max_tokens", json!(0), "sampler.max_tokens"),
    ] {
        let mut bad = stored.clone();
        bad["sampler"][field] = value;
        let e = f
            .api
            .call("settings_set", json!({"settings": bad}))
            .unwrap_err();
        assert!(e.message.contains(says), "{field}: {}", e.message);
    }
    // The chat sampler is the machine's; a run's defaults are the model's, as on the CLI.
    let defaults = f.api.call("run_defaults", json!({})).unwrap();
    assert_ne!(defaults["sampler"]["temperature"], 0.25);
    assert!(defaults["train"]["lora_rank"].as_u64().unwrap() > 0);
}

#[test]
fn registering_a_big_model_does_not_hold_up_other_commands() {
    let f = fixture();
    // A valid model followed by 64 MiB of padding (sparse): hashing it takes a while.
    let path = f.root.join("big.gguf");
    write_tiny_llama(&path, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(file.metadata().unwrap().len() + (64 << 20))
        .unwrap();
    drop(file);
    let api = f.api.clone();
    let adding = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let added = api.call("models_add", json!({"path": path}));
        (added, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    f.api.call("status", Value::Null).unwrap();
    let status_took = started.elapsed();
    let (added, add_took) = adding.join().unwrap();
    added.unwrap();
    assert!(
        add_took > Duration::from_millis(400),
        "the add must overlap the status call to show anything ({add_took:?})"
    );
    assert!(
        status_took < add_took / 2,
        "status waited for the add: {status_took:?} of {add_took:?}"
    );
}

/// The tiny model rewritten: `meta` replaces metadata values, and tensor `iq4` (if any) is
/// stored as IQ4_NL (a type llama.cpp reads but candle cannot train), keeping its shape.
fn tiny_variant(
    f: &Fixture,
    name: &str,
    meta: &[(&str, evolve::gguf::Value)],
    iq4: Option<&str>,
) -> std::path::PathBuf {
    use evolve::gguf::{GgmlType, GgufWriter, TensorData, read_path};
    use std::io::{Read, Seek, SeekFrom};
    let base = f.root.join("tiny-base.gguf");
    write_tiny_llama(&base, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let file = read_path(&base).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &file.metadata {
        let v = meta
            .iter()
            .find(|(m, _)| m == k)
            .map_or(v.clone(), |(_, nv)| nv.clone());
        w.add_metadata(k.clone(), v);
    }
    for (k, v) in meta {
        if file.get(k).is_none() {
            w.add_metadata(*k, v.clone());
        }
    }
    let mut raw = std::fs::File::open(&base).unwrap();
    for t in &file.tensors {
        let data = if Some(t.name.as_str()) == iq4 {
            // IQ4_NL: 18 bytes per 32 values, like Q4_0.
            let blocks = (t.n_elements() / 32) as usize;
            TensorData::Raw {
                ggml_type: GgmlType::IQ4_NL,
                bytes: vec![0; blocks * 18],
            }
        } else {
            let mut bytes = vec![0; t.n_bytes() as usize];
            raw.seek(SeekFrom::Start(file.data_offset + t.offset))
                .unwrap();
            raw.read_exact(&mut bytes).unwrap();
            TensorData::Raw {
                ggml_type: t.ggml_type,
                bytes,
            }
        };
        w.add_tensor(t.name.clone(), t.dims.clone(), data).unwrap();
    }
    let path = f.root.join(name);
    w.write_to_path(&path).unwrap();
    path
}

#[test]
fn files_that_cannot_be_trained_are_refused_at_models_add_and_run_start_with_the_reason() {
    use evolve::gguf::Value as G;
    let f = fixture();
    let cases = [
        (
            tiny_variant(&f, "iq4.gguf", &[], Some("blk.0.ffn_down.weight")),
            "tensor type IQ4_NL cannot be trained",
        ),
        (
            tiny_variant(
                &f,
                "mamba.gguf",
                &[("general.architecture", G::String("mamba".into()))],
                None,
            ),
            "unsupported architecture 'mamba'",
        ),
        (
            tiny_variant(
                &f,
                "pre.gguf",
                &[
                    ("tokenizer.ggml.model", G::String("gpt2".into())),
                    ("tokenizer.ggml.pre", G::String("no-such-pre".into())),
                    ("tokenizer.ggml.merges", G::Array(vec![])),
                ],
                None,
            ),
            "BPE pre-tokenizer 'no-such-pre' is not supported",
        ),
    ];
    for (path, says) in &cases {
        let t = std::time::Instant::now();
        let err = f
            .api
            .call("models_add", json!({ "path": path }))
            .unwrap_err();
        assert!(err.message.contains(says), "{}: {err}", path.display());
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    // A registered model whose file no longer passes (replaced on disk, or registered by an
    // older version): refused when the run is created, before any sampling.
    let id = tiny_model(&f);
    std::fs::copy(&cases[0].0, f.root.join("tiny.gguf")).unwrap();
    let data = f.root.join("d.jsonl");
    std::fs::write(&data, "{\"prompt\": \"1+1=\", \"reference\": \"2\"}\n").unwrap();
    let ds = f
        .api
        .call(
            "datasets_import",
            json!({"path": data, "format": null, "name": null}),
        )
        .unwrap();
    let t = std::time::Instant::now();
    let err = f
        .api
        .call(
            "run_start",
            json!({"name": "r", "model_id": id, "dataset_id": ds["dataset_id"]}),
        )
        .unwrap_err();
    assert!(err.message.contains("IQ4_NL"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(f.api.call("runs_list", json!({})).unwrap(), json!([]));
}

#[test]
fn models_in_added_folders_are_discovered_and_registered_under_their_name() {
    let f = fixture();
    let folder = f.root.join("my models");
    let nested = folder.join("org/Tiny-GGUF");
    std::fs::create_dir_all(&nested).unwrap();
    write_tiny_llama(
        &nested.join("tiny.gguf"),
        &TinyLlamaConfig::default(),
        WeightType::Q8_0,
    )
    .unwrap();
    std::fs::write(nested.join("notes.gguf"), b"not a model").unwrap();
    let mut s = f.api.call("settings_get", json!({})).unwrap();
    s["model_folders"] = json!(["relative/path"]);
    let err = f
        .api
        .call("settings_set", json!({"settings": s.clone()}))
        .unwrap_err();
    assert!(err.message.contains("absolute"), "{err}");
    s["model_folders"] = json!([folder]);
    f.api.call("settings_set", json!({"settings": s})).unwrap();

    let discover = || f.api.call("models_discover", json!({})).unwrap();
    let in_folder = |all: &Value, name: &str| -> Value {
        all.as_array()
            .unwrap()
            .iter()
            .find(|m| m["source"] == "folder" && m["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {all:#}"))
    };
    let found = discover();
    let tiny = in_folder(&found, "org/Tiny-GGUF/tiny.gguf");
    assert_eq!(
        (
            &tiny["trainable"],
            &tiny["architecture"],
            &tiny["registered_id"]
        ),
        (&json!(true), &json!("llama"), &Value::Null)
    );
    let bad = in_folder(&found, "org/Tiny-GGUF/notes.gguf");
    assert_eq!(bad["trainable"], false);
    assert!(bad["problem"].as_str().unwrap().contains("GGUF"), "{bad}");

    let model = f
        .api
        .call(
            "models_add",
            json!({"path": tiny["path"], "name": "Tiny from my folder"}),
        )
        .unwrap();
    assert_eq!(model["display_name"], "Tiny from my folder");
    let tiny = in_folder(&discover(), "org/Tiny-GGUF/tiny.gguf");
    assert_eq!(tiny["registered_id"], model["id"]);
    assert!(
        f.api
            .call("models_add", json!({"path": bad["path"]}))
            .is_err()
    );
}

/// The GGUF LoRA file `path` registered as a rank-4 adapter on `model` (as a round does).
fn register_adapter(f: &Fixture, model: i64, path: &std::path::Path) -> evolve::store::AdapterId {
    Service::open(f.api.data_dir().clone())
        .unwrap()
        .store()
        .add_adapter(&NewAdapter {
            training_run_id: None,
            base_model_id: evolve::store::ModelId(model),
            base_sha256: "x".into(),
            format: AdapterFormat::GgufLora,
            path: path.display().to_string(),
            sha256: "y".into(),
            file_size: std::fs::metadata(path).unwrap().len() as i64,
            rank: 4,
            alpha: 8.0,
        })
        .unwrap()
}

/// A fresh adapter (B = 0) on `base` with its checkpoint, as a training round leaves one.
fn fresh_adapter(f: &Fixture, model: i64, base: &std::path::Path) -> i64 {
    use evolve::train::{CHECKPOINT_WEIGHTS, LlamaModel, Lora, LoraConfig};
    let dir = f.root.join("trained");
    std::fs::create_dir_all(&dir).unwrap();
    let cpu = candle_core::Device::Cpu;
    let llama = LlamaModel::load(base, &cpu, candle_core::DType::F32).unwrap();
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    let lora = Lora::new(llama.config(), config, llama.master_dtype(), &cpu).unwrap();
    lora.varmap().save(dir.join(CHECKPOINT_WEIGHTS)).unwrap();
    let path = dir.join("adapter.gguf");
    evolve::train::export::export_gguf_lora(&lora, llama.config(), &path).unwrap();
    register_adapter(f, model, &path).0
}

#[test]
fn adapters_are_handed_to_ollama_and_lm_studio_where_discovery_finds_them() {
    let f = fixture();
    let model = tiny_model(&f);
    let base = f.root.join("tiny.gguf");
    let id = fresh_adapter(&f, model, &base);
    let home = f.root.join("home");
    let bin = f.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Stands in for Ollama: records what it was asked and the Modelfile it was given.
    let script = "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$@\" > \"$d/args\"\ncp \"$4\" \"$d/modelfile\"\n";
    std::fs::write(bin.join("ollama"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("ollama"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cli = |path: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_evolve"))
            .args(args)
            .env("EVOLVE_DATA_DIR", f.api.data_dir().root())
            .env("HOME", &home)
            .env("PATH", path)
            .env_remove("OLLAMA_MODELS")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("HF_HOME")
            .env_remove("HF_HUB_CACHE")
            .env_remove("LLAMA_CACHE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let exports = f.root.join("exports");
    let id_arg = id.to_string();
    let with_ollama = format!("{}:/usr/bin:/bin", bin.display());
    let out = cli(
        &with_ollama,
        &[
            "adapters",
            "export",
            &id_arg,
            "--format",
            "ollama",
            "--out",
            exports.to_str().unwrap(),
        ],
    );
    let folder = exports.join(format!("adapter-{id}-ollama"));
    let args = std::fs::read_to_string(bin.join("args")).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!((args[0], args[2]), ("create", "-f"), "{args:?}");
    assert_eq!(args[3], folder.join("Modelfile").to_str().unwrap());
    assert!(
        args[1].starts_with("evolve-") && args[1].ends_with(&format!(":adapter-{id}")),
        "{args:?}"
    );
    assert!(
        out.contains(&format!("created the Ollama model {}", args[1])),
        "{out}"
    );
    let modelfile = std::fs::read_to_string(bin.join("modelfile")).unwrap();
    let lines: Vec<&str> = modelfile.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines[0], format!("FROM {}", base.display()), "{modelfile}");
    assert_eq!(
        lines[1],
        format!("ADAPTER {}", folder.join("adapter.gguf").display())
    );
    assert_eq!(
        std::fs::read(folder.join("adapter.gguf")).unwrap(),
        std::fs::read(f.root.join("trained/adapter.gguf")).unwrap()
    );
    // Without Ollama the files are written all the same and the command is printed.
    let out = cli(
        "/usr/bin:/bin",
        &[
            "adapters",
            "export",
            &id_arg,
            "--format",
            "ollama",
            "--out",
            exports.to_str().unwrap(),
            "--force",
        ],
    );
    assert!(
        out.contains("Ollama is not installed here") && out.contains("ollama create evolve-"),
        "{out}"
    );

    // PEFT's base_model_name_or_path: the base GGUF's general.name, or what the user says.
    let peft_base = |base_name: Option<&str>| -> Value {
        let out = f
            .api
            .call(
                "adapter_export",
                json!({"adapter_id": id, "format": "peft", "dir": exports, "overwrite": true, "base_name": base_name}),
            )
            .unwrap();
        let config =
            std::path::Path::new(out["path"].as_str().unwrap()).join("adapter_config.json");
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
        config["base_model_name_or_path"].clone()
    };
    let general_name = evolve::gguf::read_path(&base)
        .unwrap()
        .get_str("general.name")
        .map(String::from);
    assert_eq!(peft_base(None), json!(general_name));
    assert_eq!(
        peft_base(Some("org/Tiny-Instruct")),
        json!("org/Tiny-Instruct")
    );

    let out = cli(
        "/usr/bin:/bin",
        &["adapters", "export", &id_arg, "--format", "lm_studio"],
    );
    let lm_studio = home.join(".lmstudio/models/evolve-studio");
    assert!(
        out.contains(&format!("wrote {}", lm_studio.display())),
        "{out}"
    );
    let found: Value =
        serde_json::from_str(&cli("/usr/bin:/bin", &["models", "discover", "--json"])).unwrap();
    let merged = found
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["source"] == "lm_studio")
        .unwrap_or_else(|| panic!("the LM Studio export is not found: {found:#}"));
    let name = merged["name"].as_str().unwrap();
    assert!(
        name.starts_with("evolve-studio/")
            && name.ends_with(&format!("-evolve-adapter-{id}-Q8_0.gguf")),
        "{name}"
    );
    assert_eq!(
        (&merged["trainable"], &merged["quantization"]),
        (&json!(true), &json!("Q8_0")),
        "{merged}"
    );
    let template = |path: &str| {
        evolve::gguf::read_path(std::path::Path::new(path))
            .unwrap()
            .get_str("tokenizer.chat_template")
            .map(String::from)
    };
    let base_template = template(base.to_str().unwrap());
    assert_eq!(template(merged["path"].as_str().unwrap()), base_template);

    // A base given the plain format: the merged file carries the plain template, the
    // Modelfile the plain template and its stop.
    let set = json!({"id": model, "format": "plain"});
    f.api.call("models_set_format", set).unwrap();
    let export = |format: &str| {
        let args = json!({"adapter_id": id, "format": format, "dir": exports, "overwrite": true});
        let out = f.api.call("adapter_export", args).unwrap();
        out["path"].as_str().unwrap().to_string()
    };
    let plain = evolve::core::prompt_format::PLAIN_JINJA_TEMPLATE;
    assert_eq!(template(&export("merged_gguf")), Some(plain.to_string()));
    let modelfile = std::path::Path::new(&export("ollama")).join("Modelfile");
    let modelfile = std::fs::read_to_string(modelfile).unwrap();
    assert!(
        modelfile.contains("TEMPLATE \"\"\"{{- $answered := false }}"),
        "{modelfile}"
    );
    assert!(
        modelfile.contains("PARAMETER stop \"\nQuestion:\""),
        "{modelfile}"
    );
}
