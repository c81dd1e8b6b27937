//! The `score` stage on the agent: the eval stage's responses (an input of the assignment), scored
//! on the suite's rubric by the deterministic scorer, uploaded as [`SCORES`].
//!
//! The scores file is the per-dimension list shape `gate_rules::import` reads: one entry per
//! (question, sample) with `d1`…`d5` as `{score, reason}`, the total, the answer (for the report's
//! excerpts) and the triggers that zeroed it. Only `mode = "rules"` exists; the spec rejects the
//! judge modes.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use phasegate_proto::domain::Lease;
use phasegate_proto::pb;
use phasegate_proto::spec::{EVAL_RESPONSES, SCORES, ScoreStage, StageJob};
use phasegate_score::{Responses, SampleScore, ScoredPhase, Suite, score_phase};

use crate::events::Event;
use crate::job::{JobContext, Report};

/// Why a score job failed; the job's error is this message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScoreJobError {
    #[error(
        "failed to find the eval responses {EVAL_RESPONSES} among the inputs (inputs: {inputs})\n\
         hint: the [score] stage scores what the [eval] stage uploaded"
    )]
    NoResponses { inputs: String },
    #[error(transparent)]
    Responses(#[from] phasegate_score::ResponsesError),
    #[error(transparent)]
    Suite(#[from] phasegate_score::SuiteError),
    #[error("failed to score {file} against suite `score.suite` = {suite}: {source}")]
    Score { file: String, suite: String, source: phasegate_score::ScoreError },
    #[error("failed to write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Upload(String),
}

pub(crate) async fn run(
    ctx: &JobContext,
    a: &pb::Assignment,
    job: &StageJob,
    stage: &ScoreStage,
    lease: Lease,
    dir: &Path,
    events: &mpsc::Sender<Event>,
) -> Report {
    match score(ctx, a, job, stage, lease, dir, events).await {
        Ok((artifact, summary)) => Report {
            success: true,
            metrics: Some(pb::JobMetrics { summary_json: summary.to_string(), ..Default::default() }),
            artifacts: vec![artifact],
            result_json: summary.to_string(),
            ..Default::default()
        },
        Err(e) => {
            let _ = events.send(Event::Agent(format!("score failed: {e}"))).await;
            Report { error: e.to_string(), ..Default::default() }
        }
    }
}

async fn score(
    ctx: &JobContext,
    a: &pb::Assignment,
    job: &StageJob,
    stage: &ScoreStage,
    lease: Lease,
    dir: &Path,
    events: &mpsc::Sender<Event>,
) -> Result<(pb::ArtifactRef, Value), ScoreJobError> {
    if !a.inputs.iter().any(|i| i.name == EVAL_RESPONSES) {
        let names: Vec<&str> = a.inputs.iter().map(|i| i.name.as_str()).collect();
        let inputs = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        return Err(ScoreJobError::NoResponses { inputs });
    }
    let suite = Suite::load(&dir.join(&stage.suite))?;
    let responses = Responses::load(&dir.join("inputs").join(EVAL_RESPONSES))?;
    let scored = score_phase(&suite, &responses).map_err(|source| ScoreJobError::Score {
        file: EVAL_RESPONSES.to_owned(),
        suite: stage.suite.clone(),
        source,
    })?;
    for line in score_lines(&scored) {
        let _ = events.send(Event::Agent(line)).await;
    }
    let bytes = serde_json::to_vec_pretty(&scores_file(&scored, &job.phase)).unwrap_or_default();
    let path = dir.join(SCORES);
    let fail = |source| ScoreJobError::Write { path: path.clone(), source };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(fail)?;
    }
    tokio::fs::write(&path, &bytes).await.map_err(fail)?;
    let artifact = crate::job::upload(&ctx.client, lease, SCORES, bytes).await.map_err(ScoreJobError::Upload)?;
    Ok((artifact, summary(&scored)))
}

/// One line per question (mean of its samples) and one for the phase, on the 0–10 scale.
fn score_lines(scored: &ScoredPhase) -> Vec<String> {
    let mut lines: Vec<String> = scored
        .questions
        .iter()
        .map(|q| {
            let totals: Vec<String> = q.samples.iter().map(|s| s.total.to_string()).collect();
            let max = q.samples.first().map_or(0, |s| s.max);
            format!("score: {} {} of {max} per sample", q.qid, totals.join(", "))
        })
        .collect();
    lines.push(format!("score: phase {:.2}/10 over {} samples", scored.normalized_10(), sample_count(scored)));
    lines
}

fn sample_count(scored: &ScoredPhase) -> usize {
    scored.questions.iter().map(|q| q.samples.len()).sum()
}

fn summary(scored: &ScoredPhase) -> Value {
    json!({
        "score_10": (scored.normalized_10() * 1000.0).round() / 1000.0,
        "samples": sample_count(scored),
        "questions": scored.questions.len(),
        "auto_zero": scored.auto_zero_triggers().count(),
    })
}

/// The per-dimension score file `gate_rules::import` reads (list form, one entry per sample).
pub(crate) fn scores_file(scored: &ScoredPhase, phase: &str) -> Value {
    let entries: Vec<Value> =
        scored.questions.iter().flat_map(|q| q.samples.iter().map(|s| sample_entry(&q.question, s))).collect();
    json!({
        "phase": phase,
        "model": scored.model,
        "adapter": scored.adapter,
        "suite": scored.suite,
        "rubric_version": scored.rubric_version,
        "generation_params": scored.generation_params,
        "scorer": "rules",
        "overall": { "score_10": scored.normalized_10(), "samples": sample_count(scored) },
        "scores": entries,
    })
}

fn sample_entry(question: &str, s: &SampleScore) -> Value {
    let mut entry = json!({
        "qid": s.qid,
        "question": question,
        "sample": s.sample,
        "seed": s.seed,
        "truncated": s.truncated,
        "response": s.response,
        "total": s.total,
        "max": s.max,
        "auto_zero": s.auto_zero.iter().map(|t| json!({
            "dimension": t.dim.as_str(), "pattern": t.pattern, "excerpt": t.excerpt,
        })).collect::<Vec<_>>(),
    });
    for d in &s.dims {
        entry[d.id.as_str().to_lowercase()] = json!({ "score": d.score, "reason": d.reason });
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: &str = include_str!("../../datasets/persona-v1/suite.toml");

    /// K = 2 hand-written answers per question of the bundled suite.
    fn responses(suite: &Suite) -> Responses {
        let results = suite
            .questions
            .iter()
            .flat_map(|q| {
                (0..2u32).map(move |sample| phasegate_score::ResponseRecord {
                    qid: q.id.clone(),
                    question: q.text.clone(),
                    response: if sample == 0 {
                        "Oi! Eu sou a Iara e trabalho com o Tomás no Quintal e na Banca.".to_owned()
                    } else {
                        "<|im_start|>assistant Let me first analyze the question".to_owned()
                    },
                    sample,
                    seed: Some(100 + u64::from(sample)),
                    truncated: sample == 1,
                    tokens: Some(20),
                    d4_auto_fail: None,
                    d4_auto_score: None,
                })
            })
            .collect();
        Responses {
            phase: "10".into(),
            model: "tiny".into(),
            adapter: None,
            timestamp: None,
            generation_params: [("max_new_tokens".to_owned(), json!(20))].into_iter().collect(),
            results,
            timing: None,
            peak_rss_mib: None,
        }
    }

    #[test]
    fn scores_file_imports_with_k_samples_and_reasons() {
        let suite = Suite::from_toml_str(SUITE, Path::new("suite.toml")).unwrap();
        let scored = score_phase(&suite, &responses(&suite)).unwrap();
        let text = scores_file(&scored, "10").to_string();
        let part = gate_rules::import::parse_file(SCORES, &text, Some("10")).unwrap();
        assert_eq!(part.shape, gate_rules::import::Shape::DimensionScores);
        assert_eq!(part.questions.len(), suite.questions.len());
        for (q, ours) in part.questions.iter().zip(&scored.questions) {
            assert_eq!(q.samples.len(), 2, "{}", q.id);
            for (sample, s) in q.samples.iter().zip(&ours.samples) {
                assert_eq!(sample.points, f64::from(s.total));
                assert_eq!(sample.dimensions.len(), 5);
                assert!(sample.dimensions.iter().all(|d| d.reason.as_deref().is_some_and(|r| !r.is_empty())));
                assert_eq!(sample.response.as_deref(), Some(s.response.as_str()));
            }
            // The contaminated second sample is an automatic zero.
            assert_eq!(q.samples[1].points, 0.0, "{}", q.id);
        }
        let phase = gate_rules::import::merge(vec![part], "persona-v1").unwrap();
        assert_eq!(phase.generation[0].key, "max_new_tokens");
        assert_eq!(phase.config_value("model"), Some("tiny"));
    }

    #[test]
    fn score_lines_name_each_question_and_the_phase() {
        let suite = Suite::from_toml_str(SUITE, Path::new("suite.toml")).unwrap();
        let scored = score_phase(&suite, &responses(&suite)).unwrap();
        let lines = score_lines(&scored);
        assert_eq!(lines.len(), suite.questions.len() + 1);
        assert!(lines[0].starts_with("score: Q1 "), "{}", lines[0]);
        assert!(lines.last().unwrap().contains("over 16 samples"), "{lines:?}");
    }
}
