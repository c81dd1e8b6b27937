//! The public input and output types of the engine.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which model to load and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A path to a `.gguf` file or a safetensors directory, or a model cache name.
    pub reference: String,
    /// A PEFT LoRA adapter directory, merged into the weights at load.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
    /// A named chat template (`chatml`, `zephyr`, `phi3`) used instead of the model's own.
    #[serde(default)]
    pub template_override: Option<String>,
    /// Re-quantise Q4_0/Q4_1 matmul weights at load; faster on CPU, more memory.
    #[serde(default)]
    pub cpu_requantize: Option<CpuRequantize>,
}

/// Target type of the load-time re-quantisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuRequantize {
    /// candle has a SIMD kernel for Q8_0 but only a scalar one for Q4_1.
    Q8_0,
}

/// Which tokens the repetition penalty looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepetitionPenaltyScope {
    /// Prompt and generated tokens, as Hugging Face transformers does.
    #[default]
    All,
    /// Generated tokens only, as llama.cpp does.
    Generated,
}

/// Sampling parameters. Defaults: 256 new tokens, temperature 0.7, top_p 0.9, top_k 0 (off),
/// repetition penalty 1.0 (off) over prompt + generated tokens, 1 sample, seed 0, batch 16.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationParams {
    pub max_new_tokens: usize,
    /// 0 means greedy decoding.
    pub temperature: f64,
    /// 1.0 disables nucleus filtering.
    pub top_p: f64,
    /// 0 disables top-k filtering.
    pub top_k: usize,
    /// 1.0 disables the penalty.
    pub repetition_penalty: f32,
    pub repetition_penalty_scope: RepetitionPenaltyScope,
    /// Answers per prompt (K).
    pub samples: usize,
    pub seed: u64,
    /// Sequences decoded together; bounds the KV cache memory.
    pub max_batch: usize,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.7,
            top_p: 0.9,
            top_k: 0,
            repetition_penalty: 1.0,
            repetition_penalty_scope: RepetitionPenaltyScope::All,
            samples: 1,
            seed: 0,
            max_batch: 16,
        }
    }
}

/// One chat prompt: a question of the suite with its system prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub qid: String,
    pub system: Option<String>,
    pub user: String,
}

/// One generated answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub qid: String,
    pub sample: usize,
    /// The seed this sample was drawn with, derived from (params.seed, qid, sample).
    pub seed: u64,
    pub text: String,
    pub generated_tokens: usize,
    /// Hit `max_new_tokens` without a stop token.
    pub truncated: bool,
    pub prompt_tokens: usize,
}

/// Throughput of one `generate` call.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timing {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
    pub wall_s: f64,
}

/// The answers of one `generate` call, in prompt order then sample order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GenerationOutput {
    pub answers: Vec<Answer>,
    pub timing: Timing,
}

/// What was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    /// The weight type as stored, e.g. `q4_1`, `f32`; re-quantisation shows as `q4_1->q8_0`, with
    /// `+pad256` when the weights were padded for the VNNI kernels.
    pub dtype: String,
    pub parameters: u64,
    pub adapter: Option<PathBuf>,
}
