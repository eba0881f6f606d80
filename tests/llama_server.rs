//! `RemoteGenerator` against a real `llama-server` on the tiny task model, compared with the
//! local engine on the same file.
//!
//! The server comes from `scripts/build-llama-tools.sh` (`$EVOLVE_LLAMA_TOOLS`, else
//! `<target>/llama-tools/bin`). The llama.cpp copy vendored in llama-cpp-sys-2 ships without
//! the server's sources, so the script takes the full llama.cpp tree from the llama-cpp-python
//! source archive on PyPI (`--fetch`; scripts/test.sh does that and sets
//! `EVOLVE_REQUIRE_LLAMA_SERVER=1`). A plain `cargo test` without the server says so on stderr
//! and passes; with `EVOLVE_REQUIRE_LLAMA_SERVER=1` it fails. The wire format itself is covered
//! by crates/evolve-remote/tests/protocol.rs either way.

mod support;

use evolve_core::{ChatMessage, GenerationEvent, GenerationRequest, Generator, SamplerConfig};
use evolve_llama::{EngineOptions, LlamaEngine};
use evolve_loop::arithmetic::problems;
use evolve_remote::{RemoteGenerator, RemoteOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, however it ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server_binary() -> Option<PathBuf> {
    let target = PathBuf::from(env!("CARGO_BIN_EXE_evolve"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let dir = std::env::var_os("EVOLVE_LLAMA_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("llama-tools").join("bin"));
    let bin = dir.join("llama-server");
    let required = std::env::var_os("EVOLVE_REQUIRE_LLAMA_SERVER").is_some_and(|v| v == "1");
    if !bin.is_file() && required {
        panic!(
            "llama-server is required (EVOLVE_REQUIRE_LLAMA_SERVER=1) but {} does not exist; \
             build it with scripts/build-llama-tools.sh --fetch",
            bin.display()
        );
    }
    bin.is_file().then_some(bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const SLOTS: usize = 4;

fn start_server(bin: &Path, model: &Path) -> (ServerGuard, String) {
    let port = free_port();
    let child = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        // 4 slots of 256 tokens each; one thread, like the local engine below.
        .args([
            "--ctx-size",
            "1024",
            "--threads",
            "1",
            "--threads-batch",
            "1",
        ])
        .args(["--parallel", &SLOTS.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama-server");
    let guard = ServerGuard(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let healthy = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                write!(s, "GET /health HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
                let mut head = String::new();
                s.read_to_string(&mut head).ok()?;
                Some(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"))
            })
            .unwrap_or(false);
        if healthy {
            return (guard, base);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("llama-server did not become healthy on {base} within 60 s");
}

#[test]
fn llama_server_answers_like_the_local_engine() {
    let Some(bin) = server_binary() else {
        eprintln!(
            "SKIPPED llama_server_answers_like_the_local_engine: no llama-server \
             (scripts/build-llama-tools.sh --fetch builds it)"
        );
        return;
    };
    let model = support::task_model();
    let (_server, base) = start_server(&bin, &model);
    let mut options = RemoteOptions::new(&base);
    options.parallel = SLOTS;
    let mut remote = RemoteGenerator::new(options).unwrap();
    let local = LlamaEngine::load(
        &model,
        EngineOptions {
            n_threads: 1,
            n_ctx: 256,
            ..EngineOptions::default()
        },
    )
    .unwrap();

    // The server formats chats with the model's own template, as the local engine does.
    let questions: Vec<String> = problems(6, 3, 7).iter().map(|p| p.question()).collect();
    let prompts: Vec<String> = questions
        .iter()
        .map(|q| {
            let chat = [ChatMessage::user(q.as_str())];
            let ours = local.format_chat(&chat).unwrap();
            assert_eq!(remote.format_chat(&chat).unwrap(), ours, "chat template");
            ours
        })
        .collect();

    // Greedy, 6 prompts streamed 4 at a time over the server's slots: the local engine's
    // answers, text and token ids (cache_prompt is off, so every prompt is evaluated afresh).
    let greedy = SamplerConfig::greedy(96);
    let requests: Vec<GenerationRequest> = prompts
        .iter()
        .map(|p| GenerationRequest::new(p.as_str(), greedy.clone(), 1))
        .collect();
    let served = remote.generate_batch(&requests, &mut |_| true).unwrap();
    for (p, got) in prompts.iter().zip(&served) {
        let want = local.generate(p, &greedy, |_| true).unwrap();
        assert_eq!(got[0].text, want.text, "greedy answer to {p:?}");
        assert!(
            want.text.contains("####"),
            "the task model answers: {}",
            want.text
        );
        assert!(got[0].stopped, "ended by the model");
        assert_eq!(got[0].tokens, want.tokens, "token ids of {p:?}");
        assert_eq!(got[0].prompt_tokens, local.tokenize(p).len());
    }

    // Sampling: the same seeds give the same answers; the streamed pieces make up the text.
    let sampled = GenerationRequest::new(
        prompts[0].as_str(),
        SamplerConfig {
            temperature: 1.0,
            max_tokens: 48,
            ..SamplerConfig::default()
        },
        4,
    );
    let mut pieces = vec![String::new(); 4];
    let a = remote
        .generate_batch(std::slice::from_ref(&sampled), &mut |e| {
            if let GenerationEvent::Token { sample, text, .. } = e {
                pieces[sample].push_str(&text);
            }
            true
        })
        .unwrap();
    let b = remote
        .generate_batch(std::slice::from_ref(&sampled), &mut |_| true)
        .unwrap();
    let texts = |out: &[Vec<evolve_core::Completion>]| {
        out[0].iter().map(|c| c.text.clone()).collect::<Vec<_>>()
    };
    assert_eq!(texts(&a), texts(&b));
    assert_eq!(pieces, texts(&a));
    assert!(a[0].iter().all(|c| !c.text.is_empty()));

    // ignore_eos: every answer runs to max_tokens.
    let long = remote
        .generate_batch(
            &[GenerationRequest::new(
                prompts[1].as_str(),
                SamplerConfig {
                    ignore_eos: true,
                    ..SamplerConfig::greedy(120)
                },
                1,
            )],
            &mut |_| true,
        )
        .unwrap();
    assert!(!long[0][0].stopped, "ran to the length limit");
    assert!(long[0][0].text.len() > served[1][0].text.len());

    // Cancelling after 2 events stops every stream at once.
    let mut seen = 0;
    let cut = remote
        .generate_batch(std::slice::from_ref(&sampled), &mut |_| {
            seen += 1;
            seen < 2
        })
        .unwrap();
    assert_eq!(seen, 2);
    assert!(cut[0].iter().all(|c| !c.stopped));
    let delivered: usize = cut[0].iter().map(|c| c.text.len()).sum();
    assert!(
        delivered > 0 && delivered <= 2 * 8,
        "only the 2 delivered pieces are kept"
    );
}
