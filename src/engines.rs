//! How the engines run on this machine: the settings (threads, GPU layers, context), the
//! llama.cpp options and scorer they give, and one loaded llama.cpp model kept between
//! requests: loading a real model takes seconds, and two at once may not fit in memory. Chat
//! and the adapter check share it.

use anyhow::Result;
use evolve_core::{PromptFormat, ScorerSpec};
use evolve_llama::{AdapterId, EngineOptions, LlamaEngine};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// How the engines run on this machine (not part of the run: a resume may use other threads).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineSettings {
    pub threads: Option<i32>,
    pub gpu_layers: u32,
    /// Context per sequence; 0 = the model's training context, capped at 4096.
    pub n_ctx: u32,
    /// Evaluate every prompt whole instead of starting from the longest prefix in the cache
    /// (to measure what the prompt cache saves; answers agree up to float rounding).
    pub no_prompt_cache: bool,
}

struct Cached {
    path: PathBuf,
    settings: EngineSettings,
    engine: LlamaEngine,
    /// Adapters loaded into this engine, by file (llama.cpp keeps them until the model is freed).
    adapters: HashMap<PathBuf, AdapterId>,
}

/// The engine cache; [`EngineCache::lock`] holds it for one request.
#[derive(Default)]
pub struct EngineCache(Mutex<Option<Cached>>);

/// The cache, held: [`EngineGuard::select`] gives the engine for a model and adapter.
pub struct EngineGuard<'a>(MutexGuard<'a, Option<Cached>>);

impl EngineCache {
    pub fn lock(&self) -> EngineGuard<'_> {
        // A panic mid-generation leaves the engine usable; the next request reselects.
        EngineGuard(self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl EngineGuard<'_> {
    /// The engine for `model` with `adapter` applied (or none), formatting as `format` says
    /// (`None`: the file's default), loading the model unless it is the cached one with the
    /// same settings.
    pub fn select(
        &mut self,
        model: &Path,
        adapter: Option<&Path>,
        settings: &EngineSettings,
        format: Option<&PromptFormat>,
    ) -> Result<&mut LlamaEngine> {
        let slot: &mut Option<Cached> = &mut self.0;
        if slot
            .as_ref()
            .is_none_or(|c| c.path != model || c.settings != *settings)
        {
            // Drop the old model first: two real models at once may not fit in memory.
            *slot = None;
            *slot = Some(Cached {
                path: model.to_path_buf(),
                settings: settings.clone(),
                engine: LlamaEngine::load(model, engine_options(model, settings, 2)?)?,
                adapters: HashMap::new(),
            });
        }
        let cached = slot.as_mut().expect("loaded above");
        let id = match adapter {
            None => None,
            Some(p) => Some(match cached.adapters.get(p) {
                Some(id) => *id,
                None => {
                    let id = cached.engine.load_adapter(p)?;
                    cached.adapters.insert(p.to_path_buf(), id);
                    id
                }
            }),
        };
        cached.engine.set_adapter(id, 1.0)?;
        cached.engine.set_prompt_format(format.cloned());
        Ok(&mut cached.engine)
    }
}

/// llama.cpp's options for `model` on this machine: `settings`' threads and GPU layers, its
/// context (else the model's training context, at most 4096) and `n_parallel` sequences.
pub fn engine_options(
    model: &Path,
    settings: &EngineSettings,
    n_parallel: usize,
) -> Result<EngineOptions> {
    let mut options = EngineOptions {
        n_gpu_layers: settings.gpu_layers,
        n_parallel,
        reuse_prefix: !settings.no_prompt_cache,
        ..EngineOptions::default()
    };
    if let Some(t) = settings.threads {
        options.n_threads = t;
    }
    options.n_ctx = if settings.n_ctx > 0 {
        settings.n_ctx
    } else {
        let trained = crate::models::inspect(model)?.summary().context_length;
        (trained.unwrap_or(4096) as u32).min(4096)
    };
    Ok(options)
}

impl crate::Service {
    /// [`engine_options`] with the prompt format of `model` when it is registered.
    pub fn engine_options(
        &self,
        model: &Path,
        settings: &EngineSettings,
        n_parallel: usize,
    ) -> Result<EngineOptions> {
        Ok(EngineOptions {
            prompt_format: self.prompt_format_for(model)?,
            ..engine_options(model, settings, n_parallel)?
        })
    }
}

/// How `evolve chat` loads a model: a prompt format (`None`: the file's default), and an
/// adapter file at a scale.
#[derive(Debug, Clone, Default)]
pub struct ChatEngineOptions {
    pub threads: Option<i32>,
    pub prompt_format: Option<PromptFormat>,
    pub adapter: Option<PathBuf>,
    pub adapter_scale: f32,
}

impl crate::Service {
    /// A model loaded for one chat session (the app keeps its model in an [`EngineCache`]), and
    /// a warning when it gets the plain prompt format by default: a file not registered that
    /// looks like a base model (a registered one was warned about when it was added). The
    /// format is `o.prompt_format`, else the registered model's, else the file's default.
    pub fn load_chat_engine(
        &self,
        model: &Path,
        o: &ChatEngineOptions,
    ) -> Result<(LlamaEngine, Option<String>)> {
        let registered = match &o.prompt_format {
            Some(_) => None,
            None => self.registered_model_at(model)?,
        };
        let mut options = EngineOptions {
            prompt_format: o.prompt_format.clone(),
            ..Default::default()
        };
        if let Some(m) = &registered {
            options.prompt_format = Some(m.prompt_format.clone());
        }
        if let Some(t) = o.threads {
            options.n_threads = t;
        }
        let explicit = options.prompt_format.is_some();
        let mut engine = LlamaEngine::load(model, options)?;
        if let Some(path) = &o.adapter {
            let id = engine.load_adapter(path)?;
            engine.set_adapter(Some(id), o.adapter_scale)?;
        }
        let warning = (!explicit && *engine.prompt_format() == PromptFormat::Plain).then(|| {
            let name = model.file_name().unwrap_or(model.as_os_str());
            crate::models::base_model_warning(
                &name.to_string_lossy(),
                "`--prompt-format`, or register it with `evolve models add` and use `evolve models set-format`",
            )
        });
        Ok((engine, warning))
    }
}

/// The scorer `spec` names, its engine (an LLM judge's, a reward model's) loaded as `engine`
/// says.
pub(crate) fn judge_for(
    spec: &ScorerSpec,
    engine: &EngineSettings,
) -> Result<Box<dyn evolve_core::Scorer + Send>> {
    let mut options = evolve_llama::EngineOptions {
        n_gpu_layers: engine.gpu_layers,
        ..Default::default()
    };
    if let Some(t) = engine.threads {
        options.n_threads = t;
    }
    evolve_judge::scorer_from_spec(spec, &options).map_err(anyhow::Error::msg)
}
