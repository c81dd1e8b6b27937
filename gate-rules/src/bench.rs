//! Synthetic history for timing `evaluate` (`phasegate bench gate`): deterministic from a seed,
//! shaped like real phases (integer rubric points per sample, a final loss, a VRAM peak).

use crate::phase::{ConfigEntry, Phase, QuestionEval, Sample};
use crate::stats::SplitMix64;

/// Experiment name of the synthetic phases.
pub const EXPERIMENT: &str = "bench";

/// `n_phases` accepted phases (ordinals 1..=n) and a candidate after them, each with
/// `n_questions` questions of `k` samples scored 0–10.
pub fn synthetic_history(n_phases: usize, n_questions: usize, k: usize, seed: u64) -> (Vec<Phase>, Phase) {
    let mut rng = SplitMix64::new(seed);
    let history = (1..=n_phases).map(|i| synthetic_phase(i as u64, n_questions, k, &mut rng)).collect();
    let mut candidate = synthetic_phase(n_phases as u64 + 1, n_questions, k, &mut rng);
    candidate.accepted = false;
    (history, candidate)
}

fn synthetic_phase(ordinal: u64, n_questions: usize, k: usize, rng: &mut SplitMix64) -> Phase {
    let mut phase = Phase::new(EXPERIMENT, &ordinal.to_string(), ordinal);
    phase.accepted = true;
    phase.training.final_loss = Some(0.5 + rng.below(1000) as f64 / 1000.0);
    phase.training.vram_peak_mib = Some(1500 + rng.below(1000) as u64);
    phase.config = vec![ConfigEntry { key: "epochs".to_owned(), value: (1 + rng.below(10)).to_string() }];
    let level = rng.below(7);
    phase.eval = (1..=n_questions)
        .map(|q| QuestionEval {
            id: format!("Q{q}"),
            question: format!("question {q}"),
            max_points: 10.0,
            min_points: 0.0,
            samples: (0..k)
                .map(|s| Sample {
                    seed: Some(s as u64),
                    points: (level + rng.below(4)) as f64,
                    dimensions: Vec::new(),
                    response: Some(format!("answer {s} to question {q}.")),
                    truncated: false,
                    auto_zero: Vec::new(),
                })
                .collect(),
        })
        .collect();
    phase
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GateConfig;
    use crate::evaluate::evaluate;

    #[test]
    fn same_seed_same_history() {
        assert_eq!(synthetic_history(5, 3, 2, 9), synthetic_history(5, 3, 2, 9));
        let (history, candidate) = synthetic_history(5, 3, 2, 9);
        assert_eq!(history.len(), 5);
        assert_eq!(candidate.eval[2].samples.len(), 2);
    }

    /// The benchmark of the issue: 10,000 phases, 8 questions, K = 10, 10,000 resamples.
    /// Run with `cargo test --release -p gate-rules -- --ignored bench_gate --nocapture`.
    #[test]
    #[ignore = "timing, run on demand in release mode"]
    fn bench_gate() {
        const ROUNDS: u32 = 20;
        let (history, candidate) = synthetic_history(10_000, 8, 10, 1);
        let config = GateConfig::default();
        let start = std::time::Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(evaluate(&history, &candidate, &config));
        }
        let per = start.elapsed() / ROUNDS;
        println!("evaluate: {per:?} per verdict (10,000 phases, 8 questions, K = 10, 10,000 resamples)");
        assert!(per.as_millis() < 1000, "{per:?}");
    }
}
