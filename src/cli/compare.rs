//! `evolve run compare`: the last rounds of two sets of runs, problem by problem, per pair of
//! runs and pooled (e.g. two methods over the same seeds).

use super::run::{paired, pct};
use anyhow::Result;
use evolve::Service;
use evolve::store::RunId;

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
