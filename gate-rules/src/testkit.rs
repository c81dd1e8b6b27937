//! Builders shared by the unit tests: phases from score lists and the motivating history.

use crate::phase::{Phase, QuestionEval, Sample};

pub(crate) const EXPERIMENT: &str = "persona-v1";

/// Per-question points (of 10) of the motivating history, K = 1. Phases 8 and 9 are the team's
/// report; 6 and 7 are invented to match their totals (23/80 and 44/80).
pub(crate) const PHASE_6: [f64; 8] = [3.0, 4.0, 2.0, 4.0, 3.0, 2.0, 2.0, 3.0];
pub(crate) const PHASE_7: [f64; 8] = [5.0, 7.0, 5.0, 7.0, 8.0, 5.0, 3.0, 4.0];
pub(crate) const PHASE_8: [f64; 8] = [3.0, 5.0, 3.0, 5.0, 1.0, 4.0, 2.0, 3.0];
pub(crate) const PHASE_9: [f64; 8] = [4.0, 3.0, 3.0, 5.0, 1.0, 3.0, 2.0, 4.0];

pub(crate) fn sample(points: f64) -> Sample {
    Sample {
        seed: None,
        points,
        dimensions: Vec::new(),
        response: Some(format!("resposta com {points} pontos.")),
        truncated: false,
        auto_zero: Vec::new(),
    }
}

/// A phase with K samples per question; `points[q]` lists question q's samples.
pub(crate) fn phase_k(label: &str, ordinal: u64, points: &[Vec<f64>]) -> Phase {
    let mut phase = Phase::new(EXPERIMENT, label, ordinal);
    phase.accepted = true;
    phase.eval = points
        .iter()
        .enumerate()
        .map(|(i, samples)| QuestionEval {
            id: format!("Q{}", i + 1),
            question: format!("pergunta {}", i + 1),
            max_points: 10.0,
            min_points: 0.0,
            samples: samples.iter().map(|p| sample(*p)).collect(),
        })
        .collect();
    phase
}

/// A phase with one sample per question.
pub(crate) fn phase(label: &str, ordinal: u64, points: &[f64]) -> Phase {
    let lists: Vec<Vec<f64>> = points.iter().map(|p| vec![*p]).collect();
    phase_k(label, ordinal, &lists)
}

pub(crate) fn with_loss(mut phase: Phase, loss: f64) -> Phase {
    phase.training.final_loss = Some(loss);
    phase
}

/// Phases 6–9 with their scores and final losses (phase 6 has no recorded loss).
pub(crate) fn persona_history() -> [Phase; 4] {
    [
        phase("6", 6, &PHASE_6),
        with_loss(phase("7", 7, &PHASE_7), 0.9171),
        with_loss(phase("8", 8, &PHASE_8), 1.2035),
        with_loss(phase("9", 9, &PHASE_9), 0.7732),
    ]
}

/// Eight questions at 5, and a candidate whose per-question changes disagree in sign
/// (+1, −2, +1, −2, −2, +1, −2, −1: mean −0.75), so the drop exceeds `min_effect` but is not
/// significant, and no single question falls by 3.
pub(crate) const MIXED_BASE: [f64; 8] = [5.0; 8];
pub(crate) const MIXED_DROP: [f64; 8] = [6.0, 3.0, 6.0, 3.0, 3.0, 6.0, 3.0, 4.0];

/// The mixed drop with K = 2 samples a side, one point either side of each mean.
pub(crate) fn mixed_drop_k2() -> (Phase, Phase) {
    let spread = |points: &[f64]| -> Vec<Vec<f64>> { points.iter().map(|p| vec![p - 1.0, p + 1.0]).collect() };
    (phase_k("1", 1, &spread(&MIXED_BASE)), phase_k("2", 2, &spread(&MIXED_DROP)))
}
