//! Trained LoRA pairs written as a PEFT adapter: `adapter_config.json` and
//! `adapter_model.safetensors`, loadable by PEFT and by the eval engine.

use super::model::TrainModel;
use crate::error::EvalError;
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The prefix PEFT puts before the base model's module names.
const PEFT_PREFIX: &str = "base_model.model.";
pub(crate) const CONFIG_FILE: &str = "adapter_config.json";
pub(crate) const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The LoRA pairs of a training run, in f32, keyed by the base model's module name.
#[derive(Debug, Clone)]
pub struct TrainedAdapter {
    pub(crate) r: usize,
    pub(crate) lora_alpha: f64,
    pub(crate) target_modules: Vec<String>,
    /// (`model.layers.{i}.self_attn.q_proj`, A (r, in), B (out, r)).
    pub(crate) pairs: Vec<(String, Tensor, Tensor)>,
}

impl TrainedAdapter {
    /// A copy of the model's current pairs.
    pub(crate) fn from_model(
        model: &TrainModel,
        r: usize,
        lora_alpha: f64,
        target_modules: &[String],
    ) -> candle_core::Result<Self> {
        let mut pairs = Vec::new();
        for (layer, module, pair) in model.pairs() {
            let a = pair.a.as_tensor().to_dtype(DType::F32)?.copy()?;
            let b = pair.b.as_tensor().to_dtype(DType::F32)?.copy()?;
            pairs.push((format!("model.layers.{layer}.{module}"), a, b));
        }
        Ok(Self { r, lora_alpha, target_modules: target_modules.to_vec(), pairs })
    }

    /// The module names that carry a pair, in layer order.
    pub fn modules(&self) -> Vec<&str> {
        self.pairs.iter().map(|(m, _, _)| m.as_str()).collect()
    }

    /// The A and B weights of every pair as f32 values, for comparing two runs.
    pub fn values(&self) -> Result<Vec<Vec<f32>>, EvalError> {
        let mut out = Vec::new();
        for (_, a, b) in &self.pairs {
            out.push(a.flatten_all()?.to_vec1()?);
            out.push(b.flatten_all()?.to_vec1()?);
        }
        Ok(out)
    }
}

/// Writes `adapter` into `dir` (created if missing) in PEFT's layout, naming
/// `base_model_name_or_path` as its base model.
pub fn write_peft_adapter(
    dir: &Path,
    adapter: &TrainedAdapter,
    base_model_name_or_path: &str,
) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": adapter.r,
        "lora_alpha": adapter.lora_alpha,
        "lora_dropout": 0.0,
        "target_modules": adapter.target_modules,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "inference_mode": true,
    });
    let config_path = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).map_err(|e| EvalError::parse(&config_path, e))?;
    std::fs::write(&config_path, text).map_err(|e| EvalError::io(&config_path, e))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (module, a, b) in &adapter.pairs {
        tensors.insert(format!("{PEFT_PREFIX}{module}.lora_A.weight"), a.clone());
        tensors.insert(format!("{PEFT_PREFIX}{module}.lora_B.weight"), b.clone());
    }
    let weights_path = dir.join(WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &weights_path)?;
    Ok(())
}
