//! Fluency figures of answers under a reference model, from teacher-forced scoring
//! ([`Engine::log_probs`]): how surprising the answer's tokens are (mean negative log-likelihood,
//! alone and as the answer to its question), and how much the order of its words matters (the
//! same words shuffled with a fixed seed). Real-word salad is made of likely words in an unlikely
//! order, so a reference model finds it barely less likely shuffled; fluent prose loses a lot.
//!
//! These are measurements, not scores: `phasegate-score` decides what an answer's figures mean.

use crate::engine::Engine;
use crate::error::EvalError;
use crate::likelihood::{ScoredText, TextContext, TextLogProbs};
use crate::spec::Prompt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// The seed of the word shuffle: fixed, so the figures are a function of the answer alone.
pub const SHUFFLE_SEED: u64 = 0x5a1a_d5a1;

/// One answer's figures, in nats per token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fluency {
    /// Tokens of the answer as plain text.
    pub tokens: usize,
    /// Mean NLL of the answer as plain text.
    pub nll: f64,
    /// Mean NLL of its words shuffled ([`shuffle_words`]), as plain text.
    pub shuffled_nll: f64,
    /// Mean NLL of the answer as the assistant's turn after the system prompt and question.
    pub answer_nll: f64,
    /// Mean NLL of the shuffled words in that turn.
    pub answer_shuffled_nll: f64,
}

impl Fluency {
    /// What shuffling the words costs, as plain text: large for prose, small for salad.
    pub fn order_gain(&self) -> f64 {
        self.shuffled_nll - self.nll
    }

    /// What shuffling costs as the answer to its question.
    pub fn answer_order_gain(&self) -> f64 {
        self.answer_shuffled_nll - self.answer_nll
    }

    /// How much the question makes the answer likelier.
    pub fn context_gain(&self) -> f64 {
        self.nll - self.answer_nll
    }
}

/// The words of `text` (split at whitespace) in an order drawn with `seed`, joined by spaces.
pub fn shuffle_words(text: &str, seed: u64) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    words.shuffle(&mut StdRng::seed_from_u64(seed));
    words.join(" ")
}

/// The figures of each `(prompt, answer)`; None for an answer with fewer than two words (no
/// order to measure).
pub fn measure(engine: &Engine, answers: &[(Prompt, String)]) -> Result<Vec<Option<Fluency>>, EvalError> {
    let mut texts = Vec::with_capacity(answers.len() * 4);
    for (prompt, answer) in answers {
        let shuffled = shuffle_words(answer, SHUFFLE_SEED);
        for text in [answer.clone(), shuffled] {
            texts.push(ScoredText { context: TextContext::Plain, text: text.clone() });
            texts.push(ScoredText { context: TextContext::Answer(prompt.clone()), text });
        }
    }
    let scored = engine.log_probs(&texts)?;
    Ok(answers.iter().zip(scored.chunks_exact(4)).map(|((_, answer), s)| figures(answer, s)).collect())
}

fn figures(answer: &str, s: &[TextLogProbs]) -> Option<Fluency> {
    // Fewer than two words: no order to measure.
    answer.split_whitespace().nth(1)?;
    Some(Fluency {
        tokens: s[0].tokens.len(),
        nll: s[0].mean_nll()?,
        answer_nll: s[1].mean_nll()?,
        shuffled_nll: s[2].mean_nll()?,
        answer_shuffled_nll: s[3].mean_nll()?,
    })
}
