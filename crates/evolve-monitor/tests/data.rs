//! Plot data from real SQLite files written through the store API; no window involved.

use evolve_core::RoundState;
use evolve_monitor::data::Segment;
use evolve_monitor::{RunPlotData, concat_rounds, ema_smooth, resolve_run};
use evolve_store::{Store, TrainingMetric};
use evolve_testkit::recorded_run::{
    DEMO_REFINE_STEPS, DEMO_ROUNDS, DEMO_STEPS, record_demo_run, training_steps,
};
use std::collections::BTreeMap;

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evolve.sqlite");
    (dir, path)
}

fn metric(step: i64, loss: f64) -> TrainingMetric {
    TrainingMetric {
        step,
        epoch: 0.0,
        metrics: BTreeMap::from([("loss".to_string(), loss)]),
    }
}

#[test]
fn concat_rounds_puts_rounds_on_one_step_axis_with_a_boundary_before_each() {
    let r0 = [metric(1, 0.7), metric(2, 0.6), metric(3, 0.5)];
    let r1a = [metric(1, 0.55)]; // cancelled, then resumed in a second training run
    let r1b = [metric(1, 0.5), metric(2, f64::NAN), metric(3, 0.4)];
    let empty: [TrainingMetric; 0] = [];
    let curves = concat_rounds(&[
        (0, vec![&r0[..]]),
        (1, vec![&r1a[..], &r1b[..]]),
        (2, vec![&empty[..]]),
    ]);
    assert_eq!(
        curves.series["loss"],
        vec![
            Segment {
                round_index: 0,
                points: vec![[1.0, 0.7], [2.0, 0.6], [3.0, 0.5]],
            },
            Segment {
                round_index: 1,
                // The NaN step is dropped, not plotted.
                points: vec![[4.0, 0.55], [5.0, 0.5], [7.0, 0.4]],
            },
        ]
    );
    assert_eq!(curves.round_starts, vec![(0.5, 0), (3.5, 1)]);
    assert_eq!(curves.last_step, 7.0);
}

#[test]
fn ema_smooth_is_identity_at_zero_debiased_and_converges() {
    let points = [[1.0, 1.0], [2.0, 3.0], [3.0, 3.0]];
    assert_eq!(ema_smooth(&points, 0.0), points.to_vec());
    let s = ema_smooth(&points, 0.5);
    // Debiased: the first point is the first value, not half of it.
    assert_eq!(s[0], [1.0, 1.0]);
    // ema = 0.5 * 0.5 + 0.5 * 3 = 1.75, debiased by 1 - 0.5² = 0.75.
    assert!((s[1][1] - 7.0 / 3.0).abs() < 1e-12, "{s:?}");
    assert!(s[2][1] > s[1][1] && s[2][1] < 3.0, "{s:?}");
    assert_eq!(s.iter().map(|p| p[0]).collect::<Vec<_>>(), [1.0, 2.0, 3.0]);
    let constant = ema_smooth(&[[0.0, 5.0]; 10], 0.95);
    assert!(constant.iter().all(|p| (p[1] - 5.0).abs() < 1e-9));
    assert!(ema_smooth(&[], 0.9).is_empty());
}

#[test]
fn load_reads_a_recorded_run_from_a_sqlite_file() {
    let (_dir, path) = temp_db();
    let run = record_demo_run(&Store::open(&path).unwrap()).unwrap();
    let store = Store::open_readonly(&path).unwrap();
    let data = RunPlotData::load(&store, run).unwrap();

    assert_eq!(data.rounds.len(), DEMO_ROUNDS as usize);
    for r in &data.rounds {
        assert_eq!(r.round.state, RoundState::Done);
        assert_eq!(r.training.len(), 1);
        assert!(r.pairs.direct > 0 && r.pairs.refine > 0, "{:?}", r.pairs);
        assert!(r.generations.count > 0);
        let tps = r.generations.tokens_per_second().unwrap();
        assert!((30.0..70.0).contains(&tps), "{tps}");
    }
    // Pair counts and token sums agree with the typed API.
    let round = &data.rounds[1];
    let pairs = store
        .list_pairs(&evolve_store::PairFilter {
            round_id: Some(round.round.id),
            kind: Some(evolve_core::PairKind::Refine),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(round.pairs.refine, pairs.len() as i64);
    let gens = store.generations_of_round(round.round.id).unwrap();
    assert_eq!(
        round.generations.tokens,
        gens.iter().map(|g| g.token_count).sum::<i64>()
    );
    assert_eq!(
        round.generations.duration_ms,
        gens.iter().map(|g| g.duration_ms).sum::<i64>()
    );

    let curves = data.curves();
    let loss = &curves.series["loss"];
    assert_eq!(loss.len(), DEMO_ROUNDS as usize);
    assert_eq!(curves.last_step, (DEMO_ROUNDS * DEMO_STEPS) as f64);
    assert_eq!(
        curves.round_starts,
        (0..DEMO_ROUNDS)
            .map(|r| ((r * DEMO_STEPS) as f64 + 0.5, r))
            .collect::<Vec<_>>()
    );
    let all: Vec<[f64; 2]> = loss.iter().flat_map(|s| s.points.clone()).collect();
    assert!(all.windows(2).all(|w| w[0][0] < w[1][0]), "steps increase");
    let first = all[..5].iter().map(|p| p[1]).sum::<f64>();
    let last = all[all.len() - 5..].iter().map(|p| p[1]).sum::<f64>();
    assert!(last < first, "loss falls over the run");
    for name in evolve_store::TRL_METRIC_NAMES {
        assert!(curves.series.contains_key(*name), "{name} is plotted");
    }

    // The scoreboard comes from evolve-loop's, with its paired comparisons.
    let board = &data.scoreboard;
    assert_eq!(board.len(), 1 + DEMO_ROUNDS as usize);
    assert_eq!(board[0].label, "base");
    assert!(
        board
            .iter()
            .all(|r| r.refined.len() == DEMO_REFINE_STEPS as usize)
    );
    let last = board.last().unwrap();
    assert!(last.refined[1] > board[0].refined[1]);
    assert!(board[0].vs_base.is_none(), "the base has nothing before it");
    let gain = last.vs_base.as_ref().unwrap();
    assert!(
        gain.diff > 0.0 && gain.wins > 0 && gain.losses == 0,
        "{gain:?}"
    );
    assert!(board.iter().all(|r| r.sampled.is_some()));
    let first_step = &last.refine_steps[0];
    assert!(
        first_step.losses > 0,
        "every ninth problem is broken by refining"
    );
    assert!(board[0].win_rate.is_none());
    assert!(
        board[1..]
            .iter()
            .all(|r| r.win_rate.as_ref().map(|w| w.rate) == Some(0.58))
    );
}

#[test]
fn resolve_run_picks_the_newest_or_names_the_known_ids() {
    let (_dir, path) = temp_db();
    let writer = Store::open(&path).unwrap();
    let reader = Store::open_readonly(&path).unwrap();
    let err = resolve_run(&reader, None).unwrap_err().to_string();
    assert_eq!(err, format!("no runs in {} yet", path.display()));

    let first = record_demo_run(&writer).unwrap();
    let second = record_demo_run(&writer).unwrap();
    assert_eq!(resolve_run(&reader, None).unwrap(), second);
    assert_eq!(resolve_run(&reader, Some(first.0)).unwrap(), first);
    let err = resolve_run(&reader, Some(42)).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "run 42 not found in {} (its runs are {first}, {second})",
            path.display()
        )
    );
    assert!(!err.contains('\n'));
}

#[test]
fn open_window_on_a_missing_database_fails_in_one_line_and_creates_nothing() {
    let (dir, _) = temp_db();
    let path = dir.path().join("nope.sqlite");
    let err = evolve_monitor::open_window(&path, None).unwrap_err();
    let msg = format!("{err:#}");
    assert_eq!(msg, format!("database not found: {}", path.display()));
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn open_window_on_an_unknown_run_fails_before_opening_a_window() {
    let (_dir, path) = temp_db();
    record_demo_run(&Store::open(&path).unwrap()).unwrap();
    // No display is needed: the run is checked first.
    let err = evolve_monitor::open_window(&path, Some(7)).unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!("run 7 not found in {} (its runs are 1)", path.display())
    );
}

/// A monitor polls while the engine appends: each poll sees whole committed batches, and
/// new steps extend the last round's curve.
#[test]
fn polling_while_another_connection_trains_sees_new_steps() {
    let (_dir, path) = temp_db();
    let writer = Store::open(&path).unwrap();
    let run = record_demo_run(&writer).unwrap();
    let round = writer.create_round(run, DEMO_ROUNDS).unwrap();
    writer
        .set_round_state(round, RoundState::Training, None)
        .unwrap();
    let training = writer
        .create_training_run(Some(round), &serde_json::json!({}))
        .unwrap();
    let reader = Store::open_readonly(&path).unwrap();
    let before = RunPlotData::load(&reader, run).unwrap();
    assert_eq!(before.rounds.len(), DEMO_ROUNDS as usize + 1);
    assert_eq!(before.curves().round_starts.len(), DEMO_ROUNDS as usize);

    let steps = training_steps(DEMO_ROUNDS, 9);
    let done = std::thread::scope(|s| {
        let writer_path = path.clone();
        let handle = s.spawn(move || {
            let w = Store::open(&writer_path).unwrap();
            for chunk in steps.chunks(5) {
                w.append_metrics(training, chunk).unwrap();
            }
        });
        let mut seen = Vec::new();
        while !handle.is_finished() {
            let n = RunPlotData::load(&reader, run).unwrap().rounds[DEMO_ROUNDS as usize].training
                [0]
            .1
            .len();
            assert_eq!(n % 5, 0, "a batch is seen whole or not at all");
            seen.push(n);
        }
        handle.join().unwrap();
        seen
    });
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");

    let after = RunPlotData::load(&reader, run).unwrap().curves();
    assert_eq!(after.round_starts.len(), DEMO_ROUNDS as usize + 1);
    assert_eq!(after.last_step, ((DEMO_ROUNDS + 1) * DEMO_STEPS) as f64);
}
