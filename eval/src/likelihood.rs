//! Teacher-forced scoring: how likely a model finds a given text, token by token.
//!
//! The text is fed through the same forward pass and decoding steps as generation
//! ([`crate::generate::run_forced`]); each token's log-probability is read off the logits the
//! generator would sample from at that point. Scorers use it as a reference model's view of an
//! answer's fluency (mean negative log-likelihood per token), computed outside the pure scorer.

use crate::spec::Prompt;
use serde::{Deserialize, Serialize};

/// What a scored text follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextContext {
    /// The text alone, after the model's BOS token (or, without one, its own first token, which
    /// is then not scored).
    Plain,
    /// The text as the assistant's turn answering `prompt`, rendered with the model's chat
    /// template: a conditional likelihood given the system prompt and question.
    Answer(Prompt),
}

/// One text to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredText {
    pub context: TextContext,
    pub text: String,
}

/// The log-probabilities of a text's tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextLogProbs {
    /// The scored token ids, in order.
    pub tokens: Vec<u32>,
    /// `ln p(token | context, tokens before it)`, one per token: finite and ≤ 0.
    pub log_probs: Vec<f64>,
}

impl TextLogProbs {
    /// Mean negative log-likelihood per token (nats); None for a text of no scored tokens.
    pub fn mean_nll(&self) -> Option<f64> {
        if self.log_probs.is_empty() {
            return None;
        }
        Some(-self.log_probs.iter().sum::<f64>() / self.log_probs.len() as f64)
    }
}
