//! Scoring a whole responses file: match records to the suite's questions, then score each sample.

use super::score_sample;
use crate::error::ScoreError;
use crate::lexicon::Lexicon;
use crate::responses::{ResponseRecord, Responses};
use crate::scores::{ScoredPhase, ScoredQuestion};
use crate::suite::Suite;
use std::collections::{BTreeMap, BTreeSet};

/// Score every sample of a phase. Fails when the responses and the suite disagree on the questions:
/// a score over a different question set would compare unlike with unlike in the gate.
pub fn score_phase(suite: &Suite, lexicon: &Lexicon, responses: &Responses) -> Result<ScoredPhase, ScoreError> {
    super::check_rules(suite)?;
    let grouped = group(suite, &responses.results)?;
    let mut questions = Vec::with_capacity(suite.questions.len());
    for q in &suite.questions {
        let records = grouped.get(q.id.as_str()).ok_or_else(|| ScoreError::MissingQuestion { qid: q.id.clone() })?;
        questions.push(ScoredQuestion {
            qid: q.id.clone(),
            question: q.text.clone(),
            samples: records.iter().map(|r| score_sample(suite, lexicon, q, r)).collect(),
        });
    }
    Ok(ScoredPhase {
        suite: suite.name.clone(),
        rubric_version: suite.rubric.version().to_owned(),
        phase: responses.phase.clone(),
        model: responses.model.clone(),
        adapter: responses.adapter.clone(),
        timestamp: responses.timestamp.clone(),
        generation_params: responses.generation_params.clone(),
        rubric: suite.rubric.clone(),
        instrument: super::instrument(suite),
        questions,
    })
}

/// Records by question id, each list sorted by sample index.
fn group<'a>(
    suite: &Suite,
    records: &'a [ResponseRecord],
) -> Result<BTreeMap<&'a str, Vec<&'a ResponseRecord>>, ScoreError> {
    let mut grouped: BTreeMap<&str, Vec<&ResponseRecord>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in records {
        let q = suite
            .question(&r.qid)
            .ok_or_else(|| ScoreError::UnknownQuestion { qid: r.qid.clone(), suite: suite.name.clone() })?;
        if r.question.trim() != q.text.trim() {
            return Err(ScoreError::QuestionMismatch {
                qid: r.qid.clone(),
                suite: suite.name.clone(),
                expected: q.text.clone(),
                found: r.question.clone(),
            });
        }
        if !seen.insert((r.qid.as_str(), r.sample)) {
            return Err(ScoreError::DuplicateSample { qid: r.qid.clone(), sample: r.sample });
        }
        grouped.entry(r.qid.as_str()).or_default().push(r);
    }
    for list in grouped.values_mut() {
        list.sort_by_key(|r| r.sample);
    }
    Ok(grouped)
}
