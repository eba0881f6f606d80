//! The judge prompts and the parsers of their verdict lines.
//!
//! The prompts are short on purpose: they must fit small local judges (and the 512-token tiny
//! test model) together with the question and the answers. Each ends by asking for one
//! machine-readable last line, and the parsers read the *last* such line, so a judge that
//! quotes the instruction or changes its mind mid-way is read by its final word.

/// The pointwise prompt: rate one answer from 1 to 10, ending with `Rating: N`.
pub fn pointwise_prompt(question: &str, reference: Option<&str>, answer: &str) -> String {
    let mut p = task_header(
        "Rate the answer to the question on a scale of 1 (wrong or useless) to 10 \
         (correct, complete and clear).",
        question,
        reference,
    );
    p.push_str(&format!(
        "[Answer]\n{answer}\n\nJudge briefly, then end with the line \"Rating: N\" (N from 1 to 10)."
    ));
    p
}

/// The pairwise prompt: which of two answers is better, ending with `Winner: A|B|tie`.
/// `first` is shown as answer A, `second` as answer B.
pub fn pairwise_prompt(
    question: &str,
    reference: Option<&str>,
    first: &str,
    second: &str,
) -> String {
    let mut p = task_header(
        "Compare two answers to the question and decide which is better (correct, complete and \
         clear). Ignore their order and length.",
        question,
        reference,
    );
    p.push_str(&format!(
        "[Answer A]\n{first}\n\n[Answer B]\n{second}\n\nJudge briefly, then end with the line \
         \"Winner: A\", \"Winner: B\" or \"Winner: tie\"."
    ));
    p
}

/// Lowest and highest rating the pointwise prompt asks for.
pub const RATING_MIN: f64 = 1.0;
pub const RATING_MAX: f64 = 10.0;

/// The number after the last `Rating:` that has one (case-insensitive; markdown such as
/// `**Rating:** [[7]]` and forms such as `8/10` or `7.5` are accepted), clamped to 1..=10.
pub fn parse_rating(reply: &str) -> Option<f64> {
    after_markers(reply, "rating:")
        .rev()
        .find_map(leading_number)
        .map(|r| r.clamp(RATING_MIN, RATING_MAX))
}

/// A rating of 1..=10 mapped linearly onto 0..=1.
pub fn normalise_rating(rating: f64) -> f64 {
    (rating - RATING_MIN) / (RATING_MAX - RATING_MIN)
}

/// What one pairwise reply said about the answers in the order they were shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    First,
    Second,
    Tie,
}

/// The last `Winner:` line with a readable verdict (`A`, `B`, `tie`, also `Answer A`, `**A**`).
pub fn parse_winner(reply: &str) -> Option<Shown> {
    after_markers(reply, "winner:").rev().find_map(|rest| {
        let rest = skip_decoration(rest).to_ascii_lowercase();
        let rest = rest.strip_prefix("answer ").unwrap_or(&rest);
        let word: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        match word.as_str() {
            "a" => Some(Shown::First),
            "b" => Some(Shown::Second),
            "tie" | "draw" | "equal" | "none" => Some(Shown::Tie),
            _ => None,
        }
    })
}

/// The text after each occurrence of `marker` (ASCII, lower case), in order.
fn after_markers<'a>(
    reply: &'a str,
    marker: &'static str,
) -> impl DoubleEndedIterator<Item = &'a str> {
    // ASCII lowercasing keeps byte offsets, so indices found in `lower` are valid in `reply`.
    let lower = reply.to_ascii_lowercase();
    let starts: Vec<usize> = lower
        .match_indices(marker)
        .map(|(i, _)| i + marker.len())
        .collect();
    starts.into_iter().map(move |i| &reply[i..])
}

/// Skips spaces and the markdown/bracket decoration judges put around a verdict.
fn skip_decoration(s: &str) -> &str {
    s.trim_start_matches(|c: char| c == ' ' || c == '\t' || "*_[]\"'`(".contains(c))
}

fn leading_number(rest: &str) -> Option<f64> {
    let rest = skip_decoration(rest);
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (c == '.' && i > 0)))
        .map_or(rest.len(), |(i, _)| i);
    // A trailing dot ends a sentence ("Rating: 7."), it is not part of the number.
    rest[..end].trim_end_matches('.').parse().ok()
}

/// The instruction, then the question and the reference answer when there is one: the part
/// pointwise and pairwise prompts share.
fn task_header(instruction: &str, question: &str, reference: Option<&str>) -> String {
    let mut p = String::from(instruction);
    if reference.is_some() {
        p.push_str(" Judge correctness against the reference answer.");
    }
    p.push_str(&format!("\n\n[Question]\n{question}\n\n"));
    if let Some(r) = reference {
        p.push_str(&format!("[Reference answer]\n{r}\n\n"));
    }
    p
}
