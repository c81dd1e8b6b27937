//! A built-in LoRA trainer on the CPU: the eval engine's llama weights, frozen in f32, with
//! trainable LoRA pairs, candle's autograd, AdamW, and a PEFT adapter as the result.
//!
//! Conversations are rendered with the model's chat template as the lint renders them; the loss
//! is the causal LM cross-entropy over the assistant's tokens (TRL's completion-only loss) or
//! over all tokens. The data order is shuffled from a seed, so a seed gives the same adapter.

mod adapter;
mod data;
mod model;
mod optim;
#[cfg(test)]
mod tests;

pub use adapter::{TrainedAdapter, write_peft_adapter};

use crate::engine::Engine;
use crate::error::EvalError;
use candle_core::{DType, Tensor};
use data::{Encoded, Encoder};
use model::{LoraShape, MODULES, TrainModel};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Which tokens the loss counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    /// The assistant's turns only, their end-of-turn marker included.
    #[default]
    Assistant,
    /// Every token of the rendered conversation.
    All,
}

/// How the learning rate moves after the warmup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    Constant,
    /// Linear decay to 0 at the last step.
    #[default]
    Linear,
    /// Half a cosine to 0 at the last step.
    Cosine,
}

/// The settings of a training run; the defaults are PEFT's and Hugging Face's where they have one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// LoRA rank.
    pub r: usize,
    pub lora_alpha: f64,
    /// Only 0 is supported.
    pub lora_dropout: f64,
    /// Projections that get LoRA pairs: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj`, `down_proj`.
    pub target_modules: Vec<String>,
    pub learning_rate: f64,
    pub lr_scheduler: LrSchedule,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Gradients are scaled down to this global norm; 0 disables clipping.
    pub max_grad_norm: f64,
    /// Conversations per forward pass, padded to the longest.
    pub batch_size: usize,
    /// Forward passes whose gradients add up to one optimizer step.
    pub gradient_accumulation_steps: usize,
    pub epochs: usize,
    /// Optimizer steps to run, overriding `epochs` when set (0: the untrained adapter, B = 0).
    pub max_steps: Option<usize>,
    /// Seeds the data order and the LoRA A initialisation.
    pub seed: u64,
    pub loss_on: LossOn,
    /// Conversations longer than this many tokens are cut.
    pub max_length: usize,
    /// A named chat template used instead of the model's own.
    pub template_override: Option<String>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"].map(String::from).to_vec(),
            learning_rate: 2e-4,
            lr_scheduler: LrSchedule::Linear,
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            batch_size: 1,
            gradient_accumulation_steps: 1,
            epochs: 1,
            max_steps: None,
            seed: 0,
            loss_on: LossOn::Assistant,
            max_length: 1024,
            template_override: None,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), EvalError> {
        let invalid = |param, message: String| Err(EvalError::TrainConfig { param, message });
        if self.r == 0 {
            return invalid("r", "must be at least 1".into());
        }
        if self.lora_dropout != 0.0 {
            return invalid("lora_dropout", "only 0 is supported".into());
        }
        if self.batch_size == 0 || self.gradient_accumulation_steps == 0 {
            return invalid("batch_size", "batch_size and gradient_accumulation_steps must be at least 1".into());
        }
        if self.max_length < 2 {
            return invalid("max_length", "must be at least 2".into());
        }
        if self.target_modules.is_empty() {
            return invalid("target_modules", "name at least one projection".into());
        }
        if let Some(unknown) = self.target_modules.iter().find(|t| !MODULES.iter().any(|(m, _)| m == t)) {
            let known: Vec<&str> = MODULES.iter().map(|(m, _)| *m).collect();
            return invalid("target_modules", format!("unknown module `{unknown}`; known: {}", known.join(", ")));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return invalid("learning_rate", "must be a finite number >= 0".into());
        }
        Ok(())
    }
}

/// One turn of a training conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainMessage {
    /// `system`, `user` or `assistant`, as the chat template knows them.
    pub role: String,
    pub content: String,
}

/// A training conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrainExample {
    pub messages: Vec<TrainMessage>,
}

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based.
    pub step: usize,
    /// Epochs done, fractional.
    pub epoch: f64,
    /// Mean cross-entropy per counted token over the step's conversations.
    pub loss: f64,
    /// The learning rate the step used.
    pub learning_rate: f64,
    /// The gradients' global norm before clipping.
    pub grad_norm: f64,
    /// Real tokens through the model per second of the step.
    pub tokens_per_s: f64,
}

/// The result of a training run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The trained pairs; `write_peft_adapter` writes them.
    pub adapter: TrainedAdapter,
    /// Every step's record, as `on_step` saw them.
    pub records: Vec<StepRecord>,
}

/// Trains LoRA pairs for the model at `model_path` (a `.gguf` file or a safetensors directory)
/// on `examples`, calling `on_step` after every optimizer step.
pub fn train(
    model_path: &Path,
    config: &TrainConfig,
    examples: &[TrainExample],
    on_step: impl FnMut(&StepRecord),
) -> Result<TrainOutcome, EvalError> {
    config.validate()?;
    let (llama, tokenizer, template) = Engine::load_for_training(model_path, config.template_override.as_deref())?;
    let encoder = Encoder { tokenizer: &tokenizer, template: &template, env: template.compiled()? };
    let encoded = examples
        .iter()
        .enumerate()
        .map(|(i, e)| encoder.encode(i, e, config.loss_on, config.max_length))
        .collect::<Result<Vec<_>, _>>()?;
    if encoded.is_empty() {
        return Err(EvalError::TrainConfig { param: "examples", message: "no conversation to train on".into() });
    }
    let shape =
        LoraShape { r: config.r, alpha: config.lora_alpha, targets: config.target_modules.clone(), seed: config.seed };
    let model = TrainModel::from_llama(&llama, &shape, DType::F32)?;
    drop(llama);
    let pad = tokenizer.eos.unwrap_or(0);
    let records = run(&model, &encoded, config, pad, on_step)?;
    let adapter = TrainedAdapter::from_model(&model, config.r, config.lora_alpha, &config.target_modules)?;
    Ok(TrainOutcome { adapter, records })
}

/// The optimizer steps of the run over `encoded`, `pad` filling short rows.
pub(crate) fn run(
    model: &TrainModel,
    encoded: &[Encoded],
    config: &TrainConfig,
    pad: u32,
    mut on_step: impl FnMut(&StepRecord),
) -> Result<Vec<StepRecord>, EvalError> {
    let micro_per_epoch = encoded.len().div_ceil(config.batch_size);
    let steps_per_epoch = micro_per_epoch.div_ceil(config.gradient_accumulation_steps);
    let total = config.max_steps.unwrap_or(config.epochs * steps_per_epoch);
    let vars = model.vars();
    let mut optimizer = optim::AdamW::new(&vars, config.weight_decay)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut records = Vec::with_capacity(total);
    let mut epoch = 0;
    'epochs: while records.len() < total {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.shuffle(&mut rng);
        let micro: Vec<Vec<&Encoded>> =
            order.chunks(config.batch_size).map(|c| c.iter().map(|&i| &encoded[i]).collect()).collect();
        for (index, group) in micro.chunks(config.gradient_accumulation_steps).enumerate() {
            if records.len() == total {
                break 'epochs;
            }
            let started = Instant::now();
            let step = records.len();
            let (loss, grads, tokens) = accumulate(model, &vars, group, pad)?;
            let grad_norm = optim::global_norm(&grads)?;
            let grads = optim::clip(grads, grad_norm, config.max_grad_norm)?;
            let lr = config.learning_rate * optim::lr_factor(config.lr_scheduler, step, config.warmup_steps, total);
            optimizer.step(&vars, &grads, lr)?;
            let seconds = started.elapsed().as_secs_f64();
            let record = StepRecord {
                step: step + 1,
                epoch: epoch as f64 + (index + 1) as f64 / steps_per_epoch as f64,
                loss,
                learning_rate: lr,
                grad_norm,
                tokens_per_s: if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 },
            };
            on_step(&record);
            records.push(record);
        }
        epoch += 1;
    }
    Ok(records)
}

/// The mean loss over the counted tokens of `group`'s micro-batches, its gradients for `vars`,
/// and the real tokens it read.
fn accumulate(
    model: &TrainModel,
    vars: &[&candle_core::Var],
    group: &[Vec<&Encoded>],
    pad: u32,
) -> Result<(f64, Vec<Tensor>, usize), EvalError> {
    let batches = group.iter().map(|rows| data::batch(rows, pad)).collect::<candle_core::Result<Vec<_>>>()?;
    let counted: usize = batches.iter().map(|b| b.counted).sum();
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    let (mut loss, mut tokens) = (0.0, 0);
    for batch in batches {
        let logits = model.logits_at(&batch.inputs, &batch.at)?;
        let part = (model::summed_nll(&logits, &batch.targets)? / counted.max(1) as f64)?;
        loss += part.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        tokens += batch.tokens;
        let store = part.backward()?;
        for (slot, var) in grads.iter_mut().zip(vars) {
            let grad = match store.get(var.as_tensor()) {
                Some(g) => g.clone(),
                None => var.as_tensor().zeros_like()?,
            };
            *slot = Some(match slot.take() {
                Some(sum) => (sum + grad)?,
                None => grad,
            });
        }
    }
    let grads = grads
        .into_iter()
        .zip(vars)
        .map(|(g, v)| g.map_or_else(|| v.as_tensor().zeros_like(), Ok))
        .collect::<candle_core::Result<_>>()?;
    Ok((loss, grads, tokens))
}
