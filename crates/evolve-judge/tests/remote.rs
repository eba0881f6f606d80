//! The judge on an OpenAI-compatible server (a scripted one on loopback): the wire traffic, the
//! API key and the verdicts read from streamed replies.

mod common;

use common::{engine_options, serve, sse};
use evolve_core::{ScoreInput, Scorer};
use evolve_judge::{PairwiseJudge, Winner, remote_judge, scorer_from_spec};
use serde_json::{Value, json};

/// llama-server's two endpoints: `/apply-template` formats, `/v1/completions` streams a reply
/// that depends on the prompt (a content judge preferring the answer "good").
fn judge_script(path: &str, body: &Value) -> (u16, &'static str, Vec<String>) {
    match path {
        "/apply-template" => {
            let content = body["messages"][0]["content"].as_str().unwrap_or("");
            let prompt = format!("<|user|>{content}<|assistant|>");
            (
                200,
                "application/json",
                vec![json!({ "prompt": prompt }).to_string()],
            )
        }
        "/v1/completions" => {
            let p = body["prompt"].as_str().unwrap_or("");
            let reply = if p.contains("[Answer A]\ngood") {
                "A is correct.\nWinner: A"
            } else if p.contains("[Answer B]\ngood") {
                "Winner: B"
            } else if p.contains("[Answer]\ngood") {
                "Right.\nRating: 9"
            } else {
                "Wrong.\nRating: 2"
            };
            (200, "text/event-stream", sse(reply))
        }
        _ => (404, "application/json", vec![r#"{"error":"no"}"#.into()]),
    }
}

#[test]
fn remote_judge_scores_over_http_with_the_api_key() {
    let (base, rx) = serve(judge_script);
    let mut judge = remote_judge(&base, Some("judge-model".into()), Some("sekret".into())).unwrap();
    assert_eq!(judge.name(), format!("remote-judge:{base}#judge-model"));
    let v = judge
        .score(&ScoreInput {
            prompt: "2+2?",
            reference: None,
            answer: "good",
        })
        .unwrap();
    assert!((v.value - 8.0 / 9.0).abs() < 1e-9, "{v:?}");
    assert_eq!(v.details["reply"], "Right.\nRating: 9");

    let (path, body, auth) = rx.recv().unwrap();
    assert_eq!(path, "/apply-template");
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("[Answer]\ngood")
    );
    assert_eq!(auth, "Bearer sekret");
    let (path, body, auth) = rx.recv().unwrap();
    assert_eq!(path, "/v1/completions");
    assert_eq!(body["model"], "judge-model");
    assert_eq!(body["temperature"].as_f64(), Some(0.0), "greedy: {body}");
    assert!(body["prompt"].as_str().unwrap().starts_with("<|user|>"));
    assert_eq!(auth, "Bearer sekret");
}

#[test]
fn remote_judge_swaps_positions_and_keeps_a_content_verdict() {
    let (base, _rx) = serve(judge_script);
    let mut judge = remote_judge(&base, None, None).unwrap();
    let v = judge.prefer("q", None, "bad", "good").unwrap();
    assert_eq!((v.winner, v.p_a), (Winner::B, 0.0));
    assert_eq!(v.details["b_first"]["reply"], "A is correct.\nWinner: A");
}

#[test]
fn remote_judge_from_spec_reports_an_unreachable_server_as_a_failed_score() {
    let opts = engine_options();
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let mut judge =
        scorer_from_spec(&"remote-judge:http://127.0.0.1:9".parse().unwrap(), &opts).unwrap();
    assert_eq!(judge.name(), "remote-judge:http://127.0.0.1:9");
    let err = judge
        .score(&ScoreInput {
            prompt: "q",
            reference: None,
            answer: "a",
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("remote-judge:http://127.0.0.1:9 failed: cannot format the judge prompt"),
        "{msg}"
    );
    assert!(msg.contains("cannot reach http://127.0.0.1:9"), "{msg}");
}
