//! Our CPU forward pass for llama-family GGUF models, on packed 4- and 8-bit weights.
//!
//! candle's quantised CPU kernels left two of the benchmark targets out of reach: its fast
//! kernels (AVX512-VNNI on repacked Q8_0) need input widths that are multiples of 256 and keep
//! a repacked copy next to each weight, and each decoding step runs about 1,200 candle ops.
//! This module computes the same model with plain loops over f32 activations and one packed
//! matmul kernel (`packed.rs`, `simd.rs`) that reads Q4_0 / Q4_1 / Q8_0 weights as stored, so
//! a Q4_1 model takes its file's size in memory and a decoding step is a few dozen calls.
//!
//! It is used on CPUs with AVX512-VNNI or AVX2 (`simd.rs`) when every matmul weight packs (see
//! `gguf_llama::native_plan`); elsewhere the candle graph in `model::llama` runs. Both take the
//! same batches, masks and caches (`generate::Decoder`).

pub(crate) mod packed;
mod par;
pub(crate) mod simd;
#[cfg(test)]
mod tests;

use crate::error::EvalError;
use crate::generate::Decoder;
use crate::model::llama::{Embedding, LlamaConfig};
use half::f16;
use half::slice::HalfFloatSliceExt;
use packed::{GROUP, Packed, QuantRows};
use std::sync::Arc;

/// The token table: packed when tied to the output layer, else candle's quantised table.
#[derive(Debug)]
pub(crate) enum Embed {
    Tied(Packed),
    Table(Embedding),
}

#[derive(Debug)]
pub(crate) struct NativeLayer {
    pub(crate) attn_norm: Vec<f32>,
    /// q, k and v stacked.
    pub(crate) qkv: Packed,
    pub(crate) o: Packed,
    pub(crate) ffn_norm: Vec<f32>,
    /// gate and up stacked.
    pub(crate) gate_up: Packed,
    pub(crate) down: Packed,
}

#[derive(Debug)]
pub(crate) struct NativeLlama {
    pub(crate) cfg: LlamaConfig,
    embed: Embed,
    layers: Vec<NativeLayer>,
    norm: Vec<f32>,
    /// None: tied to `embed`.
    output: Option<Packed>,
    /// RoPE frequency of each rotated pair of a head.
    inv_freq: Vec<f32>,
    ffn: usize,
}

/// K and V of a shared prompt prefix: per layer, (len, kv_dim).
#[derive(Debug)]
pub(crate) struct NativePrefix {
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
    len: usize,
}

/// Per layer, (batch, capacity, kv_dim) of K and V, after an optional shared prefix. Stored
/// as f16, like llama.cpp's default cache: half the memory and half the bytes that every
/// decoding step reads; scores and sums stay f32.
#[derive(Debug)]
pub(crate) struct NativeCache {
    prefix: Option<Arc<NativePrefix>>,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
    batch: usize,
    capacity: usize,
    kv_dim: usize,
    len: usize,
}

impl NativeCache {
    pub(crate) fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, |p| p.len)
    }
}

impl NativeLlama {
    pub(crate) fn new(
        cfg: LlamaConfig,
        embed: Embed,
        layers: Vec<NativeLayer>,
        norm: Vec<f32>,
        output: Option<Packed>,
    ) -> Self {
        let hd = cfg.head_dim();
        let inv_freq = (0..hd / 2).map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f32 / hd as f32)).collect();
        let ffn = layers.first().map_or(0, |l| l.gate_up.rows / 2);
        Self { cfg, embed, layers, norm, output, inv_freq, ffn }
    }

    /// Intermediate width of the feed-forward layers.
    pub(crate) fn ffn(&self) -> usize {
        self.ffn
    }

    fn output(&self) -> &Packed {
        match (&self.output, &self.embed) {
            (Some(output), _) => output,
            (None, Embed::Tied(table)) => table,
            (None, Embed::Table(_)) => unreachable!("an untied model has an output matrix"),
        }
    }

    fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, EvalError> {
        let hidden = self.cfg.hidden;
        match &self.embed {
            Embed::Tied(table) => {
                let mut x = vec![0f32; tokens.len() * hidden];
                for (row, &t) in x.chunks_exact_mut(hidden).zip(tokens) {
                    if t as usize >= table.rows {
                        let message = format!("token id {t} is outside the {}-row token table", table.rows);
                        return Err(EvalError::Candle(candle_core::Error::Msg(message)));
                    }
                    table.row(t as usize, row);
                }
                Ok(x)
            }
            Embed::Table(table) => {
                let ids = candle_core::Tensor::new(tokens, &candle_core::Device::Cpu)?;
                Ok(table.lookup(&ids)?.flatten_all()?.to_vec1::<f32>()?)
            }
        }
    }

    /// `Decoder::forward`, with the logits of all rows in one buffer, (batch, vocab).
    fn logits(
        &self,
        tokens: &[u32],
        positions: &[u32],
        mask: &[f32],
        batch: usize,
        cache: &mut NativeCache,
    ) -> Result<Vec<f32>, EvalError> {
        let cfg = &self.cfg;
        let hidden = cfg.hidden;
        let seq = tokens.len() / batch.max(1);
        assert_eq!(cache.batch, batch, "cache rows");
        assert!(cache.len + seq <= cache.capacity, "cache capacity");
        let total = cache.prefix_len() + cache.len + seq;
        assert_eq!(mask.len(), batch * seq * total, "mask shape");
        let eps = cfg.rms_eps as f32;
        let mut x = self.embed(tokens)?;
        let rotations = self.rotations(positions);
        let mut h = vec![0f32; x.len()];
        let mut quant = QuantRows::default();
        let (mut qkv, mut attn, mut proj, mut gate_up) = (Vec::new(), vec![0f32; x.len()], Vec::new(), Vec::new());
        let mut act = vec![0f32; batch * seq * self.ffn];
        for (index, layer) in self.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, eps, &mut h);
            quant.quantize(&h, hidden);
            matmul(&layer.qkv, &quant, &mut qkv);
            self.rope_and_store(&mut qkv, &rotations, index, seq, cache);
            self.attention(&qkv, mask, index, seq, cache, &mut attn);
            quant.quantize(&attn, hidden);
            matmul(&layer.o, &quant, &mut proj);
            add(&mut x, &proj);
            rms_norm(&x, &layer.ffn_norm, eps, &mut h);
            quant.quantize(&h, hidden);
            matmul(&layer.gate_up, &quant, &mut gate_up);
            for (a, gu) in act.chunks_exact_mut(self.ffn).zip(gate_up.chunks_exact(2 * self.ffn)) {
                let (g, u) = gu.split_at(self.ffn);
                for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
                    *a = g / (1.0 + (-g).exp()) * u;
                }
            }
            quant.quantize(&act, self.ffn);
            matmul(&layer.down, &quant, &mut proj);
            add(&mut x, &proj);
        }
        cache.len += seq;
        let mut last = vec![0f32; batch * hidden];
        for (b, out) in last.chunks_exact_mut(hidden).enumerate() {
            let row = (b * seq + seq - 1) * hidden;
            rms_norm(&x[row..row + hidden], &self.norm, eps, out);
        }
        quant.quantize(&last, hidden);
        let mut logits = Vec::new();
        matmul(self.output(), &quant, &mut logits);
        Ok(logits)
    }

    /// cos and sin of every rotated pair at each of `positions`: (positions, head_dim / 2) each.
    fn rotations(&self, positions: &[u32]) -> (Vec<f32>, Vec<f32>) {
        let angles = positions.iter().flat_map(|&p| self.inv_freq.iter().map(move |f| p as f32 * f));
        angles.map(|a| (a.cos(), a.sin())).unzip()
    }

    /// Rotates q and k of every row at its position and writes k and v into the cache.
    fn rope_and_store(
        &self,
        qkv: &mut [f32],
        (cos, sin): &(Vec<f32>, Vec<f32>),
        layer: usize,
        seq: usize,
        cache: &mut NativeCache,
    ) {
        let cfg = &self.cfg;
        let (hd, q_dim, kv_dim) = (cfg.head_dim(), cfg.hidden, cache.kv_dim);
        let width = q_dim + 2 * kv_dim;
        let half = hd / 2;
        for (row, values) in qkv.chunks_exact_mut(width).enumerate() {
            let (cos, sin) = (&cos[row * half..(row + 1) * half], &sin[row * half..(row + 1) * half]);
            for head in values[..q_dim + kv_dim].chunks_exact_mut(hd) {
                rope(head, cos, sin, cfg.rope_interleaved);
            }
            let (b, s) = (row / seq, row % seq);
            let at = (b * cache.capacity + cache.len + s) * kv_dim;
            cache.k[layer][at..at + kv_dim].convert_from_f32_slice(&values[q_dim..q_dim + kv_dim]);
            cache.v[layer][at..at + kv_dim].convert_from_f32_slice(&values[q_dim + kv_dim..]);
        }
    }

    /// Attention of every row and head over the prefix and the row's cache, into `out`
    /// (batch·seq, hidden).
    fn attention(&self, qkv: &[f32], mask: &[f32], layer: usize, seq: usize, cache: &NativeCache, out: &mut [f32]) {
        let cfg = &self.cfg;
        let (hd, n_heads, kv_dim) = (cfg.head_dim(), cfg.n_heads, cache.kv_dim);
        let rep = n_heads / cfg.n_kv_heads;
        let width = cfg.hidden + 2 * kv_dim;
        let prefix = cache.prefix.as_deref().map(|p| (&p.k[layer], &p.v[layer], p.len));
        let prefix_len = prefix.map_or(0, |p| p.2);
        let own = cache.len + seq;
        let total = prefix_len + own;
        let scale = 1.0 / (hd as f32).sqrt();
        let (keys, values) = (&cache.k[layer], &cache.v[layer]);
        let batch = cache.batch;
        // Per (row of the batch, head): seq × head_dim outputs.
        let mut by_head = vec![0f32; batch * n_heads * seq * hd];
        par::chunks_mut(&mut by_head, seq * hd, |item, result| {
            let (b, head) = (item / n_heads, item % n_heads);
            let kv = (head / rep) * hd;
            let mut scores = vec![0f32; total];
            let mut part = vec![0f32; hd];
            // This row's K/V for this head: from `kv` on, one position every `kv_dim` values.
            let base = b * cache.capacity * kv_dim + kv;
            for s in 0..seq {
                let row = b * seq + s;
                let q = &qkv[row * width + head * hd..row * width + (head + 1) * hd];
                let mask_row = &mask[row * total..(row + 1) * total];
                let (shared, mine) = scores.split_at_mut(prefix_len);
                if let Some((pk, _, _)) = prefix {
                    simd::attend_scores(q, &pk[kv..], kv_dim, scale, &mask_row[..prefix_len], shared);
                }
                simd::attend_scores(q, &keys[base..], kv_dim, scale, &mask_row[prefix_len..], mine);
                softmax(&mut scores);
                let out = &mut result[s * hd..(s + 1) * hd];
                simd::attend_values(&scores[prefix_len..], &values[base..], kv_dim, out);
                if let Some((_, pv, _)) = prefix {
                    simd::attend_values(&scores[..prefix_len], &pv[kv..], kv_dim, &mut part);
                    add(out, &part);
                }
            }
        });
        for (item, result) in by_head.chunks_exact(seq * hd).enumerate() {
            let (b, head) = (item / n_heads, item % n_heads);
            for s in 0..seq {
                let row = b * seq + s;
                out[row * cfg.hidden + head * hd..row * cfg.hidden + (head + 1) * hd]
                    .copy_from_slice(&result[s * hd..(s + 1) * hd]);
            }
        }
    }
}

/// `out = x · Wᵀ` for every quantised row of `x`: (rows of x, w.rows).
impl Decoder for NativeLlama {
    type Cache = NativeCache;
    type Prefix = Arc<NativePrefix>;

    fn new_cache(
        &self,
        prefix: Option<Arc<NativePrefix>>,
        batch: usize,
        capacity: usize,
    ) -> Result<NativeCache, EvalError> {
        let kv_dim = self.cfg.n_kv_heads * self.cfg.head_dim();
        let layer = || vec![f16::ZERO; batch * capacity * kv_dim];
        Ok(NativeCache {
            prefix,
            k: (0..self.cfg.n_layers).map(|_| layer()).collect(),
            v: (0..self.cfg.n_layers).map(|_| layer()).collect(),
            batch,
            capacity,
            kv_dim,
            len: 0,
        })
    }

    fn forward(
        &self,
        tokens: &[u32],
        positions: &[u32],
        mask: &[f32],
        batch: usize,
        cache: &mut NativeCache,
    ) -> Result<Vec<Vec<f32>>, EvalError> {
        let logits = self.logits(tokens, positions, mask, batch, cache)?;
        Ok(logits.chunks_exact(self.cfg.vocab).map(<[f32]>::to_vec).collect())
    }

    /// A filled single-row cache as a prefix to share.
    fn prefix_of(&self, cache: NativeCache) -> Result<Arc<NativePrefix>, EvalError> {
        let used = cache.len * cache.kv_dim;
        let take = |layers: Vec<Vec<f16>>| -> Vec<Vec<f16>> {
            layers
                .into_iter()
                .map(|mut l| {
                    l.truncate(used);
                    l.shrink_to_fit();
                    l
                })
                .collect()
        };
        Ok(Arc::new(NativePrefix { k: take(cache.k), v: take(cache.v), len: cache.len }))
    }

    /// Keeps (and repeats) the rows named by `rows`.
    fn select_rows(&self, cache: &mut NativeCache, rows: &[u32]) -> Result<(), EvalError> {
        let row_len = cache.capacity * cache.kv_dim;
        let used = cache.len * cache.kv_dim;
        for layer in cache.k.iter_mut().chain(cache.v.iter_mut()) {
            let mut kept = vec![f16::ZERO; rows.len() * row_len];
            for (to, &from) in rows.iter().enumerate() {
                let from = from as usize * row_len;
                kept[to * row_len..to * row_len + used].copy_from_slice(&layer[from..from + used]);
            }
            *layer = kept;
        }
        cache.batch = rows.len();
        Ok(())
    }

    fn prefix_len(&self, cache: &NativeCache) -> usize {
        cache.prefix_len()
    }

    fn cache_len(&self, cache: &NativeCache) -> usize {
        cache.len
    }
}

pub(crate) fn matmul(w: &Packed, x: &QuantRows, out: &mut Vec<f32>) {
    let m = x.rows();
    let groups = w.groups();
    let mut by_group = vec![0f32; groups * m * GROUP];
    // About 16 work items per matmul: few enough to keep the pool's overhead small, enough to
    // balance two to eight threads.
    let per_item = groups.div_ceil(16).max(1);
    par::chunks_mut(&mut by_group, per_item * m * GROUP, |item, chunk| {
        for (k, part) in chunk.chunks_exact_mut(m * GROUP).enumerate() {
            let g = item * per_item + k;
            for (r, lanes) in part.chunks_exact_mut(GROUP).enumerate() {
                w.group_dot(g, x.row(r), lanes.try_into().expect("16 lanes"));
            }
        }
    });
    out.clear();
    out.resize(m * w.rows, 0.0);
    for (r, row) in out.chunks_exact_mut(w.rows).enumerate() {
        for (g, lanes) in row.chunks_mut(GROUP).enumerate() {
            let at = (g * m + r) * GROUP;
            lanes.copy_from_slice(&by_group[at..at + lanes.len()]);
        }
    }
}

fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = x.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = v * inv * w;
        }
    }
}

fn rope(head: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = head.len() / 2;
    for i in 0..half {
        let (a, b) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * cos[i] - x1 * sin[i];
        head[b] = x0 * sin[i] + x1 * cos[i];
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

fn softmax(scores: &mut [f32]) {
    let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    for s in scores.iter_mut() {
        *s *= inv;
    }
}
