//! The batched decoding loop over our llama forward pass.

use crate::engine::Interrupt;
use crate::error::EvalError;
use crate::model::llama::{KvCache, Llama, SharedPrefix};
use crate::sampler::{apply_repetition_penalty, choose};
use crate::spec::GenerationParams;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::{Duration, Instant};

/// A forward pass that the decoding loop drives: candle's graph (`Llama`) or our CPU kernels
/// (`NativeLlama`), with the same batches, masks and caches.
pub(crate) trait Decoder {
    type Cache;
    /// K/V of a prompt prefix shared by every row (cheap to clone).
    type Prefix: Clone;

    /// An empty cache of `batch` rows and `capacity` positions after `prefix`.
    fn new_cache(&self, prefix: Option<Self::Prefix>, batch: usize, capacity: usize) -> Result<Self::Cache, EvalError>;

    /// Runs `tokens` (batch × seq, row-major) at `positions` through the model, appending to
    /// `cache`. `mask` is additive, (batch, seq, prefix + cache length + seq). Returns the
    /// logits of each row's last position.
    fn forward(
        &self,
        tokens: &[u32],
        positions: &[u32],
        mask: &[f32],
        batch: usize,
        cache: &mut Self::Cache,
    ) -> Result<Vec<Vec<f32>>, EvalError>;

    fn prefix_of(&self, cache: Self::Cache) -> Result<Self::Prefix, EvalError>;
    fn select_rows(&self, cache: &mut Self::Cache, rows: &[u32]) -> Result<(), EvalError>;
    fn prefix_len(&self, cache: &Self::Cache) -> usize;
    fn cache_len(&self, cache: &Self::Cache) -> usize;
}

/// candle's graph on `device`.
pub(crate) struct CandleDecoder<'a> {
    pub(crate) model: &'a Llama,
    pub(crate) device: &'a Device,
}

impl Decoder for CandleDecoder<'_> {
    type Cache = KvCache;
    type Prefix = SharedPrefix;

    fn new_cache(&self, prefix: Option<SharedPrefix>, batch: usize, capacity: usize) -> Result<KvCache, EvalError> {
        Ok(KvCache::with_prefix(&self.model.cfg, prefix, batch, capacity, self.device)?)
    }

    fn forward(
        &self,
        tokens: &[u32],
        positions: &[u32],
        mask: &[f32],
        batch: usize,
        cache: &mut KvCache,
    ) -> Result<Vec<Vec<f32>>, EvalError> {
        let seq = tokens.len() / batch;
        let total = mask.len() / tokens.len();
        let tokens = Tensor::from_slice(tokens, (batch, seq), self.device)?;
        let positions = Tensor::from_slice(positions, (batch, seq), self.device)?;
        let mask = Tensor::from_slice(mask, (batch, 1, seq, total), self.device)?;
        Ok(self.model.forward(&tokens, &positions, &mask, cache)?.to_vec2::<f32>()?)
    }

    fn prefix_of(&self, cache: KvCache) -> Result<SharedPrefix, EvalError> {
        Ok(cache.into_prefix()?)
    }

    fn select_rows(&self, cache: &mut KvCache, rows: &[u32]) -> Result<(), EvalError> {
        Ok(cache.select_rows(rows)?)
    }

    fn prefix_len(&self, cache: &KvCache) -> usize {
        cache.prefix_len()
    }

    fn cache_len(&self, cache: &KvCache) -> usize {
        cache.len
    }
}

/// One sequence to generate: which prompt it continues and with which seed.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) prompt: usize,
    pub(crate) seed: u64,
}

/// What one job produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobResult {
    pub(crate) tokens: Vec<u32>,
    pub(crate) truncated: bool,
}

/// Time and tokens spent on prompts and on decoding.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spent {
    pub(crate) prompt_tokens: usize,
    pub(crate) prompt_time: Duration,
    pub(crate) generated_tokens: usize,
    pub(crate) decode_time: Duration,
}

/// A row of the running batch.
struct Row {
    job: usize,
    pad: usize,
    prompt_len: usize,
    rng: StdRng,
}

/// Generates every job, `params.max_batch` rows at a time. The token prefix that all prompts
/// share (the system prompt) is computed once for every chunk; jobs sharing a prompt share the
/// rest of its prefill.
pub(crate) fn run<D: Decoder>(
    model: &D,
    prompts: &[Vec<u32>],
    jobs: &[Job],
    params: &GenerationParams,
    stop_ids: &[u32],
    interrupt: &Interrupt,
) -> Result<(Vec<JobResult>, Spent), EvalError> {
    let mut results = vec![JobResult::default(); jobs.len()];
    let mut spent = Spent::default();
    let batch = params.max_batch.max(1);
    let used: Vec<&[u32]> = jobs.iter().map(|j| prompts[j.prompt].as_slice()).collect();
    let shared = shared_prefix_len(&used);
    let started = Instant::now();
    let prefix = prefill_prefix(model, used.first().map_or(&[][..], |p| &p[..shared]))?;
    spent.prompt_tokens += shared;
    spent.prompt_time += started.elapsed();
    for (chunk_index, chunk) in jobs.chunks(batch).enumerate() {
        let first = chunk_index * batch;
        interrupt.check()?;
        let ctx = Chunk { model, prompts, prefix: prefix.as_ref(), shared, params, stop_ids, interrupt };
        ctx.run(first, chunk, &mut results, &mut spent)?;
    }
    Ok((results, spent))
}

/// Teacher-forced scoring: the natural-log probability the model gives each token of
/// `forced[i]` after `prompts[i]` and the forced tokens before it. The same prefill and decoding
/// steps as [`run`], with the next token given instead of sampled; `params.max_batch` rows at a
/// time, no repetition penalty, no stop tokens.
pub(crate) fn run_forced<D: Decoder>(
    model: &D,
    prompts: &[Vec<u32>],
    forced: &[Vec<u32>],
    max_batch: usize,
    interrupt: &Interrupt,
) -> Result<Vec<Vec<f64>>, EvalError> {
    let mut out = vec![Vec::new(); prompts.len()];
    let work: Vec<usize> = (0..prompts.len()).filter(|&i| !forced[i].is_empty()).collect();
    let used: Vec<&[u32]> = work.iter().map(|&i| prompts[i].as_slice()).collect();
    let shared = shared_prefix_len(&used);
    let prefix = prefill_prefix(model, used.first().map_or(&[][..], |p| &p[..shared]))?;
    for chunk in work.chunks(max_batch.max(1)) {
        interrupt.check()?;
        let longest = chunk.iter().map(|&i| forced[i].len()).max().unwrap_or(1);
        let params = GenerationParams { max_new_tokens: longest, samples: 1, ..GenerationParams::default() };
        let ctx = Chunk { model, prompts, prefix: prefix.as_ref(), shared, params: &params, stop_ids: &[], interrupt };
        let scored = ctx.force(chunk, forced)?;
        for (&i, log_probs) in chunk.iter().zip(scored) {
            out[i] = log_probs;
        }
    }
    Ok(out)
}

/// `ln softmax(logits)[token]`, in f64 so that long texts sum without drift.
pub(crate) fn log_prob(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits.get(token as usize).map_or(f64::NEG_INFINITY, |&l| l as f64 - max - sum.ln())
}

/// The length of the token prefix common to all `prompts`, leaving each at least one token of
/// its own (the last prompt token must run with the rows to give their first logits).
fn shared_prefix_len(prompts: &[&[u32]]) -> usize {
    let Some((first, rest)) = prompts.split_first() else { return 0 };
    let mut len = first.len().saturating_sub(1);
    for p in rest {
        len = len.min(p.len().saturating_sub(1));
        len = first.iter().zip(p.iter()).take(len).take_while(|(a, b)| a == b).count();
    }
    len
}

/// Runs `tokens` alone and keeps their K/V as a prefix to share; None when empty.
fn prefill_prefix<D: Decoder>(model: &D, tokens: &[u32]) -> Result<Option<D::Prefix>, EvalError> {
    let n = tokens.len();
    if n == 0 {
        return Ok(None);
    }
    let mut cache = model.new_cache(None, 1, n)?;
    let mask: Vec<f32> = (0..n * n).map(|k| if k % n <= k / n { 0.0 } else { f32::NEG_INFINITY }).collect();
    let positions: Vec<u32> = (0..n as u32).collect();
    model.forward(tokens, &positions, &mask, 1, &mut cache)?;
    Ok(Some(model.prefix_of(cache)?))
}

struct Chunk<'a, D: Decoder> {
    model: &'a D,
    prompts: &'a [Vec<u32>],
    prefix: Option<&'a D::Prefix>,
    /// Tokens of every prompt covered by `prefix`.
    shared: usize,
    params: &'a GenerationParams,
    stop_ids: &'a [u32],
    interrupt: &'a Interrupt,
}

impl<D: Decoder> Chunk<'_, D> {
    fn run(&self, first: usize, jobs: &[Job], results: &mut [JobResult], spent: &mut Spent) -> Result<(), EvalError> {
        let mut unique: Vec<usize> = jobs.iter().map(|j| j.prompt).collect();
        unique.sort_unstable();
        unique.dedup();
        let width = unique.iter().map(|&p| self.prompts[p].len() - self.shared).max().unwrap_or(0);
        // `Engine::generate_until` checked every prompt + max_new_tokens against the context.
        let capacity = width + self.params.max_new_tokens;
        let started = Instant::now();
        let mut cache = self.model.new_cache(self.prefix.cloned(), unique.len(), capacity)?;
        let logits = self.prefill(&unique, width, &mut cache)?;
        let fan_out: Vec<u32> =
            jobs.iter().map(|j| unique.iter().position(|&p| p == j.prompt).unwrap_or(0) as u32).collect();
        self.model.select_rows(&mut cache, &fan_out)?;
        let logits = fan_out.iter().map(|&i| logits[i as usize].clone()).collect();
        spent.prompt_tokens += unique.iter().map(|&p| self.prompts[p].len() - self.shared).sum::<usize>();
        spent.prompt_time += started.elapsed();
        let rows = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let prompt_len = self.prompts[j.prompt].len();
                let pad = width - (prompt_len - self.shared);
                Row { job: first + i, pad, prompt_len, rng: StdRng::seed_from_u64(j.seed) }
            })
            .collect();
        let started = Instant::now();
        let generated = self.decode(rows, logits, &mut cache, jobs, first, results)?;
        spent.generated_tokens += generated;
        spent.decode_time += started.elapsed();
        Ok(())
    }

    /// Teacher-forces `forced[p]` after each prompt `p` of `unique` (distinct, ascending): one
    /// row per prompt, dropped when its tokens run out.
    fn force(&self, unique: &[usize], forced: &[Vec<u32>]) -> Result<Vec<Vec<f64>>, EvalError> {
        let width = unique.iter().map(|&p| self.prompts[p].len() - self.shared).max().unwrap_or(0);
        let mut cache = self.model.new_cache(self.prefix.cloned(), unique.len(), width + self.params.max_new_tokens)?;
        let mut logits = self.prefill(unique, width, &mut cache)?;
        let mut rows: Vec<Row> = unique
            .iter()
            .enumerate()
            .map(|(job, &p)| {
                let prompt_len = self.prompts[p].len();
                Row { job, pad: width - (prompt_len - self.shared), prompt_len, rng: StdRng::seed_from_u64(0) }
            })
            .collect();
        // `step` feeds each row the last token of its `results` entry: the forced ones so far.
        let mut results = vec![JobResult::default(); unique.len()];
        let mut out = vec![Vec::new(); unique.len()];
        loop {
            self.interrupt.check()?;
            let mut keep = Vec::with_capacity(rows.len());
            for (index, (row, row_logits)) in rows.iter().zip(std::mem::take(&mut logits)).enumerate() {
                let tokens = &forced[unique[row.job]];
                let token = tokens[results[row.job].tokens.len()];
                out[row.job].push(log_prob(&row_logits, token));
                results[row.job].tokens.push(token);
                if results[row.job].tokens.len() < tokens.len() {
                    keep.push(index);
                }
            }
            if keep.is_empty() {
                return Ok(out);
            }
            if keep.len() < rows.len() {
                let index: Vec<u32> = keep.iter().map(|&i| i as u32).collect();
                self.model.select_rows(&mut cache, &index)?;
                rows = rows.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, r)| r).collect();
            }
            logits = self.step(&rows, &mut cache, &results)?;
        }
    }

    /// Runs the left-padded rest of each prompt after the shared prefix; returns the logits of
    /// their last positions.
    fn prefill(&self, unique: &[usize], width: usize, cache: &mut D::Cache) -> Result<Vec<Vec<f32>>, EvalError> {
        let n = unique.len();
        let shared = self.shared;
        let total = shared + width;
        let mut tokens = vec![0u32; n * width];
        let mut positions = vec![0u32; n * width];
        let mut mask = vec![f32::NEG_INFINITY; n * width * total];
        for (row, &p) in unique.iter().enumerate() {
            let ids = &self.prompts[p][shared..];
            let pad = width - ids.len();
            tokens[row * width + pad..(row + 1) * width].copy_from_slice(ids);
            for i in 0..width {
                positions[row * width + i] = (shared + i.saturating_sub(pad)) as u32;
                let mask_row = &mut mask[(row * width + i) * total..(row * width + i + 1) * total];
                mask_row[..shared].fill(0.0);
                for j in 0..=i {
                    // Padding queries see themselves so that no softmax row is empty (NaN).
                    if j >= pad || j == i {
                        mask_row[shared + j] = 0.0;
                    }
                }
            }
        }
        self.model.forward(&tokens, &positions, &mask, n, cache)
    }

    fn decode(
        &self,
        mut rows: Vec<Row>,
        mut logits: Vec<Vec<f32>>,
        cache: &mut D::Cache,
        jobs: &[Job],
        first: usize,
        results: &mut [JobResult],
    ) -> Result<usize, EvalError> {
        let mut generated_total = 0;
        loop {
            self.interrupt.check()?;
            let values = std::mem::take(&mut logits);
            let mut keep = Vec::with_capacity(rows.len());
            for (index, (row, mut row_logits)) in rows.iter_mut().zip(values).enumerate() {
                let prompt = &self.prompts[jobs[row.job - first].prompt];
                let result = &mut results[row.job];
                apply_repetition_penalty(&mut row_logits, self.params, prompt, &result.tokens);
                let token = choose(&row_logits, self.params, &mut row.rng);
                if self.stop_ids.contains(&token) {
                    continue;
                }
                result.tokens.push(token);
                generated_total += 1;
                if result.tokens.len() >= self.params.max_new_tokens {
                    result.truncated = true;
                    continue;
                }
                keep.push(index);
            }
            if keep.is_empty() {
                return Ok(generated_total);
            }
            if keep.len() < rows.len() {
                let index: Vec<u32> = keep.iter().map(|&i| i as u32).collect();
                self.model.select_rows(cache, &index)?;
                rows = rows.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, r)| r).collect();
            }
            logits = self.step(&rows, cache, results)?;
        }
    }

    /// Feeds each row its last sampled token.
    fn step(&self, rows: &[Row], cache: &mut D::Cache, results: &[JobResult]) -> Result<Vec<Vec<f32>>, EvalError> {
        let n = rows.len();
        let shared = self.model.prefix_len(cache);
        let total = shared + self.model.cache_len(cache) + 1;
        let mut tokens = Vec::with_capacity(n);
        let mut positions = Vec::with_capacity(n);
        let mut mask = vec![0f32; n * total];
        for (i, row) in rows.iter().enumerate() {
            let generated = &results[row.job].tokens;
            tokens.push(*generated.last().unwrap_or(&0));
            positions.push((row.prompt_len + generated.len() - 1) as u32);
            mask[i * total + shared..i * total + shared + row.pad].fill(f32::NEG_INFINITY);
        }
        self.model.forward(&tokens, &positions, &mask, n, cache)
    }
}
