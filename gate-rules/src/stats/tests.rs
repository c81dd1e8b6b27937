use super::*;
use crate::testkit::{PHASE_7, PHASE_8, PHASE_9, phase};

fn compared(c: &Phase, b: &Phase, config: &GateConfig) -> PairedStats {
    match compare(c, b, config) {
        Comparison::Compared(stats) => stats,
        other @ Comparison::NoSharedQuestions => panic!("{other:?}"),
    }
}

#[test]
fn phase_8_against_7_is_a_significant_drop_by_exact_sign_flip() {
    let stats = compared(&phase("8", 8, &PHASE_8), &phase("7", 7, &PHASE_7), &GateConfig::default());
    assert_eq!(stats.difference, (26.0 - 44.0) / 8.0);
    assert_eq!(stats.p_value, 2.0 / 256.0);
    assert_eq!(stats.method, Method::SignFlipExact { permutations: 256 });
    assert_eq!(stats.change, Change::Drop);
    let interval = stats.interval.unwrap();
    assert!(interval.low <= stats.difference && stats.difference <= interval.high);
    assert!(interval.high < 0.0);
}

#[test]
fn phase_9_against_8_is_below_min_effect() {
    let stats = compared(&phase("9", 9, &PHASE_9), &phase("8", 8, &PHASE_8), &GateConfig::default());
    assert_eq!(stats.difference, -0.125);
    assert_eq!(stats.change, Change::BelowMinEffect);
    assert_eq!(stats.samples_needed, None);
}

#[test]
fn mixed_drop_is_inconclusive_with_a_sample_estimate() {
    let (base, cand) = crate::testkit::mixed_drop_k2();
    let stats = compared(&cand, &base, &GateConfig::default());
    assert!(stats.difference < -0.5, "{stats:?}");
    assert!(stats.p_value >= 0.05, "{stats:?}");
    assert_eq!(stats.change, Change::InconclusiveDrop);
    assert!(matches!(stats.samples_needed, Some(SamplesNeeded::PerQuestion { samples }) if samples > 2), "{stats:?}");
}

#[test]
fn many_questions_use_the_seeded_bootstrap() {
    let config = GateConfig { exact_max_questions: 4, ..GateConfig::default() };
    let stats = compared(&phase("9", 9, &PHASE_9), &phase("7", 7, &PHASE_7), &config);
    assert_eq!(stats.method, Method::Bootstrap { resamples: config.resamples, seed: config.seed });
    assert_eq!(stats.change, Change::Drop);
    assert_eq!(compare(&phase("9", 9, &PHASE_9), &phase("7", 7, &PHASE_7), &config), Comparison::Compared(stats));
}

#[test]
fn unpaired_questions_are_listed_and_left_out() {
    let stats = compared(&phase("2", 2, &[4.0, 4.0, 9.0]), &phase("1", 1, &[4.0, 4.0]), &GateConfig::default());
    assert_eq!(stats.questions, 2);
    assert_eq!(stats.unpaired, ["Q3"]);
    assert_eq!(stats.difference, 0.0);
}

#[test]
fn degenerate_comparisons_are_explicit() {
    let config = GateConfig::default();
    assert_eq!(compare(&phase("2", 2, &[]), &phase("1", 1, &[5.0]), &config), Comparison::NoSharedQuestions);
    let one = compared(&phase("2", 2, &[1.0]), &phase("1", 1, &[9.0]), &config);
    assert_eq!(one.interval, None);
    assert_eq!(one.p_value, 1.0);
    assert_eq!(one.change, Change::InconclusiveDrop);
    assert_eq!(one.samples_needed, Some(SamplesNeeded::MoreQuestionsNeeded));
    let flat = compared(&phase("2", 2, &[5.0; 8]), &phase("1", 1, &[5.0; 8]), &config);
    assert_eq!((flat.difference, flat.p_value, flat.change), (0.0, 1.0, Change::BelowMinEffect));
    assert!(flat.difference.is_finite() && flat.interval.is_some_and(|i| i.low.is_finite()));
}
