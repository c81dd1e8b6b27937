//! `phasegate score`: the rules scorer over response files users already have, offline. Its JSON
//! is the score stage's `score/scores.json`, so a re-scored file imports like one the stage
//! wrote; several files give a JSON array, one object per file, in argument order.
//!
//! Files from other tools are messy: they may lack `phase` (the file name's number is used, else
//! the file name) and `model`, and list K samples of a question without `sample` (they are
//! numbered in file order). Anything else missing or mistyped is a usage error naming the file
//! and the field.

use std::fmt::Write as _;
use std::path::Path;

use phasegate_score::{Lexicon, Responses, ScoredPhase, Suite, score_phase};
use serde_json::Value;

use super::gate::load_suite;
use crate::cli::{ReportFormat, ScoreArgs};
use crate::exit::{Code, Failure, Result};
use crate::out::out;

pub fn score(args: &ScoreArgs) -> Result<Code> {
    let suite = load_suite(&args.suite)?;
    let lexicon = Lexicon::load(&args.models.dir(), &suite).map_err(super::calibrate::lexicon_failure)?;
    let mut scored = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let responses = read_responses(path)?;
        let phase = score_phase(&suite, &lexicon, &responses).map_err(|e| {
            Failure::usage(format!("failed to score {} with suite {}: {e}", path.display(), args.suite.display()))
        })?;
        scored.push((path.as_path(), phase));
    }
    let text = match args.format {
        ReportFormat::Json => {
            let files: Vec<Value> =
                scored.iter().map(|(_, s)| phasegate_agent::rules_scores_file(s, &s.phase)).collect();
            let out = if files.len() == 1 { files[0].clone() } else { Value::Array(files) };
            format!("{}\n", serde_json::to_string_pretty(&out).unwrap_or_default())
        }
        ReportFormat::Markdown => scored.iter().map(|(p, s)| markdown(p, &suite, s)).collect(),
    };
    match &args.out {
        Some(out) => {
            std::fs::write(out, text).map_err(|e| Failure::infra(format!("failed to write {}: {e}", out.display())))?
        }
        None => out!("{text}"),
    }
    Ok(Code::Success)
}

/// Reads a responses file, filling what older files leave out (see the module docs).
fn read_responses(path: &Path) -> Result<Responses> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("failed to read responses file {}: {e}", path.display())))?;
    let mut root: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("failed to parse {} as JSON: {e}", path.display())))?;
    let bad = |field: &str, why: &str| Failure::usage(format!("{}: field `{field}` {why}", path.display()));
    let Some(object) = root.as_object_mut() else {
        return Err(bad("(top level)", "should be an object with `results`"));
    };
    let Some(results) = object.get_mut("results").and_then(Value::as_array_mut) else {
        return Err(bad("results", "is missing or not an array of responses"));
    };
    let mut seen: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for (i, r) in results.iter_mut().enumerate() {
        let Some(entry) = r.as_object_mut() else {
            return Err(bad(&format!("results[{i}]"), "should be an object"));
        };
        for key in ["qid", "question", "response"] {
            if !entry.get(key).is_some_and(Value::is_string) {
                return Err(bad(&format!("results[{i}].{key}"), "is missing or not a string"));
            }
        }
        let qid = entry["qid"].as_str().unwrap_or_default().to_owned();
        let next = seen.entry(qid).or_default();
        if !entry.contains_key("sample") {
            entry.insert("sample".into(), Value::from(*next));
        }
        *next += 1;
    }
    if !object.get("phase").is_some_and(|p| p.is_string()) {
        let label = match object.get("phase") {
            Some(Value::Number(n)) => n.to_string(),
            _ => default_label(path),
        };
        object.insert("phase".into(), Value::String(label));
    }
    object.entry("model").or_insert_with(|| Value::String(String::new()));
    serde_json::from_value(root).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// "eval_responses_phase9.json" → "9"; a name without a number is the label itself.
fn default_label(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    gate_rules::ordinal_from_label(&stem).map_or(stem, |n| n.to_string())
}

fn markdown(path: &Path, suite: &Suite, scored: &ScoredPhase) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} phase {}: {:.2}/10\n\n{} · suite {} · rubric {}\n",
        path.display(),
        scored.phase,
        scored.normalized_10(),
        scored.instrument,
        suite.name,
        suite.rubric.version()
    );
    let ids: Vec<&str> = suite.rubric.dimensions().iter().map(|d| d.id.as_str()).collect();
    let _ = writeln!(out, "| Question | Sample | Score /10 | {} |", ids.join(" | "));
    let _ = writeln!(out, "|---|---|---|{}", "---|".repeat(ids.len()));
    for q in &scored.questions {
        for s in &q.samples {
            let dims: Vec<String> = s.dims.iter().map(|d| format!("{} ({})", d.score, d.reason)).collect();
            let _ = writeln!(out, "| {} | {} | {:.1} | {} |", q.qid, s.sample, s.normalized_10(), dims.join(" | "));
        }
    }
    out.push('\n');
    out
}
