//! A synthetic, verifiable task for the tiny model: two-number addition with a worked answer
//! and a GSM8K-style final line, e.g.
//!
//! ```text
//! 47+38=?          →   7+8=15
//!                      4+3+1=8
//!                      #### 85
//! ```
//!
//! Why this task: a model of a few hundred thousand parameters learns it from scratch on a CPU
//! in minutes, only partly (carries are what it gets wrong), and the numeric verifier grades it
//! exactly — so a run can show, with real numbers, whether EVOLVE rounds improve the model.
//! The worked column sums give a refinement step something concrete to fix.

use evolve_core::RefinementTemplate;
use evolve_core::rng::SplitMix64;
use serde_json::json;

/// The refinement instruction the tiny task model is pretrained with. Short, because the tiny
/// model's vocabulary is one token per character.
pub const TASK_REFINE_INSTRUCTION: &str = "Check your answer and fix any mistake.";

/// The refinement template that goes with [`TASK_REFINE_INSTRUCTION`].
pub fn task_template() -> RefinementTemplate {
    RefinementTemplate::MultiTurn {
        system: None,
        instruction: TASK_REFINE_INSTRUCTION.to_string(),
    }
}

/// One addition problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    pub a: u32,
    pub b: u32,
}

impl Problem {
    pub fn question(&self) -> String {
        format!("{}+{}=?", self.a, self.b)
    }

    pub fn sum(&self) -> u32 {
        self.a + self.b
    }

    /// The worked answer: column sums from the ones digit up (with the carry), then `#### sum`.
    pub fn solution(&self) -> String {
        self.worked(None)
    }

    /// Whether the ones column carries into the tens: where the task model's systematic slip
    /// (a dropped carry) can happen.
    pub fn carries(&self) -> bool {
        self.a % 10 + self.b % 10 >= 10 && (self.a >= 10 || self.b >= 10)
    }

    /// Digit sum of the column that receives the first carry (the tens), in 0..=18: the
    /// feature the slip's rate depends on in the task model's training mix.
    pub fn carry_column_sum(&self) -> u32 {
        (self.a / 10) % 10 + (self.b / 10) % 10
    }

    /// The solution with the carry into the tens column dropped (`4+3=7` for `4+3+1=8`) and the
    /// final line assembled from the written column sums, as someone who forgot the carry
    /// would write it; `None` when nothing carries into the tens.
    pub fn slipped_solution(&self) -> Option<String> {
        self.carries().then(|| self.worked(Some(1)))
    }

    /// Column sums from the ones up, the carry into column `drop_carry` (if any) forgotten;
    /// later carries follow the written sums and the final line assembles them.
    fn worked(&self, drop_carry: Option<usize>) -> String {
        self.columns(|col, da, db, carry| {
            let carry = if drop_carry == Some(col) { 0 } else { carry };
            (carry, da + db + carry)
        })
    }

    /// The column sums, units first, then `#### total`. `column(col, da, db, carry)` gives the
    /// carry written in column `col` and the sum written there, so a slip changes either.
    fn columns(&self, mut column: impl FnMut(usize, u32, u32, u32) -> (u32, u32)) -> String {
        let mut lines = Vec::new();
        let (mut a, mut b, mut carry, mut total, mut place) = (self.a, self.b, 0, 0u32, 1u32);
        let mut col = 0;
        while a > 0 || b > 0 {
            let (da, db) = (a % 10, b % 10);
            let s;
            (carry, s) = column(col, da, db, carry);
            lines.push(if carry > 0 {
                format!("{da}+{db}+{carry}={s}")
            } else {
                format!("{da}+{db}={s}")
            });
            carry = s / 10;
            let last = a < 10 && b < 10;
            total += if last { s * place } else { (s % 10) * place };
            place *= 10;
            (a, b) = (a / 10, b / 10);
            col += 1;
        }
        lines.push(format!("#### {total}"));
        lines.join("\n")
    }

    /// The solution with its final number miscopied: one digit off by one, the column sums
    /// right. A slip that rereading the answer catches.
    pub fn miscopied_solution(&self, rng: &mut SplitMix64) -> String {
        let right = self.solution();
        let (lines, last) = right.rsplit_once('\n').expect("a worked answer has lines");
        let mut digits: Vec<u32> = last["#### ".len()..]
            .chars()
            .filter_map(|c| c.to_digit(10))
            .collect();
        let i = (rng.next_u64() % digits.len() as u64) as usize;
        let up = rng.next_u64().is_multiple_of(2);
        digits[i] = match (up, digits[i]) {
            // A leading digit never becomes 0, so the number keeps its length.
            (false, 1) if i == 0 => 2,
            (false, 0) | (true, 9) => {
                if up {
                    8
                } else {
                    1
                }
            }
            (true, d) => d + 1,
            (false, d) => d - 1,
        };
        let wrong: String = digits
            .iter()
            .map(|d| char::from_digit(*d, 10).unwrap())
            .collect();
        format!("{lines}\n#### {wrong}")
    }

    /// A plausible wrong answer: the solution with one column sum off by 1..=3 and the final
    /// line recomputed from the wrong columns, as a careless model would write it.
    pub fn flawed_solution(&self, rng: &mut SplitMix64) -> String {
        let digits = self.a.max(self.b).to_string().len();
        let wrong_col = (rng.next_u64() % digits as u64) as usize;
        let delta = 1 + (rng.next_u64() % 3) as u32;
        self.columns(|col, da, db, carry| {
            let mut s = da + db + carry;
            if col == wrong_col {
                s = if s >= delta && rng.next_u64().is_multiple_of(2) {
                    s - delta
                } else {
                    s + delta
                };
            }
            (carry, s)
        })
    }
}

/// Problems with operands of `digits` digits (leading digit non-zero), deterministic in `seed`.
pub fn problems(n: usize, digits: u32, seed: u64) -> Vec<Problem> {
    let lo = 10u32.pow(digits.saturating_sub(1));
    let hi = 10u32.pow(digits);
    let mut rng = SplitMix64::new(seed);
    let mut draw = || lo + (rng.next_u64() % u64::from(hi - lo)) as u32;
    (0..n)
        .map(|_| Problem {
            a: draw(),
            b: draw(),
        })
        .collect()
}

/// Whether a problem is in the held-out tenth of the problem space (by a hash of its operands).
/// Training data — the task model's pretraining and a demo's train split — never contains
/// these, so held-out accuracy measures arithmetic, not memory.
pub fn is_held_out(p: &Problem) -> bool {
    let mut z = (u64::from(p.a) << 32) | u64::from(p.b);
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    (z ^ (z >> 33)).is_multiple_of(10)
}

/// `n` problems on one side of the held-out split, deterministic in `seed`.
pub fn problems_split(n: usize, digits: u32, seed: u64, held_out: bool) -> Vec<Problem> {
    let mut out = Vec::with_capacity(n);
    let mut round = 0;
    while out.len() < n {
        let batch = problems(n * 4, digits, seed ^ (round << 40));
        out.extend(
            batch
                .into_iter()
                .filter(|p| is_held_out(p) == held_out)
                .take(n - out.len()),
        );
        round += 1;
    }
    out
}

/// Every held-out problem with `digits`-digit operands, in a fixed order (about a tenth of
/// the problem space: 810 of the 8,100 two-digit problems).
pub fn all_held_out(digits: u32) -> Vec<Problem> {
    let (lo, hi) = (10u32.pow(digits.saturating_sub(1)), 10u32.pow(digits));
    (lo..hi)
        .flat_map(|a| (lo..hi).map(move |b| Problem { a, b }))
        .filter(is_held_out)
        .collect()
}

/// A GSM8K-layout JSONL dataset of `n` problems (`{"question", "answer"}` per line), which
/// `evolve data import` reads like any user file.
pub fn gsm8k_jsonl(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| json!({"question": p.question(), "answer": p.solution()}).to_string() + "\n")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_core::final_answer_after_marker;

    #[test]
    fn solutions_show_column_sums_with_carries() {
        let p = Problem { a: 47, b: 38 };
        assert_eq!(p.question(), "47+38=?");
        assert_eq!(p.solution(), "7+8=15\n4+3+1=8\n#### 85");
        assert_eq!(
            Problem { a: 95, b: 17 }.solution(),
            "5+7=12\n9+1+1=11\n#### 112"
        );
        assert_eq!(
            Problem { a: 5, b: 123 }.solution(),
            "5+3=8\n0+2=2\n0+1=1\n#### 128"
        );
    }

    #[test]
    fn slipped_and_miscopied_solutions_are_wrong_where_they_should_be() {
        let p = Problem { a: 47, b: 38 };
        assert!(p.carries());
        assert_eq!(p.slipped_solution().unwrap(), "7+8=15\n4+3=7\n#### 75");
        assert_eq!(
            Problem { a: 95, b: 17 }.slipped_solution().unwrap(),
            "5+7=12\n9+1=10\n#### 102"
        );
        assert_eq!(Problem { a: 41, b: 38 }.slipped_solution(), None);
        let mut rng = SplitMix64::new(5);
        for p in problems(300, 2, 6) {
            let bad = p.miscopied_solution(&mut rng);
            let got = final_answer_after_marker(&bad).unwrap();
            assert_ne!(got, p.sum().to_string(), "{p:?}: {bad}");
            assert_eq!(got.len(), p.sum().to_string().len(), "{p:?}: {bad}");
            let (lines, _) = bad.rsplit_once('\n').unwrap();
            assert!(
                p.solution().starts_with(lines),
                "only the final line differs"
            );
        }
    }

    #[test]
    fn flawed_solutions_are_wrong_and_well_formed() {
        let mut rng = SplitMix64::new(1);
        for p in problems(200, 2, 3) {
            let bad = p.flawed_solution(&mut rng);
            let got = final_answer_after_marker(&bad).unwrap();
            assert_ne!(got, p.sum().to_string(), "{p:?}: {bad}");
            assert_eq!(bad.lines().count(), p.solution().lines().count());
        }
    }

    #[test]
    fn the_held_out_split_is_about_a_tenth_and_disjoint() {
        let all = problems(5000, 2, 4);
        let held = all.iter().filter(|p| is_held_out(p)).count();
        assert!((350..650).contains(&held), "{held} of 5000");
        let train = problems_split(300, 2, 1, false);
        let eval = problems_split(100, 2, 1, true);
        assert_eq!((train.len(), eval.len()), (300, 100));
        assert!(train.iter().all(|p| !is_held_out(p)) && eval.iter().all(is_held_out));
    }

    #[test]
    fn problems_are_deterministic_and_in_range() {
        let a = problems(50, 2, 9);
        assert_eq!(a, problems(50, 2, 9));
        assert_ne!(a, problems(50, 2, 10));
        assert!(
            a.iter()
                .all(|p| (10..100).contains(&p.a) && (10..100).contains(&p.b))
        );
        let line = gsm8k_jsonl(&a[..1]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["question"], a[0].question());
    }
}
