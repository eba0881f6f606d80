//! Server-sent events as OpenAI-compatible servers stream them: `data: {json}` lines separated
//! by blank lines, comment lines (`: ping`) to keep the connection alive, and `data: [DONE]`.

use serde::Deserialize;
use std::io::BufRead;

/// One streamed completion chunk (only the fields used; servers add many more).
#[derive(Debug, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Some servers report a failure mid-stream as an `error` object.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// llama-server's generated token ids (with `return_tokens`); absent elsewhere.
    #[serde(default)]
    pub tokens: Vec<i32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub prompt_tokens: usize,
}

pub(crate) enum Event {
    Data(String),
    Done,
}

/// Reads the next event, skipping comments and other fields. `Ok(None)` at end of stream.
pub(crate) fn next_event(reader: &mut impl BufRead) -> std::io::Result<Option<Event>> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let Some(data) = line.trim_end_matches(['\r', '\n']).strip_prefix("data:") else {
            continue; // blank separator, `: comment`, `event:`/`id:` fields
        };
        let data = data.trim_start();
        return Ok(Some(if data == "[DONE]" {
            Event::Done
        } else {
            Event::Data(data.to_string())
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_are_returned_and_comments_skipped() {
        let input = ": ping\n\ndata: {\"a\":1}\r\n\ndata:[DONE]\n";
        let mut r = std::io::Cursor::new(input);
        assert!(matches!(next_event(&mut r).unwrap(), Some(Event::Data(d)) if d == "{\"a\":1}"));
        assert!(matches!(next_event(&mut r).unwrap(), Some(Event::Done)));
        assert!(next_event(&mut r).unwrap().is_none());
    }
}
