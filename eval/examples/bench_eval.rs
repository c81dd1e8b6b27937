//! Pulls SmolLM2 into the model cache if needed and prints `bench` figures as JSON.
//! Usage: `cargo run --release -p phasegate-eval --example bench_eval -- [q8_0]`
//! (cache: `PHASEGATE_MODEL_CACHE` or the default cache directory).

use phasegate_eval::{BenchOptions, CpuRequantize, ModelSpec, bench, models};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = models::default_cache_dir();
    let path = models::pull("smollm2-135m-instruct", &cache)?;
    let requantize = std::env::args().nth(1).filter(|a| a == "q8_0").map(|_| CpuRequantize::Q8_0);
    let spec = ModelSpec {
        reference: path.to_string_lossy().into_owned(),
        cpu_requantize: requantize,
        ..ModelSpec::default()
    };
    let figures = bench(&BenchOptions::new(spec))?;
    println!("{}", serde_json::to_string_pretty(&figures)?);
    Ok(())
}
