//! Paired statistics for held-out evaluations. Two models (or two refinement steps) answer the
//! same problems, so each problem is its own control: what counts is on how many problems one
//! is right and the other wrong, not two accuracies with their own error bars.

use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Resamples of the paired bootstrap; ±0.3 points of Monte-Carlo noise on a 95 % bound.
const BOOTSTRAP_RESAMPLES: usize = 4000;
/// Fixed, so a report reads the same every time it is computed.
const BOOTSTRAP_SEED: u64 = 0xB007_5742;

/// `after` against `before` on the same problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct PairedComparison {
    /// Problems both were scored on.
    pub n: usize,
    /// Mean scores (accuracy for a 0/1 verifier).
    pub before: f64,
    pub after: f64,
    /// `after − before`.
    pub diff: f64,
    /// Problems where `after` scored higher (wrong → right for a verifier).
    pub wins: usize,
    /// Problems where `after` scored lower (right → wrong).
    pub losses: usize,
    /// Paired bootstrap 95 % confidence interval of `diff` (percentile method).
    pub ci_low: f64,
    pub ci_high: f64,
    /// Exact two-sided sign test on wins against losses (McNemar's exact test for 0/1 scores).
    pub p_value: f64,
}

impl PairedComparison {
    /// Compares per-problem scores; `before[i]` and `after[i]` belong to the same problem.
    /// `None` when there is nothing to compare.
    pub fn of(before: &[f64], after: &[f64]) -> Option<Self> {
        assert_eq!(before.len(), after.len(), "paired scores come in pairs");
        let n = before.len();
        if n == 0 {
            return None;
        }
        let d: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        let wins = d.iter().filter(|&&x| x > 0.0).count();
        let losses = d.iter().filter(|&&x| x < 0.0).count();
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let (ci_low, ci_high) = bootstrap_ci(&d);
        Some(PairedComparison {
            n,
            before: mean(before),
            after: mean(after),
            diff: mean(&d),
            wins,
            losses,
            ci_low,
            ci_high,
            p_value: sign_test(wins, losses),
        })
    }

    /// Whether the 95 % interval excludes zero.
    pub fn significant(&self) -> bool {
        self.ci_low > 0.0 || self.ci_high < 0.0
    }
}

/// Percentile 95 % interval of the mean of `d` over resamples of its items.
fn bootstrap_ci(d: &[f64]) -> (f64, f64) {
    let n = d.len();
    let mut rng = SplitMix64::new(BOOTSTRAP_SEED);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let sum: f64 = (0..n)
                .map(|_| d[(rng.next_u64() % n as u64) as usize])
                .sum();
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round()) as usize];
    (at(0.025), at(0.975))
}

/// Two-sided exact binomial test of `wins` against `losses` with p = ½ (ties left out).
pub fn sign_test(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    if n == 0 {
        return 1.0;
    }
    let k = wins.min(losses);
    // log P(X = i) for X ~ Bin(n, ½), summed in log space: 0.5^n underflows past n ≈ 1074.
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut terms = Vec::with_capacity(k + 1);
    for i in 0..=k {
        terms.push(log_pmf);
        log_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_test_matches_the_binomial_tables() {
        // 8 wins, 2 losses: 2·P(X ≤ 2), X ~ Bin(10, ½) = 2·56/1024.
        assert!((sign_test(8, 2) - 112.0 / 1024.0).abs() < 1e-12);
        assert!((sign_test(2, 8) - sign_test(8, 2)).abs() < 1e-15);
        assert_eq!(sign_test(5, 5), 1.0);
        assert_eq!(sign_test(0, 0), 1.0);
        // 0 of 20: 2·0.5^20.
        assert!((sign_test(20, 0) - 2.0 * 0.5f64.powi(20)).abs() < 1e-18);
        // Large n stays finite and tiny rather than underflowing to 0 or NaN.
        let p = sign_test(1500, 500);
        assert!(p > 0.0 && p < 1e-100, "{p}");
    }

    #[test]
    fn paired_comparison_counts_and_bounds_the_difference() {
        // 100 problems: 30 fixed, 10 broken, 60 unchanged (40 right in both).
        let mut before = vec![0.0; 30];
        let mut after = vec![1.0; 30];
        before.extend([1.0; 10]);
        after.extend([0.0; 10]);
        before.extend([1.0; 40]);
        after.extend([1.0; 40]);
        before.extend([0.0; 20]);
        after.extend([0.0; 20]);
        let c = PairedComparison::of(&before, &after).unwrap();
        assert_eq!((c.n, c.wins, c.losses), (100, 30, 10));
        assert!((c.before - 0.5).abs() < 1e-12 && (c.after - 0.7).abs() < 1e-12);
        assert!((c.diff - 0.2).abs() < 1e-12);
        // Normal approximation: sd of d is ~0.6, se ~0.06, so about ±0.12.
        assert!(c.ci_low > 0.06 && c.ci_low < 0.12, "{c:?}");
        assert!(c.ci_high > 0.28 && c.ci_high < 0.34, "{c:?}");
        assert!(c.significant());
        assert!((c.p_value - sign_test(30, 10)).abs() < 1e-15);
        // The same accuracies with no change on any problem: nothing to see.
        let same = PairedComparison::of(&before, &before).unwrap();
        assert_eq!((same.wins, same.losses, same.diff), (0, 0, 0.0));
        assert!(!same.significant());
        assert_eq!(same.p_value, 1.0);
        assert!(PairedComparison::of(&[], &[]).is_none());
    }
}
