//! [`scorer_from_spec`]: builds the scorer a [`ScorerSpec`] names (CLI, run configs, the UI).

use crate::{JudgeError, LlmJudge, RewardModelScorer};
use evolve_core::{Scorer, ScorerSpec};
use evolve_llama::{EngineOptions, LlamaEngine};
use evolve_remote::{RemoteGenerator, RemoteOptions};

/// Environment variable holding the remote judge's API key (sent as a bearer token).
pub const JUDGE_API_KEY_ENV: &str = "EVOLVE_JUDGE_API_KEY";

/// Builds the scorer `spec` names:
/// - a verifier (`numeric`, `exact`, `exact_nocase`, `json`, `pattern:<text>`);
/// - `judge:<path.gguf>`: that model as an [`LlmJudge`] on llama.cpp with `engine_options`;
/// - `remote-judge:<base_url>[#model]`: an [`LlmJudge`] on an OpenAI-compatible server, with
///   the API key from `EVOLVE_JUDGE_API_KEY` when set;
/// - `reward:<path.gguf>`: a [`RewardModelScorer`] (refused when the file has no head).
///
/// Errors are one line naming the spec.
pub fn scorer_from_spec(
    spec: &ScorerSpec,
    engine_options: &EngineOptions,
) -> Result<Box<dyn Scorer + Send>, JudgeError> {
    Ok(match spec {
        ScorerSpec::Verifier(v) => crate::verify::verifier(v),
        ScorerSpec::Judge(path) => {
            let engine =
                LlamaEngine::load(path, engine_options.clone()).map_err(|e| failed(spec, e))?;
            Box::new(LlmJudge::new(Box::new(engine), spec.to_string()))
        }
        ScorerSpec::RemoteJudge { url, model } => {
            let key = std::env::var(JUDGE_API_KEY_ENV)
                .ok()
                .filter(|k| !k.is_empty());
            Box::new(remote_judge(url, model.clone(), key)?)
        }
        ScorerSpec::Reward(path) => Box::new(
            RewardModelScorer::load(path, engine_options.into()).map_err(|e| failed(spec, e))?,
        ),
    })
}

/// An [`LlmJudge`] on the OpenAI-compatible server at `base_url`, named
/// `remote-judge:<base_url>[#model]`.
pub fn remote_judge(
    base_url: &str,
    model: Option<String>,
    api_key: Option<String>,
) -> Result<LlmJudge, JudgeError> {
    let name = ScorerSpec::RemoteJudge {
        url: base_url.to_string(),
        model: model.clone(),
    }
    .to_string();
    let mut options = RemoteOptions::new(base_url);
    options.model = model;
    options.api_key = api_key;
    let generator = RemoteGenerator::new(options).map_err(|e| failed(&name, e))?;
    Ok(LlmJudge::new(Box::new(generator), name))
}

/// The engine behind the scorer `spec` could not start, and why.
fn failed(
    spec: &impl std::fmt::Display,
    source: impl std::error::Error + Send + Sync + 'static,
) -> JudgeError {
    JudgeError::Scorer {
        spec: spec.to_string(),
        source: Box::new(source),
    }
}
