//! Llama-family models from Hugging Face safetensors directories.

use super::llama::{Embedding, Group, Layer, Llama, LlamaConfig, Proj};
use crate::error::EvalError;
use crate::lora::Adapter;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The fields of `config.json` a llama needs.
#[derive(Debug, Deserialize)]
pub(crate) struct HfConfig {
    #[serde(default)]
    pub(crate) architectures: Vec<String>,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) num_key_value_heads: Option<usize>,
    pub(crate) vocab_size: usize,
    #[serde(default = "default_eps")]
    pub(crate) rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub(crate) rope_theta: f32,
    #[serde(default = "default_max_seq")]
    pub(crate) max_position_embeddings: usize,
    #[serde(default)]
    pub(crate) tie_word_embeddings: bool,
    pub(crate) bos_token_id: Option<u32>,
    pub(crate) eos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f32 {
    10_000.0
}
fn default_max_seq() -> usize {
    4096
}

impl HfConfig {
    pub(crate) fn read(dir: &Path) -> Result<Self, EvalError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| EvalError::parse(&path, e))
    }

    pub(crate) fn llama_config(&self) -> LlamaConfig {
        LlamaConfig {
            hidden: self.hidden_size,
            n_layers: self.num_hidden_layers,
            n_heads: self.num_attention_heads,
            n_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            vocab: self.vocab_size,
            rms_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            max_seq: self.max_position_embeddings,
            rope_interleaved: false,
            kv_dtype: super::llama::KV_DTYPE,
        }
    }

    /// The first EOS id (`eos_token_id` may be a number or a list).
    pub(crate) fn eos(&self) -> Option<u32> {
        match self.eos_token_id.as_ref()? {
            serde_json::Value::Number(n) => n.as_u64().map(|v| v as u32),
            serde_json::Value::Array(items) => items.first()?.as_u64().map(|v| v as u32),
            _ => None,
        }
    }
}

/// All tensors of the directory as f32: `model.safetensors`, or the shards its index names.
pub(crate) fn read_tensors(dir: &Path) -> Result<HashMap<String, Tensor>, EvalError> {
    let single = dir.join("model.safetensors");
    let files = if single.is_file() { vec![single] } else { shard_files(dir)? };
    let mut tensors = HashMap::new();
    for file in files {
        for (name, t) in crate::safetensors_io::load(&file)? {
            tensors.insert(name, t.to_dtype(DType::F32)?);
        }
    }
    Ok(tensors)
}

fn shard_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, EvalError> {
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|e| EvalError::io(&index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| EvalError::parse(&index, e))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| EvalError::parse(&index, "missing weight_map"))?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Adds every adapter delta to its base tensor; `lm_head` on a tied model is refused.
pub(crate) fn merge_adapter(
    tensors: &mut HashMap<String, Tensor>,
    adapter: &mut Adapter,
    tied: bool,
) -> Result<(), EvalError> {
    if tied && adapter.deltas.contains_key("lm_head.weight") {
        return Err(EvalError::LoraTiedOutput { path: adapter.path.clone(), module: "lm_head".into() });
    }
    let names: Vec<String> = adapter.deltas.keys().cloned().collect();
    for name in names {
        if let Some(base) = tensors.get(&name) {
            let delta = adapter.deltas.remove(&name).ok_or_else(|| adapter.error("delta vanished"))?;
            let merged = (base + delta)?;
            tensors.insert(name, merged);
        }
    }
    adapter.ensure_consumed()
}

pub(crate) fn build(
    cfg: LlamaConfig,
    mut tensors: HashMap<String, Tensor>,
    dir: &Path,
    device: &Device,
) -> Result<Llama, EvalError> {
    let mut take = |name: &str| {
        tensors.remove(name).ok_or_else(|| EvalError::Tensor {
            path: dir.join("model.safetensors"),
            tensor: name.to_string(),
            message: "missing".into(),
        })
    };
    let proj = |t: Tensor| Proj::new(QMatMul::Tensor(t));
    let embed_dense = take("model.embed_tokens.weight")?;
    let mut layers = Vec::with_capacity(cfg.n_layers);
    for i in 0..cfg.n_layers {
        let mut w = |m: &str| take(&format!("model.layers.{i}.{m}.weight"));
        layers.push(Layer {
            attn_norm: w("input_layernorm")?,
            qkv: Group::Split([
                proj(w("self_attn.q_proj")?),
                proj(w("self_attn.k_proj")?),
                proj(w("self_attn.v_proj")?),
            ]),
            o: proj(w("self_attn.o_proj")?),
            ffn_norm: w("post_attention_layernorm")?,
            gate_up: Group::Split([proj(w("mlp.gate_proj")?), proj(w("mlp.up_proj")?)]),
            down: proj(w("mlp.down_proj")?),
        });
    }
    let norm = take("model.norm.weight")?;
    let output = match take("lm_head.weight") {
        Ok(t) => proj(t),
        Err(_) => proj(embed_dense.clone()),
    };
    let embed =
        Embedding::new(Arc::new(QTensor::quantize(&embed_dense, candle_core::quantized::GgmlDType::F32)?), cfg.hidden);
    Ok(Llama::new(cfg, embed, layers, norm, output, device)?)
}
