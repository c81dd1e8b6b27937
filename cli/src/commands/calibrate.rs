//! `phasegate calibrate`: how well the rules scorer agrees with people on labelled answers. Reads
//! the suite, its dictionary and the label files, scores every labelled answer and prints MAE and
//! bias of the 0–10 totals, their Pearson and Spearman correlations, per-dimension quadratic-weighted
//! kappa and exact agreement, per-phase and per-category means and the worst disagreements.
//!
//! A measurement, not a gate: it exits 0 whatever the figures; unreadable or invalid input exits 2
//! naming the file and field, a missing dictionary exits 3 with the pull command.

mod labels;
mod render;
mod report;

use phasegate_score::{Lexicon, ResponseRecord, Suite};

use crate::cli::{CalibrateArgs, ReportFormat};
use crate::exit::{Code, Failure, Result};
use crate::out::{out, outln};

pub fn calibrate(args: &CalibrateArgs) -> Result<Code> {
    let suite = Suite::load(&args.suite).map_err(|e| Failure::usage(e.to_string()))?;
    // Input first: a bad label file is a usage error whether or not the dictionary is there.
    let mut all = Vec::new();
    for file in &args.labels {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("failed to read labels {}: {e}", file.display())))?;
        all.extend(labels::parse(file, &text, &suite).map_err(|e| Failure::usage(e.to_string()))?);
    }
    let lexicon = Lexicon::load(&args.models.dir(), &suite).map_err(lexicon_failure)?;
    if !args.no_calibration {
        phasegate_score::calibration::enforce(&suite, &lexicon).map_err(|e| {
            Failure::usage(e.to_string())
                .with_hint("fix the scorer or the anchor, or pass --no-calibration to measure anyway")
        })?;
    }
    let scored: Vec<report::Scored<'_>> = all
        .iter()
        .map(|label| {
            let question = suite.question(&label.qid).expect("labels::parse checked the qid");
            let score = phasegate_score::score_sample(&suite, &lexicon, question, &record(question, label));
            report::Scored { label, score }
        })
        .collect();
    let report = report::build(&suite, &scored);
    match args.format {
        ReportFormat::Markdown => out!("{}", render::markdown(&report)),
        ReportFormat::Json => outln!("{}", render::json(&report)),
    }
    Ok(Code::Success)
}

/// A missing dictionary is an infrastructure error whose hint is the pull command.
pub fn lexicon_failure(e: phasegate_score::LexiconError) -> Failure {
    let text = e.to_string();
    match text.split_once("\nhint: ") {
        Some((message, hint)) => Failure::infra(message).with_hint(hint),
        None => Failure::infra(text),
    }
}

fn record(question: &phasegate_score::Question, label: &labels::Label) -> ResponseRecord {
    ResponseRecord {
        qid: label.qid.clone(),
        question: question.text.clone(),
        response: label.response.clone(),
        sample: 0,
        seed: None,
        truncated: label.truncated,
        tokens: None,
        d4_auto_fail: None,
        d4_auto_score: None,
    }
}
