//! Text → training token ids exactly as llama.cpp will see them at inference: the prompt with
//! BOS when the model adds one, the answer ended by the token that ends a turn.

use crate::tokenizer::continuation_tokenizer;
use crate::{Result, TrainError, tokenizer_from_gguf};
use evolve_gguf::GgufFile;
use std::collections::HashSet;
use tokenizers::Tokenizer;

/// The GGUF's tokenizer plus the special tokens that frame a training sequence.
pub struct ChatEncoder {
    tokenizer: Tokenizer,
    /// A SentencePiece vocabulary's tokenizer without the `▁` prefix, for answers that
    /// continue the prompt's text (see [`Self::sampled_answer`]).
    continuation: Option<Tokenizer>,
    /// Control and user-defined tokens: text after one of them gets the `▁` prefix again.
    added: HashSet<u32>,
    /// Prepended to every prompt (llama.cpp's `add_special`), if the model adds BOS.
    pub bos: Option<u32>,
    /// Appended to every answer: generation stops on it, so the model must learn to emit it.
    pub end_of_turn: u32,
}

impl ChatEncoder {
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let tokenizer = tokenizer_from_gguf(file)?;
        let continuation = continuation_tokenizer(file)?;
        let added = tokenizer.get_added_tokens_decoder().into_keys().collect();
        let id = |key: &str| file.get_u64(key).map(|v| v as u32);
        // llama.cpp's default when the key is absent: SentencePiece vocabularies add BOS.
        let add_bos = match file.get("tokenizer.ggml.add_bos_token") {
            Some(evolve_gguf::Value::Bool(b)) => *b,
            _ => file.get_str("tokenizer.ggml.model") == Some("llama"),
        };
        let bos = if add_bos {
            Some(id("tokenizer.ggml.bos_token_id").ok_or_else(|| {
                TrainError::Metadata("tokenizer.ggml.bos_token_id (add_bos_token is set)".into())
            })?)
        } else {
            None
        };
        let end_of_turn = file.end_of_turn_id().map(|v| v as u32).ok_or_else(|| {
            TrainError::Metadata("tokenizer.ggml.eot_token_id or eos_token_id".into())
        })?;
        Ok(ChatEncoder {
            tokenizer,
            continuation,
            added,
            bos,
            end_of_turn,
        })
    }

    fn ids(&self, text: &str) -> Result<Vec<u32>> {
        encode(&self.tokenizer, text)
    }

    /// `text` tokenised as it follows `prompt` when llama.cpp tokenises the whole conversation:
    /// a SentencePiece `▁` prefix only after a special token (or at the very start), none after
    /// raw text (`assistant\n` and the like), where a prefix would be a space the model never
    /// wrote.
    fn continuation_ids(&self, prompt: &[u32], text: &str) -> Result<Vec<u32>> {
        let after_special = prompt.last().is_none_or(|id| self.added.contains(id));
        match &self.continuation {
            Some(continuation) if !after_special => encode(continuation, text),
            _ => self.ids(text),
        }
    }

    /// A chat-formatted prompt (ending with the assistant header).
    pub fn prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.ids(text)?);
        Ok(ids)
    }

    /// Whether token `id` ends a line (its text holds a newline): where a reasoning step ends.
    pub fn ends_line(&self, id: u32) -> bool {
        self.tokenizer
            .decode(&[id], false)
            .is_ok_and(|t| t.contains('\n'))
    }

    /// An assistant reply to `prompt` (its ids), closed with the end-of-turn token.
    pub fn answer(&self, prompt: &[u32], text: &str) -> Result<Vec<u32>> {
        self.answer_as(prompt, text, true)
    }

    /// An assistant reply to `prompt`, closed with the end-of-turn token only if it `finished`
    /// (an answer cut at the token limit must not teach the model to stop there).
    pub fn answer_as(&self, prompt: &[u32], text: &str, finished: bool) -> Result<Vec<u32>> {
        self.sampled_answer(prompt, text, None, finished)
    }

    /// Like [`Self::answer_as`], but on the ids the answer was `sampled` as when they spell
    /// exactly `text`: the model is trained on the tokens it produced, not on a re-tokenisation
    /// that may split the same text differently. Ids that do not spell the text (an answer cut
    /// at a stop string, an id outside the vocabulary, text that never went through the engine)
    /// fall back to tokenising the text as the continuation of `prompt`.
    pub fn sampled_answer(
        &self,
        prompt: &[u32],
        text: &str,
        sampled: Option<&[u32]>,
        finished: bool,
    ) -> Result<Vec<u32>> {
        let spells = |ids: &[u32]| {
            let vocab = self.tokenizer.get_vocab_size(true) as u32;
            ids.iter().all(|&t| t < vocab)
                && self.tokenizer.decode(ids, false).is_ok_and(|d| d == text)
        };
        let mut ids = match sampled {
            Some(ids) if spells(ids) => ids.to_vec(),
            _ => self.continuation_ids(prompt, text)?,
        };
        if finished {
            ids.push(self.end_of_turn);
        }
        Ok(ids)
    }
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = tokenizer
        .encode(text, false)
        .map_err(|e| TrainError::Data(format!("cannot tokenize: {e}")))?;
    Ok(enc.get_ids().to_vec())
}
