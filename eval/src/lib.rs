//! Text generation for phasegate's eval jobs, natively with candle.
//!
//! This crate owns turning a model (a GGUF file or a Hugging Face safetensors directory, plus an
//! optional PEFT LoRA adapter merged at load) and a list of chat prompts into generated answers:
//! tokenizer (from `tokenizer.json` or GGUF metadata), chat template, a batched llama forward
//! pass with preallocated KV caches (candle's graph, or on x86-64 CPUs our own kernels over
//! packed Q4/Q8 weights: `native`), sampling with per-sample seeds, and the model cache
//! (`pull`, `list`, `resolve`), the rendered token lengths of training conversations
//! (`TokenCounter`, for `phasegate lint`), and teacher-forced scoring of given texts
//! (`Engine::log_probs`): the log-probability of each token under the same forward pass, and a
//! LoRA trainer over the same weights that writes PEFT adapters (`train`). It does
//! not score answers (`phasegate-score`) nor decide
//! anything about a run.

mod bench;
mod cache;
mod engine;
mod error;
mod fast_count;
mod fluency;
mod generate;
mod gguf;
mod likelihood;
mod lora;
mod model;
mod native;
mod safetensors_io;
mod sampler;
mod spec;
mod template;
mod token_count;
mod tokenizer;
pub mod train;
mod vocab;

#[cfg(any(test, feature = "testutil"))]
pub mod tiny;

#[cfg(test)]
mod likelihood_tests;
#[cfg(test)]
mod tests;

pub use bench::{BenchFigures, BenchOptions, bench};
pub use cache::{CachedModel, KNOWN_MODELS, KnownModel, default_cache_dir, list, pull, resolve};
pub use engine::{Engine, Interrupt};
pub use error::EvalError;
pub use fluency::{Fluency, SHUFFLE_SEED, measure as measure_fluency, shuffle_words};
pub use likelihood::{ScoredText, TextContext, TextLogProbs};
pub use sampler::derive_seed;
pub use spec::{
    Answer, CpuRequantize, GenerationOutput, GenerationParams, ModelInfo, ModelSpec, Prompt, RepetitionPenaltyScope,
    Timing,
};
pub use template::TEMPLATE_NAMES;
pub use token_count::{ChatMessage, TokenCounter};

/// Model cache operations, as `models::pull(...)`.
pub mod models {
    pub use crate::cache::{default_cache_dir, list, pull, resolve};
}
