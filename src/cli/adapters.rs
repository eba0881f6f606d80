//! `evolve adapters`: list trained adapters, export them, check that one is really applied.

use super::run::EngineArgs;
use anyhow::{Result, bail};
use clap::Subcommand;
use evolve::Service;
use evolve::adapters::ExportRequest;
use evolve::core::ExportFormat;
use evolve::engines::EngineCache;
use evolve::store::AdapterId;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AdaptersCommand {
    /// Every trained adapter with its run, round, rank and file
    List {
        /// Print JSON (the app's `adapters_list`) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Export an adapter: gguf_lora (llama.cpp), peft (transformers), merged_gguf (the base
    /// with the adapter merged in), trl_pairs (its run's pairs), ollama (the GGUF LoRA with a
    /// Modelfile; `ollama create` runs when Ollama is installed) or lm_studio (merged, into
    /// LM Studio's models folder)
    Export {
        adapter: i64,
        #[arg(long, default_value = "gguf_lora")]
        format: ExportFormat,
        /// The folder to write into (created if missing) [lm_studio: LM Studio's models folder]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an export of the same name already in that folder
        #[arg(long)]
        force: bool,
        /// PEFT's base_model_name_or_path, e.g. HuggingFaceTB/SmolLM2-135M-Instruct [default:
        /// the base GGUF's general.repo_url or general.name]
        #[arg(long)]
        base_name: Option<String>,
    },
    /// Compare the base model and the adapter on a fixed prompt: an adapter that changes no
    /// logit is not applied (a wrong base model, an empty adapter)
    Check {
        adapter: i64,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

pub fn run(cmd: AdaptersCommand, service: &Service) -> Result<()> {
    match cmd {
        AdaptersCommand::List { json } => {
            let adapters = service.list_adapters()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&adapters)?);
            } else if adapters.is_empty() {
                println!("no adapters yet: `evolve run start` trains one per round");
            }
            for a in adapters.iter().filter(|_| !json) {
                let origin = match (a.run_id, a.round) {
                    (Some(run), Some(round)) => format!("run {run} round {round}"),
                    _ => "imported".into(),
                };
                println!(
                    "{:>4}  {:<20} rank {:>3}  α {:<5} {:<10} {}",
                    a.id, origin, a.rank, a.alpha, a.format, a.path
                );
            }
        }
        AdaptersCommand::Export {
            adapter,
            format,
            out,
            force,
            base_name,
        } => {
            let out = match out {
                Some(out) => std::path::absolute(&out)?.display().to_string(),
                None if format == ExportFormat::LmStudio => String::new(),
                None => bail!("give the folder to export into: --out DIR"),
            };
            let source = service.adapter_source(AdapterId(adapter))?;
            let exported = source.export(
                service,
                &ExportRequest {
                    format,
                    dir: &out,
                    overwrite: force,
                    base_name: base_name.as_deref(),
                },
            )?;
            println!("wrote {}", exported.path);
            if let Some(note) = exported.note {
                println!("{note}");
            }
        }
        AdaptersCommand::Check { adapter, engine } => {
            let source = service.adapter_source(AdapterId(adapter))?;
            let check = source.check(&EngineCache::default(), &engine.settings())?;
            println!("largest logit change: {:.6}", check.max_logit_diff);
            println!("base:    {}", check.base_text.trim());
            println!("adapter: {}", check.adapter_text.trim());
            if !check.applied {
                bail!("adapter {adapter} changes nothing: it is not applied to this base model");
            }
            println!("adapter {adapter} is applied");
        }
    }
    Ok(())
}
