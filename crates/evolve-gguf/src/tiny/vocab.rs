//! The tiny model's SentencePiece-style ("llama") vocabulary.
//!
//! llama.cpp's SPM tokenizer needs the 256 byte-fallback tokens `<0x00>`..`<0xFF>`: it looks up
//! `<0x0A>` for the newline token, and falls back to bytes for every character not in the
//! vocabulary. With those plus one token per printable ASCII character and `▁` (SentencePiece's
//! space), any UTF-8 text tokenises, and detokenisation round-trips.

/// llama.cpp `llama_token_type` values.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const BYTE: i32 = 6;
}

pub const UNK_ID: u32 = 0;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;
pub const IM_START_ID: u32 = 3;
/// End of a chat turn; registered as the EOT token so generation stops after a reply.
pub const IM_END_ID: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct VocabEntry {
    pub text: String,
    pub score: f32,
    pub token_type: i32,
}

/// Specials, then the 256 byte tokens, then printable ASCII and `▁`. Ids are stable.
pub fn tiny_vocab() -> Vec<VocabEntry> {
    let entry = |text: String, score: f32, token_type: i32| VocabEntry {
        text,
        score,
        token_type,
    };
    let mut vocab = vec![
        entry("<unk>".into(), 0.0, token_type::UNKNOWN),
        entry("<s>".into(), 0.0, token_type::CONTROL),
        entry("</s>".into(), 0.0, token_type::CONTROL),
        entry("<|im_start|>".into(), 0.0, token_type::CONTROL),
        entry("<|im_end|>".into(), 0.0, token_type::CONTROL),
    ];
    vocab.extend((0u8..=255).map(|b| entry(format!("<0x{b:02X}>"), 0.0, token_type::BYTE)));
    let normal_texts = (0x21u8..=0x7E)
        .map(|c| char::from(c).to_string())
        .chain(["\u{2581}".to_string()]);
    for text in normal_texts {
        // Distinct negative scores, as SentencePiece log-probs would be; merges never apply
        // here since there are no multi-character tokens.
        let score = -(vocab.len() as f32);
        vocab.push(entry(text, score, token_type::NORMAL));
    }
    vocab
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_uniqueness() {
        let vocab = tiny_vocab();
        assert_eq!(vocab.len(), 5 + 256 + 94 + 1);
        assert_eq!(vocab[IM_END_ID as usize].text, "<|im_end|>");
        assert_eq!(vocab[5 + 0x0A].text, "<0x0A>");
        assert_eq!(vocab[5 + 0x0A].token_type, token_type::BYTE);
        assert_eq!(vocab.last().unwrap().text, "\u{2581}");
        let mut texts: Vec<&str> = vocab.iter().map(|v| v.text.as_str()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), vocab.len(), "token texts must be unique");
    }
}
