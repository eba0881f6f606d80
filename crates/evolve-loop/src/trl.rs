//! Preference pairs in TRL's format read back (the inverse of
//! [`crate::dataset::trl_pair_json`]), for training on pairs made elsewhere.
//!
//! Accepted as `DPOTrainer` accepts them: an explicit `prompt` (text, or a conversation) with
//! `chosen`/`rejected` (text, or assistant turns), or TRL's implicit prompt: `chosen` and
//! `rejected` conversations that share every message but their last.

use evolve_core::{ChatMessage, Role};
use serde_json::Value;

/// A pair's prompt: text used as written (TRL's standard format applies no chat template), or a
/// conversation the model's chat template renders.
#[derive(Debug, Clone, PartialEq)]
pub enum TrlPrompt {
    Text(String),
    Messages(Vec<ChatMessage>),
}

/// One line of a TRL preference file.
#[derive(Debug, Clone, PartialEq)]
pub struct TrlPair {
    pub prompt: TrlPrompt,
    pub chosen: String,
    pub rejected: String,
}

fn messages(v: &Value, field: &str) -> Result<Vec<ChatMessage>, String> {
    let Value::Array(items) = v else {
        return Err(format!("'{field}' must be text or a list of messages"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str);
            let content = m.get("content").and_then(Value::as_str);
            let (Some(role), Some(content)) = (role, content) else {
                return Err(format!(
                    "'{field}' message {} needs a text 'role' and 'content'",
                    i + 1
                ));
            };
            let role = match role {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(format!(
                        "'{field}' message {}: unknown role '{other}'",
                        i + 1
                    ));
                }
            };
            Ok(ChatMessage {
                role,
                content: content.to_string(),
            })
        })
        .collect()
}

/// An answer: text, or a conversation ending with the assistant's turn.
fn answer(v: &Value, field: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => match messages(other, field)?.pop() {
            Some(m) if m.role == Role::Assistant => Ok(m.content),
            _ => Err(format!("'{field}' must end with an assistant message")),
        },
    }
}

/// Reads one JSON line of TRL's preference format.
pub fn parse_trl_pair(v: &Value) -> Result<TrlPair, String> {
    let field = |name: &str| v.get(name).filter(|x| !x.is_null());
    let (Some(chosen), Some(rejected)) = (field("chosen"), field("rejected")) else {
        return Err("a pair needs 'chosen' and 'rejected'".into());
    };
    let prompt = match field("prompt") {
        Some(Value::String(s)) => TrlPrompt::Text(s.clone()),
        Some(p) => TrlPrompt::Messages(messages(p, "prompt")?),
        None => {
            // Implicit prompt: the messages both conversations share before their last turn.
            let (c, r) = (messages(chosen, "chosen")?, messages(rejected, "rejected")?);
            let shared = c.len().saturating_sub(1);
            if shared == 0 || r.len() != c.len() || c[..shared] != r[..shared] {
                return Err(
                    "no 'prompt': 'chosen' and 'rejected' must be conversations that differ only in their last message"
                        .into(),
                );
            }
            TrlPrompt::Messages(c[..shared].to_vec())
        }
    };
    if let TrlPrompt::Messages(m) = &prompt
        && m.last().is_none_or(|m| m.role == Role::Assistant)
    {
        return Err("the prompt conversation must end with a user or system message".into());
    }
    if let TrlPrompt::Text(t) = &prompt
        && t.trim().is_empty()
    {
        return Err("the prompt is empty".into());
    }
    Ok(TrlPair {
        prompt,
        chosen: answer(chosen, "chosen")?,
        rejected: answer(rejected, "rejected")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_form_trl_accepts_is_read() {
        let exported =
            crate::dataset::trl_pair_json(&[("system", "Be brief."), ("user", "2+2?")], "4", "5");
        let pair = parse_trl_pair(&exported).unwrap();
        assert_eq!(
            pair,
            TrlPair {
                prompt: TrlPrompt::Messages(vec![
                    ChatMessage::system("Be brief."),
                    ChatMessage::user("2+2?")
                ]),
                chosen: "4".into(),
                rejected: "5".into(),
            },
            "what `run export-pairs` writes reads back"
        );
        let text =
            parse_trl_pair(&json!({"prompt": "Q: 2+2\nA:", "chosen": " 4", "rejected": " 5"}))
                .unwrap();
        assert_eq!(text.prompt, TrlPrompt::Text("Q: 2+2\nA:".into()));
        let implicit = parse_trl_pair(&json!({
            "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
            "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
        }))
        .unwrap();
        assert_eq!(
            implicit.prompt,
            TrlPrompt::Messages(vec![ChatMessage::user("2+2?")])
        );
        assert_eq!(
            (implicit.chosen.as_str(), implicit.rejected.as_str()),
            ("4", "5")
        );
    }

    #[test]
    fn malformed_pairs_say_what_is_wrong() {
        let err = |v: Value| parse_trl_pair(&v).unwrap_err();
        assert!(err(json!({"prompt": "x", "chosen": "a"})).contains("'rejected'"));
        assert!(err(json!({"prompt": [{"role": "robot", "content": "x"}], "chosen": "a", "rejected": "b"})).contains("unknown role 'robot'"));
        assert!(err(json!({"prompt": "x", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"})).contains("end with an assistant"));
        assert!(err(json!({"chosen": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a"}],
                           "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}))
            .contains("differ only in their last"));
        assert!(
            err(json!({"prompt": 3, "chosen": "a", "rejected": "b"})).contains("text or a list")
        );
        assert!(err(json!({"prompt": "  ", "chosen": "a", "rejected": "b"})).contains("empty"));
    }
}
