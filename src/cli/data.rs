use anyhow::Result;
use clap::Subcommand;
use evolve::Service;
use evolve::data::ImportOptions;
use evolve::method::dataset::DatasetFormat;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Import prompts from JSONL or CSV (GSM8K, Alpaca, ShareGPT, UltraFeedback-style, plain);
    /// bad lines are reported by number and skipped, good ones kept
    Import {
        file: PathBuf,
        /// Dataset name [default: the file name without extension]
        #[arg(long)]
        name: Option<String>,
        /// Force a layout instead of detecting it: gsm8k, alpaca, sharegpt, ultrafeedback, plain
        #[arg(long, value_parser = DatasetFormat::parse)]
        format: Option<DatasetFormat>,
        /// Share of prompts held out for evaluation
        #[arg(long, default_value_t = 0.1)]
        eval_fraction: f64,
    },
    /// List datasets with their train/eval sizes
    List,
}

pub fn run(cmd: DataCommand, service: &Service) -> Result<()> {
    match cmd {
        DataCommand::Import {
            file,
            name,
            format,
            eval_fraction,
        } => {
            if !(0.0..1.0).contains(&eval_fraction) {
                anyhow::bail!("--eval-fraction must be in [0, 1), got {eval_fraction}");
            }
            let options = ImportOptions {
                name,
                format,
                eval_fraction,
                ..Default::default()
            };
            let out = service.import_dataset(&file, &options)?;
            println!(
                "dataset '{}' ({}): {}; {} new, {} held out for evaluation",
                out.name,
                out.report.format.map_or("unknown", DatasetFormat::as_str),
                out.report.summary(),
                out.added,
                out.eval_prompts
            );
        }
        DataCommand::List => {
            let sets = service.list_datasets()?;
            if sets.is_empty() {
                println!("no datasets yet: `evolve data import FILE.jsonl`");
            }
            for (d, train, eval) in sets {
                println!(
                    "{:>4}  {:<24} {:<14} train {:>6}  eval {:>5}",
                    d.id, d.name, d.format, train, eval
                );
            }
        }
    }
    Ok(())
}
