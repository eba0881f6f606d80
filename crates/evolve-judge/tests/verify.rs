//! The rule-based verifiers: what each accepts and refuses.

use evolve_core::{ScoreError, ScoreInput, Scorer, final_answer_after_marker};
use evolve_judge::verify::{NumericFinalAnswer, verifier_by_name};

fn score(s: &mut dyn Scorer, answer: &str, reference: Option<&str>) -> f64 {
    s.score(&ScoreInput {
        prompt: "q",
        reference,
        answer,
    })
    .unwrap()
    .value
}

#[test]
fn numeric_verifier_reads_the_final_answer_line() {
    let mut v = NumericFinalAnswer;
    assert_eq!(score(&mut v, "3+4=7\n#### 7", Some("7")), 1.0);
    assert_eq!(score(&mut v, "#### $1,234.00", Some("1234")), 1.0);
    assert_eq!(score(&mut v, "#### 8", Some("7")), 0.0);
    assert_eq!(
        score(&mut v, "the answer is 7", Some("7")),
        0.0,
        "no marker, no credit"
    );
    assert_eq!(
        score(&mut v, "#### 5\n#### 7", Some("#### 7")),
        1.0,
        "the last marker counts"
    );
    assert_eq!(
        final_answer_after_marker("x #### -3.50"),
        Some("-3.5".into())
    );
    let err = v
        .score(&ScoreInput {
            prompt: "q",
            reference: None,
            answer: "#### 1",
        })
        .unwrap_err();
    assert!(matches!(err, ScoreError::Unscorable { .. }));
    assert!(err.to_string().contains("no reference answer"));
}

#[test]
fn other_verifiers_and_names() {
    let mut exact = verifier_by_name("exact_nocase").unwrap();
    assert_eq!(score(exact.as_mut(), " Paris ", Some("paris")), 1.0);
    let mut json = verifier_by_name("json").unwrap();
    assert_eq!(score(json.as_mut(), "```json\n{\"a\": 1}\n```", None), 1.0);
    assert_eq!(score(json.as_mut(), "{a: 1}", None), 0.0);
    let mut pat = verifier_by_name("pattern:^{").unwrap();
    assert_eq!(score(pat.as_mut(), "{x}", None), 1.0);
    assert_eq!(score(pat.as_mut(), "x{", None), 0.0);
    let err = verifier_by_name("vibes").err().unwrap().to_string();
    assert!(err.contains("unknown scorer 'vibes'"), "{err}");
}

#[test]
fn numeric_any_reads_answers_written_in_the_models_own_words() {
    let mut any = verifier_by_name("numeric_any").unwrap();
    let mut strict = NumericFinalAnswer;
    // What SmolLM2-135M-Instruct writes, and the other forms evaluation harnesses accept.
    for (answer, reference, right) in [
        ("The larger number is 847.", "847", true),
        ("17 + 25 = 42", "#### 42", true),
        ("So we get \\boxed{1,250}.", "1250", true),
        (
            "The answer is 7, because 3 + 4 = 7 and 12 - 5 = 7.",
            "7",
            true,
        ),
        ("The larger number is 784.", "847", false),
        ("I am not sure.", "847", false),
    ] {
        assert_eq!(
            score(any.as_mut(), answer, Some(reference)),
            f64::from(u8::from(right)),
            "{answer}"
        );
        assert_eq!(
            score(&mut strict, answer, Some(reference)),
            0.0,
            "strict needs ####: {answer}"
        );
    }
    let details = any
        .score(&ScoreInput {
            prompt: "q",
            reference: Some("847"),
            answer: "The larger number is 847.",
        })
        .unwrap()
        .details;
    assert_eq!(details["via"], "last_number");
    assert_eq!(details["extracted"], "847");
}
