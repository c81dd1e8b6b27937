//! Measures fluency features of hand-labelled answers under a reference model, to choose the
//! signal (and threshold) that tells real-word salad from prose:
//!
//! ```sh
//! cargo run --release -p phasegate-eval --example fluency_labels -- \
//!     SUITE.toml LABELS.json MODEL [--answers]
//! ```
//!
//! MODEL is a path or a model cache name. Each answer is scored four times (alone after BOS and as
//! the assistant turn after the suite's system prompt and its question; as written and with its
//! words shuffled with [`SHUFFLE_SEED`]). Prints, per feature, each category's mean and the
//! separation: the threshold that flags the most `word_salad` answers minus wrongly flagged ones,
//! and what catching half and all of the `word_salad` answers costs. Answers of the other salad
//! categories (`gibberish`, `smollm2`) are no error to flag; every other category is. Use only a
//! training split: a held-out split is for reporting the scorer, not for choosing it.

use phasegate_eval::{Engine, Fluency, ModelSpec, Prompt, SHUFFLE_SEED, ScoredText, TextContext, shuffle_words};
use std::collections::BTreeMap;

/// Categories of salad or pseudo-language: flagging them is no error.
const SALAD_KINDS: [&str; 3] = ["word_salad", "gibberish", "smollm2"];
/// A token this surprising (nats) is a "surprise".
const SURPRISE_NATS: f64 = 8.0;
/// The most surprising tokens averaged by the top-k feature.
const TOP_K: usize = 5;

/// One answer's features.
struct Row<'a> {
    id: &'a str,
    category: &'a str,
    fluency: Fluency,
    /// Token NLLs of the answer turn, ascending.
    answer_nlls: Vec<f64>,
}

struct Feature {
    name: &'static str,
    value: fn(&Row) -> f64,
    /// Salad has low values of this feature (else high).
    salad_low: bool,
}

const FEATURES: &[Feature] = &[
    Feature { name: "mean NLL (plain)", value: |r| r.fluency.nll, salad_low: false },
    Feature { name: "mean NLL (answer turn)", value: |r| r.fluency.answer_nll, salad_low: false },
    Feature { name: "order gain (plain)", value: |r| r.fluency.order_gain(), salad_low: true },
    Feature { name: "order gain (answer turn)", value: |r| r.fluency.answer_order_gain(), salad_low: true },
    Feature { name: "context gain (plain - answer turn)", value: |r| r.fluency.context_gain(), salad_low: true },
    Feature { name: "p90 token NLL (answer turn)", value: |r| quantile(&r.answer_nlls, 0.9), salad_low: false },
    Feature { name: "share of tokens > 8 nats (answer turn)", value: surprises, salad_low: false },
    Feature { name: "mean of the 5 worst tokens (answer turn)", value: top_k, salad_low: false },
];

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

fn surprises(r: &Row) -> f64 {
    r.answer_nlls.iter().filter(|&&n| n > SURPRISE_NATS).count() as f64 / r.answer_nlls.len() as f64
}

fn top_k(r: &Row) -> f64 {
    let worst = &r.answer_nlls[r.answer_nlls.len().saturating_sub(TOP_K)..];
    worst.iter().sum::<f64>() / worst.len() as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [suite, labels, model, rest @ ..] = args.as_slice() else {
        eprintln!("usage: fluency_labels SUITE.toml LABELS.json MODEL [--answers]");
        std::process::exit(2);
    };
    let suite: toml::Value = toml::from_str(&std::fs::read_to_string(suite).expect("read suite")).expect("suite");
    let system = suite
        .get("system_prompt")
        .or_else(|| suite.get("persona")?.get("system_prompt"))
        .and_then(|s| s.as_str())
        .map(|s| s.trim().to_owned());
    let questions: BTreeMap<String, String> = suite["questions"]
        .as_array()
        .expect("questions")
        .iter()
        .map(|q| (q["id"].as_str().unwrap().to_owned(), q["text"].as_str().unwrap().to_owned()))
        .collect();
    let labels: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(labels).expect("read labels")).expect("labels");
    let mut texts = Vec::new();
    for l in &labels {
        let qid = l["qid"].as_str().unwrap().to_owned();
        let prompt = Prompt { user: questions[&qid].clone(), qid, system: system.clone() };
        let answer = l["response"].as_str().unwrap();
        for text in [answer.to_owned(), shuffle_words(answer, SHUFFLE_SEED)] {
            texts.push(ScoredText { context: TextContext::Plain, text: text.clone() });
            texts.push(ScoredText { context: TextContext::Answer(prompt.clone()), text });
        }
    }
    let engine = Engine::load(&ModelSpec { reference: model.clone(), ..ModelSpec::default() }).expect("load model");
    let started = std::time::Instant::now();
    let scored = engine.log_probs(&texts).expect("score");
    eprintln!("{} answers scored in {:.1}s", labels.len(), started.elapsed().as_secs_f64());
    let rows: Vec<Row> = labels
        .iter()
        .zip(scored.chunks_exact(4))
        .filter_map(|(l, s)| {
            let mut answer_nlls: Vec<f64> = s[1].log_probs.iter().map(|lp| -lp).collect();
            answer_nlls.sort_by(f64::total_cmp);
            let fluency = Fluency {
                tokens: s[0].tokens.len(),
                nll: s[0].mean_nll()?,
                answer_nll: s[1].mean_nll()?,
                shuffled_nll: s[2].mean_nll()?,
                answer_shuffled_nll: s[3].mean_nll()?,
            };
            Some(Row { id: l["id"].as_str()?, category: l["category"].as_str()?, fluency, answer_nlls })
        })
        .collect();
    if rest.iter().any(|a| a == "--answers") {
        for r in &rows {
            let values: Vec<String> = FEATURES.iter().map(|f| format!("{:.3}", (f.value)(r))).collect();
            println!("{}\t{}\t{}", r.id, r.category, values.join("\t"));
        }
    }
    for feature in FEATURES {
        report(feature, &rows);
    }
}

fn report(feature: &Feature, rows: &[Row]) {
    let value = |r: &Row| (feature.value)(r);
    let mut by_category: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows {
        by_category.entry(r.category).or_default().push(value(r));
    }
    println!("\n## {}", feature.name);
    let means: Vec<String> =
        by_category.iter().map(|(c, v)| format!("{c} {:.3}", v.iter().sum::<f64>() / v.len() as f64)).collect();
    println!("means: {}", means.join(", "));
    let flags = |t: f64, v: f64| if feature.salad_low { v <= t } else { v >= t };
    // (word_salad flagged, others wrongly flagged) at threshold t.
    let count = |t: f64| {
        let salad = rows.iter().filter(|r| r.category == "word_salad" && flags(t, value(r))).count();
        let wrong = rows.iter().filter(|r| !SALAD_KINDS.contains(&r.category) && flags(t, value(r))).count();
        (salad, wrong)
    };
    let total = by_category.get("word_salad").map_or(0, Vec::len);
    let others = rows.iter().filter(|r| !SALAD_KINDS.contains(&r.category)).count();
    let side = if feature.salad_low { "<=" } else { ">=" };
    let best = rows.iter().map(|r| (value(r), count(value(r)))).max_by_key(|(_, (s, w))| *s as i64 - *w as i64);
    if let Some((t, (salad, wrong))) = best {
        println!("best threshold {side} {t:.3}: flags {salad} of {total} word_salad, {wrong} of {others} others");
    }
    let mut salad: Vec<f64> = rows.iter().filter(|r| r.category == "word_salad").map(value).collect();
    salad.sort_by(f64::total_cmp);
    if feature.salad_low {
        salad.reverse();
    }
    // The k-th most salad-like word_salad value as threshold catches k of them.
    for k in [total.div_ceil(2), total].into_iter().filter(|&k| k > 0) {
        let t = salad[total - k];
        println!("catching {k} of {total} word_salad ({side} {t:.3}) also flags {} of {others} others", count(t).1);
    }
}
