//! LlmJudge as a pointwise scorer, on a scripted generator: the prompt it sends and how it
//! reads the judge's reply.

mod common;

use common::Scripted;
use evolve_core::{ScoreError, ScoreInput, Scorer};
use evolve_judge::LlmJudge;

fn input<'a>(answer: &'a str) -> ScoreInput<'a> {
    ScoreInput {
        prompt: "What is 2+2?",
        reference: Some("4"),
        answer,
    }
}

fn score_reply(reply: &'static str) -> Result<f64, ScoreError> {
    let mut judge = LlmJudge::new(Box::new(Scripted::new(move |_| reply.into())), "judge:test");
    judge.score(&input("4")).map(|v| v.value)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn reads_the_rating_in_many_reply_shapes() {
    let cases: [(&str, f64); 9] = [
        ("Correct and clear.\nRating: 7", 7.0),
        ("**Rating:** [[9]]", 9.0),
        ("The answer is right.\nrating: 8/10", 8.0),
        ("Rating: 7.5", 7.5),
        ("Rating: 6.", 6.0),
        (
            "Rating: 3\nOn reflection it is better than that.\nRating: 5",
            5.0,
        ),
        ("Rating: 5\nI was asked to end with \"Rating: N\"", 5.0),
        ("RATING: 12", 10.0), // clamped to the top of the scale
        ("Rating: 0", 1.0),   // clamped to the bottom
    ];
    for (reply, rating) in cases {
        let value = score_reply(reply).unwrap_or_else(|e| panic!("{reply:?}: {e}"));
        assert!(
            close(value, (rating - 1.0) / 9.0),
            "{reply:?}: value {value}, expected rating {rating}"
        );
    }
}

#[test]
fn keeps_the_rating_and_the_whole_reply_in_details() {
    let mut judge = LlmJudge::new(
        Box::new(Scripted::new(|_| "Fine.\nRating: 10".into())),
        "judge:test",
    );
    let v = judge.score(&input("4")).unwrap();
    assert!(close(v.value, 1.0));
    assert_eq!(v.details["rating"], 10.0);
    assert_eq!(v.details["reply"], "Fine.\nRating: 10");
    assert_eq!(judge.name(), "judge:test");
}

#[test]
fn an_unreadable_reply_fails_quoting_its_first_80_characters() {
    for reply in ["I like it.", "Rating: N", "Rating: excellent", ""] {
        match score_reply(reply) {
            Err(ScoreError::Failed { scorer, reason }) => {
                assert_eq!(scorer, "judge:test");
                assert!(reason.contains("Rating: N"), "{reason}");
                assert!(reason.contains(&format!("{reply:?}")), "{reason}");
            }
            other => panic!("{reply:?} gave {other:?}"),
        }
    }
    let long: &'static str = "abcdefghij".repeat(20).leak();
    let Err(ScoreError::Failed { reason, .. }) = score_reply(long) else {
        panic!("a reply without a rating must fail")
    };
    assert!(reason.contains(&format!("{:?}", &long[..80])), "{reason}");
    assert!(!reason.contains(&long[..81]), "{reason}");
}

#[test]
fn sends_a_greedy_prompt_with_question_reference_and_answer() {
    let scripted = Scripted::new(|_| "Rating: 4".into());
    let seen = scripted.seen.clone();
    let mut judge = LlmJudge::new(Box::new(scripted), "j").with_max_tokens(99);
    judge.score(&input("five")).unwrap();
    judge
        .score(&ScoreInput {
            prompt: "Name a colour.",
            reference: None,
            answer: "blue",
        })
        .unwrap();
    let seen = seen.lock().unwrap();
    let (with_ref, sampler) = &seen[0];
    assert!(with_ref.starts_with("<user>"), "formatted as a user turn");
    for part in [
        "[Question]\nWhat is 2+2?",
        "[Reference answer]\n4",
        "[Answer]\nfive",
    ] {
        assert!(with_ref.contains(part), "{part:?} missing from {with_ref}");
    }
    assert!(with_ref.trim_end().ends_with("(N from 1 to 10)."));
    assert!(sampler.is_greedy());
    assert_eq!(sampler.max_tokens, 99);
    let (without_ref, _) = &seen[1];
    assert!(!without_ref.contains("[Reference answer]"), "{without_ref}");
    assert!(without_ref.contains("[Answer]\nblue"));
}

#[test]
fn score_many_batches_and_fails_only_the_unreadable_answers() {
    let scripted = Scripted::new(|p| {
        if p.contains("[Answer]\ngood") {
            "Rating: 10".into()
        } else if p.contains("[Answer]\nbad") {
            "Rating: 1".into()
        } else {
            "no idea".into()
        }
    });
    let seen = scripted.seen.clone();
    let mut judge = LlmJudge::new(Box::new(scripted), "j");
    let out = judge
        .score_many(&[input("good"), input("odd"), input("bad")])
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(close(out[0].as_ref().unwrap().value, 1.0));
    assert!(matches!(out[1], Err(ScoreError::Failed { .. })));
    assert!(close(out[2].as_ref().unwrap().value, 0.0));
}
