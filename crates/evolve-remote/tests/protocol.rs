//! RemoteGenerator against a scripted in-process HTTP server on loopback: the wire format,
//! streaming, cancellation and error wording, without needing llama-server.

use evolve_core::{ChatMessage, GenerationEvent, GenerationRequest, Generator, SamplerConfig};
use evolve_remote::{RemoteGenerator, RemoteOptions};
use evolve_testkit::{Script, Seen, completion_event, read_request};
use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

fn serve(n_conns: usize, script: Script) -> (String, mpsc::Receiver<Seen>) {
    evolve_testkit::serve(Some(n_conns), script)
}

fn sse(pieces: &[&str], finish: &str) -> Vec<String> {
    let mut out: Vec<String> = pieces.iter().map(|p| completion_event(p, None)).collect();
    out.insert(0, ": ping\n\n".into());
    out.push(completion_event("", Some(finish)));
    out.push(format!(
        "data: {}\n\n",
        serde_json::json!({"choices":[],"usage":{"prompt_tokens":7}})
    ));
    out.push("data: [DONE]\n\n".into());
    out
}

fn generator(base: &str) -> RemoteGenerator {
    let mut o = RemoteOptions::new(base);
    o.read_timeout = Duration::from_secs(10);
    RemoteGenerator::new(o).unwrap()
}

fn pieces_script(_: &str, body: &Value) -> (u16, &'static str, Vec<String>) {
    // The text names the seed, so the test sees which sample got which seed.
    let seed = body["seed"].to_string();
    (
        200,
        "text/event-stream",
        sse(&["Hel", "lo ", &seed], "stop"),
    )
}

#[test]
fn remote_streams_each_sample_with_its_own_seed_and_all_sampler_fields() {
    let (base, rx) = serve(2, pieces_script);
    let mut g = generator(&base);
    let cfg = SamplerConfig {
        seed: 10,
        top_k: 5,
        repeat_penalty: 1.3,
        stop: vec!["\n".into()],
        ..SamplerConfig::default()
    };
    let mut events = Vec::new();
    let out = g
        .generate_batch(&[GenerationRequest::new("Say hi", cfg, 2)], &mut |e| {
            events.push(e);
            true
        })
        .unwrap();
    assert_eq!(out[0].len(), 2);
    assert_eq!(out[0][0].text, "Hello 10");
    assert_eq!(out[0][1].text, "Hello 11");
    assert_eq!(
        (out[0][1].seed, out[0][1].stopped, out[0][1].prompt_tokens),
        (11, true, 7)
    );
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            GenerationEvent::Token {
                sample: 0, text, ..
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, out[0][0].text);
    assert!(events.contains(&GenerationEvent::Finished {
        request: 0,
        sample: 1,
        stopped: true
    }));

    let (path, body, _) = rx.recv().unwrap();
    assert_eq!(path, "/v1/completions");
    assert_eq!(body["prompt"], "Say hi");
    assert_eq!(body["stream"], true);
    assert_eq!(body["top_k"], 5);
    assert_eq!(body["repeat_penalty"].as_f64().unwrap() as f32, 1.3);
    assert_eq!(body["stop"], serde_json::json!(["\n"]));
    assert_eq!(body["max_tokens"], 256);
}

#[test]
fn remote_cancellation_stops_after_the_event_that_said_so() {
    fn long(_: &str, _: &Value) -> (u16, &'static str, Vec<String>) {
        (200, "text/event-stream", sse(&["a"; 50], "length"))
    }
    // One stream at a time, so "later" is well defined: with several in flight the server
    // could answer sample 1 before sample 0. The server would accept all three.
    let (base, rx) = serve(3, long);
    let mut o = RemoteOptions::new(&base);
    o.read_timeout = Duration::from_secs(10);
    o.parallel = 1;
    let mut g = RemoteGenerator::new(o).unwrap();
    let mut seen = 0;
    let out = g
        .generate_batch(
            &[GenerationRequest::new("p", SamplerConfig::default(), 3)],
            &mut |_| {
                seen += 1;
                seen < 2
            },
        )
        .unwrap();
    assert_eq!(seen, 2);
    assert_eq!(out[0].len(), 1, "later samples never start");
    assert_eq!(out[0][0].text, "aa");
    assert!(!out[0][0].stopped);
    std::thread::sleep(Duration::from_millis(100)); // time for a wrongly started one to arrive
    assert_eq!(rx.try_iter().count(), 1, "one request reached the server");
}

#[test]
fn remote_errors_name_the_cause() {
    fn fail(path: &str, _: &Value) -> (u16, &'static str, Vec<String>) {
        match path {
            "/v1/completions" => (
                400,
                "application/json",
                vec![r#"{"error":{"code":400,"message":"the prompt is too long","type":"invalid_request_error"}}"#.into()],
            ),
            _ => (200, "text/event-stream", vec!["data: {not json\n\n".into()]),
        }
    }
    let (base, _rx) = serve(2, fail);
    let mut g = generator(&base);
    let req = [GenerationRequest::new("p", SamplerConfig::default(), 1)];
    let err = g
        .generate_batch(&req, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 400") && err.contains("the prompt is too long"),
        "{err}"
    );
    let err = g
        .format_chat(&[ChatMessage::user("hi")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("malformed JSON"), "{err}");
}

#[test]
fn remote_unreachable_server_is_one_clear_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut g = generator(&base);
    let err = g
        .generate_batch(
            &[GenerationRequest::new("p", SamplerConfig::default(), 1)],
            &mut |_| true,
        )
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(&format!("cannot reach {base}: ")), "{err}");
    assert!(RemoteGenerator::new(RemoteOptions::new("localhost:8080")).is_err());
}

#[test]
fn remote_sends_the_api_key_and_formats_chats_with_apply_template() {
    fn template(_: &str, body: &Value) -> (u16, &'static str, Vec<String>) {
        let content = body["messages"][0]["content"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        (
            200,
            "application/json",
            vec![serde_json::json!({"prompt": format!("<user>{content}</user>")}).to_string()],
        )
    }
    let (base, rx) = serve(1, template);
    let mut o = RemoteOptions::new(&base);
    o.api_key = Some("sekret".into());
    let g = RemoteGenerator::new(o).unwrap();
    assert_eq!(
        g.format_chat(&[ChatMessage::user("hi")]).unwrap(),
        "<user>hi</user>"
    );
    let (path, body, auth) = rx.recv().unwrap();
    assert_eq!(
        (path.as_str(), auth.as_str()),
        ("/apply-template", "Bearer sekret")
    );
    assert_eq!(body["messages"][0]["role"], "user");
}

#[test]
fn remote_streams_up_to_parallel_samples_at_once_and_keeps_their_order() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A server that answers every connection on its own thread and records how many streams
    // were open at the same moment.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    {
        let (open, peak) = (open.clone(), peak.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (open, peak) = (open.clone(), peak.clone());
                std::thread::spawn(move || {
                    let mut stream = stream.unwrap();
                    let (_, _, body) = read_request(&stream);
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                    );
                    let chunks = sse(&["seed ", &body["seed"].to_string()], "stop");
                    for (k, c) in chunks.iter().enumerate() {
                        std::thread::sleep(Duration::from_millis(40));
                        if k + 1 == chunks.len() {
                            // Closed before the client can see the end and open the next one.
                            open.fetch_sub(1, Ordering::SeqCst);
                        }
                        let _ = stream.write_all(c.as_bytes());
                        let _ = stream.flush();
                    }
                });
            }
        });
    }
    let mut o = RemoteOptions::new(&base);
    o.parallel = 3;
    let mut g = RemoteGenerator::new(o).unwrap();
    let cfg = SamplerConfig {
        seed: 100,
        ..SamplerConfig::default()
    };
    let mut finished = 0;
    let out = g
        .generate_batch(
            &[
                GenerationRequest::new("a", cfg.clone(), 4),
                GenerationRequest::new("b", cfg, 3),
            ],
            &mut |e| {
                finished += matches!(e, GenerationEvent::Finished { .. }) as usize;
                true
            },
        )
        .unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 3, "three streams open at once");
    assert_eq!(finished, 7);
    let texts: Vec<Vec<&str>> = out
        .iter()
        .map(|r| r.iter().map(|c| c.text.as_str()).collect())
        .collect();
    assert_eq!(
        texts,
        [
            vec!["seed 100", "seed 101", "seed 102", "seed 103"],
            vec!["seed 100", "seed 101", "seed 102"]
        ]
    );
    assert!(out.iter().flatten().all(|c| c.stopped));
}

#[test]
fn remote_keys_never_travel_in_clear_and_https_speaks_tls() {
    let with_key = |base: &str| {
        let mut o = RemoteOptions::new(base);
        o.api_key = Some("sekret".into());
        RemoteGenerator::new(o)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for clear in [
        "http://192.168.1.10:8080",
        "http://example.com",
        "http://127.0.0.1.nip.io:80",
        "http://[2001:db8::1]:80",
    ] {
        let err = with_key(clear).unwrap_err();
        assert!(
            err.contains("in clear") && err.contains("https://"),
            "{clear}: {err}"
        );
        // Without a key there is nothing to leak: allowed.
        assert!(
            RemoteGenerator::new(RemoteOptions::new(clear)).is_ok(),
            "{clear}"
        );
    }
    for fine in [
        "http://127.0.0.1:8080",
        "http://localhost:8080",
        "http://[::1]:8080",
        "https://api.example.com",
        "https://192.168.1.10:8443",
    ] {
        with_key(fine).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
    for bad in ["ftp://x", "https://", "http://", "http://:80"] {
        assert!(
            with_key(bad)
                .unwrap_err()
                .contains("invalid server address"),
            "{bad}"
        );
    }

    // An https:// address opens with a TLS handshake (record type 22, version 3.x), and the key
    // is never among the bytes sent to a server that does not complete it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = vec![0u8; 4096];
        let n = s.read(&mut got).unwrap_or(0);
        got.truncate(n);
        got // dropped: the handshake fails
    });
    let mut o = RemoteOptions::new(format!("https://127.0.0.1:{port}"));
    o.api_key = Some("sekret".into());
    let mut g = RemoteGenerator::new(o).unwrap();
    let err = g
        .generate_batch(
            &[GenerationRequest::new("p", SamplerConfig::default(), 1)],
            &mut |_| true,
        )
        .unwrap_err()
        .to_string();
    let hello = seen.join().unwrap();
    assert!(
        hello.len() > 5 && hello[0] == 22 && hello[1] == 3,
        "{hello:?}"
    );
    assert!(
        !hello.windows(6).any(|w| w == b"sekret"),
        "the key went out in clear"
    );
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn remote_responses_are_capped_in_size_and_in_time() {
    // 200 events of ~120 bytes, 5 ms apart: 24 kB over about a second.
    fn endless(_: &str, _: &Value) -> (u16, &'static str, Vec<String>) {
        let piece = "x".repeat(60);
        (
            200,
            "text/event-stream",
            (0..200).map(|_| completion_event(&piece, None)).collect(),
        )
    }
    let req = [GenerationRequest::new("p", SamplerConfig::default(), 1)];

    let (base, _rx) = serve(1, endless);
    let mut o = RemoteOptions::new(&base);
    o.max_response_bytes = 4096;
    let err = RemoteGenerator::new(o)
        .unwrap()
        .generate_batch(&req, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("over 4096 bytes"), "{err}");

    let (base, _rx) = serve(1, endless);
    let mut o = RemoteOptions::new(&base);
    o.deadline = Duration::from_millis(300);
    let t = std::time::Instant::now();
    let err = RemoteGenerator::new(o)
        .unwrap()
        .generate_batch(&req, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("deadline"), "{err}");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}
