//! Closed sets of states and kinds, stored in SQLite as their lowercase names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
#[error("unknown {what} '{value}' (expected one of: {expected})")]
pub struct ParseKindError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Defines a string-backed enum with `as_str`, `Display`, `FromStr` and `ALL`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = ParseKindError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseKindError {
                        what: $what,
                        value: s.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

string_enum! {
    /// A preference pair teaches the direct answer, the refinement of a weak answer, or keeping
    /// a good answer when asked to refine it.
    PairKind, "pair kind" {
        /// x → y_w ≻ y_l
        Direct => "direct",
        /// (x, y_l, refine-prompt) → y_w ≻ y_l
        Refine => "refine",
        /// (x, y_w, refine-prompt) → y_w ≻ y_l: shown its good answer, keep it.
        Keep => "keep",
    }
}

impl PairKind {
    /// Trained in the refinement turn (the prompt shows a previous answer).
    pub fn is_refinement(self) -> bool {
        matches!(self, PairKind::Refine | PairKind::Keep)
    }
}

string_enum! {
    /// What the user decided about a pair before training.
    ReviewState, "review state" {
        Pending => "pending",
        Accepted => "accepted",
        Vetoed => "vetoed",
        Edited => "edited",
    }
}

string_enum! {
    /// The persisted state machine of one round; every step is resumable.
    RoundState, "round state" {
        Pending => "pending",
        Collecting => "collecting",
        Refining => "refining",
        Scoring => "scoring",
        Pairing => "pairing",
        Reviewing => "reviewing",
        Training => "training",
        Exporting => "exporting",
        Evaluating => "evaluating",
        Done => "done",
        Failed => "failed",
    }
}

string_enum! {
    RunState, "run state" {
        Created => "created",
        Running => "running",
        Paused => "paused",
        Cancelled => "cancelled",
        Done => "done",
        Failed => "failed",
    }
}

string_enum! {
    /// How a generation came to be: sampled from the prompt, or refined from a parent generation.
    GenerationKind, "generation kind" {
        Sample => "sample",
        Refinement => "refinement",
        Chat => "chat",
        Evaluation => "evaluation",
    }
}

string_enum! {
    AdapterFormat, "adapter format" {
        /// GGUF LoRA loadable by llama.cpp / Ollama.
        GgufLora => "gguf_lora",
        /// PEFT `adapter_config.json` + `adapter_model.safetensors`.
        Peft => "peft",
        /// A full GGUF with the adapter merged in.
        MergedGguf => "merged_gguf",
        /// candle's own safetensors checkpoint (trainer state).
        Checkpoint => "checkpoint",
    }
}

string_enum! {
    /// What a trained adapter can be exported as.
    ExportFormat, "export format" {
        /// The adapter's GGUF LoRA, for llama.cpp, LM Studio and Ollama.
        GgufLora => "gguf_lora",
        /// PEFT `adapter_config.json` + `adapter_model.safetensors`, for transformers.
        Peft => "peft",
        /// A full GGUF with the adapter merged in (Q8_0).
        MergedGguf => "merged_gguf",
        /// The preference pairs of the adapter's run, as TRL JSONL.
        TrlPairs => "trl_pairs",
        /// The GGUF LoRA with a Modelfile on its base, created in Ollama when it is installed.
        Ollama => "ollama",
        /// The merged GGUF (Q8_0) in LM Studio's models folder.
        LmStudio => "lm_studio",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for k in RoundState::ALL {
            assert_eq!(k.as_str().parse::<RoundState>().unwrap(), *k);
        }
        for k in AdapterFormat::ALL {
            assert_eq!(k.to_string().parse::<AdapterFormat>().unwrap(), *k);
        }
        assert_eq!("refine".parse::<PairKind>().unwrap(), PairKind::Refine);
    }

    #[test]
    fn unknown_names_are_rejected_with_the_choices() {
        let err = "maybe".parse::<ReviewState>().unwrap_err().to_string();
        assert!(err.contains("unknown review state 'maybe'"), "{err}");
        assert!(err.contains("vetoed"), "{err}");
    }
}
