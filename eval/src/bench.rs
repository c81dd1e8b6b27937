//! `phasegate bench eval`: single-stream speed, whole-suite wall time and peak memory, on the
//! same prompts and token counts as `bench/llama_cpp_bench.py` so the two can be compared.

use crate::engine::Engine;
use crate::error::EvalError;
use crate::spec::{GenerationParams, ModelInfo, ModelSpec, Prompt};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

/// The bundled persona suite, used when no suite file is given.
const BUNDLED_SUITE: &str = include_str!("../../datasets/persona-v1/suite.toml");
const BUNDLED_SUITE_NAME: &str = "datasets/persona-v1/suite.toml (bundled)";

/// What to measure. Defaults follow the issue: the suite's 8 questions × 5 samples × 150
/// tokens, every answer exactly `max_new_tokens` long (stop tokens ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchOptions {
    pub model: ModelSpec,
    /// An eval suite TOML (persona system prompt and questions); None: the bundled persona-v1.
    #[serde(default)]
    pub suite: Option<PathBuf>,
    /// Questions to ask, cycling through the suite's questions.
    pub questions: usize,
    pub samples: usize,
    pub max_new_tokens: usize,
    pub max_batch: usize,
}

impl BenchOptions {
    pub fn new(model: ModelSpec) -> Self {
        Self { model, suite: None, questions: 8, samples: 5, max_new_tokens: 150, max_batch: DEFAULT_BENCH_BATCH }
    }
}

/// Rows decoded together in the suite run; measured as the best trade of speed against the
/// KV memory (see bench/README.md).
const DEFAULT_BENCH_BATCH: usize = 20;

/// The measured figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchFigures {
    pub model: ModelInfo,
    /// Which kernels ran the model (`Engine::kernels`).
    pub kernels: String,
    pub suite: String,
    /// candle's quantized-matmul thread count (`CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`,
    /// else the physical cores).
    pub threads: usize,
    pub load_s: f64,
    /// Prompt tokens of the single-stream answer (the first question).
    pub single_stream_prompt_tokens: usize,
    /// One greedy answer of exactly `max_new_tokens` tokens, decoded alone.
    pub single_stream_generation_tok_s: f64,
    pub single_stream_prompt_tok_s: f64,
    /// questions × samples answers of exactly `max_new_tokens` tokens in one `generate` call,
    /// sampled with the default parameters (temperature 0.7, top_p 0.9).
    pub suite_wall_s: f64,
    pub suite_answers: usize,
    pub suite_generated_tokens: usize,
    pub suite_generation_tok_s: f64,
    pub max_batch: usize,
    /// Peak resident memory of this process (Linux `VmHWM`), when known.
    pub peak_rss_bytes: Option<u64>,
}

impl fmt::Display for BenchFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |b: Option<u64>| b.map_or("unknown".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6));
        writeln!(f, "model: {} ({}, {})", self.model.name, self.model.dtype, self.model.architecture)?;
        writeln!(f, "kernels: {}", self.kernels)?;
        writeln!(f, "suite: {}; threads: {}; load: {:.2} s", self.suite, self.threads, self.load_s)?;
        writeln!(
            f,
            "single stream: {:.1} tok/s generation, {:.1} tok/s prompt ({} prompt tokens)",
            self.single_stream_generation_tok_s, self.single_stream_prompt_tok_s, self.single_stream_prompt_tokens
        )?;
        writeln!(
            f,
            "suite: {} answers, {} tokens in {:.2} s ({:.1} tok/s, batch {})",
            self.suite_answers,
            self.suite_generated_tokens,
            self.suite_wall_s,
            self.suite_generation_tok_s,
            self.max_batch
        )?;
        write!(f, "peak rss: {}", mb(self.peak_rss_bytes))
    }
}

/// The parts of an eval suite file the bench reads; other keys belong to the scorer.
#[derive(Debug, Deserialize)]
struct SuiteFile {
    persona: SuitePersona,
    questions: Vec<SuiteQuestion>,
}

#[derive(Debug, Deserialize)]
struct SuitePersona {
    system_prompt: String,
}

#[derive(Debug, Deserialize)]
struct SuiteQuestion {
    id: String,
    text: String,
}

/// The bench prompts: the suite's (trimmed) system prompt with `count` questions, cycling.
pub(crate) fn suite_prompts(text: &str, origin: &str, count: usize) -> Result<Vec<Prompt>, EvalError> {
    let suite: SuiteFile = toml::from_str(text).map_err(|e| EvalError::parse(origin, e))?;
    if suite.questions.is_empty() {
        return Err(EvalError::parse(origin, "the suite has no questions"));
    }
    let system = suite.persona.system_prompt.trim().to_string();
    Ok((0..count)
        .map(|i| {
            let q = &suite.questions[i % suite.questions.len()];
            Prompt { qid: q.id.clone(), system: Some(system.clone()), user: q.text.clone() }
        })
        .collect())
}

fn read_suite(options: &BenchOptions) -> Result<(String, String), EvalError> {
    match &options.suite {
        None => Ok((BUNDLED_SUITE.to_string(), BUNDLED_SUITE_NAME.to_string())),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
            Ok((text, path.display().to_string()))
        }
    }
}

/// Loads the model and measures it: one greedy answer alone, then the whole suite batched.
pub fn bench(options: &BenchOptions) -> Result<BenchFigures, EvalError> {
    let (text, origin) = read_suite(options)?;
    let prompts = suite_prompts(&text, &origin, options.questions.max(1))?;
    let started = Instant::now();
    let engine = Engine::load(&options.model)?;
    let load_s = started.elapsed().as_secs_f64();
    let single =
        GenerationParams { temperature: 0.0, max_new_tokens: options.max_new_tokens, ..GenerationParams::default() };
    let one = engine.generate_until(&prompts[..1], &single, &[])?;
    let suite = GenerationParams {
        samples: options.samples,
        max_new_tokens: options.max_new_tokens,
        max_batch: options.max_batch,
        ..GenerationParams::default()
    };
    let all = engine.generate_until(&prompts, &suite, &[])?;
    Ok(BenchFigures {
        model: engine.model_info().clone(),
        kernels: engine.kernels().to_string(),
        suite: origin,
        threads: quantized_threads(),
        load_s,
        single_stream_prompt_tokens: one.answers.first().map_or(0, |a| a.prompt_tokens),
        single_stream_generation_tok_s: one.timing.generation_tokens_per_s,
        single_stream_prompt_tok_s: one.timing.prompt_tokens_per_s,
        suite_wall_s: all.timing.wall_s,
        suite_answers: all.answers.len(),
        suite_generated_tokens: all.timing.generated_tokens,
        suite_generation_tok_s: all.timing.generated_tokens as f64 / all.timing.wall_s.max(f64::EPSILON),
        max_batch: options.max_batch,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// The thread count of candle's quantized matmuls: `CANDLE_NUM_THREADS`, else rayon's.
fn quantized_threads() -> usize {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(candle_core::utils::get_num_threads)
}

/// `VmHWM` of `/proc/self/status`: the peak resident set of this process.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_suite_gives_eight_persona_prompts_that_cycle() {
        let prompts = suite_prompts(BUNDLED_SUITE, BUNDLED_SUITE_NAME, 10).unwrap();
        assert_eq!(prompts.len(), 10);
        assert_eq!(prompts[0].qid, "Q1");
        assert_eq!(prompts[8].user, prompts[0].user);
        let system = prompts[0].system.as_deref().unwrap();
        assert!(system.starts_with("Você é a Iara"), "{system}");
        assert!(!system.ends_with('\n'));
    }

    #[test]
    fn a_suite_without_questions_is_refused() {
        let text = "questions = []\n[persona]\nsystem_prompt = \"x\"\n";
        assert!(suite_prompts(text, "empty.toml", 1).is_err());
    }
}
