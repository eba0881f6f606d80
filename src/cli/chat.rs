use anyhow::Result;
use clap::Args;
use evolve::Service;
use evolve::core::SamplerConfig;
use evolve::llama::{EngineOptions, LlamaEngine};
use std::io::{BufRead, Write};
use std::path::Path;

#[derive(Args)]
pub struct SamplingArgs {
    /// Maximum new tokens per answer
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Sampling temperature; 0 decodes greedily
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Seed; the same seed gives the same answer
    #[arg(long, default_value_t = 42)]
    seed: u32,
    /// CPU threads [default: all cores]
    #[arg(long)]
    threads: Option<i32>,
}

impl SamplingArgs {
    fn sampler(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            seed: self.seed,
            max_tokens: self.max_tokens,
            ..Default::default()
        }
    }
    fn engine_options(&self) -> EngineOptions {
        let mut o = EngineOptions::default();
        if let Some(t) = self.threads {
            o.n_threads = t;
        }
        o
    }
}

#[derive(Args)]
pub struct ChatArgs {
    /// A GGUF path or a registered model id
    #[arg(long)]
    model: String,
    /// Ask one question and exit; without it, read questions from standard input
    prompt: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

#[derive(Args)]
pub struct StartArgs {
    /// A GGUF path or registered model id [default: the built-in tiny model]
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn start(args: StartArgs, service: &Service) -> Result<()> {
    let path = match &args.model {
        Some(spec) => service.resolve_model(spec)?,
        None => service.default_model()?,
    };
    println!(
        "EVOLVE Studio — data directory {}",
        service.data_dir().root().display()
    );
    print!("{}", evolve::models::inspect(&path)?.summary().to_text());
    if args.model.is_none() {
        println!(
            "(the built-in model has random weights: it proves the pipeline, its answers are gibberish)"
        );
    }
    converse(&path, None, &args.sampling)
}

pub fn chat(args: ChatArgs, service: &Service) -> Result<()> {
    let path = service.resolve_model(&args.model)?;
    converse(&path, args.prompt.as_deref(), &args.sampling)
}

fn converse(path: &Path, prompt: Option<&str>, sampling: &SamplingArgs) -> Result<()> {
    let engine = LlamaEngine::load(path, sampling.engine_options())?;
    let sampler = sampling.sampler();
    let answer = |question: &str| -> Result<()> {
        let formatted = engine.format_user_prompt(question)?;
        let mut out = std::io::stdout().lock();
        let result = engine.generate(&formatted, &sampler, |piece| {
            let _ = out.write_all(piece.as_bytes());
            out.flush().is_ok()
        })?;
        let secs = (result.duration_ms as f64 / 1000.0).max(1e-3);
        writeln!(out)?;
        eprintln!(
            "[{} tokens, {:.1} tokens/s]",
            result.tokens.len(),
            result.tokens.len() as f64 / secs
        );
        Ok(())
    };
    if let Some(q) = prompt {
        return answer(q);
    }
    eprintln!("type a question and press Enter; Ctrl-D quits");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if !line.trim().is_empty() {
            answer(line.trim())?;
        }
    }
    Ok(())
}
