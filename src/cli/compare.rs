//! `evolve run compare`: the last rounds of two sets of runs, problem by problem, per pair of
//! runs and pooled (e.g. two methods over the same seeds); and how a comparison is written.

use anyhow::Result;
use evolve::Service;
use evolve::core::PairedComparison;
use evolve::store::RunId;

/// Run ids given as one argument, `1,4,7` (so that A and B are two positional arguments).
#[derive(Debug, Clone)]
pub struct RunList(pub Vec<i64>);

pub fn run_list(s: &str) -> Result<RunList, String> {
    s.split(',')
        .map(|id| {
            id.trim()
                .parse()
                .map_err(|_| format!("'{id}' is not a run id (expected ids like 1,4)"))
        })
        .collect::<Result<_, _>>()
        .map(RunList)
}

pub fn compare(service: &Service, a: &[i64], b: &[i64], json: bool) -> Result<()> {
    let ids = |v: &[i64]| v.iter().map(|&i| RunId(i)).collect::<Vec<_>>();
    let rows = service.compare_run_lists(&ids(a), &ids(b))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<12} {:>5} {:>7} {:>7}  {:<28} {:>8}",
        "measure", "B vs A", "n", "A", "B", "B − A [95% CI] wins/losses", "p"
    );
    for row in &rows {
        let (m, r) = (&row.measure, &row.runs);
        let Some(c) = &row.comparison else {
            println!("{m:<10} {r:<12} (not evaluated yet)");
            continue;
        };
        println!(
            "{m:<10} {r:<12} {:>5} {:>7} {:>7}  {:<28} {:>8.3}",
            c.n,
            pct(c.before),
            pct(c.after),
            paired(Some(c)),
            c.p_value
        );
    }
    println!(
        "(held-out accuracy ×100 of each run's last round, greedy; pooled: every problem of every pair)"
    );
    Ok(())
}

pub(super) fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

/// `+4.2 [+1.9, +6.5] 41/7` : the paired difference, its 95 % interval, wins/losses.
pub(super) fn paired(c: Option<&PairedComparison>) -> String {
    c.map_or("-".into(), |c| {
        format!(
            "{:+.1} [{:+.1}, {:+.1}] {}/{}",
            100.0 * c.diff,
            100.0 * c.ci_low,
            100.0 * c.ci_high,
            c.wins,
            c.losses
        )
    })
}
