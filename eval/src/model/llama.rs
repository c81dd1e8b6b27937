//! Our llama forward pass: batched, with preallocated KV caches and per-row positions.
//!
//! Rows of a batch are left-padded to a common length; each row has its own RoPE positions
//! and an additive mask that hides its padding, so all rows write the cache at the same offset.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::sync::Arc;

/// Shape hyper-parameters of a llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LlamaConfig {
    pub(crate) hidden: usize,
    pub(crate) n_layers: usize,
    pub(crate) n_heads: usize,
    pub(crate) n_kv_heads: usize,
    pub(crate) vocab: usize,
    pub(crate) rms_eps: f64,
    pub(crate) rope_theta: f32,
    pub(crate) max_seq: usize,
    /// GGUF stores q/k rows permuted for interleaved RoPE; Hugging Face weights use halves.
    pub(crate) rope_interleaved: bool,
}

impl LlamaConfig {
    pub(crate) fn head_dim(&self) -> usize {
        self.hidden / self.n_heads
    }
}

/// Token embedding table, kept quantised: a lookup only dequantises the rows it reads.
#[derive(Debug, Clone)]
pub(crate) struct Embedding(pub(crate) Arc<QTensor>);

/// A projection `y = x Wᵀ` with an optional unmerged LoRA pair (used to check merging).
#[derive(Debug, Clone)]
pub(crate) struct Proj {
    pub(crate) w: QMatMul,
    pub(crate) lora: Option<(Tensor, Tensor, f64)>,
}

impl Proj {
    pub(crate) fn new(w: QMatMul) -> Self {
        Self { w, lora: None }
    }

    /// Output features of the weight.
    pub(crate) fn w_rows(&self) -> usize {
        match &self.w {
            QMatMul::QTensor(t) => t.shape().dims().first().copied().unwrap_or(0),
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims().first().copied().unwrap_or(0),
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.w.forward(x)?;
        match &self.lora {
            None => Ok(y),
            Some((a, b, scale)) => {
                let delta = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
                y + (delta * *scale)?
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) attn_norm: Tensor,
    pub(crate) q: Proj,
    pub(crate) k: Proj,
    pub(crate) v: Proj,
    pub(crate) o: Proj,
    pub(crate) ffn_norm: Tensor,
    pub(crate) gate: Proj,
    pub(crate) up: Proj,
    pub(crate) down: Proj,
}

#[derive(Debug, Clone)]
pub(crate) struct Llama {
    pub(crate) cfg: LlamaConfig,
    pub(crate) embed: Embedding,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Tensor,
    pub(crate) output: Proj,
    cos: Tensor,
    sin: Tensor,
}

/// Per-layer K and V buffers of shape (batch, kv_heads, capacity, head_dim), written in place.
#[derive(Debug)]
pub(crate) struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    pub(crate) len: usize,
}

impl KvCache {
    pub(crate) fn new(cfg: &LlamaConfig, batch: usize, capacity: usize, device: &Device) -> candle_core::Result<Self> {
        let shape = (batch, cfg.n_kv_heads, capacity, cfg.head_dim());
        let zeros = || Tensor::zeros(shape, DType::F32, device);
        let k = (0..cfg.n_layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?;
        let v = (0..cfg.n_layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?;
        Ok(Self { k, v, len: 0 })
    }

    /// Keeps (and repeats) the rows named by `rows`, e.g. to fan a prompt out to K samples
    /// or to drop finished sequences.
    pub(crate) fn select_rows(&mut self, rows: &[u32]) -> candle_core::Result<()> {
        let device = self.k[0].device().clone();
        let index = Tensor::new(rows, &device)?;
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = t.index_select(&index, 0)?;
        }
        Ok(())
    }
}

impl Llama {
    pub(crate) fn new(
        cfg: LlamaConfig,
        embed: Embedding,
        layers: Vec<Layer>,
        norm: Tensor,
        output: Proj,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Self { cfg, embed, layers, norm, output, cos, sin })
    }

    /// Runs `tokens` (batch, seq) at `positions` (batch, seq) through the model, appending to
    /// `cache`. `mask` is additive, (batch, 1, seq, cache.len + seq). Returns the logits of the
    /// last position of each row, (batch, vocab).
    pub(crate) fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq) = tokens.dims2()?;
        let half = self.cfg.head_dim() / 2;
        let flat_pos = positions.flatten_all()?;
        let cos = self.cos.index_select(&flat_pos, 0)?.reshape((batch, seq, half))?;
        let sin = self.sin.index_select(&flat_pos, 0)?.reshape((batch, seq, half))?;
        let mut x = self.embed.0.embedding(tokens)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let rope = Rope { cos: &cos, sin: &sin, interleaved: self.cfg.rope_interleaved };
            x = self.layer_forward(layer, index, &x, &rope, mask, cache)?;
        }
        cache.len += seq;
        let last = x.narrow(1, seq - 1, 1)?.contiguous()?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.cfg.rms_eps as f32)?;
        self.output.forward(&last)?.squeeze(1)
    }

    fn layer_forward(
        &self,
        layer: &Layer,
        index: usize,
        x: &Tensor,
        rope: &Rope<'_>,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let eps = self.cfg.rms_eps as f32;
        let h = candle_nn::ops::rms_norm(x, &layer.attn_norm, eps)?;
        let attn = self.attention(layer, index, &h, rope, mask, cache)?;
        let x = (x + attn)?;
        let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
        let gated = (candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?;
        x + layer.down.forward(&gated)?
    }

    fn attention(
        &self,
        layer: &Layer,
        index: usize,
        h: &Tensor,
        rope: &Rope<'_>,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq, _) = h.dims3()?;
        let (n_heads, n_kv, head_dim) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim());
        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((batch, seq, n, head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = rope.apply(&heads(layer.q.forward(h)?, n_heads)?)?;
        let k = rope.apply(&heads(layer.k.forward(h)?, n_kv)?)?;
        let v = heads(layer.v.forward(h)?, n_kv)?;
        let offset = cache.len;
        cache.k[index].slice_set(&k, 2, offset)?;
        cache.v[index].slice_set(&v, 2, offset)?;
        let total = offset + seq;
        let keys = cache.k[index].narrow(2, 0, total)?;
        let values = cache.v[index].narrow(2, 0, total)?;
        // Grouped-query attention without copying K/V: fold the query heads that share a KV
        // head into the row dimension.
        let rep = n_heads / n_kv;
        let q = q.reshape((batch, n_kv, rep * seq, head_dim))?;
        let scores = (q.matmul(&keys.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
        let scores = scores.reshape((batch, n_heads, seq, total))?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let probs = probs.reshape((batch, n_kv, rep * seq, total))?;
        let out = probs.matmul(&values)?.reshape((batch, n_heads, seq, head_dim))?;
        let out = out.transpose(1, 2)?.reshape((batch, seq, n_heads * head_dim))?;
        layer.o.forward(&out)
    }
}

struct Rope<'a> {
    cos: &'a Tensor,
    sin: &'a Tensor,
    interleaved: bool,
}

impl Rope<'_> {
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(x, self.cos, self.sin)
        } else {
            candle_nn::rotary_emb::rope(x, self.cos, self.sin)
        }
    }
}

fn rope_tables(cfg: &LlamaConfig, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let head_dim = cfg.head_dim();
    let inv_freq: Vec<f32> =
        (0..head_dim).step_by(2).map(|i| 1.0 / cfg.rope_theta.powf(i as f32 / head_dim as f32)).collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
    let positions =
        Tensor::arange(0u32, cfg.max_seq as u32, device)?.to_dtype(DType::F32)?.reshape((cfg.max_seq, 1))?;
    let freqs = positions.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Sum of the logits' last dimension, handy for asserting equality in tests.
#[cfg(test)]
pub(crate) fn logits_l1(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_keepdim(candle_core::D::Minus1))
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .unwrap_or(f32::INFINITY)
}
