//! GGUF v3 writer.
//!
//! Tensors are encoded when added (so shape/quantisation errors surface at the call site) and
//! the file is written to `<path>.tmp` then renamed, so a crash never leaves a half file that
//! a later run would mistake for a model.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::quant::{f32_to_bytes, f32_to_f16_bytes, quantize_q8_0};
use crate::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgmlType, GgufError, Value};

/// Tensor contents to write; the variant picks the on-disk type.
#[derive(Debug, Clone)]
pub enum TensorData {
    F32(Vec<f32>),
    /// Converted to IEEE half with `half` (round to nearest even).
    F16(Vec<f32>),
    /// Quantised like ggml's `quantize_row_q8_0_ref`; needs `dims[0] % 32 == 0`.
    Q8_0(Vec<f32>),
    /// Already-encoded bytes, e.g. copied from another GGUF file.
    Raw {
        ggml_type: GgmlType,
        bytes: Vec<u8>,
    },
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    bytes: Vec<u8>,
}

/// Builds a GGUF file in memory, then writes it atomically.
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Set a metadata key; re-adding a key replaces its value in place (keys must be unique).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Add a tensor. `dims` is in ggml order (`dims[0]` = row length) and the data is
    /// row-major with `dims[0]` fastest.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        data: TensorData,
    ) -> Result<(), GgufError> {
        let name = name.into();
        let invalid = |msg: String| GgufError::Invalid(format!("tensor '{name}': {msg}"));
        if dims.is_empty() || dims.len() > 4 {
            return Err(invalid(format!(
                "needs 1 to 4 dimensions, got {}",
                dims.len()
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(invalid("added twice".into()));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid(format!("shape {dims:?} overflows")))?;
        let check_len = |len: usize| {
            if len as u64 == n_elements {
                Ok(())
            } else {
                Err(invalid(format!(
                    "shape {dims:?} has {n_elements} elements but {len} values were given"
                )))
            }
        };
        let (ggml_type, bytes) = match data {
            TensorData::F32(v) => {
                check_len(v.len())?;
                (GgmlType::F32, f32_to_bytes(&v))
            }
            TensorData::F16(v) => {
                check_len(v.len())?;
                (GgmlType::F16, f32_to_f16_bytes(&v))
            }
            TensorData::Q8_0(v) => {
                check_len(v.len())?;
                if !dims[0].is_multiple_of(32) {
                    return Err(invalid(format!(
                        "Q8_0 needs dims[0] to be a multiple of 32, got {}",
                        dims[0]
                    )));
                }
                (GgmlType::Q8_0, quantize_q8_0(&v)?)
            }
            TensorData::Raw { ggml_type, bytes } => {
                let block = ggml_type.block_size();
                if !dims[0].is_multiple_of(block) {
                    return Err(invalid(format!(
                        "{ggml_type} needs dims[0] to be a multiple of {block}"
                    )));
                }
                let expected = n_elements / block * ggml_type.type_size();
                if bytes.len() as u64 != expected {
                    return Err(invalid(format!(
                        "{ggml_type} {dims:?} needs {expected} bytes, got {}",
                        bytes.len()
                    )));
                }
                (ggml_type, bytes)
            }
        };
        self.tensors.push(PendingTensor {
            name,
            dims,
            ggml_type,
            bytes,
        });
        Ok(())
    }

    /// Write the file (via `<path>.tmp` + rename).
    pub fn write_to_path(&self, path: &Path) -> Result<(), GgufError> {
        let alignment = self.alignment()?;
        for (key, value) in &self.metadata {
            check_homogeneous(key, value)?;
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let write_err = |source| GgufError::Write {
            path: path.to_path_buf(),
            source,
        };

        let result = File::create(&tmp).and_then(|file| {
            let mut out = BufWriter::new(file);
            self.write_contents(&mut out, alignment)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write_err(e)
        })
    }

    /// `general.alignment` if the caller set one (must be a power of two), else the default.
    fn alignment(&self) -> Result<u64, GgufError> {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, v)) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => Ok(a),
                _ => Err(GgufError::Invalid(format!(
                    "general.alignment {v:?} is not a power of two"
                ))),
            },
        }
    }

    fn write_contents(&self, out: impl Write, alignment: u64) -> std::io::Result<()> {
        // The key is written even when it is the default so other readers need not assume it.
        let implicit_alignment = (
            "general.alignment".to_string(),
            Value::U32(alignment as u32),
        );
        let has_alignment = self.metadata.iter().any(|(k, _)| k == "general.alignment");
        let metadata: Vec<&(String, Value)> = self
            .metadata
            .iter()
            .chain((!has_alignment).then_some(&implicit_alignment))
            .collect();

        let mut out = Counting { inner: out, pos: 0 };
        out.put(&GGUF_MAGIC)?;
        out.put(&GGUF_VERSION.to_le_bytes())?;
        out.put(&(self.tensors.len() as u64).to_le_bytes())?;
        out.put(&(metadata.len() as u64).to_le_bytes())?;
        for (key, value) in metadata {
            out.put(&encode_string(key))?;
            out.put(&value.type_id().to_le_bytes())?;
            out.put(&encode_value(value))?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            out.put(&encode_string(&t.name))?;
            out.put(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                out.put(&d.to_le_bytes())?;
            }
            out.put(&t.ggml_type.id().to_le_bytes())?;
            out.put(&offset.to_le_bytes())?;
            offset = (offset + t.bytes.len() as u64).next_multiple_of(alignment);
        }
        out.pad_to(alignment)?;
        for t in &self.tensors {
            out.put(&t.bytes)?;
            out.pad_to(alignment)?;
        }
        Ok(())
    }
}

/// Tracks the write position so padding can be computed without seeking.
struct Counting<W> {
    inner: W,
    pos: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.pos += bytes.len() as u64;
        self.inner.write_all(bytes)
    }

    fn pad_to(&mut self, alignment: u64) -> std::io::Result<()> {
        let padding = self.pos.next_multiple_of(alignment) - self.pos;
        self.put(&vec![0u8; padding as usize])
    }
}

/// GGUF arrays carry one element type, so mixed arrays cannot be encoded.
fn check_homogeneous(key: &str, value: &Value) -> Result<(), GgufError> {
    if let Value::Array(items) = value {
        if let Some(first) = items.first()
            && items.iter().any(|v| v.type_id() != first.type_id())
        {
            return Err(GgufError::Invalid(format!(
                "metadata '{key}' mixes value types in one array"
            )));
        }
        for item in items {
            check_homogeneous(key, item)?;
        }
    }
    Ok(())
}

fn encode_string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

fn encode_value(value: &Value) -> Vec<u8> {
    match value {
        Value::U8(v) => vec![*v],
        Value::I8(v) => v.to_le_bytes().to_vec(),
        Value::U16(v) => v.to_le_bytes().to_vec(),
        Value::I16(v) => v.to_le_bytes().to_vec(),
        Value::U32(v) => v.to_le_bytes().to_vec(),
        Value::I32(v) => v.to_le_bytes().to_vec(),
        Value::U64(v) => v.to_le_bytes().to_vec(),
        Value::I64(v) => v.to_le_bytes().to_vec(),
        Value::F32(v) => v.to_le_bytes().to_vec(),
        Value::F64(v) => v.to_le_bytes().to_vec(),
        Value::Bool(v) => vec![u8::from(*v)],
        Value::String(s) => encode_string(s),
        Value::Array(items) => {
            // An empty array has no element to take the type from; u8 is as good as any.
            let elem_type = items
                .first()
                .map_or(crate::value::type_id::U8, Value::type_id);
            let mut out = elem_type.to_le_bytes().to_vec();
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                out.extend(encode_value(item));
            }
            out
        }
    }
}
