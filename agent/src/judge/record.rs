//! What the judge adds to the scores file. In `judge` mode a sample whose two judge calls agreed on
//! every dimension takes the judge's scores (`source: "judge"`); any other sample keeps its rule
//! scores (`source: "rules"`). In `both` mode every sample keeps its rule scores. Either way each
//! sample carries the judge's view in a `judge` field and the file a `judge` summary: counts, every
//! discarded dimension and unreadable reply, and the mean absolute difference from the rule scores
//! per dimension.
//!
//! The judge's score for a dimension is the mean of its two calls rounded down: calls more than one
//! point apart are discarded, so that is the lower of the two (`phasegate_score::judge::agree`), and
//! a gate does not pass on the judge's more generous draw.
//!
//! A sample falls back whole rather than per dimension: a total mixing the judge's and the rules'
//! dimensions would be a score neither scorer gave, and totals are what the gate compares.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use phasegate_proto::spec::{JudgeModel, ScoreMode};
use phasegate_score::judge::{Agreement, JudgeRefused};
use phasegate_score::{DimId, Instrument, Rubric, SampleScore, ScoredPhase};

use super::backend::{JUDGE_TEMPERATURE, JUDGE_TOP_P};
use super::flow::SampleJudgement;

/// How the judge went: refused at calibration, or judged every sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JudgeOutcome {
    Refused(JudgeRefused),
    Judged { anchors: usize, samples: Vec<SampleJudgement> },
}

/// The judge's part of a score job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JudgeReport {
    pub(crate) mode: ScoreMode,
    pub(crate) judge: JudgeModel,
    /// [`phasegate_score::judge::prompt_digest`] of the suite judged.
    pub(crate) prompt_digest: String,
    pub(crate) outcome: JudgeOutcome,
}

impl JudgeReport {
    /// The judge as the instrument of the file's scores, where its scores are the record
    /// (`mode = "judge"` and calibration passed).
    pub(crate) fn instrument(&self) -> Option<Instrument> {
        let judged = self.mode == ScoreMode::Judge && matches!(self.outcome, JudgeOutcome::Judged { .. });
        judged.then(|| Instrument::Judge {
            model: self.judge.model.clone(),
            endpoint: self.judge.server.as_ref().map(|s| s.endpoint.clone()),
            prompt_digest: self.prompt_digest.clone(),
        })
    }

    fn samples(&self) -> &[SampleJudgement] {
        match &self.outcome {
            JudgeOutcome::Judged { samples, .. } => samples,
            JudgeOutcome::Refused(_) => &[],
        }
    }

    fn find(&self, qid: &str, sample: u32) -> Option<&SampleJudgement> {
        self.samples().iter().find(|j| j.qid == qid && j.sample == sample)
    }

    /// Whether the judge's scores replace the rule scores of this sample.
    fn takes_over<'a>(&self, j: &'a SampleJudgement) -> Option<&'a Agreement> {
        if self.mode == ScoreMode::Judge { j.complete() } else { None }
    }

    /// Adds the judge's view to a sample's entry and, where the judge's scores are the record,
    /// replaces `d1`…, `total` and `auto_zero` with them (the rule total stays as `rules_total`).
    pub(crate) fn annotate(&self, entry: &mut Value, s: &SampleScore, rubric: &Rubric) {
        let Some(j) = self.find(&s.qid, s.sample) else { return };
        entry["judge"] = judge_view(j, rubric);
        let Some(agreed) = self.takes_over(j) else {
            entry["source"] = json!("rules");
            return;
        };
        for d in &agreed.scores {
            entry[d.id.as_str().to_lowercase()] = json!({ "score": d.score, "reason": d.reason });
        }
        entry["rules_total"] = entry["total"].take();
        entry["total"] = json!(rubric.total(agreed.scores.iter().map(|d| (d.id.as_str(), d.score))));
        // The rule scorer's automatic zeros did not set this score.
        entry["auto_zero"] = json!([]);
        entry["source"] = json!("judge");
    }

    /// The file's top-level `judge` object.
    pub(crate) fn header(&self, scored: &ScoredPhase) -> Value {
        let mut out = json!({
            "model": self.judge.model,
            "template": self.judge.template,
            "seeds": self.judge.seeds,
            "max_new_tokens": self.judge.max_new_tokens,
            "temperature": JUDGE_TEMPERATURE,
            "top_p": JUDGE_TOP_P,
        });
        if let Some(server) = &self.judge.server {
            out["endpoint"] = json!(server.endpoint);
        }
        let anchors = match &self.outcome {
            JudgeOutcome::Refused(refused) => {
                out["refused"] = json!(refused.to_string());
                return out;
            }
            JudgeOutcome::Judged { anchors, .. } => *anchors,
        };
        out["calibration"] = json!({ "anchors": anchors, "passed": true });
        let counts = self.counts();
        out["samples"] = json!(counts.samples);
        out["agreed"] = json!(counts.agreed);
        out["discarded"] = json!(counts.with_discards);
        out["unreadable"] = json!(counts.unreadable);
        if self.mode == ScoreMode::Judge {
            out["fallback_to_rules"] = json!(counts.samples - counts.agreed);
        }
        out["discards"] = json!(self.discards());
        out["unreadable_replies"] = json!(self.unreadable_replies());
        out["agreement_with_rules"] = self.agreement_with_rules(scored);
        out
    }

    pub(crate) fn counts(&self) -> Counts {
        let samples = self.samples();
        Counts {
            samples: samples.len(),
            agreed: samples.iter().filter(|j| j.complete().is_some()).count(),
            with_discards: samples.iter().filter(|j| j.outcome.as_ref().is_ok_and(|a| !a.discarded.is_empty())).count(),
            unreadable: samples.iter().filter(|j| j.outcome.is_err()).count(),
        }
    }

    /// Every dimension discarded for disagreement, with its sample.
    fn discards(&self) -> Vec<Value> {
        self.samples()
            .iter()
            .filter_map(|j| Some((j, j.outcome.as_ref().ok()?)))
            .flat_map(|(j, a)| {
                a.discarded.iter().map(|d| {
                    json!({ "qid": j.qid, "sample": j.sample, "dimension": d.id.as_str(),
                            "first": d.first, "second": d.second })
                })
            })
            .collect()
    }

    fn unreadable_replies(&self) -> Vec<Value> {
        self.samples()
            .iter()
            .filter_map(|j| {
                let u = j.outcome.as_ref().err()?;
                Some(json!({ "qid": j.qid, "sample": j.sample, "seed": u.seed, "error": u.error.to_string() }))
            })
            .collect()
    }

    /// Per dimension, the mean absolute difference between the judge's agreed score and the rule
    /// score, over the samples where the judge agreed on that dimension.
    fn agreement_with_rules(&self, scored: &ScoredPhase) -> Value {
        let mut diffs: BTreeMap<&DimId, (u32, u32)> = BTreeMap::new();
        let rule_samples = scored.questions.iter().flat_map(|q| &q.samples);
        for s in rule_samples {
            let Some(Ok(agreement)) = self.find(&s.qid, s.sample).map(|j| j.outcome.as_ref()) else { continue };
            for d in &agreement.scores {
                let Some(rule) = s.dim(d.id.as_str()) else { continue };
                let entry = diffs.entry(&d.id).or_default();
                entry.0 += d.score.abs_diff(rule.score);
                entry.1 += 1;
            }
        }
        let per_dim: serde_json::Map<String, Value> = diffs
            .into_iter()
            .map(|(id, (sum, n))| {
                let mean = (f64::from(sum) / f64::from(n) * 1000.0).round() / 1000.0;
                (id.as_str().to_owned(), json!({ "mean_abs_diff": mean, "samples": n }))
            })
            .collect();
        Value::Object(per_dim)
    }

    /// The judge's part of the job's summary.
    pub(crate) fn summary(&self) -> Value {
        match &self.outcome {
            JudgeOutcome::Refused(_) => json!({ "model": self.judge.model, "refused": true }),
            JudgeOutcome::Judged { .. } => {
                let c = self.counts();
                json!({ "model": self.judge.model, "samples": c.samples, "agreed": c.agreed,
                        "discarded": c.with_discards, "unreadable": c.unreadable })
            }
        }
    }

    /// Event lines: the refusal, or the counts and every discarded sample.
    pub(crate) fn lines(&self) -> Vec<String> {
        if let JudgeOutcome::Refused(refused) = &self.outcome {
            return vec![format!("judge: {refused}; the rule scores stay the record")];
        }
        let c = self.counts();
        let mut lines = vec![format!(
            "judge: {} of {} samples agreed on every dimension; {} discarded for disagreement, {} unreadable",
            c.agreed, c.samples, c.with_discards, c.unreadable
        )];
        for j in self.samples() {
            match &j.outcome {
                Ok(a) if !a.discarded.is_empty() => {
                    let dims: Vec<String> =
                        a.discarded.iter().map(|d| format!("{} {} vs {}", d.id, d.first, d.second)).collect();
                    lines.push(format!("judge: discarded {} sample {}: {}", j.qid, j.sample, dims.join(", ")));
                }
                Err(u) => lines
                    .push(format!("judge: unreadable {} sample {} (seed {}): {}", j.qid, j.sample, u.seed, u.error)),
                Ok(_) => {}
            }
        }
        lines
    }
}

/// How many samples the judge agreed on, discarded dimensions of, or could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) samples: usize,
    pub(crate) agreed: usize,
    pub(crate) with_discards: usize,
    pub(crate) unreadable: usize,
}

/// The per-sample `judge` field: agreed dimensions as `d1`… (not read by the gate: it sits under
/// `judge`), their total when complete, the discarded dimensions; or the unreadable reply.
fn judge_view(j: &SampleJudgement, rubric: &Rubric) -> Value {
    match &j.outcome {
        Ok(a) => {
            let mut view = json!({ "total": a.total(rubric) });
            for d in &a.scores {
                view[d.id.as_str().to_lowercase()] = json!({ "score": d.score, "reason": d.reason });
            }
            view["discarded"] = json!(
                a.discarded
                    .iter()
                    .map(|d| json!({
                        "dimension": d.id.as_str(), "first": d.first, "second": d.second,
                    }))
                    .collect::<Vec<_>>()
            );
            view
        }
        Err(u) => json!({ "unreadable": u.error.to_string(), "seed": u.seed }),
    }
}
