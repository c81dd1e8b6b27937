//! Training conversations as token ids, with which tokens the loss counts, and padded batches.
//!
//! A conversation is rendered as the token counter renders it for the lint (every turn, no
//! generation prompt). An assistant turn's text starts where the turns before it, rendered with
//! the generation prompt, end, and ends where the turns up to it end: its end-of-turn marker is
//! learnt too, as TRL's assistant-only loss does.

use super::{LossOn, TrainExample};
use crate::error::EvalError;
use crate::template::ChatTemplate;
use crate::tokenizer::TextTokenizer;
use candle_core::{Device, Tensor};
use minijinja::Environment;

/// The role whose turns `LossOn::Assistant` learns.
const ASSISTANT: &str = "assistant";

/// One conversation as the model reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Encoded {
    pub(crate) ids: Vec<u32>,
    /// Whether the loss counts the prediction of each token (the first never is: nothing
    /// predicts it).
    pub(crate) counted: Vec<bool>,
}

impl Encoded {
    /// Targets the loss counts.
    pub(crate) fn counted_targets(&self) -> usize {
        self.counted.iter().skip(1).filter(|c| **c).count()
    }
}

/// Renders and encodes conversations with a model's tokenizer and chat template.
#[derive(Debug)]
pub(crate) struct Encoder<'a> {
    pub(crate) tokenizer: &'a TextTokenizer,
    pub(crate) template: &'a ChatTemplate,
    pub(crate) env: Environment<'static>,
}

/// Bytes `a` and `b` share at their start.
fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

impl Encoder<'_> {
    /// `example` as ids, at most `max_length` of them, with the loss on `loss_on`.
    pub(crate) fn encode(
        &self,
        index: usize,
        example: &TrainExample,
        loss_on: LossOn,
        max_length: usize,
    ) -> Result<Encoded, EvalError> {
        let turns: Vec<(&str, &str)> = example.messages.iter().map(|m| (m.role.as_str(), m.content.as_str())).collect();
        let text = self.template.render_turns(&self.env, &turns, false)?;
        // Byte ranges of the rendered text that the loss learns.
        let mut spans = Vec::new();
        for (i, (role, _)) in turns.iter().enumerate() {
            if *role != ASSISTANT {
                continue;
            }
            let before = self.template.render_turns(&self.env, &turns[..i], true)?;
            let through = self.template.render_turns(&self.env, &turns[..=i], false)?;
            spans.push((common_prefix(&before, &text), common_prefix(&through, &text)));
        }
        let encoding = self
            .tokenizer
            .inner
            .encode(text.as_str(), false)
            .map_err(|e| EvalError::TrainData { example: index, message: e.to_string() })?;
        let mut ids = encoding.get_ids().to_vec();
        let mut counted: Vec<bool> = match loss_on {
            LossOn::All => vec![true; ids.len()],
            LossOn::Assistant => encoding
                .get_offsets()
                .iter()
                .map(|(start, _)| spans.iter().any(|(from, to)| (*from..*to).contains(start)))
                .collect(),
        };
        if let (true, Some(bos)) = (self.tokenizer.add_bos, self.tokenizer.bos)
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
            counted.insert(0, false);
        }
        ids.truncate(max_length);
        counted.truncate(max_length);
        let encoded = Encoded { ids, counted };
        if encoded.counted_targets() == 0 {
            let what = match loss_on {
                LossOn::Assistant => "no assistant token within max_length to learn",
                LossOn::All => "fewer than two tokens",
            };
            return Err(EvalError::TrainData { example: index, message: what.into() });
        }
        Ok(encoded)
    }
}

/// A padded micro-batch: inputs (rows, len - 1), and the flat positions whose next token the
/// loss counts with those tokens.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) inputs: Tensor,
    /// (counted,): row × (len - 1) + position.
    pub(crate) at: Tensor,
    /// (counted,): the token after each position of `at`.
    pub(crate) targets: Tensor,
    /// Real (not padding) input tokens.
    pub(crate) tokens: usize,
    /// Targets the loss counts.
    pub(crate) counted: usize,
}

/// Pads `rows` at the end with `pad` to the longest; padding is never counted.
pub(crate) fn batch(rows: &[&Encoded], pad: u32) -> candle_core::Result<Batch> {
    let len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let width = len.saturating_sub(1);
    let (mut inputs, mut at, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = 0;
    for (r, row) in rows.iter().enumerate() {
        let n = row.ids.len();
        for t in 0..width {
            inputs.push(if t < n { row.ids[t] } else { pad });
            if t + 1 < n && row.counted[t + 1] {
                at.push((r * width + t) as u32);
                targets.push(row.ids[t + 1]);
            }
            tokens += usize::from(t + 1 < n);
        }
    }
    let counted = at.len();
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, (rows.len(), width), &Device::Cpu)?,
        at: Tensor::from_vec(at, counted, &Device::Cpu)?,
        targets: Tensor::from_vec(targets, counted, &Device::Cpu)?,
        tokens,
        counted,
    })
}
