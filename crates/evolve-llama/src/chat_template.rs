//! A model's own chat template (`tokenizer.chat_template`, Jinja) rendered as transformers
//! renders it — the prompt LM Studio, Ollama and transformers users see — rather than by
//! llama.cpp's built-in matcher, which recognises a template's family and prints its own
//! approximation (dropping, for instance, Llama 3.1's system header and Qwen2.5's default
//! system prompt).
//!
//! transformers' settings: `trim_blocks` and `lstrip_blocks`, `raise_exception()`, Python string
//! methods, `tojson`, and the variables `messages`, `bos_token`, `eos_token`,
//! `add_generation_prompt`, plus `enable_thinking` (Qwen3). `strftime_now` is left undefined on
//! purpose: templates then use their fixed default date, so a prompt never depends on the day
//! it was rendered (training data must be reproducible).

use evolve_core::ChatMessage;
use minijinja::{Environment, Error, ErrorKind, Value, context};

/// How a conversation is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// End with the assistant's header, ready for the answer.
    pub add_generation_prompt: bool,
    /// Qwen3's switch; templates without it ignore it. Off by default in EVOLVE: answers are
    /// scored and trained directly, and a thinking block would dominate every sample.
    pub enable_thinking: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            add_generation_prompt: true,
            enable_thinking: false,
        }
    }
}

/// A compiled chat template with the special-token texts it may print.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is returned with its line.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("the chat template does not compile: {e}"))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn render(
        &self,
        messages: &[ChatMessage],
        options: RenderOptions,
    ) -> Result<String, String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let template = self.env.get_template("chat").map_err(|e| e.to_string())?;
        template
            .render(context! {
                messages => messages,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
                add_generation_prompt => options.add_generation_prompt,
                enable_thinking => options.enable_thinking,
            })
            .map_err(|e| {
                // minijinja puts the template's own message (raise_exception) in the detail.
                let detail = e
                    .detail()
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string());
                format!("the chat template failed: {detail}")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_renders_with_a_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        let out = t
            .render(
                &[ChatMessage::system("Be brief."), ChatMessage::user("2+2?")],
                RenderOptions::default(),
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_blocks_and_raise_exception_behave_as_in_transformers() {
        let src = "{%- if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}\n{% for m in messages %}\n  [{{ m.content.strip() | upper }}]{{ eos_token if m.content.strip().startswith('a') }}\n{% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        let out = t
            .render(
                &[ChatMessage::user("  ab  "), ChatMessage::user("b")],
                RenderOptions::default(),
            )
            .unwrap();
        // trim_blocks eats the newline after a block tag; lstrip_blocks only whitespace before one.
        assert_eq!(out, "  [AB]</s>\n  [B]\n");
        let err = t
            .render(&[ChatMessage::assistant("x")], RenderOptions::default())
            .unwrap_err();
        assert!(err.contains("first must be user"), "{err}");
        assert!(ChatTemplate::new("{% if %}", "", "").is_err());
    }
}
