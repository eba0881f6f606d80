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
    /// llama-server's generated token ids (with `return_tokens`, in versions that stream them).
    #[serde(default)]
    pub tokens: Vec<i32>,
    /// llama-server's `logprobs.content[].id` (with `logprobs`): the token ids of this chunk.
    /// vLLM's logprobs carry no ids, so they read as none.
    #[serde(default)]
    pub logprobs: Option<Logprobs>,
}

impl Choice {
    /// The chunk's token ids, from whichever field the server filled.
    pub fn token_ids(&self) -> Vec<i32> {
        if !self.tokens.is_empty() {
            return self.tokens.clone();
        }
        self.logprobs
            .as_ref()
            .map(|l| l.content.iter().filter_map(|t| t.id).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Logprobs {
    #[serde(default)]
    pub content: Vec<TokenLogprob>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenLogprob {
    #[serde(default)]
    pub id: Option<i32>,
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

    #[test]
    fn token_ids_come_from_tokens_or_from_llama_server_logprobs() {
        let read = |json: &str| serde_json::from_str::<Choice>(json).unwrap().token_ids();
        assert_eq!(read(r#"{"text":"ab","tokens":[5,6]}"#), [5, 6]);
        assert_eq!(
            read(r#"{"text":"2","logprobs":{"content":[{"id":278,"token":"2","logprob":-0.1}]}}"#),
            [278]
        );
        // vLLM's completion logprobs have no ids.
        assert!(
            read(r#"{"text":"2","logprobs":{"tokens":["2"],"token_logprobs":[-0.1]}}"#).is_empty()
        );
        assert!(read(r#"{"text":"2","logprobs":null}"#).is_empty());
    }
}
