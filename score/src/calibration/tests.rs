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
