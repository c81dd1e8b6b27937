//! Training summaries: `training_metrics.json` (flat keys; unknown keys are kept as config, in the
//! file's order) and HF `trainer_state.json` (`log_history` → loss curve, final loss, runtime).

use super::json::At;
use super::{ImportError, ImportedPart};
use crate::phase::{ConfigEntry, DatasetInfo, LossPoint};

/// Keys of `training_metrics.json` that are metrics or metadata, not configuration.
const NOT_CONFIG: [&str; 13] = [
    "phase",
    "final_loss",
    "vram_peak_gb",
    "vram_peak_mib",
    "training_time_s",
    "training_time_min",
    "loss_curve",
    "fixes",
    "num_examples",
    "dataset_digest",
    "environment",
    "comment",
    "generation_params",
];

const MIB_PER_GB: f64 = 1024.0;

pub(crate) fn metrics_file(at: &At<'_>, part: &mut ImportedPart) -> Result<(), ImportError> {
    part.training.final_loss = at.opt_f64("final_loss")?;
    part.training.vram_peak_mib = match (at.get("vram_peak_mib"), at.get("vram_peak_gb")) {
        (Some(mib), _) => Some(mib.u64()?),
        (None, Some(gb)) => Some((non_negative(&gb)? * MIB_PER_GB).round() as u64),
        (None, None) => None,
    };
    part.training.duration_secs = match (at.get("training_time_s"), at.get("training_time_min")) {
        (Some(s), _) => Some(non_negative(&s)?.round() as u64),
        (None, Some(m)) => Some((non_negative(&m)? * 60.0).round() as u64),
        (None, None) => None,
    };
    if let Some(curve) = at.get("loss_curve") {
        part.training.loss_curve = curve
            .array()?
            .iter()
            .map(|p| Ok(LossPoint { step: p.field("step")?.u64()?, loss: p.field("loss")?.f64()? }))
            .collect::<Result<_, ImportError>>()?;
    }
    let size = at.get("num_examples").map(|n| n.u64()).transpose()?;
    let digest = at.opt_str("dataset_digest")?.map(str::to_owned);
    if size.is_some() || digest.is_some() {
        part.dataset = Some(DatasetInfo { digest, size });
    }
    if let Some(fixes) = at.get("fixes") {
        for fix in fixes.array()? {
            part.notes.push(fix.str()?.to_owned());
        }
    }
    part.config = at
        .entries()?
        .into_iter()
        .filter(|(k, _)| !NOT_CONFIG.contains(k))
        .map(|(k, v)| ConfigEntry { key: k.to_owned(), value: v.value.to_text() })
        .collect();
    Ok(())
}

pub(crate) fn trainer_state(at: &At<'_>, part: &mut ImportedPart) -> Result<(), ImportError> {
    for entry in at.field("log_history")?.array()? {
        if let Some(loss) = entry.get("loss") {
            let step = entry.field("step")?.u64()?;
            part.training.loss_curve.push(LossPoint { step, loss: loss.f64()? });
        }
        if let Some(runtime) = entry.get("train_runtime") {
            part.training.duration_secs = Some(non_negative(&runtime)?.round() as u64);
        }
    }
    part.training.final_loss = part.training.loss_curve.last().map(|p| p.loss);
    Ok(())
}

fn non_negative(at: &At<'_>) -> Result<f64, ImportError> {
    let v = at.f64()?;
    if v < 0.0 {
        return Err(at.invalid(format!("must not be negative, found {v}")));
    }
    Ok(v)
}
