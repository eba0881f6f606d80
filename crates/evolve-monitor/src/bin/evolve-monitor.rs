//! Standalone monitor: `evolve-monitor DB [RUN] [--screenshot PNG]`. The `evolve monitor`
//! subcommand is the usual way in; this binary exists so tests can run a window in its own
//! process (eframe needs the main thread). It only reads the database.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: evolve-monitor DB [RUN] [--screenshot PNG]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let mut db = None;
    let mut run = None;
    let mut options = evolve_monitor::MonitorOptions::default();
    while let Some(arg) = args.next() {
        if arg == "--screenshot" {
            let path = args.next().ok_or_else(|| anyhow::anyhow!("{USAGE}"))?;
            options.screenshot_to = Some(PathBuf::from(path));
        } else if arg == "--help" || arg == "-h" {
            println!("{USAGE}");
            return Ok(());
        } else if db.is_none() {
            db = Some(PathBuf::from(arg));
        } else if run.is_none() {
            let text = arg.to_string_lossy();
            let id = text
                .parse::<i64>()
                .map_err(|_| anyhow::anyhow!("run id must be a number, got '{text}'"))?;
            run = Some(id);
        } else {
            anyhow::bail!("{USAGE}");
        }
    }
    let db = db.ok_or_else(|| anyhow::anyhow!("{USAGE}"))?;
    evolve_monitor::run_window(&db, run, options)
}
