//! Turning sampled token bytes into text that is safe to show as it streams.
//!
//! Tokens are bytes, not characters: byte-fallback vocabularies split one UTF-8 character
//! over several tokens, and a stop string can span tokens. The stream therefore holds back an
//! incomplete character and any tail that could still become a stop string, so that what was
//! streamed is always exactly the final answer — never a stop marker, never a broken character.

#[derive(Debug, Default)]
pub struct TextStream {
    stops: Vec<String>,
    /// Bytes that do not yet form a complete UTF-8 character.
    pending: Vec<u8>,
    /// Decoded text not yet emitted because it may be the start of a stop string.
    held: String,
    emitted: String,
}

/// What one push produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Pushed {
    pub text: String,
    pub stopped: bool,
}

impl TextStream {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Self::default()
        }
    }

    /// Adds a token's bytes; returns the text that became safe to show.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        self.pending.extend_from_slice(bytes);
        self.decode_pending(false);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            let text = std::mem::take(&mut self.held);
            self.emitted.push_str(&text);
            return Pushed {
                text,
                stopped: true,
            };
        }
        let keep_from = self.stop_prefix_start();
        let text: String = self.held.drain(..keep_from).collect();
        self.emitted.push_str(&text);
        Pushed {
            text,
            stopped: false,
        }
    }

    /// Ends the stream: flushes held text (an incomplete final character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        self.decode_pending(true);
        let text = std::mem::take(&mut self.held);
        self.emitted.push_str(&text);
        text
    }

    /// Everything emitted so far.
    pub fn text(&self) -> &str {
        &self.emitted
    }

    /// Moves complete characters from `pending` to `held`, replacing invalid bytes like
    /// `String::from_utf8_lossy` does. With `flush`, an incomplete tail is replaced too.
    fn decode_pending(&mut self, flush: bool) {
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.held.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    self.held
                        .push_str(std::str::from_utf8(valid).expect("checked prefix"));
                    match e.error_len() {
                        Some(n) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None if flush => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
    }

    /// Byte index in `held` from which the text could still grow into a stop string.
    fn stop_prefix_start(&self) -> usize {
        self.held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], chunks: &[&[u8]]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = TextStream::new(&stops);
        let mut pieces = Vec::new();
        let mut stopped = false;
        for c in chunks {
            let p = s.push(c);
            pieces.push(p.text);
            if p.stopped {
                stopped = true;
                break;
            }
        }
        if !stopped {
            pieces.push(s.finish());
        }
        (pieces, stopped, s.text().to_string())
    }

    #[test]
    fn a_character_split_over_tokens_is_emitted_whole() {
        let euro = "€".as_bytes(); // 3 bytes
        let (pieces, _, text) = run(&[], &[b"a", &euro[..1], &euro[1..2], &euro[2..], b"b"]);
        assert_eq!(pieces, ["a", "", "", "€", "b", ""]);
        assert_eq!(text, "a€b");
    }

    #[test]
    fn invalid_bytes_become_one_replacement_each_like_lossy_decoding() {
        let bytes: &[&[u8]] = &[b"x", &[0xff], &[0xe2, 0x82], b"y", &[0xe2]];
        let (_, _, text) = run(&[], bytes);
        assert_eq!(text, String::from_utf8_lossy(&bytes.concat()));
    }

    #[test]
    fn a_stop_string_across_tokens_is_never_shown() {
        let (pieces, stopped, text) = run(&["###"], &[b"answer #", b"#", b"# tail"]);
        assert!(stopped);
        assert_eq!(text, "answer ");
        assert_eq!(pieces.concat(), "answer ");
    }

    #[test]
    fn a_near_miss_is_released_once_it_cannot_be_a_stop() {
        let (pieces, stopped, text) = run(&["###"], &[b"a #", b"#b"]);
        assert!(!stopped);
        assert_eq!(pieces, ["a ", "##b", ""]);
        assert_eq!(text, "a ##b");
    }
}
