//! The position swap and the win rate, on scripted judges.

mod common;

use common::{Scripted, shown_answer};
use evolve_core::ScoreError;
use evolve_judge::{LlmJudge, PairwiseJudge, Winner, win_rate, win_rate_with_references};

/// Always names whichever answer it read first: pure position bias.
fn first_position_judge() -> LlmJudge {
    LlmJudge::new(Box::new(Scripted::new(|_| "Winner: A".into())), "biased")
}

/// Prefers the answer "good", whatever its position; ties otherwise.
fn content_judge() -> LlmJudge {
    LlmJudge::new(
        Box::new(Scripted::new(|p| {
            match (shown_answer(p, "A"), shown_answer(p, "B")) {
                ("good", b) if b != "good" => "A is right.\n**Winner:** A".into(),
                (a, "good") if a != "good" => "Winner: Answer B".into(),
                _ => "Both the same.\nWinner: tie".into(),
            }
        })),
        "content",
    )
}

#[test]
fn swapping_positions_cancels_a_judge_that_always_prefers_the_first() {
    let mut judge = first_position_judge();
    let v = judge.prefer("q", None, "good", "bad").unwrap();
    assert_eq!(v.winner, Winner::Tie);
    assert_eq!(v.p_a, 0.5);
    let v = judge.prefer("q", None, "bad", "good").unwrap();
    assert_eq!(v.winner, Winner::Tie);
}

#[test]
fn a_consistent_judge_keeps_its_verdict_in_both_orders() {
    let mut judge = content_judge();
    let v = judge.prefer("q", Some("ref"), "good", "bad").unwrap();
    assert_eq!((v.winner, v.p_a), (Winner::A, 1.0));
    assert_eq!(v.details["a_first"]["reply"], "A is right.\n**Winner:** A");
    assert_eq!(v.details["b_first"]["reply"], "Winner: Answer B");
    let v = judge.prefer("q", None, "bad", "good").unwrap();
    assert_eq!((v.winner, v.p_a), (Winner::B, 0.0));
    let v = judge.prefer("q", None, "good", "good").unwrap();
    assert_eq!((v.winner, v.p_a), (Winner::Tie, 0.5));
}

#[test]
fn a_win_and_a_tie_is_a_tie_with_p_a_three_quarters() {
    // Ties when a is shown second: a wins one order and ties the other.
    let mut judge = LlmJudge::new(
        Box::new(Scripted::new(|p| {
            if shown_answer(p, "A") == "new" {
                "Winner: A".into()
            } else {
                "Winner: tie".into()
            }
        })),
        "half",
    );
    let v = judge.prefer("q", None, "new", "old").unwrap();
    assert_eq!((v.winner, v.p_a), (Winner::Tie, 0.75));
}

#[test]
fn both_orders_are_asked_with_the_answers_swapped() {
    let scripted = Scripted::new(|_| "Winner: B".into());
    let seen = scripted.seen.clone();
    let mut judge = LlmJudge::new(Box::new(scripted), "j");
    judge.prefer("Which?", Some("R"), "one", "two").unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(shown_answer(&seen[0].0, "A"), "one");
    assert_eq!(shown_answer(&seen[0].0, "B"), "two");
    assert_eq!(shown_answer(&seen[1].0, "A"), "two");
    assert_eq!(shown_answer(&seen[1].0, "B"), "one");
    assert!(seen[0].0.contains("[Reference answer]\nR"));
    assert!(seen.iter().all(|(_, s)| s.is_greedy()));
}

#[test]
fn an_unreadable_pairwise_reply_fails_the_pair() {
    let mut judge = LlmJudge::new(Box::new(Scripted::new(|_| "hmm".into())), "j");
    match judge.prefer("q", None, "x", "y") {
        Err(ScoreError::Failed { reason, .. }) => {
            assert!(
                reason.contains("Winner: A|B|tie") && reason.contains("\"hmm\""),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn win_rate_counts_wins_ties_losses_and_failures() {
    let mut judge = content_judge();
    let prompts = ["p1", "p2", "p3", "p4", "p5"];
    let new = ["good", "good", "bad", "good", "bad"];
    let old = ["bad", "bad", "good", "good", "bad"];
    let w = win_rate(&mut judge, &prompts, &new, &old).unwrap();
    assert_eq!((w.wins, w.ties, w.losses, w.failed), (2, 2, 1, 0));
    assert_eq!(w.rate, Some(3.0 / 5.0));
    assert_eq!(w.first_failure, None);

    // The biased judge cannot tell anything apart: all ties, rate one half.
    let w = win_rate(&mut first_position_judge(), &prompts, &new, &old).unwrap();
    assert_eq!((w.wins, w.ties, w.losses), (0, 5, 0));
    assert_eq!(w.rate, Some(0.5));
}

#[test]
fn win_rate_reports_failures_and_refuses_mismatched_lengths() {
    let mut broken = LlmJudge::new(Box::new(Scripted::new(|_| "?".into())), "broken");
    let w = win_rate_with_references(&mut broken, &["p"], &[Some("r")], &["a"], &["b"]).unwrap();
    assert_eq!(
        (w.wins, w.ties, w.losses, w.failed, w.rate),
        (0, 0, 0, 1, None)
    );
    assert!(w.first_failure.unwrap().contains("broken failed"));

    let err = win_rate(&mut content_judge(), &["p", "q"], &["a"], &["b", "c"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 prompts but 2 references, 1 new and 2 old"),
        "{err}"
    );
}
