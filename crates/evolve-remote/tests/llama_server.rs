//! RemoteGenerator against a real `llama-server` on the tiny model, compared with the local
//! engine on the same file.
//!
//! The server comes from `scripts/build-llama-tools.sh` (`$EVOLVE_LLAMA_TOOLS`, else
//! `<target>/llama-tools/bin`). When it is missing the script is asked to build it; when the
//! llama.cpp source cannot provide it (the copy vendored in llama-cpp-sys-2 ships without
//! tools/server) the test says so on stderr and passes, unless `EVOLVE_REQUIRE_LLAMA_SERVER=1`
//! makes that a failure. The wire format itself is covered by `protocol.rs` either way.

use evolve_core::{GenerationEvent, GenerationRequest, Generator, SamplerConfig};
use evolve_gguf::tiny::{TinyLlamaConfig, WeightType, write_tiny_llama};
use evolve_llama::{EngineOptions, LlamaEngine};
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

/// `<target>` from this test binary's own path (`<target>/debug/deps/llama_server-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

fn server_binary() -> Option<PathBuf> {
    let dir = std::env::var_os("EVOLVE_LLAMA_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("llama-tools").join("bin"));
    let bin = dir.join("llama-server");
    if bin.is_file() {
        return Some(bin);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-llama-tools.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg("--server-only")
        .env("CARGO_TARGET_DIR", target_dir())
        .status()
        .expect("run build-llama-tools.sh");
    let built = bin.is_file().then_some(bin);
    if built.is_none() && std::env::var_os("EVOLVE_REQUIRE_LLAMA_SERVER").is_some_and(|v| v == "1")
    {
        panic!("llama-server is required but could not be built ({status})");
    }
    built
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server(bin: &Path, model: &Path) -> (ServerGuard, String) {
    let port = free_port();
    let child = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--ctx-size", "512", "--threads", "1", "--parallel", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama-server");
    let guard = ServerGuard(child);
    let base = format!("http://127.0.0.1:{port}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if agent
            .get(format!("{base}/health"))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            return (guard, base);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("llama-server did not become healthy on {base} within 60 s");
}

fn texts(out: &[Vec<evolve_core::Completion>]) -> Vec<String> {
    out[0].iter().map(|c| c.text.clone()).collect()
}

#[test]
fn llama_server_answers_like_the_local_engine() {
    let Some(bin) = server_binary() else {
        eprintln!(
            "SKIPPED llama_server_answers_like_the_local_engine: no llama-server (see scripts/build-llama-tools.sh)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_llama(&model, &TinyLlamaConfig::default(), WeightType::Q8_0).unwrap();
    let (_server, base) = start_server(&bin, &model);
    let mut remote = RemoteGenerator::new(RemoteOptions::new(&base)).unwrap();
    let prompt = "hello world";

    // Greedy: the same text as the local engine on the same file (all sampler fields are sent,
    // and cache_prompt is off, so the server evaluates the prompt exactly as we do).
    let local = LlamaEngine::load(
        &model,
        EngineOptions {
            n_threads: 1,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let expected = local
        .generate(prompt, &SamplerConfig::greedy(24), |_| true)
        .unwrap()
        .text;
    let greedy = remote
        .generate_batch(
            &[GenerationRequest::new(prompt, SamplerConfig::greedy(24), 1)],
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(greedy[0][0].text, expected);

    // Same seed, same text; and the streamed pieces make up the final text.
    let sampled = GenerationRequest::new(
        prompt,
        SamplerConfig {
            max_tokens: 24,
            ..SamplerConfig::default()
        },
        2,
    );
    let mut pieces = String::new();
    let a = remote
        .generate_batch(std::slice::from_ref(&sampled), &mut |e| {
            if let GenerationEvent::Token {
                sample: 0, text, ..
            } = e
            {
                pieces.push_str(&text);
            }
            true
        })
        .unwrap();
    let b = remote
        .generate_batch(std::slice::from_ref(&sampled), &mut |_| true)
        .unwrap();
    assert_eq!(texts(&a), texts(&b));
    assert_eq!(pieces, a[0][0].text);
    assert!(!a[0][0].text.is_empty());

    // Cancelling after 2 events stops at once.
    let mut seen = 0;
    let cut = remote
        .generate_batch(std::slice::from_ref(&sampled), &mut |_| {
            seen += 1;
            seen < 2
        })
        .unwrap();
    assert_eq!(seen, 2);
    assert_eq!(cut[0].len(), 1);
    assert!(!cut[0][0].stopped);
}
