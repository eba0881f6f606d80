//! Trained adapters: list, export (GGUF LoRA, PEFT, merged GGUF, TRL pairs) and "is it applied"
//! (base and adapter logits compared in llama.cpp).

use super::chat::engine_for;
use super::export_path::{check_written, target_in};
use super::util::{lock, rfc3339};
use super::{ApiError, ApiResult, Inner};
use candle_core::{DType, Device};
use evolve_core::SamplerConfig;
use evolve_store::{Adapter, AdapterId, Store};
use evolve_train::export::{TokenizerMetadata, WeightType, export_gguf_model, export_peft};
use evolve_train::{CHECKPOINT_WEIGHTS, LlamaModel, Lora, LoraConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The run and round index that trained an adapter, when it came from a run.
fn origin(store: &Store, a: &Adapter) -> ApiResult<(Option<i64>, Option<i64>)> {
    let Some(t) = a.training_run_id else {
        return Ok((None, None));
    };
    let round = store
        .get_training_run(t)?
        .and_then(|t| t.round_id)
        .map(|r| store.get_round(r))
        .transpose()?
        .flatten();
    Ok(match round {
        Some(r) => (Some(r.run_id.0), Some(r.round_index)),
        None => (None, None),
    })
}

pub fn list(inner: &Inner) -> ApiResult {
    let service = inner.service()?;
    let store = service.store();
    let mut out = Vec::new();
    for a in store.list_adapters()? {
        let (run, round) = origin(store, &a)?;
        out.push(json!({
            "id": a.id.0, "run_id": run, "round": round, "path": a.path,
            "format": a.format.as_str(), "rank": a.rank, "alpha": a.alpha, "sha256": a.sha256,
            "created_at": rfc3339(a.created_at), "base_model_id": a.base_model_id.0,
        }));
    }
    Ok(Value::Array(out))
}

fn adapter(store: &Store, id: i64) -> ApiResult<(Adapter, PathBuf)> {
    let a = store
        .get_adapter(AdapterId(id))?
        .ok_or_else(|| ApiError::not_found(format!("no adapter with id {id}")))?;
    let base = store.get_model(a.base_model_id)?.ok_or_else(|| {
        ApiError::bad(format!(
            "the base model of adapter {id} is no longer registered"
        ))
    })?;
    Ok((a, PathBuf::from(base.path)))
}

#[derive(Deserialize)]
pub struct ExportArgs {
    adapter_id: i64,
    format: String,
    dir: String,
}

pub fn export(inner: &Inner, args: ExportArgs) -> ApiResult {
    // Resolve under the lock, export without it: a merged export takes a while.
    let (a, base, run) = {
        let service = inner.service()?;
        let (a, base) = adapter(service.store(), args.adapter_id)?;
        let (run, _) = origin(service.store(), &a)?;
        (a, base, run)
    };
    let id = a.id.0;
    let source = PathBuf::from(&a.path);
    let name = match args.format.as_str() {
        "gguf_lora" => format!("adapter-{id}.gguf"),
        "peft" => format!("adapter-{id}-peft"),
        "merged_gguf" => format!("adapter-{id}-merged.gguf"),
        "trl_pairs" => format!("adapter-{id}-pairs.jsonl"),
        other => {
            return Err(ApiError::bad(format!(
                "unknown export format '{other}' (expected gguf_lora, peft, merged_gguf or trl_pairs)"
            )));
        }
    };
    let (folder, target) = target_in(&args.dir, &name)?;
    let failed = |e: evolve_train::TrainError| ApiError::bad(format!("export failed: {e}"));
    match args.format.as_str() {
        "gguf_lora" => {
            std::fs::copy(&source, &target).map_err(|e| {
                ApiError::bad(format!(
                    "cannot copy {} to {}: {e}",
                    source.display(),
                    target.display()
                ))
            })?;
        }
        "peft" => {
            let (model, lora) = load_lora(&base, &a)?;
            let name = base.file_stem().map(|s| s.to_string_lossy().into_owned());
            export_peft(&lora, model.config(), &target, name.as_deref()).map_err(failed)?;
        }
        "merged_gguf" => {
            let (model, lora) = load_lora(&base, &a)?;
            let merged = model.merged(&lora).map_err(failed)?;
            export_gguf_model(
                &merged,
                &target,
                WeightType::Q8_0,
                TokenizerMetadata::CopyFrom(&base),
            )
            .map_err(failed)?;
        }
        _ => {
            let run = run.ok_or_else(|| {
                ApiError::bad(format!(
                    "adapter {id} did not come from a run: it has no pairs"
                ))
            })?;
            crate::Service::open(inner.data_dir.clone())?
                .export_trl_pairs(evolve_store::RunId(run), &target)?;
        }
    }
    let real = check_written(&folder, &target)?;
    Ok(json!({"path": real.display().to_string()}))
}

/// The base model and the adapter's trained weights (the checkpoint saved next to its GGUF).
fn load_lora(base: &Path, a: &Adapter) -> ApiResult<(LlamaModel, Lora)> {
    let weights = Path::new(&a.path)
        .parent()
        .unwrap_or(Path::new("."))
        .join(CHECKPOINT_WEIGHTS);
    if !weights.is_file() {
        return Err(ApiError::bad(format!(
            "the adapter's weights {} are missing: only adapters trained here export as PEFT or merged",
            weights.display()
        )));
    }
    let failed =
        |e: evolve_train::TrainError| ApiError::bad(format!("cannot load the adapter: {e}"));
    let model = LlamaModel::load(base, &Device::Cpu, DType::F32).map_err(failed)?;
    let config = LoraConfig {
        rank: a.rank as usize,
        alpha: a.alpha,
        ..LoraConfig::default()
    };
    let mut lora =
        Lora::new(model.config(), config, model.master_dtype(), model.device()).map_err(failed)?;
    lora.load_weights(&weights).map_err(failed)?;
    Ok((model, lora))
}

#[derive(Deserialize)]
pub struct CheckArgs {
    adapter_id: i64,
}

/// A fixed prompt, so results are comparable between adapters.
const CHECK_PROMPT: &str = "What is 12 + 30?";

pub fn check(inner: &Inner, args: CheckArgs) -> ApiResult {
    let (a, base) = {
        let service = inner.service()?;
        adapter(service.store(), args.adapter_id)?
    };
    let path = PathBuf::from(&a.path);
    let mut slot = lock(&inner.chat.engine);
    let run =
        |adapter: Option<&Path>, slot: &mut Option<_>| -> anyhow::Result<(Vec<f32>, String)> {
            let cached = engine_for(slot, &base, adapter, inner)?;
            let engine = &cached.engine;
            let prompt = engine
                .format_user_prompt(CHECK_PROMPT)
                .unwrap_or_else(|_| CHECK_PROMPT.to_string());
            let logits = engine.last_logits(&engine.tokenize(&prompt))?;
            let text = engine
                .generate(&prompt, &SamplerConfig::greedy(24), |_| true)?
                .text;
            Ok((logits, text))
        };
    let (base_logits, base_text) = run(None, &mut slot)?;
    let (adapter_logits, adapter_text) = run(Some(&path), &mut slot)?;
    let max_diff = base_logits
        .iter()
        .zip(&adapter_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    Ok(json!({
        "applied": max_diff > 1e-4,
        "max_logit_diff": max_diff,
        "base_text": base_text,
        "adapter_text": adapter_text,
    }))
}
