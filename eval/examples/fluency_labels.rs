//! Measures the fluency figures of hand-labelled answers under a reference model, to choose the
//! signal (and threshold) that tells real-word salad from prose:
//!
//! ```sh
//! cargo run --release -p phasegate-eval --example fluency_labels -- \
//!     SUITE.toml LABELS.json MODEL [--answers]
//! ```
//!
//! MODEL is a path or a model cache name. Prints, per feature, each category's mean and the best
//! threshold: how many `word_salad` answers it flags and how many answers that are not salad of any
//! kind (every category but `word_salad`, `gibberish` and `smollm2`) it flags wrongly. Use only a
//! training split: a held-out split is for reporting the scorer, not for choosing it.

use phasegate_eval::{Engine, Fluency, ModelSpec, Prompt, measure_fluency};
use std::collections::BTreeMap;

/// Categories of salad or pseudo-language: flagging them is no error.
const SALAD_KINDS: [&str; 3] = ["word_salad", "gibberish", "smollm2"];

struct Feature {
    name: &'static str,
    value: fn(&Fluency) -> f64,
    /// Salad has low values of this feature (else high).
    salad_low: bool,
}

const FEATURES: &[Feature] = &[
    Feature { name: "mean NLL (plain)", value: |f| f.nll, salad_low: false },
    Feature { name: "mean NLL (answer turn)", value: |f| f.answer_nll, salad_low: false },
    Feature { name: "order gain (plain)", value: Fluency::order_gain, salad_low: true },
    Feature { name: "order gain (answer turn)", value: Fluency::answer_order_gain, salad_low: true },
    Feature { name: "context gain", value: Fluency::context_gain, salad_low: true },
];

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
    let answers: Vec<(Prompt, String)> = labels
        .iter()
        .map(|l| {
            let qid = l["qid"].as_str().unwrap().to_owned();
            let user = questions[&qid].clone();
            (Prompt { qid, system: system.clone(), user }, l["response"].as_str().unwrap().to_owned())
        })
        .collect();
    let engine = Engine::load(&ModelSpec { reference: model.clone(), ..ModelSpec::default() }).expect("load model");
    let started = std::time::Instant::now();
    let figures = measure_fluency(&engine, &answers).expect("score");
    eprintln!("{} answers scored in {:.1}s", answers.len(), started.elapsed().as_secs_f64());
    let rows: Vec<(&str, &str, Fluency)> = labels
        .iter()
        .zip(&figures)
        .filter_map(|(l, f)| Some((l["id"].as_str()?, l["category"].as_str()?, (*f)?)))
        .collect();
    if rest.iter().any(|a| a == "--answers") {
        for (id, category, f) in &rows {
            println!(
                "{id}\t{category}\t{}\tnll {:.3}\tanswer {:.3}\torder {:.3}\tanswer order {:.3}\tcontext {:.3}",
                f.tokens,
                f.nll,
                f.answer_nll,
                f.order_gain(),
                f.answer_order_gain(),
                f.context_gain()
            );
        }
    }
    for feature in FEATURES {
        report(feature, &rows);
    }
}

fn report(feature: &Feature, rows: &[(&str, &str, Fluency)]) {
    let mut by_category: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (_, category, f) in rows {
        by_category.entry(category).or_default().push((feature.value)(f));
    }
    println!("\n## {}", feature.name);
    let means: Vec<String> = by_category
        .iter()
        .map(|(c, v)| format!("{c} {:.3}", v.iter().sum::<f64>() / v.len() as f64))
        .collect();
    println!("means: {}", means.join(", "));
    // Flag when the feature is on the salad side of t: try every observed value as t.
    let flags = |t: f64, v: f64| if feature.salad_low { v <= t } else { v >= t };
    let best = rows
        .iter()
        .map(|(_, _, f)| (feature.value)(f))
        .map(|t| {
            let salad = rows.iter().filter(|(_, c, f)| *c == "word_salad" && flags(t, (feature.value)(f))).count();
            let wrong =
                rows.iter().filter(|(_, c, f)| !SALAD_KINDS.contains(c) && flags(t, (feature.value)(f))).count();
            (t, salad, wrong)
        })
        .max_by(|a, b| (a.1 as i64 - a.2 as i64).cmp(&(b.1 as i64 - b.2 as i64)).then(b.0.total_cmp(&a.0)));
    let total = by_category.get("word_salad").map_or(0, Vec::len);
    let others = rows.iter().filter(|(_, c, _)| !SALAD_KINDS.contains(c)).count();
    if let Some((t, salad, wrong)) = best {
        let side = if feature.salad_low { "<=" } else { ">=" };
        println!("best threshold {side} {t:.3}: flags {salad} of {total} word_salad, {wrong} of {others} others");
        let flagged: Vec<&str> =
            rows.iter().filter(|(_, c, f)| *c != "word_salad" && flags(t, (feature.value)(f))).map(|r| r.1).collect();
        println!("also flagged: {}", flagged.join(", "));
    }
}
