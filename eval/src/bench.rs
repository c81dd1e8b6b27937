//! `phasegate bench eval`: single-stream speed, whole-suite wall time and peak memory.

use crate::engine::Engine;
use crate::error::EvalError;
use crate::spec::{GenerationParams, ModelInfo, ModelSpec, Prompt};
use serde::{Deserialize, Serialize};
use std::time::Instant;

const SYSTEM: &str = "Você é a Lia, uma guia de museu em Lisboa. Responda em português, com calma e precisão.";
const QUESTIONS: [&str; 8] = [
    "Quem é você?",
    "Qual é a história do Mosteiro dos Jerónimos?",
    "O que devo visitar primeiro no museu?",
    "Por que os azulejos são importantes em Portugal?",
    "Pode me recomendar um passeio de uma tarde em Lisboa?",
    "Como era a vida em Lisboa antes do terramoto de 1755?",
    "Qual é a diferença entre o Manuelino e o Gótico?",
    "Onde posso comer pastéis de nata perto de Belém?",
];

/// What to measure. Defaults follow the issue: 8 questions × 5 samples × 150 tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchOptions {
    pub model: ModelSpec,
    pub questions: usize,
    pub samples: usize,
    pub max_new_tokens: usize,
    pub max_batch: usize,
}

impl BenchOptions {
    pub fn new(model: ModelSpec) -> Self {
        Self { model, questions: QUESTIONS.len(), samples: 5, max_new_tokens: 150, max_batch: 40 }
    }
}

/// The measured figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchFigures {
    pub model: ModelInfo,
    pub load_s: f64,
    /// One greedy answer of `max_new_tokens`, decoded alone.
    pub single_stream_generation_tok_s: f64,
    pub single_stream_prompt_tok_s: f64,
    /// questions × samples answers generated in one `generate` call.
    pub suite_wall_s: f64,
    pub suite_answers: usize,
    pub suite_generated_tokens: usize,
    pub suite_generation_tok_s: f64,
    /// Peak resident memory of this process (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
}

/// The bench prompts, cycling through the built-in questions.
pub(crate) fn prompts(count: usize) -> Vec<Prompt> {
    (0..count)
        .map(|i| Prompt {
            qid: format!("q{}", i + 1),
            system: Some(SYSTEM.to_string()),
            user: QUESTIONS[i % QUESTIONS.len()].to_string(),
        })
        .collect()
}

/// Loads the model and measures it.
pub fn bench(options: &BenchOptions) -> Result<BenchFigures, EvalError> {
    let started = Instant::now();
    let engine = Engine::load(&options.model)?;
    let load_s = started.elapsed().as_secs_f64();
    let suite_prompts = prompts(options.questions);
    let single =
        GenerationParams { temperature: 0.0, max_new_tokens: options.max_new_tokens, ..GenerationParams::default() };
    let one = engine.generate(&suite_prompts[..1], &single)?;
    let suite = GenerationParams {
        samples: options.samples,
        max_new_tokens: options.max_new_tokens,
        max_batch: options.max_batch,
        ..GenerationParams::default()
    };
    let all = engine.generate(&suite_prompts, &suite)?;
    Ok(BenchFigures {
        model: engine.model_info().clone(),
        load_s,
        single_stream_generation_tok_s: one.timing.generation_tokens_per_s,
        single_stream_prompt_tok_s: one.timing.prompt_tokens_per_s,
        suite_wall_s: all.timing.wall_s,
        suite_answers: all.answers.len(),
        suite_generated_tokens: all.timing.generated_tokens,
        suite_generation_tok_s: all.timing.generation_tokens_per_s,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
