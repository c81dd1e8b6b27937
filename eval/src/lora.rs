//! PEFT LoRA adapters, merged into the base weights at load as W + (alpha / r)·B·A.

use crate::error::EvalError;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct AdapterConfig {
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    fan_in_fan_out: bool,
}

/// The weight deltas of an adapter, keyed by the base model's Hugging Face weight name
/// (`model.layers.0.self_attn.q_proj.weight`).
#[derive(Debug)]
pub(crate) struct Adapter {
    pub(crate) path: PathBuf,
    pub(crate) deltas: HashMap<String, Tensor>,
}

/// A loaded pair, kept unmerged; used by tests to compare against merged weights.
#[derive(Debug)]
pub(crate) struct LoraPair {
    pub(crate) a: Tensor,
    pub(crate) b: Tensor,
    pub(crate) scale: f64,
}

impl Adapter {
    pub(crate) fn load(dir: &Path) -> Result<Self, EvalError> {
        let pairs = load_pairs(dir)?;
        let mut deltas = HashMap::new();
        for (name, pair) in pairs {
            let delta = (pair.b.matmul(&pair.a)? * pair.scale)?;
            deltas.insert(name, delta);
        }
        Ok(Self { path: dir.to_path_buf(), deltas })
    }

    pub(crate) fn error(&self, message: impl ToString) -> EvalError {
        EvalError::Lora { path: self.path.clone(), message: message.to_string() }
    }

    /// Fails when a delta was not consumed by the loader: its target does not exist.
    pub(crate) fn ensure_consumed(&self) -> Result<(), EvalError> {
        let mut left: Vec<&String> = self.deltas.keys().collect();
        left.sort();
        match left.first() {
            None => Ok(()),
            Some(name) => Err(self.error(format!("unsupported or unknown target module `{name}`"))),
        }
    }
}

pub(crate) fn load_pairs(dir: &Path) -> Result<HashMap<String, LoraPair>, EvalError> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| EvalError::io(&config_path, e))?;
    let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| EvalError::parse(&config_path, e))?;
    if config.fan_in_fan_out || config.r == 0 {
        return Err(EvalError::Lora {
            path: dir.to_path_buf(),
            message: "fan_in_fan_out adapters and r = 0 are not supported".into(),
        });
    }
    let scale = if config.use_rslora {
        config.lora_alpha / (config.r as f64).sqrt()
    } else {
        config.lora_alpha / config.r as f64
    };
    let weights_path = dir.join("adapter_model.safetensors");
    let tensors = crate::safetensors_io::load(&weights_path)?;
    pair_up(tensors, scale, &weights_path)
}

fn pair_up(
    mut tensors: HashMap<String, Tensor>,
    scale: f64,
    path: &Path,
) -> Result<HashMap<String, LoraPair>, EvalError> {
    let a_names: Vec<String> = tensors.keys().filter(|k| k.contains(".lora_A.")).cloned().collect();
    let mut pairs = HashMap::new();
    for a_name in a_names {
        let b_name = a_name.replace(".lora_A.", ".lora_B.");
        let missing = || EvalError::Tensor {
            path: path.to_path_buf(),
            tensor: b_name.clone(),
            message: "missing lora_B for this lora_A".into(),
        };
        let b = tensors.remove(&b_name).ok_or_else(missing)?;
        let a = tensors.remove(&a_name).ok_or_else(|| EvalError::Tensor {
            path: path.to_path_buf(),
            tensor: a_name.clone(),
            message: "vanished while pairing".into(),
        })?;
        let module = a_name.split(".lora_A.").next().unwrap_or_default();
        let module = module.strip_prefix("base_model.model.").unwrap_or(module);
        let to_f32 = |t: Tensor| t.to_dtype(DType::F32).and_then(|t| t.to_device(&Device::Cpu));
        pairs.insert(format!("{module}.weight"), LoraPair { a: to_f32(a)?, b: to_f32(b)?, scale });
    }
    Ok(pairs)
}

/// llama.cpp's converter reorders the rows of q_proj/k_proj so that each head's two RoPE halves
/// interleave; a delta for those weights must be reordered the same way.
pub(crate) fn permute_for_gguf_rope(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((n_head, 2, rows / n_head / 2, cols))?.transpose(1, 2)?.reshape((rows, cols))
}

/// The inverse of [`permute_for_gguf_rope`]: rows of a GGUF q/k weight back in Hugging Face
/// order (each head's RoPE halves one after the other).
pub(crate) fn unpermute_from_gguf_rope(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((n_head, rows / n_head / 2, 2, cols))?.transpose(1, 2)?.reshape((rows, cols))
}
