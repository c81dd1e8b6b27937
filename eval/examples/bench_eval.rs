//! Prints `bench` figures as JSON for the cached SmolLM2 (pulled if missing).
//! Usage: `cargo run --release -p phasegate-eval --example bench_eval -- [q8_0] [--batch N] [--tokens N] [--questions N] [--samples N] [--suite PATH]`
//! (cache: `PHASEGATE_MODEL_CACHE` or the default cache directory). See bench/README.md.

use phasegate_eval::{BenchOptions, CpuRequantize, ModelSpec, bench, models};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let cache = models::default_cache_dir();
    let path = models::pull("smollm2-135m-instruct", &cache)?;
    let requantize = args.iter().any(|a| a == "q8_0").then_some(CpuRequantize::Q8_0);
    let spec = ModelSpec {
        reference: path.to_string_lossy().into_owned(),
        cpu_requantize: requantize,
        ..ModelSpec::default()
    };
    let mut options = BenchOptions::new(spec);
    if let Some(batch) = value("--batch") {
        options.max_batch = batch.parse()?;
    }
    if let Some(tokens) = value("--tokens") {
        options.max_new_tokens = tokens.parse()?;
    }
    if let Some(samples) = value("--samples") {
        options.samples = samples.parse()?;
    }
    if let Some(questions) = value("--questions") {
        options.questions = questions.parse()?;
    }
    options.suite = value("--suite").map(PathBuf::from);
    let figures = bench(&options)?;
    eprintln!("{figures}");
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
