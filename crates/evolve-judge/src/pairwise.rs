//! Pairwise judging with the position swap, and the win rate built on it.
//!
//! LLM judges favour whichever answer they read first (or second) regardless of content. Every
//! pair is therefore judged twice, as (a, b) and as (b, a); a judge that only follows position
//! then contradicts itself and the pair comes out a tie, while a judge that follows content
//! keeps its verdict.

use crate::prompt::Shown;
pub use evolve_core::pairwise::{
    PairVerdict, PairwiseJudge, WinRate, Winner, win_rate, win_rate_with_references,
};

/// a's share of one order's verdict: `a_first` says whether a was shown first.
fn share_of_a(shown: Shown, a_first: bool) -> f64 {
    match (shown, a_first) {
        (Shown::Tie, _) => 0.5,
        (Shown::First, true) | (Shown::Second, false) => 1.0,
        _ => 0.0,
    }
}

/// Combines the reading of the (a, b) order and of the (b, a) order.
pub fn combine(ab: Shown, ba: Shown) -> (Winner, f64) {
    let p_a = (share_of_a(ab, true) + share_of_a(ba, false)) / 2.0;
    let winner = if p_a == 1.0 {
        Winner::A
    } else if p_a == 0.0 {
        Winner::B
    } else {
        Winner::Tie
    };
    (winner, p_a)
}
