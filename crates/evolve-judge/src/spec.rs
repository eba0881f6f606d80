//! [`scorer_from_spec`]: one string names any scorer, for the CLI, run configs and the UI.

use crate::{LlmJudge, RewardModelScorer};
use evolve_core::Scorer;
use evolve_llama::{EngineOptions, LlamaEngine};
use evolve_remote::{RemoteGenerator, RemoteOptions};
use std::path::Path;

/// Environment variable holding the remote judge's API key (sent as a bearer token).
pub const JUDGE_API_KEY_ENV: &str = "EVOLVE_JUDGE_API_KEY";

/// Every form [`scorer_from_spec`] accepts, for error messages.
pub const ACCEPTED_FORMS: &str = "numeric, exact, exact_nocase, json, pattern:<text>, \
     judge:<model.gguf>, remote-judge:<http://host:port>[#model] or reward:<model.gguf>";

/// Builds a scorer from its spec:
/// - a verifier name (`numeric`, `exact`, `exact_nocase`, `json`, `pattern:<text>`);
/// - `judge:<path.gguf>`: that model as an [`LlmJudge`] on llama.cpp with `engine_options`;
/// - `remote-judge:<base_url>[#model]`: an [`LlmJudge`] on an OpenAI-compatible server, with
///   the API key from `EVOLVE_JUDGE_API_KEY` when set;
/// - `reward:<path.gguf>`: a [`RewardModelScorer`] (refused when the file has no head).
///
/// Errors are one line naming the spec.
pub fn scorer_from_spec(
    spec: &str,
    engine_options: &EngineOptions,
) -> Result<Box<dyn Scorer + Send>, String> {
    let spec = spec.trim();
    if let Some(path) = spec.strip_prefix("judge:") {
        let path = non_empty(spec, path, "a model path")?;
        let engine = LlamaEngine::load(Path::new(path), engine_options.clone())
            .map_err(|e| format!("scorer '{spec}': {e}"))?;
        return Ok(Box::new(LlmJudge::new(Box::new(engine), spec)));
    }
    if let Some(rest) = spec.strip_prefix("remote-judge:") {
        let rest = non_empty(spec, rest, "a server address")?;
        let key = std::env::var(JUDGE_API_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty());
        return Ok(Box::new(remote_judge(rest, key)?));
    }
    if let Some(path) = spec.strip_prefix("reward:") {
        let path = non_empty(spec, path, "a model path")?;
        let scorer = RewardModelScorer::load(Path::new(path), engine_options.into())
            .map_err(|e| format!("scorer '{spec}': {e}"))?;
        return Ok(Box::new(scorer));
    }
    evolve_loop::verify::verifier_by_name(spec)
        .map_err(|_| format!("unknown scorer '{spec}' (expected {ACCEPTED_FORMS})"))
}

/// An [`LlmJudge`] on the server at `base_url[#model]`, named `remote-judge:<base_url>[#model]`.
pub fn remote_judge(target: &str, api_key: Option<String>) -> Result<LlmJudge, String> {
    let (base, model) = match target.split_once('#') {
        Some((b, m)) if !m.is_empty() => (b, Some(m.to_string())),
        Some((b, _)) => (b, None),
        None => (target, None),
    };
    let mut options = RemoteOptions::new(base);
    options.model = model;
    options.api_key = api_key;
    let generator = RemoteGenerator::new(options)
        .map_err(|e| format!("scorer 'remote-judge:{target}': {e}"))?;
    Ok(LlmJudge::new(
        Box::new(generator),
        format!("remote-judge:{target}"),
    ))
}

fn non_empty<'a>(spec: &str, value: &'a str, what: &str) -> Result<&'a str, String> {
    let value = value.trim();
    if value.is_empty() {
        Err(format!(
            "scorer '{spec}' needs {what} after the colon (expected {ACCEPTED_FORMS})"
        ))
    } else {
        Ok(value)
    }
}
