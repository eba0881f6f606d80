//! Built-in verifiable tasks for real instruct models: short questions with one numeric
//! answer, phrased as a user would ask them, graded by the `numeric_any` verifier (the answer's
//! final number, read as evaluation harnesses read it).
//!
//! Why these: a small pretrained model (SmolLM2-135M-Instruct) can partly do each of them, so
//! the right answer is in its distribution but not always in its mode, the regime where
//! sampling, verifying and preference training can help. `evolve tasks measure` says which
//! task has the most headroom for a given model.

use evolve_core::ScorerSpec;
use evolve_core::rng::SplitMix64;
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// One question and its gold answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskProblem {
    pub question: String,
    pub answer: String,
}

/// A built-in task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinTask {
    /// Two-digit addition: "What is 47 + 38?"
    Add,
    /// The larger of two three-digit numbers.
    Larger,
    /// The smallest of three two-digit numbers.
    Smallest,
    /// How often a letter occurs in a common word.
    CountLetter,
    /// A whole-number unit conversion: "How many minutes are in 3 hours?"
    Units,
}

/// Words for [`BuiltinTask::CountLetter`]: common, with repeated letters.
const WORDS: &[&str] = &[
    "strawberry",
    "banana",
    "apple",
    "committee",
    "mississippi",
    "balloon",
    "coffee",
    "letter",
    "bookkeeper",
    "success",
    "address",
    "pepper",
    "tomorrow",
    "butter",
    "cherry",
    "happiness",
    "parallel",
    "assessment",
    "necessary",
    "embarrass",
    "occurrence",
    "accommodate",
    "referee",
    "engineer",
    "kitten",
    "puppy",
    "hello",
    "bottle",
    "umbrella",
    "elephant",
    "giraffe",
    "pizza",
    "rabbit",
    "summer",
    "window",
    "yellow",
    "carrot",
    "potato",
    "tomato",
    "cucumber",
    "grammar",
    "little",
    "middle",
    "google",
    "freezer",
    "teeth",
    "sheep",
    "cookie",
    "raccoon",
    "possess",
];

/// (from, to, factor) for [`BuiltinTask::Units`]: one `from` is `factor` `to`s.
const UNITS: &[(&str, &str, u32)] = &[
    ("meters", "centimeters", 100),
    ("kilometers", "meters", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("kilograms", "grams", 1000),
    ("feet", "inches", 12),
    ("weeks", "days", 7),
    ("days", "hours", 24),
    ("dollars", "cents", 100),
    ("yards", "feet", 3),
];

impl BuiltinTask {
    pub const ALL: [BuiltinTask; 5] = [
        BuiltinTask::Add,
        BuiltinTask::Larger,
        BuiltinTask::Smallest,
        BuiltinTask::CountLetter,
        BuiltinTask::Units,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BuiltinTask::Add => "add",
            BuiltinTask::Larger => "larger",
            BuiltinTask::Smallest => "smallest",
            BuiltinTask::CountLetter => "count-letter",
            BuiltinTask::Units => "units",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BuiltinTask::Add => "two-digit addition",
            BuiltinTask::Larger => "the larger of two three-digit numbers",
            BuiltinTask::Smallest => "the smallest of three two-digit numbers",
            BuiltinTask::CountLetter => "how often a letter occurs in a word",
            BuiltinTask::Units => "whole-number unit conversions",
        }
    }

    /// The verifier every built-in task is graded with.
    pub fn scorer(self) -> ScorerSpec {
        ScorerSpec::Verifier(evolve_core::Verifier::NumericAny)
    }

    /// How many different problems the task has (its generator draws from these).
    pub fn size(self) -> usize {
        match self {
            BuiltinTask::Add => 90 * 90,
            BuiltinTask::Larger => 900 * 899,
            BuiltinTask::Smallest => 90 * 89 * 88,
            BuiltinTask::CountLetter => WORDS.iter().map(|w| distinct_letters(w).len()).sum(),
            BuiltinTask::Units => UNITS.len() * 19,
        }
    }

    fn draw(self, rng: &mut SplitMix64) -> TaskProblem {
        let mut pick = |lo: u64, hi: u64| lo + rng.next_u64() % (hi - lo + 1);
        match self {
            BuiltinTask::Add => {
                let (a, b) = (pick(10, 99), pick(10, 99));
                TaskProblem {
                    question: format!("What is {a} + {b}?"),
                    answer: (a + b).to_string(),
                }
            }
            BuiltinTask::Larger => {
                let a = pick(100, 999);
                let b = loop {
                    let b = pick(100, 999);
                    if b != a {
                        break b;
                    }
                };
                TaskProblem {
                    question: format!("Which number is larger, {a} or {b}?"),
                    answer: a.max(b).to_string(),
                }
            }
            BuiltinTask::Smallest => {
                let mut n = Vec::new();
                while n.len() < 3 {
                    let x = pick(10, 99);
                    if !n.contains(&x) {
                        n.push(x);
                    }
                }
                TaskProblem {
                    question: format!("Which is the smallest of {}, {} and {}?", n[0], n[1], n[2]),
                    answer: n.iter().min().expect("three").to_string(),
                }
            }
            BuiltinTask::CountLetter => {
                let word = WORDS[pick(0, WORDS.len() as u64 - 1) as usize];
                let letters = distinct_letters(word);
                let letter = letters[pick(0, letters.len() as u64 - 1) as usize];
                TaskProblem {
                    question: format!(
                        "How many times does the letter '{letter}' appear in the word '{word}'?"
                    ),
                    answer: word.chars().filter(|c| *c == letter).count().to_string(),
                }
            }
            BuiltinTask::Units => {
                let (from, to, factor) = UNITS[pick(0, UNITS.len() as u64 - 1) as usize];
                let n = pick(2, 20);
                TaskProblem {
                    question: format!("How many {to} are in {n} {from}?"),
                    answer: (n * factor as u64).to_string(),
                }
            }
        }
    }

    /// `train` and `eval` different problems, none in both: the held-out problems come first
    /// from the seed, so an evaluation split is the same whatever the train size.
    pub fn problems(
        self,
        train: usize,
        eval: usize,
        seed: u64,
    ) -> Result<(Vec<TaskProblem>, Vec<TaskProblem>), TaskError> {
        // Leave a quarter of the task unused, so drawing never stalls near exhaustion.
        if (train + eval) * 4 > self.size() * 3 {
            return Err(TaskError::TooMany {
                task: self,
                wanted: train + eval,
                size: self.size(),
            });
        }
        let mut rng = SplitMix64::new(seed ^ self as u64);
        let mut seen = HashSet::new();
        let mut draw = |n: usize| {
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                let p = self.draw(&mut rng);
                if seen.insert(p.question.clone()) {
                    out.push(p);
                }
            }
            out
        };
        let eval = draw(eval);
        Ok((draw(train), eval))
    }
}

fn distinct_letters(word: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::new();
    for c in word.chars() {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for BuiltinTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    #[error("unknown task '{0}' (expected one of: add, larger, smallest, count-letter, units)")]
    Unknown(String),
    #[error(
        "task {task} has {size} different problems; {wanted} is more than three quarters of them"
    )]
    TooMany {
        task: BuiltinTask,
        wanted: usize,
        size: usize,
    },
}

impl FromStr for BuiltinTask {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BuiltinTask::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| TaskError::Unknown(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evolve_core::score::extract_final_number;

    #[test]
    fn problems_are_distinct_reproducible_and_held_out_first() {
        for task in BuiltinTask::ALL {
            let (train, eval) = task.problems(40, 20, 1).unwrap();
            assert_eq!((train.len(), eval.len()), (40, 20), "{task}");
            let qs: HashSet<_> = train.iter().chain(&eval).map(|p| &p.question).collect();
            assert_eq!(qs.len(), 60, "{task}: a problem is in both splits or twice");
            assert_eq!(
                task.problems(40, 20, 1).unwrap(),
                (train.clone(), eval.clone())
            );
            // The held-out split does not depend on the train size.
            assert_eq!(task.problems(7, 20, 1).unwrap().1, eval, "{task}");
            assert_ne!(
                task.problems(40, 20, 2).unwrap().1,
                eval,
                "{task}: seed ignored"
            );
            assert_eq!(task.name().parse::<BuiltinTask>().unwrap(), task);
        }
        assert!("sort".parse::<BuiltinTask>().is_err());
        assert!(matches!(
            BuiltinTask::Units.problems(150, 0, 1),
            Err(TaskError::TooMany { .. })
        ));
    }

    #[test]
    fn gold_answers_are_right() {
        let (train, _) = BuiltinTask::CountLetter.problems(100, 0, 3).unwrap();
        for p in &train {
            // "How many times does the letter 'r' appear in the word 'strawberry'?"
            let letter = p.question.split('\'').nth(1).unwrap();
            let word = p.question.split('\'').nth(3).unwrap();
            assert_eq!(
                word.matches(letter).count().to_string(),
                p.answer,
                "{}",
                p.question
            );
        }
        let (train, _) = BuiltinTask::Add.problems(50, 0, 3).unwrap();
        for p in &train {
            let n: Vec<u32> = p.question[8..p.question.len() - 1]
                .split(" + ")
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!((n[0] + n[1]).to_string(), p.answer);
        }
        let (train, _) = BuiltinTask::Units.problems(50, 0, 3).unwrap();
        assert!(
            train
                .iter()
                .any(
                    |p| p.question == "How many minutes are in 3 hours?" && p.answer == "180"
                        || !p.question.contains("hours?")
                )
        );
    }

    #[test]
    fn the_verifier_reads_real_model_phrasings_of_these_tasks() {
        // SmolLM2-135M-Instruct's own greedy answers.
        for (answer, gold) in [
            (
                "The letter 'r' appears 2 times in the word 'strawberry'.",
                "2",
            ),
            ("3 hours is equal to 180 minutes.", "180"),
            (
                "To add 47 and 38, you simply add them together: 47 + 38 = 124.",
                "124",
            ),
        ] {
            assert_eq!(extract_final_number(answer).unwrap().0, gold);
        }
    }
}
