//! Every scorer behind [`evolve_core::Scorer`]: rule-based verifiers, LLM judges and reward
//! models, and the factory that builds any of them from a [`evolve_core::ScorerSpec`].
//!
//! - `verify.rs`: the verifiers (numeric final answer, exact match, JSON, pattern).
//! - `prompt.rs`: the judge prompts and the parsers of their verdict lines.
//! - `llm.rs`: [`LlmJudge`], any [`evolve_core::Generator`] as a pointwise and pairwise judge.
//! - `pairwise.rs`: [`PairwiseJudge`] with the position swap, [`win_rate`].
//! - `reward.rs`: [`RewardModelScorer`], a GGUF classification head on llama.cpp.
//! - `spec.rs`: [`scorer_from_spec`].
//! - `error.rs`: [`JudgeError`], why a scorer could not be built.

mod error;
mod llm;
mod pairwise;
pub mod prompt;
mod reward;
mod spec;
pub mod verify;

pub use error::JudgeError;
pub use llm::{DEFAULT_JUDGE_MAX_TOKENS, LlmJudge};
pub use pairwise::{
    PairVerdict, PairwiseJudge, WinRate, Winner, combine, win_rate, win_rate_with_references,
};
pub use reward::{
    HEAD_ARCHITECTURES, RewardHead, RewardModelScorer, RewardOptions, inspect_reward_head,
};
pub use spec::{JUDGE_API_KEY_ENV, remote_judge, scorer_from_spec};
