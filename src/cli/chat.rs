use anyhow::Result;
use clap::Args;
use evolve::Service;
use evolve::chat::{ChatEvent, TurnSettings};
use evolve::core::PromptFormat;
use evolve::core::SamplerConfig;
use evolve::engines::ChatEngineOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SamplingArgs {
    /// Maximum new tokens per answer
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Sampling temperature; 0 decodes greedily
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Seed; the same seed gives the same answer (refinement step k uses seed + k)
    #[arg(long, default_value_t = 42)]
    seed: u32,
    /// Self-refinement steps after the answer: the model rewrites its own answer this many times
    #[arg(long, default_value_t = 0, value_name = "K")]
    refine: usize,
    /// A LoRA adapter (GGUF, llama.cpp format) applied on top of the model
    #[arg(long, value_name = "FILE")]
    adapter: Option<PathBuf>,
    /// Strength of the adapter
    #[arg(long, default_value_t = 1.0, requires = "adapter")]
    adapter_scale: f32,
    /// How to format the conversation: plain (plain text, for base models), template (the
    /// file's own chat template) or a llama.cpp built-in template (chatml, llama3, gemma, ...)
    /// [default: the registered model's, else the file's own template, else by its name]
    #[arg(long, value_name = "FORMAT", alias = "chat-template")]
    prompt_format: Option<PromptFormat>,
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

    fn engine_options(&self) -> ChatEngineOptions {
        ChatEngineOptions {
            threads: self.threads,
            prompt_format: self.prompt_format.clone(),
            adapter: self.adapter.clone(),
            adapter_scale: self.adapter_scale,
        }
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
        None => service.task_model()?.1,
    };
    println!(
        "EVOLVE Studio — data directory {}",
        service.data_dir().root().display()
    );
    print!("{}", evolve::models::inspect(&path)?.summary().to_text());
    if args.model.is_none() {
        println!(
            "(the built-in model is a 0.9M-parameter model that only knows two-digit addition: ask it \"47+38=?\")"
        );
    }
    converse(service, &path, None, &args.sampling)
}

pub fn chat(args: ChatArgs, service: &Service) -> Result<()> {
    let path = service.resolve_model(&args.model)?;
    converse(service, &path, args.prompt.as_deref(), &args.sampling)
}

fn converse(
    service: &Service,
    model: &Path,
    prompt: Option<&str>,
    sampling: &SamplingArgs,
) -> Result<()> {
    let (mut engine, warning) = service.load_chat_engine(model, &sampling.engine_options())?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    let sampler = sampling.sampler();
    let template = service.refinement_template_for(model)?;
    let settings = TurnSettings {
        refine_steps: sampling.refine,
        template: &template,
        sampler: &sampler,
        scorer: None,
        adapter: None,
    };
    let mut chat = None;
    let mut answer = |question: &str| -> Result<()> {
        let chat_id = match chat {
            Some(id) => id,
            None => *chat.insert(service.create_chat(question, model)?),
        };
        let refining = sampling.refine > 0;
        let mut out = std::io::stdout().lock();
        service.ask(chat_id, question)?;
        let turn = service.answer_turn(
            &mut engine,
            chat_id,
            question,
            &settings,
            &mut |event| match event {
                ChatEvent::StepStarted { step } => {
                    if refining {
                        let title = if step == 0 {
                            "answer".to_string()
                        } else {
                            format!("refinement {step}")
                        };
                        let _ = writeln!(out, "{}── {title} ──", if step == 0 { "" } else { "\n" });
                    }
                    true
                }
                ChatEvent::Token { text, .. } => out
                    .write_all(text.as_bytes())
                    .and_then(|_| out.flush())
                    .is_ok(),
                ChatEvent::StepDone { .. } => true,
            },
        )?;
        writeln!(out)?;
        for step in &turn.steps {
            eprintln!(
                "[{}: {} tokens, {:.1} tokens/s]",
                if step.step_index == 0 {
                    "answer".to_string()
                } else {
                    format!("refinement {}", step.step_index)
                },
                step.token_count,
                step.tokens_per_second()
            );
        }
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
