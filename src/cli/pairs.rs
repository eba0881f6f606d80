//! `evolve pairs`: list and review a run's preference pairs before training, as the app's pair
//! screen does.

use anyhow::Result;
use clap::Subcommand;
use evolve::Service;
use evolve::core::PairKind;
use evolve::data::pairs::{PairQuery, PairView, ReviewAction, parse_review};
use evolve::store::{PairId, RunId};

#[derive(Subcommand)]
pub enum PairsCommand {
    /// List pairs [default: every run's], newest run last
    List {
        #[arg(long)]
        run: Option<i64>,
        #[arg(long)]
        round: Option<i64>,
        /// direct, refine or keep
        #[arg(long)]
        kind: Option<PairKind>,
        /// pending, approved, vetoed or edited
        #[arg(long, value_parser = |s: &str| parse_review(s).map_err(|e| e.to_string()))]
        review: Option<evolve::core::ReviewState>,
        #[arg(long)]
        min_margin: Option<f64>,
        /// Print JSON (the app's `pairs_list`) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Train this pair as it is
    Approve { pair: i64 },
    /// Leave this pair out of training and of exports
    Veto { pair: i64 },
    /// Back to pending, dropping an edit
    Reset { pair: i64 },
    /// Replace the chosen answer's text with TEXT for training
    Edit {
        pair: i64,
        #[arg(long)]
        text: String,
    },
}

pub fn run(cmd: PairsCommand, service: &Service) -> Result<()> {
    let (pair, action) = match cmd {
        PairsCommand::List {
            run,
            round,
            kind,
            review,
            min_margin,
            json,
        } => {
            let query = PairQuery {
                run: run.map(RunId),
                round,
                kind,
                review,
                min_margin,
            };
            let pairs = service.list_pairs(&query)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&pairs)?);
            } else if pairs.is_empty() {
                println!("no pairs match");
            } else {
                pairs.iter().for_each(print_pair);
            }
            return Ok(());
        }
        PairsCommand::Approve { pair } => (pair, ReviewAction::Approve),
        PairsCommand::Veto { pair } => (pair, ReviewAction::Veto),
        PairsCommand::Reset { pair } => (pair, ReviewAction::Reset),
        PairsCommand::Edit { pair, text } => (pair, ReviewAction::new("edit", Some(&text))?),
    };
    let p = service.review_pair(PairId(pair), &action)?;
    println!("pair {} is now {}", p.id, p.review);
    Ok(())
}

/// One line per answer, cut to the terminal's habits: the full texts are in `--json`.
fn print_pair(p: &PairView) {
    let line = |s: &str| {
        let flat = s.replace('\n', " ⏎ ");
        match flat.char_indices().nth(70) {
            Some((i, _)) => format!("{}…", &flat[..i]),
            None => flat,
        }
    };
    let score = |s: Option<f64>| s.map_or("-".into(), |v| format!("{v:.2}"));
    println!(
        "pair {:>5}  round {}  {:<6}  margin {:.2}  {}",
        p.id, p.round, p.kind, p.margin, p.review
    );
    println!("  prompt    {}", line(&p.prompt));
    let chosen = p.edited_chosen_text.as_deref().unwrap_or(&p.chosen.text);
    println!("  chosen    [{}] {}", score(p.chosen.score), line(chosen));
    println!(
        "  rejected  [{}] {}",
        score(p.rejected.score),
        line(&p.rejected.text)
    );
}
