//! `phasegate bench lint`: `phasegate lint` on a generated ShareGPT file (100,000 examples by
//! default) with the bundled persona suite and, when it is cached, SmolLM2's tokenizer. Prints
//! examples/s of each step and of the whole lint, and the process's peak RSS (VmHWM).
//!
//! The file is deterministic (seeded): Portuguese-looking pseudo-words, a system prompt, one
//! or two exchanges per example, 1% exact copies, 1% lightly edited copies, and a few eval
//! questions, so every check has work to do.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use gate_rules::data::{LintConfig, LintInput, TokenLengths};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cli::BenchLintArgs;
use crate::exit::{Code, Failure, Result};
use crate::out::outln;

const SUITE: &str = include_str!("../../../datasets/persona-v1/suite.toml");
const SYSTEM: &str = "Você é a Iara, uma inteligência artificial que trabalha como parceira de programação do \
Tomás. Fale português do Brasil, em primeira pessoa, de forma natural e direta.";
const SYLLABLES: [&str; 24] = [
    "ba", "ca", "da", "fe", "ga", "lho", "ma", "ne", "pa", "que", "ra", "sa", "ta", "va", "ção", "des", "men", "to",
    "tra", "bra", "ri", "lo", "cu", "po",
];

pub fn bench(args: &BenchLintArgs) -> Result<Code> {
    let dir = tempfile::tempdir().map_err(|e| Failure::infra(format!("failed to create a temp dir: {e}")))?;
    let path = args.keep.clone().unwrap_or_else(|| dir.path().join("bench.jsonl"));
    let started = Instant::now();
    let bytes = generate(&path, args.examples)?;
    let generated = started.elapsed().as_secs_f64();
    // The figure is the lint's peak, not the generator's: Linux resets VmHWM to the current
    // RSS on this write (where it cannot, the peak includes generating).
    let hwm_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let suite = phasegate_score::Suite::from_toml_str(SUITE, Path::new("datasets/persona-v1/suite.toml"))
        .map_err(|e| Failure::infra(e.to_string()))?;
    let suite = phasegate_agent::lint_job::probes(&suite);
    let cache = args.models.dir();
    let model = phasegate_eval::models::resolve(&args.model, &cache).ok().map(|_| args.model.clone());
    let config = LintConfig { model: model.clone(), max_length: Some(512), epochs: Some(3), ..LintConfig::default() };

    let t0 = Instant::now();
    let datasets = super::lint::read_datasets(std::slice::from_ref(&path))?;
    let t_parse = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let lengths = super::lint::measure(&datasets, &config, &cache)?;
    let t_tokens = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let report = gate_rules::data::lint(&LintInput {
        datasets: &datasets,
        baseline: None,
        suite: Some(&suite),
        config: &config,
        token_lengths: &lengths,
    });
    let t_core = t2.elapsed().as_secs_f64();
    let total = t0.elapsed().as_secs_f64();
    let n = report.examples as f64;
    let rate = |s: f64| if s > 0.0 { format!("{:.0}", n / s) } else { "-".into() };
    let mut text = format!(
        "lint bench: {} ShareGPT examples ({:.1} MiB, generated in {generated:.2} s)\n",
        report.examples,
        bytes as f64 / 1048576.0
    );
    let tokenizer = match (&lengths, &model) {
        (TokenLengths::Measured { model, .. }, _) => format!("tokenizer {model}"),
        _ => format!(
            "no tokenizer: `{}` is not cached (phasegate models pull {}), lengths skipped",
            args.model, args.model
        ),
    };
    let _ = writeln!(text, "  {tokenizer}");
    let _ = writeln!(text, "  read + parse      {t_parse:>7.2} s  {:>9} examples/s", rate(t_parse));
    let _ = writeln!(text, "  token lengths     {t_tokens:>7.2} s  {:>9} examples/s", rate(t_tokens));
    let _ = writeln!(text, "  checks (core)     {t_core:>7.2} s  {:>9} examples/s", rate(t_core));
    let _ = writeln!(text, "  whole lint        {total:>7.2} s  {:>9} examples/s", rate(total));
    if let Some(t) = &report.token_lengths {
        let _ = writeln!(
            text,
            "  lengths: min {} p50 {} p95 {} max {}, {} over 512",
            t.min, t.p50, t.p95, t.max, t.over_max_length
        );
    }
    let exact: usize = report.duplicates.exact.iter().map(|g| g.indices.len() - 1).sum();
    let _ = writeln!(
        text,
        "  found: {exact} exact duplicates, {} near-duplicate groups, {} contaminated, verdict {}",
        report.duplicates.near.len(),
        report.contaminated.len(),
        report.verdict
    );
    let rss = super::bench::peak_rss_mib(std::process::id());
    let rss = rss.map_or_else(|| "unknown".into(), |r| r.to_string());
    let of = if hwm_reset { "of the lint" } else { "of generating and linting" };
    let _ = write!(text, "  peak RSS (VmHWM) {of}  {rss} MiB");
    outln!("{text}");
    Ok(Code::Success)
}

/// Writes the bench file; returns its size in bytes.
fn generate(path: &Path, examples: usize) -> Result<u64> {
    let mut rng = StdRng::seed_from_u64(0x11a7);
    let vocab: Vec<String> = (0..4000)
        .map(|_| (0..rng.random_range(1..4)).map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())]).collect())
        .collect();
    let questions = ["Me fala sobre você.", "Quem é o Tomás?", "O que é o Quintal?"];
    let mut out = String::with_capacity(examples * 700);
    // Where each example's line starts and ends in `out`: copies are taken from there, so the
    // generator holds the file's text once.
    let mut lines: Vec<(usize, usize)> = Vec::with_capacity(examples);
    for i in 0..examples {
        let start = out.len();
        match i % 100 {
            17 if i > 100 => {
                let (a, b) = lines[rng.random_range(0..lines.len())];
                out.extend_from_within(a..b);
            }
            53 if i > 100 => {
                let (a, b) = lines[rng.random_range(0..lines.len())];
                let mut copy: serde_json::Value = serde_json::from_str(&out[a..b]).unwrap_or_default();
                if let Some(answer) = copy["conversations"][2]["value"].as_str() {
                    copy["conversations"][2]["value"] = format!("{answer} Isso mesmo.").into();
                }
                out.push_str(&copy.to_string());
            }
            _ if i % 20_000 == 7 => {
                out.push_str(&example(&mut rng, &vocab, Some(questions[(i / 20_000) % questions.len()])).to_string());
            }
            _ => out.push_str(&example(&mut rng, &vocab, None).to_string()),
        }
        lines.push((start, out.len()));
        out.push('\n');
    }
    std::fs::write(path, &out).map_err(|e| Failure::io(format!("failed to write {}: {e}", path.display()), &e))?;
    Ok(out.len() as u64)
}

fn example(rng: &mut StdRng, vocab: &[String], question: Option<&str>) -> serde_json::Value {
    let sentence = |rng: &mut StdRng, lo: usize, hi: usize| {
        let n = rng.random_range(lo..hi);
        let words: Vec<&str> = (0..n).map(|_| vocab[rng.random_range(0..vocab.len())].as_str()).collect();
        words.join(" ")
    };
    let mut turns = vec![serde_json::json!({"from": "system", "value": SYSTEM})];
    for _ in 0..rng.random_range(1..3) {
        let user = match question {
            Some(q) => q.to_owned(),
            None => format!("{}?", sentence(rng, 6, 20)),
        };
        turns.push(serde_json::json!({"from": "human", "value": user}));
        turns.push(serde_json::json!({"from": "gpt", "value": format!("{}.", sentence(rng, 25, 90))}));
    }
    serde_json::json!({ "id": rng.random::<u32>(), "conversations": turns })
}
