//! Pair selection: which answers become preference pairs, of which kinds.

use evolve_core::PairKind;
use evolve_loop::pairs::{
    Candidate, FinishedRule, PairKinds, PairRules, PairStrategy, RefineTarget, select_pairs,
};

fn c(id: i64, chain: usize, step: usize, text: &str, score: f64) -> Candidate {
    Candidate {
        id,
        chain,
        step,
        text: text.into(),
        score,
        finished: true,
    }
}

#[test]
fn best_vs_worst_respects_the_margin_and_emits_both_kinds() {
    let cands = [
        c(1, 0, 0, "a", 0.2),
        c(2, 0, 1, "b", 0.9),
        c(3, 1, 0, "c", 0.2),
        c(4, 1, 1, "d", 0.5),
    ];
    let pairs = select_pairs(
        &PairStrategy::BestVsWorst { min_margin: 0.5 },
        PairKinds::default(),
        PairRules::default(),
        &cands,
    );
    assert_eq!(pairs.len(), 2);
    assert_eq!(
        (pairs[0].kind, pairs[0].chosen, pairs[0].rejected),
        (PairKind::Direct, 2, 1),
        "ties go to the earlier"
    );
    assert_eq!(pairs[1].kind, PairKind::Refine);
    assert!((pairs[0].margin - 0.7).abs() < 1e-12);
    assert!(
        select_pairs(
            &PairStrategy::BestVsWorst { min_margin: 0.8 },
            PairKinds::default(),
            PairRules::default(),
            &cands
        )
        .is_empty()
    );
}

#[test]
fn refined_vs_initial_pairs_each_improving_chain() {
    let cands = [
        c(1, 0, 0, "wrong", 0.0),
        c(2, 0, 1, "still wrong", 0.0),
        c(3, 0, 2, "right", 1.0),
        c(4, 1, 0, "right", 1.0),
        c(5, 1, 1, "wrong now", 0.0),
    ];
    let kinds = PairKinds {
        direct: false,
        refine: true,
        keep: false,
    };
    let pairs = select_pairs(
        &PairStrategy::RefinedVsInitial { min_margin: 0.5 },
        kinds,
        PairRules::default(),
        &cands,
    );
    assert_eq!(pairs.len(), 1, "chain 1 got worse: no pair");
    assert_eq!(
        (pairs[0].kind, pairs[0].chosen, pairs[0].rejected),
        (PairKind::Refine, 3, 1)
    );
}

#[test]
fn correct_vs_incorrect_uses_each_answer_once_and_skips_identical_texts() {
    let cands = [
        c(1, 0, 0, "#### 7", 1.0),
        c(2, 1, 0, "#### 8", 0.0),
        c(3, 2, 0, "#### 7", 1.0),
        c(4, 3, 0, "#### 9", 0.0),
        c(5, 4, 0, "#### 6", 0.0),
    ];
    let kinds = PairKinds {
        direct: true,
        refine: false,
        keep: false,
    };
    let pairs = select_pairs(
        &PairStrategy::CorrectVsIncorrect {
            threshold: 0.5,
            max_pairs: 5,
        },
        kinds,
        PairRules::default(),
        &cands,
    );
    let ids: Vec<(i64, i64)> = pairs.iter().map(|p| (p.chosen, p.rejected)).collect();
    assert_eq!(ids, [(1, 2), (3, 4)]);
    let same = [c(1, 0, 0, "x", 1.0), c(2, 1, 0, " x ", 0.0)];
    assert!(
        select_pairs(
            &PairStrategy::default(),
            PairKinds::default(),
            PairRules::default(),
            &same
        )
        .is_empty()
    );
    let all_right = [c(1, 0, 0, "a", 1.0), c(2, 1, 0, "b", 1.0)];
    assert!(
        select_pairs(
            &PairStrategy::default(),
            PairKinds::default(),
            PairRules::default(),
            &all_right
        )
        .is_empty()
    );
}

#[test]
fn every_chosen_rejected_pair_becomes_one_pair_of_each_asked_kind() {
    let cands = [c(1, 0, 0, "#### 7", 1.0), c(2, 1, 0, "#### 8", 0.0)];
    let all = PairKinds {
        direct: true,
        refine: true,
        keep: true,
    };
    let pairs = select_pairs(&PairStrategy::default(), all, PairRules::default(), &cands);
    let got: Vec<(PairKind, i64, i64)> = pairs
        .iter()
        .map(|p| (p.kind, p.chosen, p.rejected))
        .collect();
    assert_eq!(
        got,
        [
            (PairKind::Direct, 1, 2),
            (PairKind::Refine, 1, 2),
            (PairKind::Keep, 1, 2)
        ]
    );
    // Keep pairs are asked for explicitly; older configurations without the field get none.
    let old: PairKinds = serde_json::from_str(r#"{"direct": true, "refine": true}"#).unwrap();
    assert_eq!(old, PairKinds::default());
    assert!(!old.keep);
}

fn cut(mut c: Candidate) -> Candidate {
    c.finished = false;
    c
}

#[test]
fn finished_rules_keep_cut_answers_out_of_the_chosen_or_both_sides() {
    let strategy = PairStrategy::CorrectVsIncorrect {
        threshold: 0.5,
        max_pairs: 1,
    };
    let direct = PairKinds {
        direct: true,
        refine: false,
        keep: false,
    };
    // The best-ranked right answer (id 1) was cut; so was the first wrong one (id 3).
    let cands = [
        cut(c(1, 0, 0, "a 7", 1.0)),
        c(2, 1, 0, "b 7", 1.0),
        cut(c(3, 2, 0, "c 5", 0.0)),
        c(4, 3, 0, "d 5", 0.0),
    ];
    let pick = |finished| {
        let rules = PairRules {
            finished,
            ..PairRules::default()
        };
        let pairs = select_pairs(&strategy, direct, rules, &cands);
        pairs
            .iter()
            .map(|p| (p.chosen, p.rejected))
            .collect::<Vec<_>>()
    };
    assert_eq!(pick(FinishedRule::Any), vec![(1, 3)]);
    assert_eq!(pick(FinishedRule::Chosen), vec![(2, 3)]);
    assert_eq!(pick(FinishedRule::Both), vec![(2, 4)]);
    // No finished right answer: no pair at all.
    let all_cut = [cut(c(1, 0, 0, "a 7", 1.0)), c(2, 1, 0, "b 5", 0.0)];
    let rules = PairRules {
        finished: FinishedRule::Chosen,
        ..PairRules::default()
    };
    assert!(select_pairs(&strategy, direct, rules, &all_cut).is_empty());
}

#[test]
fn own_refinement_targets_pair_a_step_with_the_step_it_improved() {
    let strategy = PairStrategy::CorrectVsIncorrect {
        threshold: 0.5,
        max_pairs: 1,
    };
    let rules = PairRules {
        refine_target: RefineTarget::OwnRefinement,
        ..PairRules::unrestricted()
    };
    // Chain 0: right, then broken. Chain 1: wrong, then fixed. Chain 2: wrong, stays wrong.
    let cands = [
        c(1, 0, 0, "a 7", 1.0),
        c(2, 0, 1, "a' 5", 0.0),
        c(3, 1, 0, "b 5", 0.0),
        c(4, 1, 1, "b' 7", 1.0),
        c(5, 2, 0, "c 4", 0.0),
        c(6, 2, 1, "c' 4", 0.0),
    ];
    let pairs = select_pairs(&strategy, PairKinds::default(), rules, &cands);
    let got: Vec<(PairKind, i64, i64)> = pairs
        .iter()
        .map(|p| (p.kind, p.chosen, p.rejected))
        .collect();
    // The direct pair is as before (the best right answer against the first worst wrong one);
    // the refinement pair is chain 1's own fix of its first answer.
    assert_eq!(
        got,
        vec![(PairKind::Direct, 1, 2), (PairKind::Refine, 4, 3)]
    );
    // Today's target: the same pair for both kinds.
    let pairs = select_pairs(
        &strategy,
        PairKinds::default(),
        PairRules::default(),
        &cands,
    );
    assert_eq!(pairs[1].kind, PairKind::Refine);
    assert_eq!((pairs[1].chosen, pairs[1].rejected), (1, 2));
    // No refinement improved anything: no refinement pair, the direct pair stays.
    let none = [
        c(1, 0, 0, "a 7", 1.0),
        c(2, 0, 1, "a' 7", 1.0),
        c(3, 1, 0, "b 5", 0.0),
        c(4, 1, 1, "b' 5", 0.0),
    ];
    let pairs = select_pairs(&strategy, PairKinds::default(), rules, &none);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].kind, PairKind::Direct);
    // A cut fix is not a target when chosen answers must have finished.
    let cut_fix = [c(3, 1, 0, "b 5", 0.0), cut(c(4, 1, 1, "b' 7", 1.0))];
    let strict = PairRules {
        finished: FinishedRule::Chosen,
        ..rules
    };
    assert!(select_pairs(&strategy, PairKinds::default(), strict, &cut_fix).is_empty());
    assert_eq!(
        select_pairs(&strategy, PairKinds::default(), rules, &cut_fix).len(),
        2,
        "a direct and a refinement pair, both the cut fix against the first answer"
    );
}

#[test]
fn new_runs_choose_finished_answers_and_stored_runs_without_rules_keep_choosing_any() {
    use evolve_loop::run::RunConfig;
    assert_eq!(
        RunConfig::default().pair_rules.finished,
        FinishedRule::Chosen
    );
    assert_eq!(PairRules::default().finished, FinishedRule::Chosen);
    // A run stored before the rules existed resumes as it began.
    let mut stored = serde_json::to_value(RunConfig::default()).unwrap();
    stored.as_object_mut().unwrap().remove("pair_rules");
    let old: RunConfig = serde_json::from_value(stored).unwrap();
    assert_eq!(old.pair_rules, PairRules::unrestricted());
    assert_eq!(old.pair_rules.finished, FinishedRule::Any);
}
