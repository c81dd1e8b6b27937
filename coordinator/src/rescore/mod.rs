//! The same instrument on both sides: before the gate compares a rules-scored candidate with its
//! history, every accepted phase scored by another instrument (people, an older rules version, a
//! judge) whose responses are stored is re-scored with the candidate's rules scorer. The
//! re-scored phase records the instrument it was first scored by, and the report says so.
//!
//! A judge-scored candidate's baselines are scored by the same judge in the run's score job
//! (`rescored_baselines` of its scores file); [`adopt`] puts those scores in place.
//!
//! Pure: the suite is loaded by the caller (from the run's source bundle, or `--suite`). A phase
//! that cannot be re-scored (no responses, other questions) is left as it is, and the gate's
//! `instrument` check then keeps the verdict at best inconclusive.

use std::sync::Arc;

use gate_rules::{AutoZeroHit, DimensionScore, EarlierScores, Instrument, Phase, QuestionEval, Sample};
use phasegate_score::{Lexicon, ResponseRecord, Responses, ScoredPhase, Suite, score_phase};

/// The candidate's rules scorer, able to re-score stored responses.
#[derive(Debug, Clone)]
pub struct Rescorer {
    suite: Suite,
    lexicon: Arc<Lexicon>,
    instrument: Instrument,
}

/// Why one phase could not be re-scored.
#[derive(Debug, thiserror::Error)]
pub enum RescoreError {
    #[error("phase {label} keeps no response for question {qid}")]
    NoResponses { label: String, qid: String },
    #[error("phase {label} has no scored questions")]
    Empty { label: String },
    #[error("phase {label}: {source}")]
    Score {
        label: String,
        #[source]
        source: phasegate_score::ScoreError,
    },
}

impl Rescorer {
    /// The rules scorer on `suite`, reading answers with `lexicon` (the suite language's
    /// dictionary, see [`Lexicon::load`]).
    pub fn new(suite: Suite, lexicon: Lexicon) -> Rescorer {
        let instrument = phasegate_score::instrument(&suite);
        Rescorer { suite, lexicon: Arc::new(lexicon), instrument }
    }

    pub fn instrument(&self) -> &Instrument {
        &self.instrument
    }

    /// `phase` scored again from its stored responses; its first instrument is kept in
    /// `rescored_from`, everything but the scores is unchanged.
    pub fn rescore(&self, phase: &Phase) -> Result<Phase, RescoreError> {
        let responses = responses_of(phase)?;
        let scored = score_phase(&self.suite, &self.lexicon, &responses)
            .map_err(|source| RescoreError::Score { label: phase.label.clone(), source })?;
        let mut out = phase.clone();
        out.earlier_scores.push(EarlierScores {
            instrument: phase.instrument(),
            rubric: phase.rubric.clone(),
            eval: phase.eval.clone(),
        });
        out.eval = eval_of(&scored);
        out.rubric = Some(scored.rubric.clone());
        out.instrument = Some(self.instrument.clone());
        out.rescored_from = Some(phase.rescored_from.clone().unwrap_or_else(|| phase.instrument()));
        Ok(out)
    }

    /// The history with every phase another instrument scored re-scored where it can be. When the
    /// candidate is not scored by this scorer, the history is returned unchanged: re-scoring
    /// aligns baselines with the candidate, never the other way.
    pub fn align(&self, history: &[Phase], candidate: &Phase) -> Vec<Phase> {
        if !candidate.instrument().same_as(&self.instrument) {
            return history.to_vec();
        }
        history
            .iter()
            .map(|p| {
                if p.instrument().same_as(&self.instrument) || p.experiment != candidate.experiment {
                    return p.clone();
                }
                match self.rescore(p) {
                    Ok(rescored) => rescored,
                    Err(e) => {
                        tracing::info!(phase = %p.label, error = %e, "baseline kept as scored: cannot re-score it");
                        p.clone()
                    }
                }
            })
            .collect()
    }
}

/// The history with each accepted phase that the candidate's own instrument scored in the same
/// run (a judge-mode score job's `rescored_baselines`) taking those scores; the phase records the
/// instrument it was first scored by, and its old scores are kept in `earlier_scores`. Phases the
/// candidate's instrument already scored, and scores from another instrument, change nothing.
pub fn adopt(history: &[Phase], rescored: &[Phase], candidate: &Phase) -> Vec<Phase> {
    let instrument = candidate.instrument();
    history
        .iter()
        .map(|p| {
            let again = rescored.iter().find(|r| {
                r.label == p.label && r.instrument().same_as(&instrument) && !p.instrument().same_as(&instrument)
            });
            let Some(again) = again else { return p.clone() };
            let mut out = p.clone();
            out.earlier_scores.push(EarlierScores {
                instrument: p.instrument(),
                rubric: p.rubric.clone(),
                eval: p.eval.clone(),
            });
            out.eval = again.eval.clone();
            out.rubric = again.rubric.clone();
            out.instrument = Some(instrument.clone());
            out.rescored_from = Some(p.rescored_from.clone().unwrap_or_else(|| p.instrument()));
            out
        })
        .collect()
}

/// The stored responses of a phase as the scorer reads them (the eval stage's responses shape).
pub(crate) fn responses_of(phase: &Phase) -> Result<Responses, RescoreError> {
    if phase.eval.is_empty() {
        return Err(RescoreError::Empty { label: phase.label.clone() });
    }
    let mut results = Vec::new();
    for q in &phase.eval {
        for (i, s) in q.samples.iter().enumerate() {
            let response = s
                .response
                .clone()
                .ok_or_else(|| RescoreError::NoResponses { label: phase.label.clone(), qid: q.id.clone() })?;
            results.push(ResponseRecord {
                qid: q.id.clone(),
                question: q.question.clone(),
                response,
                sample: u32::try_from(i).unwrap_or(u32::MAX),
                seed: s.seed,
                truncated: s.truncated,
                tokens: None,
                d4_auto_fail: None,
                d4_auto_score: None,
            });
        }
    }
    Ok(Responses {
        phase: phase.label.clone(),
        model: phase.config_value("model").unwrap_or_default().to_owned(),
        adapter: None,
        timestamp: None,
        generation_params: Default::default(),
        results,
        timing: None,
        peak_rss_mib: None,
    })
}

/// A scored phase as the gate's questions.
pub fn eval_of(scored: &ScoredPhase) -> Vec<QuestionEval> {
    scored
        .questions
        .iter()
        .map(|q| QuestionEval {
            id: q.qid.clone(),
            question: q.question.clone(),
            max_points: scored.rubric.question_max(),
            min_points: scored.rubric.question_min(),
            samples: q
                .samples
                .iter()
                .map(|s| Sample {
                    seed: s.seed,
                    points: s.total,
                    dimensions: s
                        .dims
                        .iter()
                        .map(|d| DimensionScore {
                            dimension: d.id.to_string(),
                            score: d.score,
                            reason: Some(d.reason.clone()),
                        })
                        .collect(),
                    response: Some(s.response.clone()),
                    truncated: s.truncated,
                    auto_zero: s
                        .auto_zero
                        .iter()
                        .map(|t| AutoZeroHit { dimension: t.dim.to_string(), trigger: t.pattern.clone() })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use gate_rules::import::{ImportOptions, load_files_with};
    use gate_rules::{InstrumentKind, Phase};

    /// A bundled history phase, imported as the team scored it: by hand.
    pub(crate) fn hand_scored(n: u32) -> Phase {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../datasets/persona-v1/history/phase{n}"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        let options = ImportOptions { scorer: Some(InstrumentKind::Human), ..ImportOptions::default() };
        let mut phase = load_files_with(&files, "persona-v1", &options).unwrap();
        phase.accepted = true;
        phase
    }
}

#[cfg(test)]
mod tests;
