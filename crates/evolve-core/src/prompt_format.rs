//! How a conversation becomes the text a model continues: the model's own chat template, one of
//! llama.cpp's built-in templates, or plain text for a base model that was never taught a chat
//! format (it would otherwise print the special tokens of a format it does not know).

use crate::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A model's prompt format. Written as `template`, `plain` or a built-in template's name (the
/// CLI, the store and the API all use this spelling).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PromptFormat {
    /// The GGUF's own `tokenizer.chat_template`.
    Template,
    /// A llama.cpp built-in template, by name (one of [`BUILTIN_TEMPLATES`]).
    Builtin(String),
    /// Plain text for base models: `Question: …\nAnswer:` (see [`render_plain`]).
    Plain,
}

/// llama.cpp's built-in chat templates (`LLM_CHAT_TEMPLATES` of the llama.cpp we build; a test
/// in evolve-llama applies each one).
pub const BUILTIN_TEMPLATES: &[&str] = &[
    "chatml",
    "llama2",
    "llama2-sys",
    "llama2-sys-bos",
    "llama2-sys-strip",
    "mistral-v1",
    "mistral-v3",
    "mistral-v3-tekken",
    "mistral-v7",
    "mistral-v7-tekken",
    "phi3",
    "phi4",
    "falcon3",
    "zephyr",
    "monarch",
    "gemma",
    "orion",
    "openchat",
    "vicuna",
    "vicuna-orca",
    "deepseek",
    "deepseek2",
    "deepseek3",
    "command-r",
    "llama3",
    "chatglm3",
    "chatglm4",
    "glmedge",
    "minicpm",
    "exaone3",
    "exaone4",
    "rwkv-world",
    "granite",
    "gigachat",
    "megrez",
    "yandex",
    "bailing",
    "llama4",
    "smolvlm",
    "hunyuan-moe",
    "gpt-oss",
    "hunyuan-dense",
    "kimi-k2",
    "seed_oss",
    "grok-2",
];

/// Where a plain-format answer ends: the model running on into a next question.
pub const PLAIN_STOPS: &[&str] = &["\nQuestion:"];

impl PromptFormat {
    /// The format a model gets unless one is chosen: its own template when the file has one;
    /// else, when its names (`general.name`, the file name) say it was tuned to chat
    /// ([`looks_instruct`]), the built-in template of its family; else plain text, since a
    /// base model knows no chat format.
    pub fn default_for(has_template: bool, architecture: &str, names: &[&str]) -> PromptFormat {
        if has_template {
            PromptFormat::Template
        } else if looks_instruct(names) {
            PromptFormat::Builtin(family_template(architecture, names).to_string())
        } else {
            PromptFormat::Plain
        }
    }

    /// Stop strings the format adds to every generation.
    pub fn stops(&self) -> &'static [&'static str] {
        match self {
            PromptFormat::Plain => PLAIN_STOPS,
            _ => &[],
        }
    }
}

/// Whether a model's names mark it as tuned to follow instructions: `instruct`, `chat`, or `it`
/// as a word of its own (Gemma's `gemma-3-270m-it`).
pub fn looks_instruct(names: &[&str]) -> bool {
    names.iter().any(|name| {
        let name = name.to_lowercase();
        name.contains("instruct")
            || name.contains("chat")
            || name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == "it")
    })
}

/// llama.cpp's built-in template for a family of instruct models without a template of their own.
fn family_template(architecture: &str, names: &[&str]) -> &'static str {
    let named = |needles: &[&str]| {
        names.iter().any(|n| {
            let n = n.to_lowercase();
            needles.iter().any(|needle| n.contains(needle))
        })
    };
    match architecture {
        a if a.starts_with("gemma") => "gemma",
        "phi3" => "phi3",
        "llama" if named(&["llama-3", "llama3", "llama 3"]) => "llama3",
        "llama" if named(&["mistral"]) => "mistral-v3",
        "llama" if named(&["llama-2", "llama2", "llama 2"]) => "llama2",
        // Qwen, SmolLM and most others were tuned on ChatML.
        _ => "chatml",
    }
}

/// `messages` as plain text for a base model, ending where the answer starts: the first question
/// as `Question: …`, each answer as `Answer: …` (later ones `A better answer: …`), and what the
/// user says after an answer (a refinement instruction) as written:
///
/// ```text
/// Question: What is 2+2?
/// Answer: 5
/// Check your answer and correct it.
/// A better answer:
/// ```
pub fn render_plain(messages: &[ChatMessage]) -> String {
    let label = |answered: bool| {
        if answered {
            "A better answer"
        } else {
            "Answer"
        }
    };
    let mut out = String::new();
    let mut answered = false;
    for m in messages {
        let text = m.content.trim();
        match m.role {
            Role::System => out.push_str(&format!("{text}\n\n")),
            Role::User if !answered => out.push_str(&format!("Question: {text}\n")),
            Role::User => out.push_str(&format!("{text}\n")),
            Role::Assistant => {
                out.push_str(&format!("{}: {text}\n", label(answered)));
                answered = true;
            }
        }
    }
    out.push_str(label(answered));
    out.push(':');
    out
}

/// [`render_plain`] as a Jinja chat template (transformers' conventions), for exported files:
/// LM Studio, llama.cpp and transformers then prompt the model as EVOLVE did.
pub const PLAIN_JINJA_TEMPLATE: &str = r#"{%- set ns = namespace(answered=false) -%}{%- for m in messages -%}{%- if m.role == 'system' -%}{{ m.content | trim }}{{ '\n\n' }}{%- elif m.role == 'user' -%}{%- if not ns.answered -%}Question: {% endif -%}{{ m.content | trim }}{{ '\n' }}{%- else -%}{%- if ns.answered -%}A better answer{%- else -%}Answer{%- endif -%}: {{ m.content | trim }}{{ '\n' }}{%- set ns.answered = true -%}{%- endif -%}{%- endfor -%}{%- if add_generation_prompt -%}{%- if ns.answered -%}A better answer{%- else -%}Answer{%- endif -%}:{%- endif -%}"#;

impl fmt::Display for PromptFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromptFormat::Template => f.write_str("template"),
            PromptFormat::Plain => f.write_str("plain"),
            PromptFormat::Builtin(name) => f.write_str(name),
        }
    }
}

impl FromStr for PromptFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "template" => Ok(PromptFormat::Template),
            "plain" => Ok(PromptFormat::Plain),
            name if BUILTIN_TEMPLATES.contains(&name) => Ok(PromptFormat::Builtin(name.into())),
            other => Err(format!(
                "unknown prompt format '{other}': plain, template (the model's own) or a llama.cpp built-in template ({})",
                BUILTIN_TEMPLATES.join(", ")
            )),
        }
    }
}

impl TryFrom<String> for PromptFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<PromptFormat> for String {
    fn from(f: PromptFormat) -> String {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_follows_the_template_then_the_names() {
        let d = PromptFormat::default_for;
        assert_eq!(d(true, "gemma3", &["Gemma 3 270m"]), PromptFormat::Template);
        assert_eq!(
            d(false, "gemma3", &["Gemma 3 270m", "gemma-3-270m-Q8_0.gguf"]),
            PromptFormat::Plain
        );
        let gemma_it = PromptFormat::Builtin("gemma".into());
        assert_eq!(d(false, "gemma3", &["gemma-3-270m-it-Q8_0.gguf"]), gemma_it);
        let llama3 = PromptFormat::Builtin("llama3".into());
        assert_eq!(d(false, "llama", &["Meta Llama 3 8B Instruct"]), llama3);
        let chatml = PromptFormat::Builtin("chatml".into());
        assert_eq!(d(false, "qwen2", &["Qwen2.5 0.5B Chat"]), chatml);
        // "it" only as a word: "Summit" is no instruct model.
        assert_eq!(d(false, "llama", &["Summit 1B"]), PromptFormat::Plain);
    }

    #[test]
    fn a_question_and_a_refinement_read_as_plain_text() {
        let q = [ChatMessage::user("What is 2+2? ")];
        assert_eq!(render_plain(&q), "Question: What is 2+2?\nAnswer:");
        let refine = [
            ChatMessage::user("What is 2+2?"),
            ChatMessage::assistant(" 5"),
            ChatMessage::user("Check your answer and correct it."),
        ];
        assert_eq!(
            render_plain(&refine),
            "Question: What is 2+2?\nAnswer: 5\nCheck your answer and correct it.\nA better answer:"
        );
        assert_eq!(PromptFormat::Plain.stops(), ["\nQuestion:"]);
        assert!(PromptFormat::Template.stops().is_empty());
    }

    #[test]
    fn formats_are_written_and_read_by_name() {
        for f in [
            PromptFormat::Template,
            PromptFormat::Plain,
            PromptFormat::Builtin("llama3".into()),
        ] {
            assert_eq!(f.to_string().parse::<PromptFormat>().unwrap(), f);
            let json = serde_json::to_value(&f).unwrap();
            assert_eq!(json, serde_json::json!(f.to_string()));
            assert_eq!(serde_json::from_value::<PromptFormat>(json).unwrap(), f);
        }
        let err = "no-such".parse::<PromptFormat>().unwrap_err();
        assert!(err.contains("unknown prompt format 'no-such'"), "{err}");
        assert!(serde_json::from_value::<PromptFormat>(serde_json::json!("x")).is_err());
    }
}
