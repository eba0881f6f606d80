//! What the monitor plots, read from the store and turned into series by pure functions, so
//! everything but the drawing is testable without a window.

use anyhow::{Context, Result, bail};
use evolve_loop::run::RunConfig;
use evolve_loop::scoreboard::ScoreRow;
use evolve_store::{Round, Run, RunId, Store, TrainingMetric, TrainingRun};
use std::collections::BTreeMap;

/// One round's rows: its training runs with their metrics, and aggregates of its samples and pairs.
#[derive(Debug, Clone)]
pub struct RoundRows {
    pub round: Round,
    /// In creation order; a round resumed after a pause can have several.
    pub training: Vec<(TrainingRun, Vec<TrainingMetric>)>,
    pub pairs: PairCounts,
    pub generations: GenerationStats,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairCounts {
    pub direct: i64,
    pub refine: i64,
    pub keep: i64,
}

/// Sampling throughput of a round: every generation (samples and refinements) it stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerationStats {
    pub count: i64,
    pub tokens: i64,
    pub duration_ms: i64,
}

impl GenerationStats {
    /// Generated tokens per second of generation time; `None` before any time was recorded.
    pub fn tokens_per_second(&self) -> Option<f64> {
        (self.duration_ms > 0).then(|| self.tokens as f64 / (self.duration_ms as f64 / 1000.0))
    }
}

/// Everything the window shows about one run, as read in one poll.
#[derive(Debug, Clone)]
pub struct RunPlotData {
    pub run: Run,
    /// By round index.
    pub rounds: Vec<RoundRows>,
    /// Held-out scores with their paired comparisons, base first.
    pub scoreboard: Vec<ScoreRow>,
}

impl RunPlotData {
    /// Reads a run's rows in one read transaction: one consistent snapshot even while the
    /// engine commits (WAL readers neither wait for nor block the writer).
    pub fn load(store: &Store, run: RunId) -> Result<RunPlotData> {
        // Deferred, and only ever rolled back (on drop): it takes no write lock.
        let _snapshot = store.conn().unchecked_transaction()?;
        let run = store
            .get_run(run)?
            .with_context(|| unknown_run_message(store, run))?;
        let mut rounds = Vec::new();
        for round in store.rounds_of_run(run.id)? {
            let mut training = Vec::new();
            for t in store.training_runs_of_round(round.id)? {
                let metrics = store.metrics_of(t.id)?;
                training.push((t, metrics));
            }
            rounds.push(RoundRows {
                pairs: pair_counts(store, &round)?,
                generations: generation_stats(store, &round)?,
                round,
                training,
            });
        }
        let config = RunConfig::of(&run)?;
        let scoreboard = evolve_loop::scoreboard::scoreboard(store, run.id, config.refine_steps)?;
        Ok(RunPlotData {
            run,
            rounds,
            scoreboard,
        })
    }

    pub fn curves(&self) -> TrainingCurves {
        let rounds: Vec<(i64, Vec<&[TrainingMetric]>)> = self
            .rounds
            .iter()
            .map(|r| {
                let runs = r.training.iter().map(|(_, m)| m.as_slice()).collect();
                (r.round.round_index, runs)
            })
            .collect();
        concat_rounds(&rounds)
    }
}

/// The run to show: `run` if given, else the newest. Errors name the database and the run ids it has.
pub fn resolve_run(store: &Store, run: Option<i64>) -> Result<RunId> {
    match run {
        Some(id) => {
            let id = RunId(id);
            if store.get_run(id)?.is_none() {
                bail!("{}", unknown_run_message(store, id));
            }
            Ok(id)
        }
        None => match store.list_runs()?.last() {
            Some(run) => Ok(run.id),
            None => bail!("no runs in {} yet", store.path().display()),
        },
    }
}

fn unknown_run_message(store: &Store, run: RunId) -> String {
    let ids: Vec<String> = store
        .list_runs()
        .map(|runs| runs.iter().map(|r| r.id.to_string()).collect())
        .unwrap_or_default();
    let known = if ids.is_empty() {
        "it has no runs".to_string()
    } else {
        format!("its runs are {}", ids.join(", "))
    };
    format!(
        "run {run} not found in {} ({known})",
        store.path().display()
    )
}

// Aggregates in SQL: a round can hold thousands of generations, and loading their texts on
// every poll would be wasteful.
fn pair_counts(store: &Store, round: &Round) -> Result<PairCounts> {
    let mut stmt = store
        .conn()
        .prepare_cached("SELECT kind, count(*) FROM pairs WHERE round_id = ?1 GROUP BY kind")?;
    let mut counts = PairCounts::default();
    let rows = stmt.query_map([round.id], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    for row in rows {
        match row? {
            (kind, n) if kind == evolve_core::PairKind::Direct.as_str() => counts.direct = n,
            (kind, n) if kind == evolve_core::PairKind::Refine.as_str() => counts.refine = n,
            (kind, n) if kind == evolve_core::PairKind::Keep.as_str() => counts.keep = n,
            _ => {}
        }
    }
    Ok(counts)
}

fn generation_stats(store: &Store, round: &Round) -> Result<GenerationStats> {
    let mut stmt = store.conn().prepare_cached(
        "SELECT count(*), coalesce(sum(token_count), 0), coalesce(sum(duration_ms), 0)
         FROM generations WHERE round_id = ?1",
    )?;
    Ok(stmt.query_row([round.id], |row| {
        Ok(GenerationStats {
            count: row.get(0)?,
            tokens: row.get(1)?,
            duration_ms: row.get(2)?,
        })
    })?)
}

/// Training metrics of all rounds on one global step axis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingCurves {
    /// Metric name → segments, one per round that logged it, each `[global_step, value]` in
    /// step order. Segments keep smoothing and lines from bridging a round boundary.
    pub series: BTreeMap<String, Vec<Segment>>,
    /// `(x, round_index)` where each round with metrics starts: half a step before its first.
    pub round_starts: Vec<(f64, i64)>,
    /// The last global step.
    pub last_step: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub round_index: i64,
    pub points: Vec<[f64; 2]>,
}

/// Concatenates per-training-run steps (each run counts from its own step 1) onto the run's
/// global axis (`evolve_loop::axis::step_offsets`, the same the app uses): rounds in the given
/// order, runs within a round in the given order. Non-finite values (a diverged loss) are
/// dropped, not plotted.
pub fn concat_rounds(rounds: &[(i64, Vec<&[TrainingMetric]>)]) -> TrainingCurves {
    let (offsets, last_step) =
        evolve_loop::axis::step_offsets(rounds.iter().flat_map(|(_, runs)| runs.iter().copied()));
    let mut offsets = offsets.into_iter();
    let mut curves = TrainingCurves::default();
    for (round_index, runs) in rounds {
        let mut round: BTreeMap<&str, Vec<[f64; 2]>> = BTreeMap::new();
        let mut first = None;
        for metrics in runs {
            let offset = offsets.next().expect("one offset per training") as f64;
            for m in metrics.iter() {
                let x = offset + m.step as f64;
                first.get_or_insert(x);
                for (name, &v) in &m.metrics {
                    if v.is_finite() {
                        round.entry(name).or_default().push([x, v]);
                    }
                }
            }
        }
        if let Some(first) = first {
            curves.round_starts.push((first - 0.5, *round_index));
        }
        for (name, points) in round {
            curves
                .series
                .entry(name.to_string())
                .or_default()
                .push(Segment {
                    round_index: *round_index,
                    points,
                });
        }
    }
    curves.last_step = last_step as f64;
    curves
}

/// Exponential moving average as TensorBoard draws it: `weight` 0 returns the values unchanged,
/// near 1 smooths strongly; debiased so the first points are not pulled towards zero.
pub fn ema_smooth(points: &[[f64; 2]], weight: f64) -> Vec<[f64; 2]> {
    let weight = weight.clamp(0.0, 0.999);
    let mut ema = 0.0;
    let mut correction = 1.0;
    points
        .iter()
        .map(|&[x, v]| {
            ema = ema * weight + (1.0 - weight) * v;
            correction *= weight;
            [x, ema / (1.0 - correction)]
        })
        .collect()
}
