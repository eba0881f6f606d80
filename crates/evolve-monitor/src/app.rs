//! The eframe window: polls the read-only store and draws the series from [`crate::data`].

use crate::data::{RunPlotData, TrainingCurves};
use crate::plots;
use eframe::egui::{self, Color32, RichText};
use evolve_store::{RunId, Store};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often the store is asked whether another connection committed.
const POLL: Duration = Duration::from_secs(1);
/// Frames drawn before a screenshot, so plot bounds and fonts have settled.
const SCREENSHOT_AFTER_FRAMES: u64 = 6;
/// A screenshot that never arrives (broken GL) must not hang the caller.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a screenshot-mode window reports how saving went, read after the window closed.
pub(crate) type ScreenshotOutcome = Rc<RefCell<Option<Result<(), String>>>>;

pub(crate) struct MonitorApp {
    store: Store,
    run: RunId,
    data: RunPlotData,
    curves: TrainingCurves,
    data_version: Option<i64>,
    last_poll: Instant,
    poll_error: Option<String>,
    /// EMA weight, 0 = raw.
    smoothing: f64,
    screenshot: Option<Screenshot>,
    frames: u64,
}

pub(crate) struct Screenshot {
    pub path: PathBuf,
    pub outcome: ScreenshotOutcome,
    pub started: Instant,
    pub requested: bool,
}

impl MonitorApp {
    pub fn new(
        store: Store,
        run: RunId,
        data: RunPlotData,
        screenshot: Option<Screenshot>,
    ) -> Self {
        let data_version = data_version(&store).ok();
        Self {
            curves: data.curves(),
            store,
            run,
            data,
            data_version,
            last_poll: Instant::now(),
            poll_error: None,
            smoothing: 0.6,
            screenshot,
            frames: 0,
        }
    }

    /// Reloads when another connection has committed since the last look (`PRAGMA data_version`
    /// is per connection and cheap), keeping the old data and showing the error if a read fails.
    fn poll(&mut self) {
        if self.last_poll.elapsed() < POLL {
            return;
        }
        self.last_poll = Instant::now();
        let result = data_version(&self.store).and_then(|version| {
            if Some(version) != self.data_version {
                self.data = RunPlotData::load(&self.store, self.run)?;
                self.curves = self.data.curves();
                self.data_version = Some(version);
            }
            Ok(())
        });
        self.poll_error = result.err().map(|e| format!("{e:#}"));
    }

    fn header(&mut self, ui: &mut egui::Ui) {
        let run = &self.data.run;
        let rounds = &self.data.rounds;
        let current = rounds
            .last()
            .map(|r| format!("round {} {}", r.round.round_index, r.round.state))
            .unwrap_or_else(|| "no rounds yet".into());
        ui.horizontal(|ui| {
            ui.heading(format!("Run {} “{}”", run.id, run.name));
            ui.label(RichText::new(run.state.to_string()).strong());
            ui.label(format!(
                "· {} rounds · {current} · {} training steps",
                rounds.len(),
                self.curves.last_step
            ));
            ui.label(
                RichText::new(self.store.path().display().to_string())
                    .small()
                    .weak(),
            );
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if let Some(err) = &self.poll_error {
                    ui.colored_label(Color32::from_rgb(255, 90, 90), err);
                }
                ui.add(egui::Slider::new(&mut self.smoothing, 0.0..=0.99).fixed_decimals(2));
                ui.label("Smoothing (EMA)");
            });
        });
    }

    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let Some(shot) = &mut self.screenshot else {
            return;
        };
        ctx.request_repaint();
        let image = ctx.input(|i| {
            i.events.iter().find_map(|e| match e {
                egui::Event::Screenshot { image, .. } => Some(image.clone()),
                _ => None,
            })
        });
        let outcome = if let Some(image) = image {
            Some(save_png(&shot.path, &image))
        } else if shot.started.elapsed() > SCREENSHOT_TIMEOUT {
            Some(Err(format!(
                "no screenshot after {}s",
                SCREENSHOT_TIMEOUT.as_secs()
            )))
        } else {
            if self.frames >= SCREENSHOT_AFTER_FRAMES && !shot.requested {
                shot.requested = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(Default::default()));
            }
            None
        };
        if let Some(outcome) = outcome {
            *shot.outcome.borrow_mut() = Some(outcome);
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

impl eframe::App for MonitorApp {
    fn update(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.frames += 1;
        self.poll();
        ctx.request_repaint_after(POLL);
        egui::TopBottomPanel::top("header").show(ctx, |ui| self.header(ui));
        egui::SidePanel::right("rounds")
            .exact_width(430.0)
            .resizable(false)
            .show(ctx, |ui| {
                plots::round_panels(ui, &self.data);
            });
        egui::CentralPanel::default().show(ctx, |ui| {
            plots::training_panels(ui, &self.curves, self.smoothing);
        });
        self.screenshot_step(ctx);
    }
}

fn data_version(store: &Store) -> anyhow::Result<i64> {
    Ok(store
        .conn()
        .pragma_query_value(None, "data_version", |row| row.get(0))?)
}

fn save_png(path: &std::path::Path, image: &egui::ColorImage) -> Result<(), String> {
    let [w, h] = image.size;
    // Opaque: the window has no transparency, whatever alpha the framebuffer read back.
    let bytes: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|c| [c.r(), c.g(), c.b(), 255])
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    image::save_buffer(
        path,
        &bytes,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgba8,
    )
    .map_err(|e| format!("writing {}: {e}", path.display()))
}
