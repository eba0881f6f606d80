//! The global step axis of a run's training curves: one algorithm for the app's charts, the
//! metrics the API serves and the monitor's plots.

use evolve_store::TrainingMetric;

/// Where each training's steps start on the run's axis, for trainings in order (rounds in
/// order, trainings within a round in order): each starts after the previous one's last step,
/// so step `s` of training `i` sits at `offsets[i] + s`. Also returns the axis's last step.
pub fn step_offsets<'a>(
    trainings: impl IntoIterator<Item = &'a [TrainingMetric]>,
) -> (Vec<i64>, i64) {
    let mut offset = 0;
    let mut offsets = Vec::new();
    for metrics in trainings {
        offsets.push(offset);
        offset += metrics.iter().map(|m| m.step).max().unwrap_or(0).max(0);
    }
    (offsets, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(n: i64) -> Vec<TrainingMetric> {
        (1..=n)
            .map(|step| TrainingMetric {
                step,
                epoch: 0.0,
                metrics: Default::default(),
            })
            .collect()
    }

    #[test]
    fn each_training_starts_after_the_last_step_before_it() {
        let (a, b, none) = (steps(3), steps(2), steps(0));
        let (offsets, last) = step_offsets([&a[..], &none[..], &b[..]]);
        assert_eq!(offsets, [0, 3, 3]);
        assert_eq!(last, 5);
    }
}
