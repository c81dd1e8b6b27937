//! Llama-family models from GGUF files, with LoRA merging and optional re-quantisation.

use super::llama::{Embedding, Group, Layer, Llama, LlamaConfig, Proj};
use crate::error::EvalError;
use crate::gguf::GgufMeta;
use crate::lora::{Adapter, permute_for_gguf_rope};
use crate::native::packed::{self, Packed};
use crate::native::{Embed, NativeLayer, NativeLlama};
use crate::spec::CpuRequantize;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Tensor};
use std::borrow::Cow;
use std::io::{Read, Seek};
use std::sync::Arc;

/// GGUF tensor suffixes and the Hugging Face module each one comes from.
const LAYER_TENSORS: [(&str, &str); 7] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

pub(crate) struct GgufLoader<'a, R> {
    pub(crate) meta: GgufMeta<'a>,
    pub(crate) reader: &'a mut R,
    pub(crate) adapter: Option<Adapter>,
    pub(crate) requantize: Option<CpuRequantize>,
    /// Re-quantised matmul weights get zero columns up to a multiple of this (`Proj::pad`).
    pub(crate) pad_to: usize,
    pub(crate) device: Device,
}

impl<R> std::fmt::Debug for GgufLoader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufLoader").field("path", &self.meta.path).finish()
    }
}

pub(crate) fn config(meta: &GgufMeta<'_>) -> Result<LlamaConfig, EvalError> {
    let arch = meta.string("general.architecture")?;
    let key = |k: &str| format!("{arch}.{k}");
    let n_heads = meta.usize(&key("attention.head_count"))?;
    let vocab = match meta.usize(&key("vocab_size")) {
        Ok(v) => v,
        Err(_) => meta.vocab()?.tokens.len(),
    };
    Ok(LlamaConfig {
        hidden: meta.usize(&key("embedding_length"))?,
        n_layers: meta.usize(&key("block_count"))?,
        n_heads,
        n_kv_heads: meta.usize(&key("attention.head_count_kv")).unwrap_or(n_heads),
        vocab,
        rms_eps: f64::from(meta.opt_f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5)),
        rope_theta: meta.opt_f32(&key("rope.freq_base")).unwrap_or(10_000.0),
        max_seq: meta.usize(&key("context_length")).unwrap_or(4096),
        rope_interleaved: true,
        kv_dtype: super::llama::KV_DTYPE,
    })
}

impl<R: Read + Seek> GgufLoader<'_, R> {
    fn content(&self) -> &Content {
        self.meta.content
    }

    fn read(&mut self, name: &str) -> Result<QTensor, EvalError> {
        let content = self.meta.content;
        content.tensor(self.reader, name, &self.device).map_err(|e| EvalError::Tensor {
            path: self.meta.path_buf(),
            tensor: name.to_string(),
            message: e.to_string(),
        })
    }

    fn dense(&mut self, name: &str) -> Result<Tensor, EvalError> {
        Ok(self.read(name)?.dequantize(&self.device)?)
    }

    pub(crate) fn load(mut self, cfg: LlamaConfig) -> Result<(Llama, String), EvalError> {
        let embed = self.read("token_embd.weight")?;
        let dtype =
            self.content().tensor_infos.get("blk.0.attn_q.weight").map_or(embed.dtype(), |info| info.ggml_dtype);
        // A tied table serves both the lookups and the output matmul: one (re-quantised) copy
        // does both. An untied one only serves lookups, which dequantise single rows.
        let tied = !self.content().tensor_infos.contains_key("output.weight");
        let embed = if tied { self.requantized(embed)? } else { (embed, 0) };
        let (embed, embed_pad) = (Arc::new(embed.0), embed.1);
        let dtype = format!("{dtype:?}").to_lowercase();
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for index in 0..cfg.n_layers {
            layers.push(self.layer(index, &cfg)?);
        }
        let norm = self.dense("output_norm.weight")?;
        let output = self.output(&embed, embed_pad)?;
        if let Some(adapter) = &self.adapter {
            adapter.ensure_consumed()?;
        }
        let llama = Llama::new(cfg.clone(), Embedding::new(embed, cfg.hidden), layers, norm, output, &self.device)?;
        Ok((llama, dtype))
    }

    fn layer(&mut self, index: usize, cfg: &LlamaConfig) -> Result<Layer, EvalError> {
        let [q, k, v, o, gate, up, down] = self.merged_layer(index, cfg)?;
        let (q, k, v, o) = (self.proj(q)?, self.proj(k)?, self.proj(v)?, self.proj(o)?);
        let (gate, up, down) = (self.proj(gate)?, self.proj(up)?, self.proj(down)?);
        Ok(Layer {
            attn_norm: self.dense(&format!("blk.{index}.attn_norm.weight"))?,
            qkv: Group::fuse([q, k, v])?,
            o,
            ffn_norm: self.dense(&format!("blk.{index}.ffn_norm.weight"))?,
            gate_up: Group::fuse([gate, up])?,
            down,
        })
    }

    /// A merged matmul weight re-quantised as configured, ready to multiply.
    fn proj(&self, tensor: QTensor) -> Result<Proj, EvalError> {
        let (tensor, pad) = self.requantized(tensor)?;
        Ok(Proj::padded(QMatMul::from_qtensor(tensor)?, pad))
    }

    /// The seven matmul weights of layer `index` in `LAYER_TENSORS` order, LoRA deltas merged,
    /// in their stored type.
    fn merged_layer(&mut self, index: usize, cfg: &LlamaConfig) -> Result<[QTensor; 7], EvalError> {
        let mut weights = Vec::with_capacity(LAYER_TENSORS.len());
        for (suffix, module) in LAYER_TENSORS {
            let heads = match suffix {
                "attn_q" => Some(cfg.n_heads),
                "attn_k" => Some(cfg.n_kv_heads),
                _ => None,
            };
            let hf = format!("model.layers.{index}.{module}.weight");
            weights.push(self.merged(&format!("blk.{index}.{suffix}.weight"), &hf, heads)?);
        }
        Ok(weights.try_into().unwrap_or_else(|_| unreachable!("seven layer tensors")))
    }

    /// A tied output layer cannot take an adapter's `lm_head` delta: say so.
    fn refuse_tied_lm_head_delta(&self) -> Result<(), EvalError> {
        match &self.adapter {
            Some(adapter) if adapter.deltas.contains_key("lm_head.weight") => {
                Err(EvalError::LoraTiedOutput { path: adapter.path.clone(), module: "lm_head".into() })
            }
            _ => Ok(()),
        }
    }

    /// Reads one matmul weight with its LoRA delta merged (`permute_heads` for q/k), in its
    /// stored type.
    fn merged(&mut self, name: &str, hf: &str, permute_heads: Option<usize>) -> Result<QTensor, EvalError> {
        let mut tensor = self.read(name)?;
        let delta = self.adapter.as_mut().and_then(|a| a.deltas.remove(hf));
        if let Some(delta) = delta {
            let delta = match permute_heads {
                Some(n_head) => permute_for_gguf_rope(&delta, n_head)?,
                None => delta,
            };
            let merged = (tensor.dequantize(&self.device)? + delta)?;
            tensor = QTensor::quantize(&merged, tensor.dtype())?;
        }
        Ok(tensor)
    }

    /// The tensor as it will be multiplied, and the zero columns added to it (`Proj::pad`).
    fn requantized(&self, tensor: QTensor) -> Result<(QTensor, usize), EvalError> {
        let (_, cols) = tensor.shape().dims2()?;
        let padded = cols.next_multiple_of(self.pad_to.max(1));
        match (self.requantize, tensor.dtype()) {
            (Some(CpuRequantize::Q8_0), GgmlDType::Q4_0 | GgmlDType::Q4_1) => {
                Ok((requantize_by_rows(&tensor, GgmlDType::Q8_0, padded, &self.device)?, padded - cols))
            }
            (Some(CpuRequantize::Q8_0), GgmlDType::Q8_0) if padded > cols => {
                Ok((pad_q8_0_rows(&tensor, padded, &self.device)?, padded - cols))
            }
            _ => Ok((tensor, 0)),
        }
    }

    fn output(&mut self, embed: &Arc<QTensor>, embed_pad: usize) -> Result<Proj, EvalError> {
        if self.content().tensor_infos.contains_key("output.weight") {
            let output = self.merged("output.weight", "lm_head.weight", None)?;
            return self.proj(output);
        }
        self.refuse_tied_lm_head_delta()?;
        Ok(Proj::padded(QMatMul::from_arc(embed.clone())?, embed_pad))
    }
}

/// Whether every matmul weight of the model packs for our CPU kernels (`native`): Q4_0,
/// Q4_1 or Q8_0, q/k/v and gate/up of one type each, widths in whole blocks.
pub(crate) fn native_plan(content: &Content, cfg: &LlamaConfig) -> bool {
    let packable = |name: &str| {
        content.tensor_infos.get(name).is_some_and(|info| {
            matches!(info.ggml_dtype, GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q8_0)
                && info.shape.dims().get(1).is_some_and(|cols| cols.is_multiple_of(packed::BLOCK))
        })
    };
    let dtype = |name: &str| content.tensor_infos.get(name).map(|info| info.ggml_dtype);
    let layers_pack = (0..cfg.n_layers).all(|i| {
        let name = |suffix: &str| format!("blk.{i}.{suffix}.weight");
        LAYER_TENSORS.iter().all(|(suffix, _)| packable(&name(suffix)))
            && dtype(&name("attn_q")) == dtype(&name("attn_k"))
            && dtype(&name("attn_q")) == dtype(&name("attn_v"))
            && dtype(&name("ffn_gate")) == dtype(&name("ffn_up"))
    });
    let output = if content.tensor_infos.contains_key("output.weight") { "output.weight" } else { "token_embd.weight" };
    cfg.n_heads.is_multiple_of(cfg.n_kv_heads.max(1)) && layers_pack && packable(output)
}

impl<R: Read + Seek> GgufLoader<'_, R> {
    /// Loads the model for our CPU kernels; `native_plan` said it packs. Weights keep their
    /// stored type unless `cpu_requantize` asks for 8 bits.
    pub(crate) fn load_native(mut self, cfg: LlamaConfig) -> Result<(NativeLlama, String), EvalError> {
        let to_byte = self.requantize == Some(CpuRequantize::Q8_0);
        let tied = !self.content().tensor_infos.contains_key("output.weight");
        let dtype = self
            .content()
            .tensor_infos
            .get("blk.0.attn_q.weight")
            .map_or_else(|| "unknown".into(), |info| format!("{:?}", info.ggml_dtype).to_lowercase());
        let embed = self.read("token_embd.weight")?;
        let embed = if tied {
            Embed::Tied(self.pack("token_embd.weight", &[&embed], to_byte)?)
        } else {
            Embed::Table(Embedding::new(Arc::new(embed), cfg.hidden))
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for index in 0..cfg.n_layers {
            let [q, k, v, o, gate, up, down] = &self.merged_layer(index, &cfg)?;
            let name = |suffix: &str| format!("blk.{index}.{suffix}.weight");
            layers.push(NativeLayer {
                attn_norm: self.dense(&name("attn_norm"))?.to_vec1()?,
                qkv: self.pack(&name("attn_q"), &[q, k, v], to_byte)?,
                o: self.pack(&name("attn_output"), &[o], to_byte)?,
                ffn_norm: self.dense(&name("ffn_norm"))?.to_vec1()?,
                gate_up: self.pack(&name("ffn_gate"), &[gate, up], to_byte)?,
                down: self.pack(&name("ffn_down"), &[down], to_byte)?,
            });
        }
        let norm = self.dense("output_norm.weight")?.to_vec1()?;
        let output = if tied {
            self.refuse_tied_lm_head_delta()?;
            None
        } else {
            let output = self.merged("output.weight", "lm_head.weight", None)?;
            Some(self.pack("output.weight", &[&output], to_byte)?)
        };
        if let Some(adapter) = &self.adapter {
            adapter.ensure_consumed()?;
        }
        Ok((NativeLlama::new(cfg, embed, layers, norm, output), dtype))
    }

    fn pack(&self, name: &str, parts: &[&QTensor], to_byte: bool) -> Result<Packed, EvalError> {
        Packed::from_qtensors(parts, to_byte).map_err(|e| EvalError::Tensor {
            path: self.meta.path_buf(),
            tensor: name.to_string(),
            message: format!("cannot pack for the CPU kernels: {}", e.0),
        })
    }
}

/// Extends every row of a Q8_0 tensor with zero blocks (scale 0) up to `width` columns: exact,
/// and without a dense copy.
pub(crate) fn pad_q8_0_rows(tensor: &QTensor, width: usize, device: &Device) -> candle_core::Result<QTensor> {
    let (rows, cols) = tensor.shape().dims2()?;
    let block = GgmlDType::Q8_0.block_size();
    let block_bytes = GgmlDType::Q8_0.type_size();
    let (row_bytes, pad_bytes) = (cols / block * block_bytes, (width - cols) / block * block_bytes);
    let data = tensor.data()?;
    let mut out = Vec::with_capacity(rows * (row_bytes + pad_bytes));
    for row in data.chunks_exact(row_bytes) {
        out.extend_from_slice(row);
        out.resize(out.len() + pad_bytes, 0);
    }
    QTensor::new(QStorage::from_data(Cow::Owned(out), device, GgmlDType::Q8_0)?, (rows, width))
}

/// Rows converted per step by `requantize_by_rows`.
const REQUANTIZE_ROWS: usize = 256;

/// Input widths that candle's repacked VNNI kernels take: multiples of one Q8_K super-block.
const VNNI_WIDTH: usize = 256;

/// The input width that re-quantised weights are padded to a multiple of on `device`: 256 on a
/// CPU where candle's repacked Q8_0 kernels run; 1 (no padding) elsewhere.
pub(crate) fn fast_matmul_width(device: &Device) -> usize {
    if device.is_cpu() && cpu_has_vnni() { VNNI_WIDTH } else { 1 }
}

/// Whether candle's repacked Q8_0 kernels run here (AVX512-VNNI, or AVX-VNNI with AVX2); on
/// plain AVX2 they do not, and padding would only add work.
fn cpu_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"))
            || (is_x86_feature_detected!("avxvnni") && is_x86_feature_detected!("avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Re-quantises a 2-D tensor a few rows at a time, so that no f32 copy of a large table (the
/// 49k × 576 token embedding is 113 MB in f32) raises the peak memory of loading. Rows are
/// extended with zeros to `width` columns.
fn requantize_by_rows(
    tensor: &QTensor,
    dtype: GgmlDType,
    width: usize,
    device: &Device,
) -> candle_core::Result<QTensor> {
    let (rows, cols) = tensor.shape().dims2()?;
    let source = tensor.dtype();
    let row_bytes = cols / source.block_size() * source.type_size();
    let data = tensor.data()?;
    let mut out = Vec::with_capacity(rows * width / dtype.block_size() * dtype.type_size());
    for start in (0..rows).step_by(REQUANTIZE_ROWS) {
        let n = REQUANTIZE_ROWS.min(rows - start);
        let bytes = &data[start * row_bytes..(start + n) * row_bytes];
        let part = QTensor::new(QStorage::from_data(Cow::Borrowed(bytes), device, source)?, (n, cols))?;
        let dense = part.dequantize(device)?.pad_with_zeros(1, 0, width - cols)?;
        out.extend_from_slice(&QTensor::quantize(&dense, dtype)?.data()?);
    }
    QTensor::new(QStorage::from_data(Cow::Owned(out), device, dtype)?, (rows, width))
}
