//! GGUF v3 writer.
//!
//! Tensors are encoded when added (so shape/quantisation errors surface at the call site), or,
//! for files larger than memory, produced one at a time while the file is written
//! ([`GgufWriter::add_tensor_later`]). The file is written to `<path>.tmp` then renamed, so a
//! crash never leaves a half file that a later run would mistake for a model.

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

/// Computes a tensor's contents when the file is written.
pub type TensorProducer<'a> =
    Box<dyn Fn() -> Result<TensorData, Box<dyn std::error::Error + Send + Sync>> + 'a>;

enum Contents<'a> {
    Encoded(Vec<u8>),
    Later(TensorProducer<'a>),
}

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    /// Encoded size, known before the contents exist (the header holds every offset).
    n_bytes: u64,
    contents: Contents<'a>,
}

/// Builds a GGUF file, then writes it atomically. `'a` is what deferred tensors borrow.
pub struct GgufWriter<'a> {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor<'a>>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GgufWriter<'a> {
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
        self.check_new(&name, &dims)?;
        let (ggml_type, bytes) = encode(&name, &dims, data)?;
        self.tensors.push(PendingTensor {
            name,
            dims,
            ggml_type,
            n_bytes: bytes.len() as u64,
            contents: Contents::Encoded(bytes),
        });
        Ok(())
    }

    /// Add a tensor of type `ggml_type` whose contents `produce` computes while the file is
    /// written, after the tensors before it have been written and dropped: a file larger than
    /// memory (a merged 8B model) then needs one tensor's worth. `produce` must return data of
    /// the declared type and shape, or writing fails.
    pub fn add_tensor_later(
        &mut self,
        name: impl Into<String>,
        dims: Vec<u64>,
        ggml_type: GgmlType,
        produce: TensorProducer<'a>,
    ) -> Result<(), GgufError> {
        let name = name.into();
        let n_elements = self.check_new(&name, &dims)?;
        let block = ggml_type.block_size();
        if !dims[0].is_multiple_of(block) {
            return Err(GgufError::Invalid(format!(
                "tensor '{name}': {ggml_type} needs dims[0] to be a multiple of {block}"
            )));
        }
        self.tensors.push(PendingTensor {
            name,
            dims,
            ggml_type,
            n_bytes: n_elements / block * ggml_type.type_size(),
            contents: Contents::Later(produce),
        });
        Ok(())
    }

    /// The element count of a new tensor `name` of shape `dims`, or why it cannot be added.
    fn check_new(&self, name: &str, dims: &[u64]) -> Result<u64, GgufError> {
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
        dims.iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid(format!("shape {dims:?} overflows")))
    }

    /// Write the file (via `<path>.tmp` + rename).
    pub fn write_to_path(&self, path: &Path) -> Result<(), GgufError> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let result = File::create(&tmp)
            .map_err(|source| GgufError::Write {
                path: path.to_path_buf(),
                source,
            })
            .and_then(|file| self.write_to_file(file, path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, path).map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            GgufError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Write the file into `file` (new and empty, open for writing) and sync it; `path` only
    /// names it in errors. For a caller that created the file itself and must not reopen it
    /// by name.
    pub fn write_to_file(&self, file: File, path: &Path) -> Result<(), GgufError> {
        let alignment = self.alignment()?;
        for (key, value) in &self.metadata {
            check_homogeneous(key, value)?;
        }
        let write_err = |source| GgufError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut out = BufWriter::new(file);
        self.write_contents(&mut out, alignment, &write_err)?;
        let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)
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

    fn write_contents(
        &self,
        out: impl Write,
        alignment: u64,
        write_err: &dyn Fn(std::io::Error) -> GgufError,
    ) -> Result<(), GgufError> {
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
        self.write_header(&mut out, &metadata, alignment)
            .map_err(write_err)?;
        for t in &self.tensors {
            match &t.contents {
                Contents::Encoded(bytes) => out.put(bytes).map_err(write_err)?,
                Contents::Later(produce) => {
                    let data = produce().map_err(|source| GgufError::Produce {
                        name: t.name.clone(),
                        source,
                    })?;
                    let (ggml_type, bytes) = encode(&t.name, &t.dims, data)?;
                    if ggml_type != t.ggml_type || bytes.len() as u64 != t.n_bytes {
                        return Err(GgufError::Invalid(format!(
                            "tensor '{}': declared {} ({} bytes), produced {ggml_type} ({} bytes)",
                            t.name,
                            t.ggml_type,
                            t.n_bytes,
                            bytes.len()
                        )));
                    }
                    out.put(&bytes).map_err(write_err)?;
                }
            }
            out.pad_to(alignment).map_err(write_err)?;
        }
        Ok(())
    }

    fn write_header(
        &self,
        out: &mut Counting<impl Write>,
        metadata: &[&(String, Value)],
        alignment: u64,
    ) -> std::io::Result<()> {
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
            offset = (offset + t.n_bytes).next_multiple_of(alignment);
        }
        out.pad_to(alignment)
    }
}

/// `data` as the bytes of a tensor `name` of shape `dims` (ggml order), and their type.
fn encode(name: &str, dims: &[u64], data: TensorData) -> Result<(GgmlType, Vec<u8>), GgufError> {
    let invalid = |msg: String| GgufError::Invalid(format!("tensor '{name}': {msg}"));
    let n_elements: u64 = dims.iter().product();
    let check_len = |len: usize| {
        if len as u64 == n_elements {
            Ok(())
        } else {
            Err(invalid(format!(
                "shape {dims:?} has {n_elements} elements but {len} values were given"
            )))
        }
    };
    Ok(match data {
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
    })
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
