//! Domain vocabulary shared by every EVOLVE Studio crate.
//!
//! This crate stays free of heavy dependencies (no SQLite, llama.cpp or candle) so that the
//! types the engines exchange compile in a second and can be used from any shell (CLI, Tauri, HTTP).

pub mod eval;
pub mod generate;
pub mod kinds;
pub mod memory;
pub mod pairwise;
pub mod panic;
pub mod paths;
pub mod prompt_format;
pub mod refine;
pub mod rng;
pub mod sampling;
pub mod score;
mod score_error;
pub mod scorer_spec;
pub mod stats;
pub mod train;

pub use eval::{EvalAnswer, EvalMeasure, EvalMetric, EvalSubject};
pub use generate::{
    ChatMessage, Completion, FollowUp, GenerateError, GenerationEvent, GenerationRequest,
    Generator, Role,
};
pub use kinds::{
    AdapterFormat, ExportFormat, GenerationKind, PairKind, ParseKindError, ReviewState, RoundState,
    RunState,
};
pub use pairwise::{PairVerdict, PairwiseJudge, WinRate, Winner};
pub use paths::DataDir;
pub use prompt_format::PromptFormat;
pub use refine::{ChainStart, RefinementStep, RefinementTemplate, refine_chain, refine_chains};
pub use sampling::SamplerConfig;
pub use score::{
    Extraction, ScoreInput, ScoreValue, Scorer, extract_final_number, final_answer_after_marker,
    normalise_number,
};
pub use score_error::ScoreError;
pub use scorer_spec::{ParseScorerError, SCORER_FORMS, ScorerSpec, Verifier};
pub use stats::PairedComparison;
pub use train::{
    Objective, PreferenceTrainer, StepReport, TrainExample, TrainFailed, TrainedAdapter,
};
