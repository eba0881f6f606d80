//! LoRA adapters: the engine's registry, and checking a GGUF adapter before llama.cpp sees it.
//!
//! llama.cpp loads an adapter through `&mut model`, so adapters are loaded into the engine
//! (which owns the model) and applied to each fresh context; switching is a field update.
//!
//! llama.cpp rejects a wrong adapter with a bare "incorrect shape" (and aborts outright on a
//! metadata value of the wrong type), so we apply its rules (`llama-adapter.cpp`) first and name
//! the tensor and both shapes.

use crate::LlamaError;
use evolve_gguf::{GgufFile, Value};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Handle of an adapter loaded into a [`crate::LlamaEngine`]; only meaningful for that engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AdapterId(pub(crate) usize);

/// What the validation learned about an adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedAdapter {
    pub path: PathBuf,
    /// `adapter.lora.alpha`; llama.cpp scales the update by `scale * alpha / rank` when it is set.
    pub alpha: Option<f32>,
    pub rank: u64,
    /// Base tensors the adapter changes, sorted.
    pub targets: Vec<String>,
}

/// A loaded adapter in the registry: what validation learned, and llama.cpp's handle.
struct AdapterSlot {
    info: LoadedAdapter,
    /// Owned by the model in llama.cpp (freed with it); the mutex only gives the `&mut` that
    /// `lora_adapter_set` asks for while contexts borrow the engine immutably.
    handle: Mutex<LlamaLoraAdapter>,
}

/// The adapters loaded into one engine's model, and the one its contexts apply. llama.cpp
/// frees an adapter with its model, so the engine owns this registry beside the model.
#[derive(Default)]
pub(crate) struct Adapters {
    loaded: Vec<AdapterSlot>,
    active: Option<(AdapterId, f32)>,
    /// The base model's tensor table, read on the first adapter load.
    base_tensors: Option<BaseTensors>,
}

impl Adapters {
    /// Loads the GGUF LoRA adapter `path` into `model` (read from `model_path`) after checking
    /// it fits the model. Loading does not activate it.
    pub fn load(
        &mut self,
        model: &mut LlamaModel,
        model_path: &Path,
        path: &Path,
    ) -> Result<AdapterId, LlamaError> {
        if !path.is_file() {
            return Err(LlamaError::NotFound(path.to_path_buf()));
        }
        if self.base_tensors.is_none() {
            let base = evolve_gguf::read_path(model_path).map_err(|e| LlamaError::Load {
                path: model_path.to_path_buf(),
                reason: e.to_string(),
            })?;
            self.base_tensors = Some(BaseTensors::from_gguf(&base));
        }
        let info = validate_adapter(path, self.base_tensors.as_ref().expect("read above"))?;
        let handle = model
            .lora_adapter_init(path)
            .map_err(|e| LlamaError::AdapterMismatch {
                path: path.to_path_buf(),
                reason: format!("llama.cpp refused it: {e}"),
            })?;
        self.loaded.push(AdapterSlot {
            info,
            handle: Mutex::new(handle),
        });
        Ok(AdapterId(self.loaded.len() - 1))
    }

    /// Chooses the adapter contexts apply (`None`: the base model) at `scale`.
    pub fn set_active(&mut self, adapter: Option<AdapterId>, scale: f32) -> Result<(), LlamaError> {
        if let Some(id) = adapter
            && id.0 >= self.loaded.len()
        {
            return Err(LlamaError::Context(format!("no adapter with id {}", id.0)));
        }
        self.active = adapter.map(|id| (id, scale));
        Ok(())
    }

    pub fn active(&self) -> Option<(AdapterId, f32)> {
        self.active
    }

    pub fn info(&self, id: AdapterId) -> Option<&LoadedAdapter> {
        self.loaded.get(id.0).map(|a| &a.info)
    }

    /// Applies the active adapter to a fresh context.
    pub fn apply(&self, ctx: &mut LlamaContext<'_>) -> Result<(), LlamaError> {
        if let Some((id, scale)) = self.active {
            let mut handle = self.loaded[id.0]
                .handle
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            ctx.lora_adapter_set(&mut handle, scale)
                .map_err(|e| LlamaError::Context(format!("cannot apply adapter: {e}")))?;
        }
        Ok(())
    }
}

/// The base model's tensor shapes (ggml order) and architecture.
pub(crate) struct BaseTensors {
    pub architecture: String,
    pub shapes: HashMap<String, Vec<u64>>,
}

impl BaseTensors {
    pub fn from_gguf(file: &GgufFile) -> Self {
        Self {
            architecture: file.architecture().unwrap_or_default().to_string(),
            shapes: file
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.dims.clone()))
                .collect(),
        }
    }
}

/// The ggml dims of a base tensor's `lora_a` and `lora_b`, as far as found.
type LoraPair<'a> = (Option<&'a [u64]>, Option<&'a [u64]>);

pub(crate) fn validate_adapter(
    path: &Path,
    base: &BaseTensors,
) -> Result<LoadedAdapter, LlamaError> {
    let fail = |reason: String| LlamaError::AdapterMismatch {
        path: path.to_path_buf(),
        reason,
    };
    let file = evolve_gguf::read_path(path).map_err(|e| fail(e.to_string()))?;
    let string_key = |key: &str| match file.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(fail(format!(
            "metadata '{key}' must be a string, found {other:?}"
        ))),
    };
    match string_key("general.type")? {
        Some("adapter") => {}
        other => {
            return Err(fail(format!(
                "general.type is {other:?}, not \"adapter\": this is not an adapter file"
            )));
        }
    }
    match string_key("adapter.type")? {
        Some("lora") => {}
        other => return Err(fail(format!("adapter.type is {other:?}, not \"lora\""))),
    }
    let arch = string_key("general.architecture")?.unwrap_or("");
    if arch != base.architecture {
        return Err(fail(format!(
            "adapter is for architecture '{arch}', the model is '{}'",
            base.architecture
        )));
    }
    let alpha = match file.get("adapter.lora.alpha") {
        None => None,
        Some(Value::F32(a)) => Some(*a),
        Some(other) => {
            return Err(fail(format!(
                "adapter.lora.alpha must be an f32, found {other:?}"
            )));
        }
    };

    let mut pairs: HashMap<&str, LoraPair> = HashMap::new();
    for t in &file.tensors {
        if let Some(base_name) = t.name.strip_suffix(".lora_a") {
            pairs.entry(base_name).or_default().0 = Some(&t.dims);
        } else if let Some(base_name) = t.name.strip_suffix(".lora_b") {
            pairs.entry(base_name).or_default().1 = Some(&t.dims);
        } else if !t.name.ends_with("_norm.weight") {
            return Err(fail(format!(
                "tensor '{}' is neither '.lora_a' nor '.lora_b'",
                t.name
            )));
        }
    }
    if pairs.is_empty() {
        return Err(fail("no LoRA tensors".into()));
    }
    let mut targets: Vec<String> = pairs.keys().map(|k| k.to_string()).collect();
    targets.sort();
    let mut rank = None;
    for name in &targets {
        let (a, b) = pairs[name.as_str()];
        let (Some(a), Some(b)) = (a, b) else {
            let missing = if a.is_none() { "lora_a" } else { "lora_b" };
            return Err(fail(format!(
                "tensor '{name}.{missing}' is missing (a LoRA needs both halves)"
            )));
        };
        let Some(base_dims) = base.shapes.get(name) else {
            return Err(fail(format!(
                "tensor '{name}.lora_a' targets '{name}', which the model does not have"
            )));
        };
        check_shapes(name, base_dims, a, b).map_err(fail)?;
        rank = Some(a[1]);
    }
    Ok(LoadedAdapter {
        path: path.to_path_buf(),
        alpha,
        rank: rank.unwrap_or(0),
        targets,
    })
}

/// llama.cpp's rule: for W with ne `[n_in, n_out]`, A is `[n_in, r]` and B is `[r, n_out]`
/// (the token embedding is looked up, not multiplied, so its A and B trade places).
fn check_shapes(name: &str, base: &[u64], a: &[u64], b: &[u64]) -> Result<(), String> {
    let shapes =
        || format!("'{name}.lora_a' is {a:?}, '{name}.lora_b' is {b:?}, base '{name}' is {base:?}");
    if base.len() != 2 || a.len() != 2 || b.len() != 2 {
        return Err(format!("LoRA needs 2-D tensors: {}", shapes()));
    }
    let fits = if name.ends_with("token_embd.weight") {
        base[0] == b[1] && base[1] == a[1] && a[0] == b[0]
    } else {
        base[0] == a[0] && base[1] == b[1] && a[1] == b[0]
    };
    if fits {
        Ok(())
    } else {
        let (n_in, n_out) = (base[0], base[1]);
        Err(format!(
            "shape mismatch: {}; expected lora_a [{n_in}, r] and lora_b [r, {n_out}]",
            shapes()
        ))
    }
}
