//! Phi-3 GGUF models through candle-transformers' quantized phi3, one sequence at a time.
//!
//! candle's phi3 keeps its KV cache inside the model and grows it to the model's context, so
//! it decodes a single sequence: each job runs on its own clone of the loaded weights (the
//! tensors are shared; only the empty caches are copied).

use crate::engine::Interrupt;
use crate::error::EvalError;
use crate::generate::{Job, JobResult, Spent};
use crate::sampler::{apply_repetition_penalty, choose};
use crate::spec::GenerationParams;
use candle_core::quantized::gguf_file::Content;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_phi3::ModelWeights;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::io::{Read, Seek};
use std::path::Path;
use std::time::Instant;

pub(crate) struct Phi3 {
    weights: ModelWeights,
    pub(crate) max_seq: usize,
    pub(crate) parameters: u64,
    device: Device,
}

impl std::fmt::Debug for Phi3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phi3").field("max_seq", &self.max_seq).field("parameters", &self.parameters).finish()
    }
}

impl Phi3 {
    pub(crate) fn load<R: Read + Seek>(
        path: &Path,
        content: Content,
        max_seq: usize,
        reader: &mut R,
        device: &Device,
    ) -> Result<Self, EvalError> {
        let parameters = content.tensor_infos.values().map(|info| info.shape.elem_count() as u64).sum();
        let weights = ModelWeights::from_gguf(false, content, reader, device).map_err(|e| EvalError::Tensor {
            path: path.to_path_buf(),
            tensor: "phi3 weights".into(),
            message: e.to_string(),
        })?;
        Ok(Self { weights, max_seq, parameters, device: device.clone() })
    }

    /// Generates every job in order, one sequence at a time.
    pub(crate) fn run(
        &self,
        prompts: &[Vec<u32>],
        jobs: &[Job],
        params: &GenerationParams,
        stop_ids: &[u32],
        interrupt: &Interrupt,
    ) -> Result<(Vec<JobResult>, Spent), EvalError> {
        let mut spent = Spent::default();
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            let run = Run { prompt: &prompts[job.prompt], seed: job.seed, params, stop_ids, interrupt };
            results.push(self.run_job(&run, &mut spent)?);
        }
        Ok((results, spent))
    }

    fn run_job(&self, run: &Run<'_>, spent: &mut Spent) -> Result<JobResult, EvalError> {
        let Run { prompt, seed, params, stop_ids, interrupt } = *run;
        let mut model = self.weights.clone();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut result = JobResult::default();
        let started = Instant::now();
        let mut logits = model.forward(&Tensor::new(prompt, &self.device)?.unsqueeze(0)?, 0)?;
        spent.prompt_tokens += prompt.len();
        spent.prompt_time += started.elapsed();
        let started = Instant::now();
        loop {
            interrupt.check()?;
            let mut values = logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            apply_repetition_penalty(&mut values, params, prompt, &result.tokens);
            let token = choose(&values, params, &mut rng);
            if stop_ids.contains(&token) {
                break;
            }
            result.tokens.push(token);
            if result.tokens.len() >= params.max_new_tokens {
                result.truncated = true;
                break;
            }
            let position = prompt.len() + result.tokens.len() - 1;
            logits = model.forward(&Tensor::new(&[token], &self.device)?.unsqueeze(0)?, position)?;
        }
        spent.generated_tokens += result.tokens.len();
        spent.decode_time += started.elapsed();
        Ok(result)
    }
}

/// One sequence to generate.
#[derive(Clone, Copy)]
struct Run<'a> {
    prompt: &'a [u32],
    seed: u64,
    params: &'a GenerationParams,
    stop_ids: &'a [u32],
    interrupt: &'a Interrupt,
}
