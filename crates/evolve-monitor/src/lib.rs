//! EVOLVE Studio training monitor: a native window that follows a run stored in SQLite.
//!
//! It opens the database read-only and polls it, so it can watch a run while another process
//! trains, or look back at a finished one. [`data`] turns rows into plot series (pure, tested
//! without a window); the `app` and `plots` modules draw them with egui_plot.

mod app;
pub mod data;
#[doc(hidden)]
pub mod plots;

use anyhow::{Context, Result, anyhow};
use evolve_store::Store;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

pub use data::{RunPlotData, concat_rounds, ema_smooth, resolve_run};

/// Window size; also the screenshot's size.
pub const WINDOW_SIZE: [f32; 2] = [1280.0, 800.0];

/// How [`run_window`] behaves beyond showing the run.
#[derive(Debug, Clone, Default)]
pub struct MonitorOptions {
    /// Draw a few frames, save the window as PNG here, and close (tests, docs).
    pub screenshot_to: Option<PathBuf>,
}

/// Opens the monitor on `run` of the database at `db` (`None`: the newest run) and blocks until
/// the window is closed. Must be called on the main thread. Fails before opening a window if the
/// database is missing (it is never created) or has no such run.
pub fn open_window(db: &Path, run: Option<i64>) -> Result<()> {
    run_window(db, run, MonitorOptions::default())
}

/// [`open_window`] with options.
pub fn run_window(db: &Path, run: Option<i64>, options: MonitorOptions) -> Result<()> {
    let store = Store::open_readonly(db)?;
    let run = resolve_run(&store, run)?;
    let data = RunPlotData::load(&store, run)
        .with_context(|| format!("reading run {run} from {}", db.display()))?;
    let outcome: app::ScreenshotOutcome = Rc::new(RefCell::new(None));
    let screenshot = options.screenshot_to.clone().map(|path| app::Screenshot {
        path,
        outcome: outcome.clone(),
        started: Instant::now(),
        requested: false,
    });
    let title = format!("EVOLVE monitor · run {run} “{}”", data.run.name);
    let native = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title(&title)
            .with_inner_size(WINDOW_SIZE)
            .with_min_inner_size([800.0, 500.0]),
        ..Default::default()
    };
    let app = app::MonitorApp::new(store, run, data, screenshot);
    eframe::run_native(
        "evolve-monitor",
        native,
        Box::new(|cc| {
            cc.egui_ctx.set_theme(eframe::egui::Theme::Dark);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow!("monitor window failed: {e}"))?;
    if let Some(path) = &options.screenshot_to {
        match outcome.borrow_mut().take() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(anyhow!("screenshot failed: {e}")),
            None => {
                return Err(anyhow!(
                    "window closed before the screenshot {} was taken",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}
