//! Drawing: small multiples of the training curves, and per-round bar charts.

use crate::data::{RunPlotData, TrainingCurves, ema_smooth};
use eframe::egui::{self, Align2, Color32, Stroke};
use egui_plot::{
    AxisHints, Bar, BarChart, GridMark, Line, LineStyle, Plot, PlotPoint, PlotUi, Text, VLine,
    log_grid_spacer,
};
use evolve_loop::scoreboard::ScoreRow;

// Series colours; public so the screenshot test can look for them in the image.
pub const LOSS: Color32 = Color32::from_rgb(255, 140, 40);
pub const MARGINS: Color32 = Color32::from_rgb(80, 200, 120);
pub const ACCURACY: Color32 = Color32::from_rgb(170, 120, 255);
pub const CHOSEN: Color32 = Color32::from_rgb(90, 200, 90);
pub const REJECTED: Color32 = Color32::from_rgb(235, 80, 80);
pub const GRAD_NORM: Color32 = Color32::from_rgb(240, 200, 60);
pub const LEARNING_RATE: Color32 = Color32::from_rgb(90, 170, 255);
pub const TOKENS_PER_SECOND: Color32 = Color32::from_rgb(255, 110, 190);
pub const DIRECT: Color32 = Color32::from_rgb(90, 170, 255);
pub const REFINED: Color32 = Color32::from_rgb(255, 140, 40);
pub const WIN_RATE: Color32 = Color32::from_rgb(60, 200, 190);
pub const SAMPLED: Color32 = Color32::from_rgb(190, 150, 255);
/// Paired differences against the base, and refinements that fixed an answer.
pub const GAIN: Color32 = Color32::from_rgb(60, 190, 100);
/// Refinements that broke a right answer.
pub const LOSS_BAR: Color32 = Color32::from_rgb(230, 90, 70);
const WHISKER: Color32 = Color32::from_gray(220);
const ROUND_LINE: Color32 = Color32::from_gray(150);
const TITLE_HEIGHT: f32 = 18.0;

/// Name, colour, and `(slot, value)` bars of one series in a grouped bar chart.
type BarSeries<'a> = (&'a str, Color32, Vec<(f64, f64)>);

/// One chart of the training grid: the metrics drawn in it (its title names them in their
/// colours, which is the legend) and a note after them.
struct CurvePanel {
    note: &'static str,
    metrics: &'static [(&'static str, Color32)],
    /// Tiny values (the learning rate) read better in scientific notation.
    scientific: bool,
}

const CURVE_PANELS: &[CurvePanel] = &[
    CurvePanel {
        note: "",
        metrics: &[("loss", LOSS)],
        scientific: false,
    },
    CurvePanel {
        note: "",
        metrics: &[("rewards/margins", MARGINS)],
        scientific: false,
    },
    CurvePanel {
        note: "",
        metrics: &[("rewards/accuracies", ACCURACY)],
        scientific: false,
    },
    CurvePanel {
        note: "",
        metrics: &[("rewards/chosen", CHOSEN), ("rewards/rejected", REJECTED)],
        scientific: false,
    },
    CurvePanel {
        note: "",
        metrics: &[("grad_norm", GRAD_NORM)],
        scientific: false,
    },
    CurvePanel {
        note: "",
        metrics: &[("learning_rate", LEARNING_RATE)],
        scientific: true,
    },
    CurvePanel {
        note: " (training)",
        metrics: &[("tokens_per_second", TOKENS_PER_SECOND)],
        scientific: false,
    },
    CurvePanel {
        note: "",
        metrics: &[("logps/chosen", CHOSEN), ("logps/rejected", REJECTED)],
        scientific: false,
    },
];

/// The training curves in a 2 × 4 grid sharing one step axis (zoom and cursor are linked).
pub(crate) fn training_panels(ui: &mut egui::Ui, curves: &TrainingCurves, smoothing: f64) {
    let rows = CURVE_PANELS.len().div_ceil(2);
    let spacing = ui.spacing().item_spacing.y;
    let height = ((ui.available_height() - rows as f32 * (TITLE_HEIGHT + 2.0 * spacing))
        / rows as f32)
        .max(60.0);
    ui.columns(2, |columns| {
        for (i, column) in columns.iter_mut().enumerate() {
            for panel in CURVE_PANELS.iter().skip(i).step_by(2) {
                curve_panel(column, panel, curves, smoothing, height);
            }
        }
    });
}

fn curve_panel(
    ui: &mut egui::Ui,
    panel: &CurvePanel,
    curves: &TrainingCurves,
    smoothing: f64,
    height: f32,
) {
    let mut parts: Vec<(&str, Option<Color32>)> = Vec::new();
    for (i, (name, color)) in panel.metrics.iter().enumerate() {
        if i > 0 {
            parts.push((" · ", None));
        }
        parts.push((name, Some(*color)));
    }
    parts.push((panel.note, None));
    title(ui, &parts);
    let segments: Vec<_> = panel
        .metrics
        .iter()
        .filter_map(|(name, color)| curves.series.get(*name).map(|s| (*name, *color, s)))
        .collect();
    let top = segments
        .iter()
        .flat_map(|(_, _, s)| s.iter().flat_map(|seg| seg.points.iter().map(|p| p[1])))
        .fold(f64::NEG_INFINITY, f64::max);
    let scientific = panel.scientific;
    let mut plot = Plot::new(panel.metrics[0].0)
        .height(height)
        .custom_x_axes(vec![AxisHints::new_x().label_spacing(28.0..=45.0)])
        .link_axis("training", [true, false])
        .link_cursor("training", [true, false])
        .include_x(0.0)
        .y_axis_min_width(44.0)
        .label_formatter(move |name, p| {
            if name.is_empty() {
                String::new()
            } else {
                format!("{name}\nstep {:.0}: {}", p.x, number(p.y, scientific))
            }
        });
    if scientific {
        plot = plot.y_axis_formatter(|mark, _| format!("{:.0e}", mark.value));
    }
    plot.show(ui, |plot_ui| {
        if segments.is_empty() {
            plot_ui.text(
                Text::new("", PlotPoint::new(0.0, 0.0), "no training steps yet")
                    .anchor(Align2::LEFT_CENTER),
            );
            return;
        }
        round_lines(plot_ui, curves, top);
        for (name, color, segments) in &segments {
            for segment in segments.iter() {
                let faint = smoothing > 0.0;
                let raw = Line::new(*name, segment.points.clone()).color(if faint {
                    color.gamma_multiply(0.3)
                } else {
                    *color
                });
                plot_ui.line(raw.width(1.5));
                if faint {
                    let smoothed = ema_smooth(&segment.points, smoothing);
                    let ema = Line::new(format!("{name} (EMA)"), smoothed).color(*color);
                    plot_ui.line(ema.width(2.0));
                }
            }
        }
    });
}

/// A dashed vertical line where each round's steps begin, labelled at the top of the data.
fn round_lines(plot_ui: &mut PlotUi, curves: &TrainingCurves, top: f64) {
    for &(x, round) in &curves.round_starts {
        plot_ui.vline(
            // Unnamed: the label at the top says which round, and hovering it would be noise.
            VLine::new("", x)
                .color(ROUND_LINE)
                .style(LineStyle::dashed_loose())
                .allow_hover(false),
        );
        if top.is_finite() {
            plot_ui.text(
                Text::new("", PlotPoint::new(x, top), format!(" R{round}"))
                    .color(ROUND_LINE)
                    .anchor(Align2::LEFT_TOP),
            );
        }
    }
}

/// The right-hand column: held-out scores and their paired comparisons, refinement fixes and
/// breaks, win rate, pairs, and sampling throughput per round.
pub(crate) fn round_panels(ui: &mut egui::Ui, data: &RunPlotData) {
    let scores = &data.scoreboard;
    let spacing = ui.spacing().item_spacing.y;
    let free = ui.available_height() - 6.0 * (TITLE_HEIGHT + 2.0 * spacing);
    let score_height = (free * 0.24).max(80.0);
    let other_height = ((free - score_height) / 5.0).max(56.0);
    let labels: Vec<String> = scores.iter().map(|r| r.label.clone()).collect();

    let k = scores.iter().map(|r| r.refined.len()).max().unwrap_or(0);
    let refined = format!("refined@{k}");
    title(
        ui,
        &[
            ("held-out score: ", None),
            ("direct", Some(DIRECT)),
            (" · ", None),
            (&refined, Some(REFINED)),
            (" · ", None),
            ("sampled", Some(SAMPLED)),
        ],
    );
    scoreboard_plot(ui, scores, &refined, score_height);

    title(
        ui,
        &[
            ("direct vs base, problem by problem: ", None),
            ("Δ points", Some(GAIN)),
            (" with 95% interval", None),
        ],
    );
    let diffs: Vec<(f64, f64, f64, f64)> = scores
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let c = r.vs_base.as_ref()?;
            Some((
                i as f64,
                100.0 * c.diff,
                100.0 * c.ci_low,
                100.0 * c.ci_high,
            ))
        })
        .collect();
    interval_bars(ui, "vs base", labels.clone(), &diffs, other_height);

    title(
        ui,
        &[
            ("first refinement: ", None),
            ("wrong->right", Some(GAIN)),
            (" · ", None),
            ("right->wrong", Some(LOSS_BAR)),
        ],
    );
    let step = |f: fn(&evolve_core::PairedComparison) -> usize| -> Vec<(f64, f64)> {
        scores
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i as f64, f(r.refine_steps.first()?) as f64)))
            .collect()
    };
    let fixes = [
        ("wrong->right", GAIN, step(|c| c.wins)),
        ("right->wrong", LOSS_BAR, step(|c| c.losses)),
    ];
    show_bars(
        ui,
        category_plot("refinement", labels.clone(), other_height),
        &fixes,
        &|v| format!("{v:.0}"),
    );

    let rounds: Vec<i64> = data.rounds.iter().map(|r| r.round.round_index).collect();
    let at = |values: Vec<f64>| rounds.iter().map(|&r| r as f64).zip(values).collect();

    title(
        ui,
        &[
            ("direct ", None),
            ("win rate", Some(WIN_RATE)),
            (" vs the previous model (0.5: no change)", None),
        ],
    );
    let wins: Vec<(f64, f64)> = scores
        .iter()
        .filter_map(|r| Some((r.round? as f64, r.win_rate.as_ref()?.rate)))
        .collect();
    let round_labels = (0..rounds.len()).map(|r| format!("round {r}")).collect();
    show_bars(
        ui,
        category_plot("win rate", round_labels, other_height).include_y(1.0),
        &[("win rate", WIN_RATE, wins)],
        &|v| format!("{:.0}%", v * 100.0),
    );

    title(
        ui,
        &[
            ("preference pairs per round: ", None),
            ("direct", Some(DIRECT)),
            (" · ", None),
            ("refine (+ keep)", Some(REFINED)),
        ],
    );
    let direct = at(data.rounds.iter().map(|r| r.pairs.direct as f64).collect());
    let refine = at(data
        .rounds
        .iter()
        .map(|r| (r.pairs.refine + r.pairs.keep) as f64)
        .collect());
    let pairs = [("direct", DIRECT, direct), ("refine", REFINED, refine)];
    round_bars(ui, "pairs", &pairs, other_height, &|v| format!("{v:.0}"));

    title(ui, &[("sampling throughput (tokens/s)", None)]);
    let speed = data
        .rounds
        .iter()
        .map(|r| r.generations.tokens_per_second().unwrap_or(0.0))
        .collect();
    round_bars(
        ui,
        "tokens/s",
        &[("tokens/s", TOKENS_PER_SECOND, at(speed))],
        other_height,
        &|v| format!("{v:.1}"),
    );
}

fn scoreboard_plot(ui: &mut egui::Ui, scores: &[ScoreRow], refined_name: &str, height: f32) {
    let labels: Vec<String> = scores.iter().map(|r| r.label.clone()).collect();
    let series_of = |f: &dyn Fn(&ScoreRow) -> Option<f64>| -> Vec<(f64, f64)> {
        scores
            .iter()
            .enumerate()
            .filter_map(|(i, r)| f(r).map(|v| (i as f64, v)))
            .collect()
    };
    let series = [
        ("direct", DIRECT, series_of(&|r| Some(r.direct))),
        (
            refined_name,
            REFINED,
            series_of(&|r| r.refined.last().copied()),
        ),
        ("sampled", SAMPLED, series_of(&|r| r.sampled)),
    ];
    // Steps of 0.2 rather than egui_plot's 0.1, which is too dense to label at this height.
    let plot = category_plot("scoreboard", labels, height)
        .include_y(1.0)
        .y_grid_spacer(log_grid_spacer(5));
    show_bars(ui, plot, &series, &|v| format!("{v:.2}"));
}

/// Bars of `(slot, value, low, high)` with a whisker from low to high, labelled with the value.
fn interval_bars(
    ui: &mut egui::Ui,
    id: &str,
    labels: Vec<String>,
    values: &[(f64, f64, f64, f64)],
    height: f32,
) {
    let top = values.iter().map(|v| v.3).fold(0.0, f64::max);
    let bottom = values.iter().map(|v| v.2).fold(0.0, f64::min);
    category_plot(id, labels, height)
        .include_y(top * 1.25)
        .include_y(bottom * 1.25)
        .show(ui, |plot_ui| {
            let bars = values
                .iter()
                .map(|&(x, v, _, _)| {
                    Bar::new(x, v)
                        .width(0.4)
                        .fill(GAIN)
                        .stroke(Stroke::new(1.0, GAIN))
                })
                .collect();
            plot_ui.bar_chart(BarChart::new("Δ points", bars).color(GAIN));
            for &(x, v, lo, hi) in values {
                for points in [
                    vec![[x, lo], [x, hi]],
                    vec![[x - 0.08, lo], [x + 0.08, lo]],
                    vec![[x - 0.08, hi], [x + 0.08, hi]],
                ] {
                    plot_ui.line(Line::new("95% interval", points).color(WHISKER).width(1.5));
                }
                plot_ui.text(
                    Text::new("", PlotPoint::new(x + 0.12, hi), format!("{v:+.1}"))
                        .anchor(Align2::LEFT_BOTTOM),
                );
            }
        });
}

fn round_bars(
    ui: &mut egui::Ui,
    id: &str,
    series: &[BarSeries],
    height: f32,
    label: &dyn Fn(f64) -> String,
) {
    let n = series.iter().flat_map(|(_, _, v)| v).count() / series.len().max(1);
    let labels = (0..n).map(|r| format!("round {r}")).collect();
    show_bars(ui, category_plot(id, labels, height), series, label);
}

/// A plot whose x axis has one labelled slot per category at 0, 1, 2, …
fn category_plot(id: &str, labels: Vec<String>, height: f32) -> Plot<'static> {
    let n = labels.len();
    Plot::new(id)
        .height(height)
        .include_y(0.0)
        .include_x(-0.6)
        .include_x(n.max(1) as f64 - 0.4)
        .y_axis_min_width(44.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .x_grid_spacer(move |_| {
            (0..n)
                .map(|i| GridMark {
                    value: i as f64,
                    step_size: 1.0,
                })
                .collect()
        })
        .x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            match labels.get(i as usize) {
                Some(label) if (mark.value - i).abs() < 1e-6 && i >= 0.0 => label.clone(),
                _ => String::new(),
            }
        })
}

/// Grouped bars: series `s` of `k` sits at slot + its offset, each labelled with its value.
fn show_bars(
    ui: &mut egui::Ui,
    plot: Plot<'_>,
    series: &[BarSeries],
    label: &dyn Fn(f64) -> String,
) {
    let width = 0.8 / series.len() as f64;
    // Headroom for the value labels above the tallest bar.
    let top = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max);
    plot.include_y(top * 1.18).show(ui, |plot_ui| {
        for (s, (name, color, values)) in series.iter().enumerate() {
            let offset = (s as f64 + 0.5) * width - 0.4;
            let bars = values
                .iter()
                .map(|&(x, v)| {
                    Bar::new(x + offset, v)
                        .width(width * 0.9)
                        .fill(*color)
                        .stroke(Stroke::new(1.0, *color))
                })
                .collect();
            let name = name.to_string();
            plot_ui.bar_chart(
                BarChart::new(name.clone(), bars)
                    .color(*color)
                    .element_formatter(Box::new(move |bar, _| {
                        format!("{name}: {}", number(bar.value, false))
                    })),
            );
            for &(x, v) in values {
                plot_ui.text(
                    Text::new("", PlotPoint::new(x + offset, v), label(v))
                        .anchor(Align2::CENTER_BOTTOM),
                );
            }
        }
    });
}

/// A centred title; coloured parts name a series in its colour and so double as its legend.
fn title(ui: &mut egui::Ui, parts: &[(&str, Option<Color32>)]) {
    let font_id = egui::TextStyle::Body.resolve(ui.style());
    let plain = ui.visuals().strong_text_color();
    let mut job = egui::text::LayoutJob::default();
    for (text, color) in parts {
        let format = egui::TextFormat::simple(font_id.clone(), color.unwrap_or(plain));
        job.append(text, 0.0, format);
    }
    ui.add_sized([ui.available_width(), TITLE_HEIGHT], egui::Label::new(job));
}

fn number(v: f64, scientific: bool) -> String {
    if scientific {
        format!("{v:.3e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}
