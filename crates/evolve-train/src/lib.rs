//! The training engine on candle. It reads the very GGUF file the user chats with, so the model
//! that is trained and the model that is served can never drift apart.
//!
//! This first layer loads and dequantizes GGUF tensors into candle; the differentiable Llama,
//! LoRA, the EVOLVE-DPO loss and adapter export build on it.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("candle cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
}

/// Every tensor of a GGUF file dequantized to f32, in PyTorch order (`[out, in]` for matrices).
pub fn load_gguf_f32(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>, TrainError> {
    let mut file = std::fs::File::open(path).map_err(|source| TrainError::Open {
        path: path.into(),
        source,
    })?;
    let read_err = |e: candle_core::Error| TrainError::Read {
        path: path.into(),
        reason: e.to_string(),
    };
    let content = gguf_file::Content::read(&mut file).map_err(read_err)?;
    let mut out = BTreeMap::new();
    for name in content.tensor_infos.keys() {
        let q = content.tensor(&mut file, name, device).map_err(read_err)?;
        out.insert(name.clone(), q.dequantize(device).map_err(read_err)?);
    }
    Ok(out)
}
