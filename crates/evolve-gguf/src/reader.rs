//! Validating GGUF reader: header, metadata and tensor infos only.
//!
//! Every length read from the file is checked against the bytes that remain *before*
//! allocating, so a corrupt or hostile file yields a "truncated" error instead of a panic or a
//! multi-gigabyte allocation. Tensor data is never read here; we only prove it is all present.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::value::type_id;
use crate::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GgmlType, GgufError, Value};

/// Deepest array-of-array nesting accepted; bounds recursion on crafted files.
const MAX_ARRAY_DEPTH: usize = 4;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Cap on up-front `Vec` reservations from counts in the file: a lying count must not
/// allocate; an honest one just grows past this.
const MAX_PREALLOC: usize = 1 << 16;
/// Most metadata values (array elements included) a header may hold. Each decoded value takes
/// tens of bytes, so a file of byte arrays would otherwise cost ~32× its size in memory; real
/// vocabularies (tokens, scores, types, merges of a 256k vocabulary) stay near a million.
pub const MAX_METADATA_VALUES: u64 = 16 << 20;

/// A parsed, validated GGUF file (without its tensor data).
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    /// In file order; keys are unique.
    pub metadata: Vec<(String, Value)>,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where the tensor data region starts.
    pub data_offset: u64,
    pub file_size: u64,
}

/// One tensor's description from the tensor-info section.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous row length (PyTorch's last dimension).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to [`GgufFile::data_offset`].
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Bytes the tensor occupies in the data region (before alignment padding).
    pub fn n_bytes(&self) -> u64 {
        (self.n_elements() / self.ggml_type.block_size()).saturating_mul(self.ggml_type.type_size())
    }

    /// Like [`Self::n_bytes`] but `None` on overflow or a row that splits a block,
    /// which is what the reader must reject.
    fn checked_n_bytes(&self) -> Option<u64> {
        let block = self.ggml_type.block_size();
        if !self
            .dims
            .first()
            .copied()
            .unwrap_or(1)
            .is_multiple_of(block)
        {
            return None;
        }
        let elements = self
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        (elements / block).checked_mul(self.ggml_type.type_size())
    }
}

/// The texts llama.cpp takes for an end-of-turn token when a file names none, in its order.
const END_OF_TURN_NAMES: [&str; 11] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

impl GgufFile {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Any non-negative integer type, widened.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// The text of the token whose id the key `id_key` holds (`tokenizer.ggml.eos_token_id`…),
    /// looked up in `tokenizer.ggml.tokens`.
    pub fn token_text(&self, id_key: &str) -> Option<&str> {
        self.token(self.get_u64(id_key)?)
    }

    /// The text of token `id` in `tokenizer.ggml.tokens`.
    pub fn token(&self, id: u64) -> Option<&str> {
        self.get("tokenizer.ggml.tokens")?
            .as_array()?
            .get(usize::try_from(id).ok()?)?
            .as_str()
    }

    /// The token that ends an assistant turn: `tokenizer.ggml.eot_token_id`; without that key
    /// (Phi-3's and many Gemma files), the first of the end-of-turn tokens llama.cpp recognises
    /// by name that the chat template writes after a message (Phi-3: `<|end|>`, where the EOS is
    /// `<|endoftext|>`); else `tokenizer.ggml.eos_token_id`.
    pub fn end_of_turn_id(&self) -> Option<u64> {
        if let Some(id) = self.get_u64("tokenizer.ggml.eot_token_id") {
            return Some(id);
        }
        let named = self
            .get_str("tokenizer.chat_template")
            .and_then(|template| {
                let tokens = self.get("tokenizer.ggml.tokens")?.as_array()?;
                END_OF_TURN_NAMES
                    .iter()
                    .filter(|name| template.contains(*name))
                    .find_map(|name| tokens.iter().position(|t| t.as_str() == Some(name)))
            });
        named
            .map(|id| id as u64)
            .or_else(|| self.get_u64("tokenizer.ggml.eos_token_id"))
    }

    /// `general.architecture`, the prefix of all architecture-specific keys.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `{arch}.{suffix}` as an integer, e.g. `arch_u64("context_length")`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{suffix}"))
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reopen the file and read one tensor's raw bytes.
    pub fn read_tensor_bytes(&self, name: &str) -> Result<Vec<u8>, GgufError> {
        let info = self.tensor(name).ok_or_else(|| GgufError::TensorNotFound {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        let io_err = |source| GgufError::Io {
            path: self.path.clone(),
            source,
        };
        let len = usize::try_from(info.n_bytes()).map_err(|_| GgufError::Corrupt {
            path: self.path.clone(),
            detail: format!("tensor '{name}' is too large for this platform"),
        })?;
        let mut file = File::open(&self.path).map_err(io_err)?;
        file.seek(SeekFrom::Start(self.data_offset + info.offset))
            .map_err(io_err)?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                GgufError::Truncated {
                    path: self.path.clone(),
                    detail: format!(
                        "tensor '{name}' data ends early (file changed since it was read?)"
                    ),
                }
            } else {
                io_err(e)
            }
        })?;
        Ok(buf)
    }
}

/// Parse and validate the GGUF file at `path`.
pub fn read_path(path: &Path) -> Result<GgufFile, GgufError> {
    let io_err = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if let Some(kind) = evolve_core::paths::not_a_regular_file(&meta) {
        return Err(GgufError::NotAFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    let file = File::open(path).map_err(io_err)?;
    let file_size = file.metadata().map_err(io_err)?.len();
    if file_size == 0 {
        return Err(GgufError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut src = Source {
        inner: BufReader::new(file),
        pos: 0,
        file_size,
        path: path.to_path_buf(),
        context: "the header".to_string(),
        values: 0,
    };
    read_file(&mut src)
}

fn read_file<R: Read>(src: &mut Source<R>) -> Result<GgufFile, GgufError> {
    check_magic(src)?;
    let version = src.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion {
            path: src.path.clone(),
            version,
        });
    }
    let tensor_count = src.u64()?;
    let kv_count = src.u64()?;

    let mut metadata: Vec<(String, Value)> =
        Vec::with_capacity((kv_count as usize).min(MAX_PREALLOC));
    // Hashed: a crafted header with many keys must not make the duplicate check quadratic.
    let mut keys = std::collections::HashSet::new();
    for i in 0..kv_count {
        src.context = format!("metadata key {} of {kv_count}", i + 1);
        let key = src.string()?;
        src.context = format!("metadata key {} of {kv_count} ('{key}')", i + 1);
        let value_type = src.u32()?;
        let value = read_value(src, value_type, &key, 0)?;
        if !keys.insert(key.clone()) {
            return Err(src.corrupt(format!("duplicate metadata key '{key}'")));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(src.corrupt(format!("general.alignment {v:?} is not a power of two"))),
        },
    };

    let mut tensors: Vec<TensorInfo> =
        Vec::with_capacity((tensor_count as usize).min(MAX_PREALLOC));
    let mut names = std::collections::HashSet::new();
    for i in 0..tensor_count {
        src.context = format!("tensor info {} of {tensor_count}", i + 1);
        let info = read_tensor_info(src, alignment)?;
        if !names.insert(info.name.clone()) {
            return Err(src.corrupt(format!("duplicate tensor name '{}'", info.name)));
        }
        tensors.push(info);
    }

    let data_offset = src.pos.next_multiple_of(alignment);
    for t in &tensors {
        // A crafted offset near u64::MAX must not wrap around and look in bounds.
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.n_bytes()))
            .ok_or_else(|| src.corrupt(format!("tensor '{}' offset overflows", t.name)))?;
        if end > src.file_size {
            return Err(GgufError::Truncated {
                path: src.path.clone(),
                detail: format!(
                    "tensor '{}' needs bytes up to {end} but the file has {}",
                    t.name, src.file_size
                ),
            });
        }
    }

    Ok(GgufFile {
        path: src.path.clone(),
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        file_size: src.file_size,
    })
}

fn check_magic<R: Read>(src: &mut Source<R>) -> Result<(), GgufError> {
    let n = src.file_size.min(4) as usize;
    let head = src.bytes(n)?;
    if head == GGUF_MAGIC {
        return Ok(());
    }
    if n < 4 && GGUF_MAGIC.starts_with(&head) {
        return Err(src.truncated());
    }
    Err(GgufError::NotGguf {
        path: src.path.clone(),
        magic: head.escape_ascii().to_string(),
    })
}

fn read_tensor_info<R: Read>(src: &mut Source<R>, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name = src.string()?;
    let n_dims = src.u32()?;
    if n_dims > MAX_DIMS {
        return Err(src.corrupt(format!(
            "tensor '{name}' has {n_dims} dimensions (max {MAX_DIMS})"
        )));
    }
    let dims = (0..n_dims)
        .map(|_| src.u64())
        .collect::<Result<Vec<_>, _>>()?;
    let type_id = src.u32()?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
        path: src.path.clone(),
        id: type_id,
        tensor: name.clone(),
    })?;
    let offset = src.u64()?;
    let info = TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
    };
    if info.checked_n_bytes().is_none() {
        return Err(src.corrupt(format!(
            "tensor '{}' has invalid shape {:?} for type {} (overflow, or row length not a multiple of {})",
            info.name,
            info.dims,
            ggml_type,
            ggml_type.block_size()
        )));
    }
    if !offset.is_multiple_of(alignment) {
        return Err(src.corrupt(format!(
            "tensor '{}' data offset {offset} is not a multiple of the alignment {alignment}",
            info.name
        )));
    }
    Ok(info)
}

fn read_value<R: Read>(
    src: &mut Source<R>,
    value_type: u32,
    key: &str,
    depth: usize,
) -> Result<Value, GgufError> {
    use type_id as t;
    Ok(match value_type {
        t::U8 => Value::U8(src.array::<1>()?[0]),
        t::I8 => Value::I8(i8::from_le_bytes(src.array()?)),
        t::U16 => Value::U16(u16::from_le_bytes(src.array()?)),
        t::I16 => Value::I16(i16::from_le_bytes(src.array()?)),
        t::U32 => Value::U32(src.u32()?),
        t::I32 => Value::I32(i32::from_le_bytes(src.array()?)),
        t::U64 => Value::U64(src.u64()?),
        t::I64 => Value::I64(i64::from_le_bytes(src.array()?)),
        t::F32 => Value::F32(f32::from_le_bytes(src.array()?)),
        t::F64 => Value::F64(f64::from_le_bytes(src.array()?)),
        t::BOOL => match src.array::<1>()?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return Err(src.corrupt(format!("invalid bool byte {b} for key '{key}'"))),
        },
        t::STRING => Value::String(src.string()?),
        t::ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(src.corrupt(format!("arrays nested too deeply for key '{key}'")));
            }
            let elem_type = src.u32()?;
            let min_size =
                min_encoded_size(elem_type).ok_or_else(|| GgufError::UnknownValueType {
                    path: src.path.clone(),
                    value_type: elem_type,
                    key: key.to_string(),
                })?;
            let count = src.u64()?;
            src.check_count(count, min_size, "array elements")?;
            src.values = src.values.saturating_add(count);
            if src.values > MAX_METADATA_VALUES {
                return Err(src.corrupt(format!(
                    "the metadata holds more than {MAX_METADATA_VALUES} values (at key '{key}'): not a model header"
                )));
            }
            let mut items = Vec::with_capacity((count as usize).min(MAX_PREALLOC));
            for _ in 0..count {
                items.push(read_value(src, elem_type, key, depth + 1)?);
            }
            Value::Array(items)
        }
        other => {
            return Err(GgufError::UnknownValueType {
                path: src.path.clone(),
                value_type: other,
                key: key.to_string(),
            });
        }
    })
}

/// Fewest bytes one value of this type can occupy; `None` for unknown types.
fn min_encoded_size(value_type: u32) -> Option<u64> {
    use type_id as t;
    Some(match value_type {
        t::U8 | t::I8 | t::BOOL => 1,
        t::U16 | t::I16 => 2,
        t::U32 | t::I32 | t::F32 => 4,
        t::U64 | t::I64 | t::F64 | t::STRING => 8,
        t::ARRAY => 4 + 8,
        _ => return None,
    })
}

/// A byte source that knows its position, the file size and what it is currently reading,
/// so every short read becomes a precise "truncated" message.
struct Source<R> {
    inner: R,
    pos: u64,
    file_size: u64,
    path: PathBuf,
    context: String,
    /// Metadata values decoded so far (see [`MAX_METADATA_VALUES`]).
    values: u64,
}

impl<R: Read> Source<R> {
    fn remaining(&self) -> u64 {
        self.file_size.saturating_sub(self.pos)
    }

    fn truncated(&self) -> GgufError {
        GgufError::Truncated {
            path: self.path.clone(),
            detail: format!(
                "ends at byte {} while reading {}",
                self.file_size, self.context
            ),
        }
    }

    fn corrupt(&self, detail: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    /// Reject `count` items of at least `min_size` bytes each that cannot fit in the rest of
    /// the file, before anything is allocated for them.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<(), GgufError> {
        if count.saturating_mul(min_size) > self.remaining() {
            return Err(GgufError::Truncated {
                path: self.path.clone(),
                detail: format!(
                    "ends at byte {} while reading {} ({count} {what} declared at byte {} cannot fit)",
                    self.file_size, self.context, self.pos
                ),
            });
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), GgufError> {
        if buf.len() as u64 > self.remaining() {
            return Err(self.truncated());
        }
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            ErrorKind::UnexpectedEof => self.truncated(),
            _ => GgufError::Io {
                path: self.path.clone(),
                source: e,
            },
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn bytes(&mut self, len: usize) -> Result<Vec<u8>, GgufError> {
        if len as u64 > self.remaining() {
            return Err(self.truncated());
        }
        let mut buf = vec![0u8; len];
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(self.truncated());
        }
        let bytes = self.bytes(len as usize)?;
        // Lossy rather than fatal: llama.cpp itself does not validate UTF-8 here.
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(metadata: Vec<(&str, Value)>) -> GgufFile {
        GgufFile {
            path: PathBuf::from("t.gguf"),
            version: 3,
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            tensors: Vec::new(),
            alignment: 32,
            data_offset: 0,
            file_size: 0,
        }
    }

    #[test]
    fn the_end_of_turn_is_the_named_one_else_the_templates_else_eos() {
        let tokens = Value::Array(
            ["<s>", "<|endoftext|>", "<|end|>", "<|user|>"]
                .iter()
                .map(|t| Value::String(t.to_string()))
                .collect(),
        );
        // Phi-3: EOS is <|endoftext|>, the template closes each message with <|end|>.
        let template = "{% for m in messages %}<|user|>{{ m.content }}<|end|>{% endfor %}";
        let phi3 = |extra: Vec<(&'static str, Value)>| {
            let mut m = vec![
                ("tokenizer.ggml.tokens", tokens.clone()),
                ("tokenizer.ggml.eos_token_id", Value::U32(1)),
            ];
            m.extend(extra);
            file(m)
        };
        let with_template = ("tokenizer.chat_template", Value::String(template.into()));
        assert_eq!(phi3(vec![with_template.clone()]).end_of_turn_id(), Some(2));
        assert_eq!(phi3(vec![]).end_of_turn_id(), Some(1), "no template: EOS");
        let named = ("tokenizer.ggml.eot_token_id", Value::U32(3));
        assert_eq!(phi3(vec![with_template, named]).end_of_turn_id(), Some(3));
        let other = "{{ eos_token }}";
        let other = ("tokenizer.chat_template", Value::String(other.into()));
        assert_eq!(phi3(vec![other]).end_of_turn_id(), Some(1));
    }
}
