//! Our llama forward pass: batched, with preallocated KV caches and per-row positions.
//!
//! Rows of a batch are left-padded to a common length; each row has its own RoPE positions
//! and an additive mask that hides its padding, so all rows write the cache at the same offset.
//! A prompt prefix common to all rows (the system prompt of a suite) can be computed once and
//! shared: it is stored once and every row attends to it, which saves both its prefill and
//! most of the KV memory of a batch.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Tensor};
use std::borrow::Cow;
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
    /// Element type of the KV cache (`KV_DTYPE` unless a test needs exact f32).
    pub(crate) kv_dtype: DType,
}

impl LlamaConfig {
    pub(crate) fn head_dim(&self) -> usize {
        self.hidden / self.n_heads
    }
}

/// Token embedding table, kept quantised: a lookup only dequantises the rows it reads. The
/// table may carry zero columns after the model's width (see `Proj::pad`); lookups drop them.
#[derive(Debug, Clone)]
pub(crate) struct Embedding {
    pub(crate) table: Arc<QTensor>,
    pub(crate) hidden: usize,
}

impl Embedding {
    pub(crate) fn new(table: Arc<QTensor>, hidden: usize) -> Self {
        Self { table, hidden }
    }

    pub(crate) fn lookup(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.table.embedding(tokens)?;
        if x.dim(D::Minus1)? == self.hidden { Ok(x) } else { x.narrow(D::Minus1, 0, self.hidden)?.contiguous() }
    }
}

/// A projection `y = x Wᵀ` with an optional unmerged LoRA pair (used to check merging).
#[derive(Debug, Clone)]
pub(crate) struct Proj {
    pub(crate) w: QMatMul,
    pub(crate) lora: Option<(Tensor, Tensor, f64)>,
    /// Zero columns the weight carries after the input width: candle's fastest CPU kernels
    /// (AVX512-VNNI / AVX-VNNI on repacked Q8_0) need the input width to be a multiple of 256,
    /// so a 576-wide model runs 768-wide matmuls with zeros in the extra columns — about 4×
    /// faster for one row and 9× for a batch, despite the extra work (see bench/README.md).
    pub(crate) pad: usize,
}

impl Proj {
    pub(crate) fn new(w: QMatMul) -> Self {
        Self { w, lora: None, pad: 0 }
    }

    pub(crate) fn padded(w: QMatMul, pad: usize) -> Self {
        Self { w, lora: None, pad }
    }

    /// Output features of the weight.
    pub(crate) fn w_rows(&self) -> usize {
        match &self.w {
            QMatMul::QTensor(t) => t.shape().dims().first().copied().unwrap_or(0),
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims().first().copied().unwrap_or(0),
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_padded(x, &self.pad_input(x)?)
    }

    /// `x` with this weight's zero columns appended; projections that share an input (q, k, v;
    /// gate, up) pad it once.
    fn pad_input(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.pad == 0 { Ok(x.clone()) } else { x.pad_with_zeros(D::Minus1, 0, self.pad) }
    }

    /// The projection of `x`, given `padded` = `pad_input(x)` of a weight with the same padding.
    fn forward_padded(&self, x: &Tensor, padded: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.w.forward(padded)?;
        match &self.lora {
            None => Ok(y),
            Some((a, b, scale)) => {
                let delta = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
                y + (delta * *scale)?
            }
        }
    }
}

/// Projections that read the same input — q, k, v (N = 3) or gate, up (N = 2) — run as one
/// matmul over their stacked rows when the weights allow it, else one by one.
#[derive(Debug, Clone)]
pub(crate) enum Group<const N: usize> {
    Split([Proj; N]),
    Fused { w: Proj, rows: [usize; N] },
}

impl<const N: usize> Group<N> {
    /// Stacks quantised weights of the same type, width and padding (rows are independent, so
    /// their blocks concatenate); anything else stays split.
    pub(crate) fn fuse(projs: [Proj; N]) -> candle_core::Result<Self> {
        let tensors: Vec<&QTensor> = projs
            .iter()
            .filter_map(|p| match (&p.w, &p.lora) {
                (QMatMul::QTensor(t), None) if p.pad == projs[0].pad => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        let width = |t: &QTensor| t.shape().dims().get(1).copied();
        let same = tensors.len() == N
            && tensors.iter().all(|t| t.dtype() == tensors[0].dtype() && width(t) == width(tensors[0]));
        if !same {
            return Ok(Self::Split(projs));
        }
        let cols = tensors[0].shape().dims2()?.1;
        let mut data = Vec::new();
        let mut rows = [0; N];
        for (t, r) in tensors.iter().zip(rows.iter_mut()) {
            *r = t.shape().dims2()?.0;
            data.extend_from_slice(&t.data()?);
        }
        let device = tensors[0].device();
        let storage = candle_core::quantized::QStorage::from_data(Cow::Owned(data), &device, tensors[0].dtype())?;
        let stacked = QTensor::new(storage, (rows.iter().sum::<usize>(), cols))?;
        Ok(Self::Fused { w: Proj::padded(QMatMul::from_qtensor(stacked)?, projs[0].pad), rows })
    }

    /// Output features of projection `i`.
    pub(crate) fn rows(&self, i: usize) -> usize {
        match self {
            Self::Split(projs) => projs[i].w_rows(),
            Self::Fused { rows, .. } => rows[i],
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<[Tensor; N]> {
        let out: Vec<Tensor> = match self {
            Self::Split(projs) => {
                let padded = projs[0].pad_input(x)?;
                projs
                    .iter()
                    .map(|p| if p.pad == projs[0].pad { p.forward_padded(x, &padded) } else { p.forward(x) })
                    .collect::<candle_core::Result<_>>()?
            }
            Self::Fused { w, rows } => {
                let y = w.forward(x)?;
                let mut start = 0;
                rows.iter()
                    .map(|&r| {
                        start += r;
                        y.narrow(D::Minus1, start - r, r)
                    })
                    .collect::<candle_core::Result<_>>()?
            }
        };
        out.try_into().map_err(|_| candle_core::Error::Msg("projection group".into()))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) attn_norm: Tensor,
    /// q, k, v.
    pub(crate) qkv: Group<3>,
    pub(crate) o: Proj,
    pub(crate) ffn_norm: Tensor,
    /// gate, up.
    pub(crate) gate_up: Group<2>,
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

/// The default KV cache element type: f16 halves the cache (the largest allocation of a batched
/// run) at a rounding cost comparable to llama.cpp's default f16 cache; scores, softmax and
/// sums stay f32.
pub(crate) const KV_DTYPE: DType = DType::F16;

/// K and V of a prompt prefix that every row of a batch shares (typically the system prompt),
/// stored once: per layer (kv_heads, len, head_dim).
#[derive(Debug, Clone)]
pub(crate) struct SharedPrefix {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    pub(crate) len: usize,
}

/// Per-layer K and V buffers of shape (batch, kv_heads, capacity, head_dim), written in place,
/// after an optional shared prefix that all rows attend to. Positions in the per-row part
/// continue after the prefix.
#[derive(Debug)]
pub(crate) struct KvCache {
    prefix: Option<SharedPrefix>,
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Tokens written in the per-row part.
    pub(crate) len: usize,
}

impl KvCache {
    pub(crate) fn new(cfg: &LlamaConfig, batch: usize, capacity: usize, device: &Device) -> candle_core::Result<Self> {
        let shape = (batch, cfg.n_kv_heads, capacity, cfg.head_dim());
        let zeros = || Tensor::zeros(shape, cfg.kv_dtype, device);
        let k = (0..cfg.n_layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?;
        let v = (0..cfg.n_layers).map(|_| zeros()).collect::<candle_core::Result<_>>()?;
        Ok(Self { prefix: None, k, v, len: 0 })
    }

    /// An empty per-row cache whose rows all continue `prefix`.
    pub(crate) fn with_prefix(
        cfg: &LlamaConfig,
        prefix: Option<SharedPrefix>,
        batch: usize,
        capacity: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(Self { prefix, ..Self::new(cfg, batch, capacity, device)? })
    }

    /// Turns a filled single-row cache into a prefix that other caches can share.
    pub(crate) fn into_prefix(self) -> candle_core::Result<SharedPrefix> {
        let len = self.len;
        // Kept in f32: every row of every decoding step attends to the prefix, and f16 would be
        // widened again at each of those matmuls; it is stored once, so the cost is small.
        let take = |t: Tensor| t.narrow(2, 0, len)?.squeeze(0)?.to_dtype(DType::F32)?.contiguous();
        let k = self.k.into_iter().map(take).collect::<candle_core::Result<_>>()?;
        let v = self.v.into_iter().map(take).collect::<candle_core::Result<_>>()?;
        Ok(SharedPrefix { k, v, len })
    }

    /// Tokens of the shared prefix (0 without one).
    pub(crate) fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, |p| p.len)
    }

    /// Keeps (and repeats) the rows named by `rows`, e.g. to fan a prompt out to K samples
    /// or to drop finished sequences. The shared prefix is untouched.
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
    /// `cache`. `mask` is additive, (batch, 1, seq, prefix + cache.len + seq), where `prefix` is
    /// the length of the cache's shared prefix. Returns the logits of the last position of each
    /// row, (batch, vocab).
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
        let mut x = self.embed.lookup(tokens)?;
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
        let [gate, up] = layer.gate_up.forward(&h)?;
        let gated = (candle_nn::ops::silu(&gate)? * up)?;
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
        let [q, k, v] = layer.qkv.forward(h)?;
        let q = rope.apply(&heads(q, n_heads)?)?;
        let k = rope.apply(&heads(k, n_kv)?)?;
        let v = heads(v, n_kv)?;
        let offset = cache.len;
        let kv_dtype = cache.k[index].dtype();
        cache.k[index].slice_set(&k.to_dtype(kv_dtype)?, 2, offset)?;
        cache.v[index].slice_set(&v.to_dtype(kv_dtype)?, 2, offset)?;
        let total = offset + seq;
        let keys = cache.k[index].narrow(2, 0, total)?;
        let values = cache.v[index].narrow(2, 0, total)?;
        // Grouped-query attention without copying K/V: fold the query heads that share a KV
        // head into the row dimension.
        let rep = n_heads / n_kv;
        let q = q.reshape((batch, n_kv, rep * seq, head_dim))?.to_dtype(kv_dtype)?;
        let prefix = cache.prefix.as_ref().map(|p| (&p.k[index], &p.v[index], p.len));
        // The shared prefix is attended by every row at once: fold the batch into the rows.
        let folded = match prefix {
            Some((pk, _, _)) => Some(
                q.transpose(0, 1)?.contiguous()?.reshape((n_kv, batch * rep * seq, head_dim))?.to_dtype(pk.dtype())?,
            ),
            None => None,
        };
        let own_scores = q.matmul(&keys.t()?)?.to_dtype(DType::F32)?;
        let scores = match (prefix, &folded) {
            (Some((pk, _, len)), Some(folded)) => {
                let shared = folded.matmul(&pk.t()?)?.to_dtype(DType::F32)?;
                let shared = shared.reshape((n_kv, batch, rep * seq, len))?.transpose(0, 1)?;
                Tensor::cat(&[&shared, &own_scores], 3)?
            }
            _ => own_scores,
        };
        let width = scores.dim(3)?;
        let scores = (scores * (1.0 / (head_dim as f64).sqrt()))?;
        let scores = scores.reshape((batch, n_heads, seq, width))?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let probs = probs.reshape((batch, n_kv, rep * seq, width))?;
        let out = match prefix {
            Some((_, pv, len)) => {
                let own = probs.narrow(3, len, total)?.contiguous()?.to_dtype(kv_dtype)?;
                let own = own.matmul(&values)?.to_dtype(DType::F32)?;
                let shared = probs.narrow(3, 0, len)?.transpose(0, 1)?.contiguous()?.to_dtype(pv.dtype())?;
                let shared = shared.reshape((n_kv, batch * rep * seq, len))?.matmul(pv)?.to_dtype(DType::F32)?;
                let shared = shared.reshape((n_kv, batch, rep * seq, head_dim))?.transpose(0, 1)?;
                (own + shared)?
            }
            None => probs.to_dtype(kv_dtype)?.matmul(&values)?.to_dtype(DType::F32)?,
        };
        let out = out.reshape((batch, n_heads, seq, head_dim))?;
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

/// The cos and sin tables of RoPE, (max_seq, head_dim / 2), in f32.
pub(crate) fn rope_tables(cfg: &LlamaConfig, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
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
