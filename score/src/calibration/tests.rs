use super::*;
use crate::test_support::{bundled, real_lexicon};

/// The bundled anchors scored with the real dictionary, or None when it is not cached.
fn outcomes() -> Option<Vec<AnchorOutcome>> {
    let suite = bundled();
    real_lexicon(&suite).map(|lexicon| check_scorer(&suite, &lexicon))
}

fn describe(o: &AnchorOutcome) -> String {
    let dims: Vec<String> = o.score.dims.iter().map(|d| format!("{}={} ({})", d.id, d.score, d.reason)).collect();
    format!("{} {:?}: {}/{} [{}]", o.anchor.qid, o.anchor.kind, o.score.total, o.score.max, dims.join(", "))
}

#[test]
fn bundled_suite_has_all_three_anchor_kinds_for_at_least_two_questions() {
    let suite = bundled();
    let complete = suite
        .questions
        .iter()
        .filter(|q| {
            [AnchorKind::Ideal, AnchorKind::Generic, AnchorKind::Contaminated]
                .iter()
                .all(|k| q.anchors.iter().any(|a| a.kind == *k))
        })
        .count();
    assert!(complete >= 2, "only {complete} questions have all three anchors");
}

#[test]
fn every_bundled_anchor_scores_inside_its_band() {
    let Some(outcomes) = outcomes() else { return };
    assert!(!outcomes.is_empty());
    let outside: Vec<String> = outcomes.iter().filter(|o| !o.within_band).map(describe).collect();
    assert!(outside.is_empty(), "anchors outside their band:\n{}", outside.join("\n"));
}

#[test]
fn ideal_anchors_score_at_least_nine() {
    for o in outcomes().unwrap_or_default() {
        if o.anchor.kind == AnchorKind::Ideal {
            assert!(o.score.total >= 9.0, "{}", describe(&o));
        }
    }
}

#[test]
fn generic_anchors_score_two_to_four() {
    for o in outcomes().unwrap_or_default() {
        if o.anchor.kind == AnchorKind::Generic {
            assert!((2.0..=4.0).contains(&o.score.total), "{}", describe(&o));
        }
    }
}

#[test]
fn contaminated_anchors_score_zero_and_quote_their_trigger() {
    for o in outcomes().unwrap_or_default() {
        if o.anchor.kind == AnchorKind::Contaminated {
            assert_eq!(o.score.total, 0.0, "{}", describe(&o));
            assert!(!o.score.auto_zero.is_empty(), "{}", describe(&o));
        }
    }
}

#[test]
fn bands_are_inclusive() {
    let band = AnchorKind::Generic.band();
    assert!(band.contains(2.0) && band.contains(4.0));
    assert!(!band.contains(4.5) && !band.contains(1.9));
    assert!(AnchorKind::Contaminated.band().contains(0.0));
    assert!(!AnchorKind::Ideal.band().contains(8.75));
}

#[test]
#[ignore = "prints the anchor scores; run with --ignored --nocapture when recalibrating"]
fn print_anchor_scores() {
    for o in outcomes().unwrap_or_default() {
        println!("{}", describe(&o));
    }
}

#[test]
fn bands_of_the_new_kinds_table() {
    // (kind, a score inside, a score outside)
    let cases = [
        (AnchorKind::WordSalad, 1.0, 1.5),
        (AnchorKind::WordSaladPersona, 3.0, 3.5),
        (AnchorKind::WrongIdentity, 0.0, 4.0),
        (AnchorKind::FluentHallucination, 5.0, 6.0),
        (AnchorKind::Truncated, 9.0, 9.5),
        (AnchorKind::Truncated, 4.0, 3.5),
    ];
    for (kind, inside, outside) in cases {
        assert!(kind.band().contains(inside) && !kind.band().contains(outside), "{kind:?}");
    }
}

#[test]
fn bundled_suite_has_an_anchor_of_every_kind() {
    const KINDS: [AnchorKind; 8] = [
        AnchorKind::Ideal,
        AnchorKind::Generic,
        AnchorKind::Contaminated,
        AnchorKind::WordSalad,
        AnchorKind::WordSaladPersona,
        AnchorKind::WrongIdentity,
        AnchorKind::FluentHallucination,
        AnchorKind::Truncated,
    ];
    let all = anchors(&bundled());
    for kind in KINDS {
        assert!(all.iter().any(|a| a.kind == kind), "no {} anchor", kind.as_str());
    }
}

#[test]
fn enforce_accepts_the_bundled_suite_with_the_real_dictionary() {
    let suite = bundled();
    let Some(lexicon) = real_lexicon(&suite) else { return };
    enforce(&suite, &lexicon).unwrap();
}

#[test]
fn enforce_names_each_missed_anchor_its_kind_score_and_band() {
    // A dictionary that knows no word: every fluent anchor reads as word salad.
    let suite = bundled();
    let lexicon = crate::test_support::knowing(&suite, &[]);
    let err = enforce(&suite, &lexicon).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("the rules scorer misses "), "{text}");
    assert!(text.contains("Q1 ideal anchor scored 1.0/10, band 9..=10"), "{text}");
    assert!(err.missed.iter().all(|o| !o.within_band));
    assert!(
        !err.missed.iter().any(|o| o.anchor.kind == AnchorKind::Contaminated),
        "contaminated anchors still score 0"
    );
}

#[test]
fn truncated_anchors_are_scored_as_cut_at_the_token_limit() {
    let suite = bundled();
    let truncated = anchors(&suite).into_iter().find(|a| a.kind == AnchorKind::Truncated).unwrap();
    assert!(truncated.record().truncated);
}
