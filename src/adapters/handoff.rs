//! Handing a trained adapter back to the tools people chat in: Ollama (a Modelfile, and `ollama
//! create` when Ollama is installed) and LM Studio (a merged GGUF in its models folder, where
//! discovery and LM Studio both find it).

use crate::models::discover::OllamaModel;
use anyhow::{Result, bail};
use evolve_core::PromptFormat;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A value as Ollama's Modelfile parser reads it back: bare when it is one plain line, in `"…"`
/// when it spans lines or has edge spaces, in `"""…"""` when it also holds a quote. A value
/// that no quoting can carry is refused rather than written wrong.
pub fn quote(s: &str) -> Result<String> {
    let multi = s.contains(['\n', '\r']);
    let edges = s.starts_with([' ', '\t']) || s.ends_with([' ', '\t']);
    if !multi && !edges && !s.starts_with('"') && !s.is_empty() {
        return Ok(s.to_string());
    }
    if !s.contains('"') {
        return Ok(format!("\"{s}\""));
    }
    if s.contains("\"\"\"") || s.ends_with('"') {
        bail!("cannot write {s:?} into a Modelfile: it contains \"\"\" or ends with a quote");
    }
    Ok(format!("\"\"\"{s}\"\"\""))
}

/// What a Modelfile for an adapter says.
pub struct ModelfileSpec<'a> {
    /// The first comment line: what the adapter is.
    pub title: String,
    /// `FROM`: an Ollama model name, or the base GGUF's absolute path.
    pub from: String,
    /// `ADAPTER`: the GGUF LoRA's absolute path.
    pub adapter: &'a Path,
    /// The base as Ollama knows it: its template, system prompt and parameters are repeated.
    pub ollama_base: Option<&'a OllamaModel>,
    /// The base's prompt format: for a base Ollama does not know, the plain format is written
    /// as the template (Ollama reads any other from the GGUF).
    pub prompt_format: &'a PromptFormat,
    /// Stop strings (the base's end-of-turn tokens) for a base Ollama does not know.
    pub stops: Vec<String>,
    /// The name `ollama create` gives it.
    pub name: &'a str,
}

/// The Modelfile text (Ollama's documented format: `# comment`, `INSTRUCTION arguments`).
pub fn modelfile(spec: &ModelfileSpec) -> Result<String> {
    let mut out = String::new();
    let title = spec.title.replace(['\n', '\r'], " ");
    let _ = writeln!(out, "# {title}");
    let _ = writeln!(out, "# Made by EVOLVE Studio. Create the model with:");
    let _ = writeln!(out, "#   ollama create {} -f Modelfile", spec.name);
    let _ = writeln!(out, "FROM {}", quote(&spec.from)?);
    let _ = writeln!(
        out,
        "ADAPTER {}",
        quote(&spec.adapter.display().to_string())?
    );
    let mut parameters: Vec<(String, String)> = Vec::new();
    if let Some(base) = spec.ollama_base {
        if let Some(t) = &base.template {
            let _ = writeln!(out, "TEMPLATE {}", quote(t)?);
        }
        if let Some(s) = &base.system {
            let _ = writeln!(out, "SYSTEM {}", quote(s)?);
        }
        for (key, value) in &base.parameters {
            let values = match value {
                serde_json::Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            for v in values {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                parameters.push((key.clone(), text));
            }
        }
    } else {
        if *spec.prompt_format == PromptFormat::Plain {
            let _ = writeln!(out, "TEMPLATE {}", quote(PLAIN_OLLAMA_TEMPLATE)?);
        }
        let stops = spec.stops.iter().map(|s| s.as_str());
        let stops = stops.chain(spec.prompt_format.stops().iter().copied());
        parameters.extend(stops.map(|s| ("stop".to_string(), s.to_string())));
    }
    for (key, value) in parameters {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("cannot write the parameter {key:?} into a Modelfile");
        }
        // A stop string is matched literally: always quoted, as Ollama's own Modelfiles do.
        let value = if key == "stop" && !value.contains('"') {
            format!("\"{value}\"")
        } else {
            quote(&value)?
        };
        let _ = writeln!(out, "PARAMETER {key} {value}");
    }
    Ok(out)
}

/// [`evolve_core::prompt_format::render_plain`] in Ollama's template language (Go's
/// text/template over `.Messages`): the first question as `Question: …`, answers as `Answer: …`
/// (later ones `A better answer: …`), what follows an answer as written.
pub const PLAIN_OLLAMA_TEMPLATE: &str = r#"{{- $answered := false }}
{{- range .Messages }}
{{- if eq .Role "system" }}{{ .Content }}

{{ else if eq .Role "user" }}{{ if $answered }}{{ .Content }}{{ else }}Question: {{ .Content }}{{ end }}
{{ else if eq .Role "assistant" }}{{ if $answered }}A better answer{{ else }}Answer{{ end }}: {{ .Content }}
{{ $answered = true }}{{ end }}
{{- end }}{{ if $answered }}A better answer{{ else }}Answer{{ end }}:"#;

/// `base` as lower-case letters, digits, dots and dashes (at most 40), for file and model names.
pub fn slug(base: &str) -> String {
    let mut slug = String::new();
    for c in base.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches(['-', '.']).chars().take(40).collect();
    slug.trim_end_matches(['-', '.']).to_string()
}

/// A name Ollama accepts for the exported model: `evolve-<base>:adapter-<id>`.
pub fn ollama_name(base: &str, adapter_id: i64) -> String {
    match slug(base) {
        s if s.is_empty() => format!("evolve:adapter-{adapter_id}"),
        s => format!("evolve-{s}:adapter-{adapter_id}"),
    }
}

/// The folder below LM Studio's models folder that an export goes into (LM Studio lists
/// `<publisher>/<model>/<file>.gguf`), and the file's name.
pub fn lm_studio_names(base: &str, adapter_id: i64) -> (String, String) {
    let model = match slug(base) {
        s if s.is_empty() => format!("evolve-adapter-{adapter_id}"),
        s => format!("{s}-evolve-adapter-{adapter_id}"),
    };
    (
        format!("evolve-studio/{model}"),
        format!("{model}-Q8_0.gguf"),
    )
}

/// The end-of-turn tokens of a GGUF (end of turn, `eos`) as text, for Modelfile stop parameters.
pub fn stop_tokens(file: &evolve_gguf::GgufFile) -> Vec<String> {
    let mut stops: Vec<String> = Vec::new();
    for t in [
        file.end_of_turn_id().and_then(|id| file.token(id)),
        file.token_text("tokenizer.ggml.eos_token_id"),
    ] {
        if let Some(t) = t.filter(|t| !t.trim().is_empty())
            && !stops.iter().any(|s| s == t)
        {
            stops.push(t.to_string());
        }
    }
    stops
}

/// `ollama` on the `PATH`, if installed.
pub fn find_ollama() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("ollama"))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `ollama create name -f modelfile` when Ollama is installed; says what happened, or
/// what to run, in one line. A failure here is not an export failure: the files are written.
pub fn ollama_create(name: &str, modelfile: &Path) -> String {
    let command = format!("ollama create {name} -f {}", modelfile.display());
    let Some(ollama) = find_ollama() else {
        return format!("Ollama is not installed here; to use it in Ollama run: {command}");
    };
    match Command::new(&ollama)
        .args(["create", name, "-f"])
        .arg(modelfile)
        .output()
    {
        Ok(out) if out.status.success() => {
            format!("created the Ollama model {name}: ollama run {name}")
        }
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            format!("`{command}` failed ({}): {last}", out.status)
        }
        Err(e) => format!("cannot run {}: {e}; run: {command}", ollama.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Ollama's Modelfile parser, ported rune for rune (its states: nil, name, value,
    /// parameter, message, comment), to read back what `modelfile` writes.
    fn parse(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
        #[derive(PartialEq, Clone, Copy)]
        enum S {
            Nil,
            Name,
            Value,
            Parameter,
            Comment,
        }
        fn unquote(s: &str) -> Option<String> {
            if let Some(r) = s.strip_prefix("\"\"\"") {
                return (s.len() >= 6)
                    .then(|| r.strip_suffix("\"\"\""))
                    .flatten()
                    .map(String::from);
            }
            if let Some(r) = s.strip_prefix('"') {
                return (s.len() >= 2)
                    .then(|| r.strip_suffix('"'))
                    .flatten()
                    .map(String::from);
            }
            Some(s.to_string())
        }
        let space = |c: char| c == ' ' || c == '\t';
        let newline = |c: char| c == '\r' || c == '\n';
        let valid = [
            "from",
            "license",
            "template",
            "system",
            "adapter",
            "parameter",
            "message",
        ];
        let (mut cur, mut buf, mut name) = (S::Nil, String::new(), String::new());
        let mut out = Vec::new();
        for c in text.chars() {
            let (next, keep) = match cur {
                S::Nil if c == '#' => (S::Comment, None),
                S::Nil if space(c) || newline(c) => (S::Nil, None),
                S::Nil => (S::Name, Some(c)),
                S::Name if c.is_ascii_alphabetic() => (S::Name, Some(c)),
                S::Name if space(c) => (S::Value, None),
                S::Name => return Err(format!("invalid command near {buf:?}")),
                S::Value if newline(c) || space(c) => (S::Nil, Some(c)),
                S::Value => (S::Value, Some(c)),
                S::Parameter if c.is_ascii_alphanumeric() || c == '_' => (S::Parameter, Some(c)),
                S::Parameter if space(c) => (S::Value, None),
                S::Parameter => return Err("bad parameter name".into()),
                S::Comment if newline(c) => (S::Nil, None),
                S::Comment => (S::Comment, None),
            };
            let mut next = next;
            if next != cur {
                match cur {
                    S::Name => {
                        let cmd = buf.to_lowercase();
                        if !valid.contains(&cmd.as_str()) {
                            return Err(format!("invalid command {buf:?}"));
                        }
                        if cmd == "parameter" {
                            next = S::Parameter;
                        } else {
                            name = if cmd == "from" { "model".into() } else { cmd };
                        }
                    }
                    S::Parameter => name = buf.clone(),
                    S::Value => match unquote(buf.trim()) {
                        Some(v) if !space(c) => out.push((name.clone(), v)),
                        _ => {
                            buf.push(c);
                            continue;
                        }
                    },
                    _ => {}
                }
                buf.clear();
                cur = next;
            }
            if let Some(k) = keep
                && !k.is_control()
            {
                buf.push(k);
            }
        }
        match cur {
            S::Value => out.push((name, unquote(buf.trim()).ok_or("unexpected end")?)),
            S::Nil | S::Comment => {}
            _ => return Err("unexpected end".into()),
        }
        if !out.iter().any(|(n, _)| n == "model") {
            return Err("no FROM line".into());
        }
        Ok(out)
    }

    fn get<'a>(cmds: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        cmds.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Phi-3's files name no end-of-turn token and end with `<|endoftext|>`; the template's
    /// `<|end|>` must stop Ollama too.
    #[test]
    fn stop_words_are_the_templates_end_of_turn_and_the_eos() {
        use evolve_gguf::Value;
        let tokens = ["<s>", "<|endoftext|>", "<|end|>"]
            .iter()
            .map(|t| Value::String(t.to_string()))
            .collect();
        let file = evolve_gguf::GgufFile {
            path: "phi3.gguf".into(),
            version: 3,
            metadata: vec![
                ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
                ("tokenizer.ggml.eos_token_id".into(), Value::U32(1)),
                (
                    "tokenizer.chat_template".into(),
                    Value::String("<|user|>{{ m }}<|end|>".into()),
                ),
            ],
            tensors: Vec::new(),
            alignment: 32,
            data_offset: 0,
            file_size: 0,
        };
        assert_eq!(stop_tokens(&file), ["<|end|>", "<|endoftext|>"]);
    }

    #[test]
    fn a_modelfile_on_a_gguf_base_reads_back_in_ollamas_parser() {
        let spec = ModelfileSpec {
            title: "adapter 3 (run 1, round 2) on SmolLM2 135M".into(),
            from: "/models/My Models/smollm2.gguf".into(),
            adapter: Path::new("/exports/adapter-3-ollama/adapter.gguf"),
            ollama_base: None,
            prompt_format: &PromptFormat::Template,
            stops: vec!["<|im_end|>".into(), "</s>".into()],
            name: "evolve-smollm2:adapter-3",
        };
        let text = modelfile(&spec).unwrap();
        let cmds = parse(&text).unwrap();
        assert_eq!(get(&cmds, "model"), ["/models/My Models/smollm2.gguf"]);
        assert_eq!(
            get(&cmds, "adapter"),
            ["/exports/adapter-3-ollama/adapter.gguf"]
        );
        assert_eq!(get(&cmds, "stop"), ["<|im_end|>", "</s>"]);
        assert!(get(&cmds, "template").is_empty());
        assert!(text.starts_with("# adapter 3 (run 1, round 2)"), "{text}");
    }

    #[test]
    fn a_plain_format_base_gets_the_plain_template_and_its_stop() {
        let spec = ModelfileSpec {
            title: "adapter 4 on Gemma 3 270M".into(),
            from: "/models/gemma-3-270m.gguf".into(),
            adapter: Path::new("/exports/adapter-4-ollama/adapter.gguf"),
            ollama_base: None,
            prompt_format: &PromptFormat::Plain,
            stops: vec!["<eos>".into()],
            name: "evolve-gemma:adapter-4",
        };
        let cmds = parse(&modelfile(&spec).unwrap()).unwrap();
        assert_eq!(get(&cmds, "template"), [PLAIN_OLLAMA_TEMPLATE]);
        assert_eq!(get(&cmds, "stop"), ["<eos>", "\nQuestion:"]);
    }

    #[test]
    fn an_ollama_base_passes_on_its_template_system_prompt_and_parameters() {
        let template = "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n";
        let base = OllamaModel {
            found: crate::models::discover::FoundModel {
                source: crate::models::discover::ModelSource::Ollama,
                name: "smollm2:135m".into(),
                path: "/blobs/sha256-0".into(),
                size: Some(1),
                architecture: Some("llama".into()),
                parameter_count: Some(1),
                quantization: Some("Q8_0".into()),
                trainable: true,
                problem: None,
                registered_id: None,
            },
            template: Some(template.into()),
            system: Some("You are \"Smol\", a helpful assistant.".into()),
            parameters: BTreeMap::from([
                (
                    "stop".into(),
                    serde_json::json!(["<|im_start|>", "<|im_end|>"]),
                ),
                ("temperature".into(), serde_json::json!(0.2)),
                ("num_ctx".into(), serde_json::json!(8192)),
            ]),
        };
        let spec = ModelfileSpec {
            title: "adapter 9".into(),
            from: "smollm2:135m".into(),
            adapter: Path::new("/e/adapter.gguf"),
            ollama_base: Some(&base),
            prompt_format: &PromptFormat::Plain,
            stops: vec!["ignored".into()],
            name: "evolve-smollm2-135m:adapter-9",
        };
        let cmds = parse(&modelfile(&spec).unwrap()).unwrap();
        assert_eq!(get(&cmds, "model"), ["smollm2:135m"]);
        assert_eq!(get(&cmds, "template"), [template]);
        assert_eq!(
            get(&cmds, "system"),
            ["You are \"Smol\", a helpful assistant."]
        );
        assert_eq!(get(&cmds, "stop"), ["<|im_start|>", "<|im_end|>"]);
        assert_eq!(get(&cmds, "temperature"), ["0.2"]);
        assert_eq!(get(&cmds, "num_ctx"), ["8192"]);
    }

    #[test]
    fn values_no_quoting_can_carry_are_refused() {
        assert_eq!(quote("plain value").unwrap(), "plain value");
        assert_eq!(quote(" edge").unwrap(), "\" edge\"");
        assert_eq!(
            quote("\"starts\" quoted").unwrap(),
            "\"\"\"\"starts\" quoted\"\"\""
        );
        assert!(quote("a \"\"\" b\nc").is_err());
        assert!(
            parse("FROM x\nBOGUS y\n").is_err(),
            "the ported parser rejects what Ollama's does"
        );
        assert!(parse("PARAMETER stop x\n").is_err(), "FROM is required");
    }

    #[test]
    fn ollama_names_are_slugs_of_the_base() {
        assert_eq!(
            ollama_name("SmolLM2 135M Instruct", 7),
            "evolve-smollm2-135m-instruct:adapter-7"
        );
        assert_eq!(
            ollama_name("Qwen2.5-0.5B/instruct", 2),
            "evolve-qwen2.5-0.5b-instruct:adapter-2"
        );
        assert_eq!(ollama_name("???", 1), "evolve:adapter-1");
    }
}
