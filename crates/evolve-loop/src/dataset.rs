//! Prompt datasets: import with per-line validation, splits, and TRL export of pairs.
//!
//! A bad line never sinks an import: it is reported with its line number and the good lines are
//! kept, because users bring large hand-made files and one stray quote should not cost them the
//! rest.

use serde::Serialize;
use serde_json::{Map, Value, json};
use std::path::Path;

/// The layouts recognised; [`DatasetFormat::detect`] picks one from the first valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// `{"question", "answer": "... #### 42"}`: the reference is the final answer after `####`.
    Gsm8k,
    /// `{"instruction", "input"?, "output"?}`
    Alpaca,
    /// `{"conversations": [{"from": "human"|"gpt", "value"}]}` (or `messages` with role/content)
    ShareGpt,
    /// `{"prompt", "chosen"?, "rejected"?}`, chosen/rejected as text or message lists.
    UltraFeedback,
    /// `{"prompt", "reference"?}`: our own minimal layout.
    Plain,
}

impl DatasetFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm8k => "gsm8k",
            Self::Alpaca => "alpaca",
            Self::ShareGpt => "sharegpt",
            Self::UltraFeedback => "ultrafeedback",
            Self::Plain => "plain",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "gsm8k" => Self::Gsm8k,
            "alpaca" => Self::Alpaca,
            "sharegpt" => Self::ShareGpt,
            "ultrafeedback" => Self::UltraFeedback,
            "plain" => Self::Plain,
            other => {
                return Err(format!(
                    "unknown dataset format '{other}' (expected gsm8k, alpaca, sharegpt, ultrafeedback or plain)"
                ));
            }
        })
    }

    /// Guesses the format from a record's keys.
    pub fn detect(record: &Map<String, Value>) -> Option<Self> {
        let has = |k: &str| record.contains_key(k);
        if has("question") && has("answer") {
            Some(Self::Gsm8k)
        } else if has("instruction") {
            Some(Self::Alpaca)
        } else if has("conversations") || has("messages") {
            Some(Self::ShareGpt)
        } else if has("prompt") && (has("chosen") || has("rejected")) {
            Some(Self::UltraFeedback)
        } else if has("prompt") {
            Some(Self::Plain)
        } else {
            None
        }
    }
}

/// One prompt ready to store: the question and, when the dataset has one, the gold answer a
/// verifier compares against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportedPrompt {
    /// 1-based line (JSONL) or record (CSV, header excluded) number in the source file.
    pub line: usize,
    pub prompt: String,
    pub reference: Option<String>,
    /// The source record's remaining fields (e.g. the full GSM8K solution).
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    pub format: Option<DatasetFormat>,
    pub prompts: Vec<ImportedPrompt>,
    pub errors: Vec<LineError>,
}

impl ImportReport {
    /// "kept 98 prompts; skipped 2 bad lines: 7 (…), 12 (…)" — what the CLI prints.
    pub fn summary(&self) -> String {
        let mut s = format!("kept {} prompts", self.prompts.len());
        if !self.errors.is_empty() {
            let shown: Vec<String> = self
                .errors
                .iter()
                .take(10)
                .map(|e| format!("line {}: {}", e.line, e.message))
                .collect();
            s.push_str(&format!(
                "; skipped {} bad lines: {}",
                self.errors.len(),
                shown.join("; ")
            ));
            if self.errors.len() > 10 {
                s.push_str("; …");
            }
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("dataset {path} has no usable prompts ({detail})")]
    Empty { path: String, detail: String },
    #[error("dataset {path} is not a regular file ({kind}): give a .jsonl or .csv file")]
    NotAFile { path: String, kind: &'static str },
    #[error(
        "dataset {path} is {size} bytes, over the {limit}-byte limit: split it into several files"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{0}")]
    Format(String),
}

/// The largest dataset file [`import_file`] reads (1 GiB): it is read whole into memory.
pub const MAX_DATASET_BYTES: u64 = 1 << 30;

/// Imports a `.jsonl`/`.json`-lines or `.csv` file. `format` forces a layout; otherwise it is
/// detected from the first record that parses. Only regular files up to [`MAX_DATASET_BYTES`]
/// are read (a FIFO or a device would block or never end); a line that is not UTF-8 is reported
/// by number and skipped like any other bad line. Fails only when nothing usable is left.
pub fn import_file(
    path: &Path,
    format: Option<DatasetFormat>,
) -> Result<ImportReport, DatasetError> {
    import_file_capped(path, format, MAX_DATASET_BYTES)
}

/// [`import_file`] with another size limit.
pub fn import_file_capped(
    path: &Path,
    format: Option<DatasetFormat>,
    limit: u64,
) -> Result<ImportReport, DatasetError> {
    let name = || path.display().to_string();
    let io = |source| DatasetError::Io {
        path: name(),
        source,
    };
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(io)?;
    if let Some(kind) = evolve_core::paths::not_a_regular_file(&meta) {
        return Err(DatasetError::NotAFile { path: name(), kind });
    }
    if meta.len() > limit {
        return Err(DatasetError::TooLarge {
            path: name(),
            size: meta.len(),
            limit,
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let report = if is_csv {
        import_csv_bytes(&bytes, format)?
    } else {
        import_jsonl_bytes(&bytes, format)
    };
    if report.prompts.is_empty() {
        let detail = if report.errors.is_empty() {
            "the file is empty".to_string()
        } else {
            format!(
                "all {} records are bad; first: line {}: {}",
                report.errors.len(),
                report.errors[0].line,
                report.errors[0].message
            )
        };
        return Err(DatasetError::Empty {
            path: path.display().to_string(),
            detail,
        });
    }
    Ok(report)
}

/// Parses JSON Lines text (blank lines are skipped, not errors).
pub fn import_jsonl(text: &str, format: Option<DatasetFormat>) -> ImportReport {
    import_jsonl_bytes(text.as_bytes(), format)
}

/// [`import_jsonl`] on raw bytes: a line that is not UTF-8 is a bad line, the others import.
pub fn import_jsonl_bytes(bytes: &[u8], format: Option<DatasetFormat>) -> ImportReport {
    let mut report = ImportReport {
        format,
        prompts: Vec::new(),
        errors: Vec::new(),
    };
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = match std::str::from_utf8(raw) {
            Ok(line) => line,
            Err(e) => {
                report.errors.push(LineError {
                    line: line_no,
                    message: format!(
                        "not UTF-8 text (bad byte at column {})",
                        e.valid_up_to() + 1
                    ),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let record = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                report.errors.push(LineError {
                    line: line_no,
                    message: "not a JSON object".into(),
                });
                continue;
            }
            Err(e) => {
                report.errors.push(LineError {
                    line: line_no,
                    message: format!("malformed JSON ({e})"),
                });
                continue;
            }
        };
        report.push_record(line_no, record);
    }
    report
}

/// Parses CSV with a header row; columns named like the JSON keys of a format.
pub fn import_csv(text: &str, format: Option<DatasetFormat>) -> Result<ImportReport, DatasetError> {
    import_csv_bytes(text.as_bytes(), format)
}

/// [`import_csv`] on raw bytes: a record that is not UTF-8 is a bad record, the others import.
pub fn import_csv_bytes(
    bytes: &[u8],
    format: Option<DatasetFormat>,
) -> Result<ImportReport, DatasetError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| DatasetError::Format(format!("CSV header: {e}")))?
        .clone();
    let mut report = ImportReport {
        format,
        prompts: Vec::new(),
        errors: Vec::new(),
    };
    for (i, row) in reader.records().enumerate() {
        let line_no = i + 1;
        match row {
            Ok(row) => {
                let record: Map<String, Value> = headers
                    .iter()
                    .zip(row.iter())
                    .map(|(k, v)| (k.trim().to_string(), Value::String(v.to_string())))
                    .collect();
                report.push_record(line_no, record);
            }
            Err(e) => report.errors.push(LineError {
                line: line_no,
                message: format!("bad CSV record ({e})"),
            }),
        }
    }
    Ok(report)
}

impl ImportReport {
    fn push_record(&mut self, line: usize, record: Map<String, Value>) {
        let format = match self.format {
            Some(f) => f,
            None => match DatasetFormat::detect(&record) {
                Some(f) => *self.format.insert(f),
                None => {
                    let keys: Vec<&str> = record.keys().map(String::as_str).collect();
                    self.errors.push(LineError {
                        line,
                        message: format!("unrecognised record with keys [{}]", keys.join(", ")),
                    });
                    return;
                }
            },
        };
        match convert(format, record) {
            Ok((prompt, reference, metadata)) => self.prompts.push(ImportedPrompt {
                line,
                prompt,
                reference,
                metadata,
            }),
            Err(message) => self.errors.push(LineError { line, message }),
        }
    }
}

type Converted = (String, Option<String>, Value);

fn convert(format: DatasetFormat, mut r: Map<String, Value>) -> Result<Converted, String> {
    let (prompt, reference) = match format {
        DatasetFormat::Gsm8k => {
            let question = take_text(&mut r, "question")?;
            let answer = take_text(&mut r, "answer")?;
            let final_answer = evolve_core::final_answer_after_marker(&answer)
                .ok_or("answer has no '#### <final answer>' line")?;
            r.insert("solution".into(), Value::String(answer));
            (question, Some(final_answer))
        }
        DatasetFormat::Alpaca => {
            let instruction = take_text(&mut r, "instruction")?;
            let input = take_optional_text(&mut r, "input")?;
            let prompt = match input {
                Some(i) if !i.trim().is_empty() => format!("{instruction}\n\n{i}"),
                _ => instruction,
            };
            (prompt, take_optional_text(&mut r, "output")?)
        }
        DatasetFormat::ShareGpt => {
            let turns = r
                .remove("conversations")
                .or_else(|| r.remove("messages"))
                .ok_or("missing 'conversations'")?;
            let turns = turns.as_array().ok_or("'conversations' is not a list")?;
            let text_of = |role_names: &[&str]| {
                turns.iter().find_map(|t| {
                    let role = t.get("from").or_else(|| t.get("role"))?.as_str()?;
                    let text = t.get("value").or_else(|| t.get("content"))?.as_str()?;
                    role_names.contains(&role).then(|| text.to_string())
                })
            };
            let prompt = text_of(&["human", "user"]).ok_or("no human/user turn")?;
            (prompt, text_of(&["gpt", "assistant"]))
        }
        DatasetFormat::UltraFeedback => {
            let prompt = take_text(&mut r, "prompt")?;
            let reference = r.get("chosen").and_then(last_assistant_text);
            (prompt, reference)
        }
        DatasetFormat::Plain => {
            let prompt = take_text(&mut r, "prompt")?;
            (prompt, take_optional_text(&mut r, "reference")?)
        }
    };
    if prompt.trim().is_empty() {
        return Err("empty prompt".into());
    }
    Ok((prompt, reference, Value::Object(r)))
}

fn take_text(r: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match r.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("'{key}' is not text")),
        None => Err(format!("missing '{key}'")),
    }
}

fn take_optional_text(r: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match r.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => take_text(r, key).map(Some),
    }
}

/// `chosen` as plain text, or the last assistant message of a message list.
fn last_assistant_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(msgs) => msgs
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .and_then(|m| m.get("content")?.as_str().map(str::to_string)),
        _ => None,
    }
}

/// Deterministic split: each prompt goes to `eval` when its index's hash (salted by `seed`)
/// falls under `eval_fraction`, so adding lines to a dataset does not reshuffle old ones.
/// At least one prompt lands on each side when there are two or more.
pub fn split_eval(n: usize, eval_fraction: f64, seed: u64) -> Vec<bool> {
    let mut is_eval: Vec<bool> = (0..n)
        .map(|i| {
            (splitmix(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) as f64
                / u64::MAX as f64)
                < eval_fraction
        })
        .collect();
    if n >= 2 && eval_fraction > 0.0 {
        if !is_eval.contains(&true) {
            is_eval[n - 1] = true;
        }
        if !is_eval.contains(&false) {
            is_eval[0] = false;
        }
    }
    is_eval
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One pair in TRL's conversational preference format (`prompt` messages, `chosen`/`rejected`
/// assistant turns), which `DPOTrainer` reads directly. A refinement pair's prompt is the chat
/// the model refines in: question, the weak answer, the refinement instruction.
pub fn trl_pair_json(prompt_messages: &[(&str, &str)], chosen: &str, rejected: &str) -> Value {
    let prompt: Vec<Value> = prompt_messages
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    json!({
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    })
}
