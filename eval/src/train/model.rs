//! The llama forward pass that candle's autograd differentiates: the eval engine's weights,
//! frozen and dense, with trainable LoRA pairs on the target projections.
//!
//! candle's quantised matmul and its fused norm, softmax and RoPE kernels have no backward, so
//! this pass is written with basic ops only (matmul, exp, sums, broadcasts, narrow/cat). GGUF
//! q/k rows are put back in Hugging Face order and RoPE runs on halves, so that the LoRA pairs
//! are in the layout PEFT writes.

use crate::lora::unpermute_from_gguf_rope;
use crate::model::llama::{Group, Llama, LlamaConfig, Proj, rope_tables};
use candle_core::quantized::QMatMul;
use candle_core::{D, DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The projections of a layer, in the order `TrainLayer::projs` holds them, with the Hugging
/// Face module each is under.
pub(crate) const MODULES: [(&str, &str); 7] = [
    ("q_proj", "self_attn"),
    ("k_proj", "self_attn"),
    ("v_proj", "self_attn"),
    ("o_proj", "self_attn"),
    ("gate_proj", "mlp"),
    ("up_proj", "mlp"),
    ("down_proj", "mlp"),
];

/// A trainable low-rank pair: the projection adds `scale · x Aᵀ Bᵀ`.
#[derive(Debug)]
pub(crate) struct LoraPair {
    /// (r, in_features).
    pub(crate) a: Var,
    /// (out_features, r).
    pub(crate) b: Var,
    pub(crate) scale: f64,
}

/// A frozen dense projection `y = x Wᵀ`, with an optional LoRA pair.
#[derive(Debug)]
pub(crate) struct TrainProj {
    /// (out_features, in_features).
    pub(crate) w: Tensor,
    pub(crate) lora: Option<LoraPair>,
}

impl TrainProj {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq, width) = x.dims3()?;
        let flat = x.reshape((batch * seq, width))?;
        let mut y = flat.matmul(&self.w.t()?)?;
        if let Some(lora) = &self.lora {
            let delta = flat.matmul(&lora.a.as_tensor().t()?)?.matmul(&lora.b.as_tensor().t()?)?;
            y = (y + (delta * lora.scale)?)?;
        }
        y.reshape((batch, seq, ()))
    }
}

#[derive(Debug)]
pub(crate) struct TrainLayer {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    /// In `MODULES` order.
    pub(crate) projs: Vec<TrainProj>,
}

/// Which projections get LoRA pairs, and their rank and scale.
#[derive(Debug, Clone)]
pub(crate) struct LoraShape {
    pub(crate) r: usize,
    pub(crate) alpha: f64,
    pub(crate) targets: Vec<String>,
    pub(crate) seed: u64,
}

/// A llama with frozen dense weights of one float type and trainable LoRA pairs.
#[derive(Debug)]
pub(crate) struct TrainModel {
    pub(crate) cfg: LlamaConfig,
    embed: Tensor,
    pub(crate) layers: Vec<TrainLayer>,
    norm: Tensor,
    output: Tensor,
    cos: Tensor,
    sin: Tensor,
}

/// The dense f32 weight of a projection, without its zero padding columns.
fn dense(proj: &Proj) -> candle_core::Result<Tensor> {
    let w = match &proj.w {
        QMatMul::QTensor(t) => t.dequantize(&Device::Cpu)?,
        QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(DType::F32)?,
    };
    if proj.pad == 0 {
        return Ok(w);
    }
    let cols = w.dim(1)?;
    w.narrow(1, 0, cols - proj.pad)?.contiguous()
}

/// The dense weights of a projection group, split into its projections.
fn dense_group<const N: usize>(group: &Group<N>) -> candle_core::Result<Vec<Tensor>> {
    match group {
        Group::Split(projs) => projs.iter().map(dense).collect(),
        Group::Fused { w, rows } => {
            let w = dense(w)?;
            let mut start = 0;
            rows.iter()
                .map(|&r| {
                    start += r;
                    w.narrow(0, start - r, r)?.contiguous()
                })
                .collect()
        }
    }
}

impl TrainModel {
    /// The weights of `llama` in `dtype`, with LoRA pairs on `lora.targets`: A uniform in
    /// ±1/√in_features (PEFT's Kaiming-uniform with a = √5), B zero.
    pub(crate) fn from_llama(llama: &Llama, lora: &LoraShape, dtype: DType) -> candle_core::Result<Self> {
        let mut cfg = llama.cfg.clone();
        let mut rng = StdRng::seed_from_u64(lora.seed);
        let mut layers = Vec::with_capacity(llama.layers.len());
        for layer in &llama.layers {
            let mut weights = dense_group(&layer.qkv)?;
            weights.push(dense(&layer.o)?);
            weights.extend(dense_group(&layer.gate_up)?);
            weights.push(dense(&layer.down)?);
            if cfg.rope_interleaved {
                weights[0] = unpermute_from_gguf_rope(&weights[0], cfg.n_heads)?;
                weights[1] = unpermute_from_gguf_rope(&weights[1], cfg.n_kv_heads)?;
            }
            let mut projs = Vec::with_capacity(MODULES.len());
            for (w, (name, _)) in weights.into_iter().zip(MODULES) {
                let pair = if lora.targets.iter().any(|t| t == name) {
                    let (out, inp) = w.dims2()?;
                    let bound = 1.0 / (inp as f64).sqrt();
                    let a: Vec<f64> = (0..lora.r * inp).map(|_| rng.random_range(-bound..bound)).collect();
                    let a = Tensor::from_vec(a, (lora.r, inp), &Device::Cpu)?.to_dtype(dtype)?;
                    let b = Tensor::zeros((out, lora.r), dtype, &Device::Cpu)?;
                    Some(LoraPair {
                        a: Var::from_tensor(&a)?,
                        b: Var::from_tensor(&b)?,
                        scale: lora.alpha / lora.r as f64,
                    })
                } else {
                    None
                };
                projs.push(TrainProj { w: w.to_dtype(dtype)?, lora: pair });
            }
            layers.push(TrainLayer {
                attn_norm: layer.attn_norm.to_dtype(dtype)?,
                ffn_norm: layer.ffn_norm.to_dtype(dtype)?,
                projs,
            });
        }
        let embed = llama.embed.table.dequantize(&Device::Cpu)?.narrow(1, 0, cfg.hidden)?.to_dtype(dtype)?;
        let output = dense(&llama.output)?.to_dtype(dtype)?;
        cfg.rope_interleaved = false;
        let (cos, sin) = rope_tables(&cfg, &Device::Cpu)?;
        Ok(Self {
            cfg,
            embed,
            layers,
            norm: llama.norm.to_dtype(dtype)?,
            output,
            cos: cos.to_dtype(dtype)?,
            sin: sin.to_dtype(dtype)?,
        })
    }

    /// The float type of the weights and of the LoRA pairs.
    pub(crate) fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// Every LoRA pair with its layer index and its Hugging Face module path within the layer
    /// (`self_attn.q_proj`).
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (usize, String, &LoraPair)> {
        self.layers.iter().enumerate().flat_map(|(i, layer)| {
            layer
                .projs
                .iter()
                .zip(MODULES)
                .filter_map(move |(p, (name, group))| p.lora.as_ref().map(|l| (i, format!("{group}.{name}"), l)))
        })
    }

    /// The trainable variables, A then B of each pair in `pairs` order.
    pub(crate) fn vars(&self) -> Vec<&Var> {
        self.pairs().flat_map(|(_, _, pair)| [&pair.a, &pair.b]).collect()
    }

    /// Logits (batch, seq, vocab) of `tokens` (batch, seq), causal attention from position 0.
    /// Rows padded at the end need no mask: no real token attends to a later one. Training
    /// reads `logits_at`; tests compare these with the eval pass.
    #[cfg(test)]
    pub(crate) fn forward(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.hidden(tokens)?;
        let (batch, seq, hidden) = h.dims3()?;
        h.reshape((batch * seq, hidden))?.matmul(&self.output.t()?)?.reshape((batch, seq, ()))
    }

    /// Logits (n, vocab) at the flat positions `at` (n; row × seq + position) only: the loss
    /// needs no others, and the output layer is the largest matmul of a small model.
    pub(crate) fn logits_at(&self, tokens: &Tensor, at: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.hidden(tokens)?;
        let (batch, seq, hidden) = h.dims3()?;
        h.reshape((batch * seq, hidden))?.index_select(at, 0)?.matmul(&self.output.t()?)
    }

    /// The normed hidden states (batch, seq, hidden) of `tokens` that the output layer reads.
    fn hidden(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq) = tokens.dims2()?;
        let dtype = self.dtype();
        let mut x = self.embed.index_select(&tokens.flatten_all()?, 0)?.reshape((batch, seq, self.cfg.hidden))?;
        let cos = self.cos.narrow(0, 0, seq)?;
        let sin = self.sin.narrow(0, 0, seq)?;
        let mask: Vec<f32> = (0..seq * seq).map(|k| if k % seq <= k / seq { 0.0 } else { f32::NEG_INFINITY }).collect();
        let mask = Tensor::from_vec(mask, (seq, seq), &Device::Cpu)?.to_dtype(dtype)?;
        let eps = self.cfg.rms_eps;
        for layer in &self.layers {
            let h = rms_norm(&x, &layer.attn_norm, eps)?;
            x = (x + self.attention(layer, &h, &cos, &sin, &mask)?)?;
            let h = rms_norm(&x, &layer.ffn_norm, eps)?;
            let gate = layer.projs[4].forward(&h)?;
            let up = layer.projs[5].forward(&h)?;
            x = (&x + layer.projs[6].forward(&(gate.silu()? * up)?)?)?;
        }
        rms_norm(&x, &self.norm, eps)
    }

    fn attention(
        &self,
        layer: &TrainLayer,
        h: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (batch, seq, _) = h.dims3()?;
        let (n_heads, n_kv, head_dim) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim());
        let heads = |t: Tensor, n: usize| -> candle_core::Result<Tensor> {
            t.reshape((batch, seq, n, head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = rope(&heads(layer.projs[0].forward(h)?, n_heads)?, cos, sin)?;
        let k = rope(&heads(layer.projs[1].forward(h)?, n_kv)?, cos, sin)?;
        let v = heads(layer.projs[2].forward(h)?, n_kv)?;
        // Grouped-query attention as the eval pass does it: the query heads that share a KV head
        // folded into the rows.
        let rep = n_heads / n_kv;
        let q = q.reshape((batch, n_kv, rep * seq, head_dim))?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (head_dim as f64).sqrt()))?;
        let scores = scores.reshape((batch, n_heads, seq, seq))?.broadcast_add(mask)?;
        let probs = softmax_last_dim(&scores)?.reshape((batch, n_kv, rep * seq, seq))?;
        let out = probs.matmul(&v)?.reshape((batch, n_heads, seq, head_dim))?;
        let out = out.transpose(1, 2)?.reshape((batch, seq, n_heads * head_dim))?;
        layer.projs[3].forward(&out)
    }
}

/// `x / √(mean(x²) + eps) · w` over the last dimension.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?;
    x.broadcast_div(&rms)?.broadcast_mul(w)
}

/// Softmax over the last dimension; the row maximum is a constant for the gradient (the
/// result does not depend on it).
pub(crate) fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// RoPE on halves of each head (Hugging Face order): `x·cos + rotate_half(x)·sin`, with `cos`
/// and `sin` (seq, head_dim / 2).
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let first = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let second = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[&first, &second], D::Minus1)
}

/// The summed cross-entropy of `logits` (n, vocab) against `targets` (n).
pub(crate) fn summed_nll(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let n = targets.dim(0)?;
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum = shifted.exp()?.sum_keepdim(1)?.log()?;
    let picked = shifted.gather(&targets.reshape((n, 1))?, 1)?;
    (log_sum - picked)?.sum_all()
}
