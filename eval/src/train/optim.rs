//! AdamW with decoupled weight decay, gradient clipping by global norm, and the learning-rate
//! schedules of Hugging Face's trainer.

use super::LrSchedule;
use candle_core::{Tensor, Var};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;
/// Added to the norm before dividing by it, as PyTorch's `clip_grad_norm_` does.
const CLIP_EPSILON: f64 = 1e-6;

/// The learning-rate factor at optimizer step `step` (0-based) of `total`, as Hugging Face's
/// `get_*_schedule_with_warmup`: a linear warmup from 0 over `warmup` steps, then constant,
/// linear decay to 0, or half a cosine to 0.
pub(crate) fn lr_factor(schedule: LrSchedule, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64;
    match schedule {
        LrSchedule::Constant => 1.0,
        LrSchedule::Linear => (1.0 - progress).max(0.0),
        LrSchedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    }
}

/// The global L2 norm of `grads`.
pub(crate) fn global_norm(grads: &[Tensor]) -> candle_core::Result<f64> {
    let mut sum = 0.0;
    for g in grads {
        sum += g.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

/// AdamW over a fixed list of variables.
#[derive(Debug)]
pub(crate) struct AdamW {
    moments: Vec<(Tensor, Tensor)>,
    weight_decay: f64,
    steps: i32,
}

impl AdamW {
    pub(crate) fn new(vars: &[&Var], weight_decay: f64) -> candle_core::Result<Self> {
        let moments = vars
            .iter()
            .map(|v| Ok((v.as_tensor().zeros_like()?, v.as_tensor().zeros_like()?)))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { moments, weight_decay, steps: 0 })
    }

    /// One update of `vars` (the same, in the same order, as at `new`) with `grads` at `lr`.
    pub(crate) fn step(&mut self, vars: &[&Var], grads: &[Tensor], lr: f64) -> candle_core::Result<()> {
        self.steps += 1;
        let correction1 = 1.0 - BETA1.powi(self.steps);
        let correction2 = 1.0 - BETA2.powi(self.steps);
        for ((var, grad), (m, v)) in vars.iter().zip(grads).zip(self.moments.iter_mut()) {
            *m = ((&*m * BETA1)? + (grad * (1.0 - BETA1))?)?;
            *v = ((&*v * BETA2)? + (grad.sqr()? * (1.0 - BETA2))?)?;
            let m_hat = (&*m / correction1)?;
            let v_hat = (&*v / correction2)?;
            let update = (m_hat / (v_hat.sqrt()? + EPSILON)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// `grads` scaled down so that their global norm is at most `max_norm` (0: no clipping).
pub(crate) fn clip(grads: Vec<Tensor>, norm: f64, max_norm: f64) -> candle_core::Result<Vec<Tensor>> {
    if max_norm <= 0.0 || norm <= max_norm {
        return Ok(grads);
    }
    let scale = max_norm / (norm + CLIP_EPSILON);
    grads.into_iter().map(|g| g * scale).collect()
}
