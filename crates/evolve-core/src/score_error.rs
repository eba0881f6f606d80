//! Why a scorer gave no score: shared by the pointwise [`crate::Scorer`] and the pairwise
//! [`crate::PairwiseJudge`], which each use the other.

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The scorer cannot judge this prompt at all (e.g. a verifier without a gold answer).
    #[error("{scorer} cannot score this prompt: {reason}")]
    Unscorable { scorer: String, reason: String },
    #[error("{scorer} failed: {reason}")]
    Failed { scorer: String, reason: String },
}
