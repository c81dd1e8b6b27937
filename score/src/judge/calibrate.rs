//! Refusing a judge that misjudges the calibration anchors: if it cannot place a known-ideal answer,
//! a generic one and a contaminated one in their bands, its scores on real answers mean nothing.

use super::agreement::Agreement;
use super::parse::JudgeReplyError;
use crate::calibration::{Anchor, Band};
use crate::suite::{AnchorKind, DimId, Rubric};
use std::fmt;

/// The judge's agreed scores for one anchor, or why one of its two replies could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorJudgement {
    pub anchor: Anchor,
    pub agreement: Result<Agreement, JudgeReplyError>,
}

/// An anchor the judge scored outside its band, could not agree with itself on, or answered with
/// an unreadable reply.
#[derive(Debug, Clone, PartialEq)]
pub struct MisjudgedAnchor {
    pub qid: String,
    pub kind: AnchorKind,
    pub band: Band,
    /// None when dimensions were discarded for disagreement or a reply was unreadable.
    pub score_10: Option<f64>,
    pub discarded: Vec<DimId>,
    /// Why a reply could not be read.
    pub unreadable: Option<JudgeReplyError>,
}

impl fmt::Display for MisjudgedAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.as_str();
        if let Some(e) = &self.unreadable {
            return write!(f, "{} {kind} anchor: {e}", self.qid);
        }
        match self.score_10 {
            Some(s) => {
                write!(f, "{} {kind} anchor scored {s:.1}, band {}..={}", self.qid, self.band.min, self.band.max)
            }
            None => {
                let ids: Vec<&str> = self.discarded.iter().map(DimId::as_str).collect();
                write!(f, "{} {kind} anchor: judge disagreed with itself on [{}]", self.qid, ids.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeRefused {
    #[error("refused the judge: the suite has no calibration anchors to check it against")]
    NoAnchors,
    #[error(
        "refused the judge: it misjudged {} of {judged} calibration anchors: {}",
        .misjudged.len(),
        list(.misjudged)
    )]
    Misjudged { misjudged: Vec<MisjudgedAnchor>, judged: usize },
    #[error(
        "refused the judge: its prompt for {call} takes {prompt_tokens} tokens, which with `score.judge_max_new_tokens` ({max_new_tokens}) exceeds the judge model's context of {context} tokens"
    )]
    PromptTooLong { call: String, prompt_tokens: usize, max_new_tokens: usize, context: usize },
}

fn list(items: &[MisjudgedAnchor]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Accept the judge only if every anchor's agreed total lies in its kind's band.
pub fn check_calibration(rubric: &Rubric, judged: &[AnchorJudgement]) -> Result<(), JudgeRefused> {
    if judged.is_empty() {
        return Err(JudgeRefused::NoAnchors);
    }
    let misjudged: Vec<MisjudgedAnchor> = judged.iter().filter_map(|j| misjudged(rubric, j)).collect();
    if misjudged.is_empty() {
        return Ok(());
    }
    Err(JudgeRefused::Misjudged { misjudged, judged: judged.len() })
}

fn misjudged(rubric: &Rubric, j: &AnchorJudgement) -> Option<MisjudgedAnchor> {
    let band = j.anchor.kind.band();
    let (score_10, discarded, unreadable) = match &j.agreement {
        Ok(a) => (a.total(rubric).map(|t| rubric.to_10(t)), a.discarded.iter().map(|d| d.id.clone()).collect(), None),
        Err(e) => (None, Vec::new(), Some(e.clone())),
    };
    if score_10.is_some_and(|s| band.contains(s)) {
        return None;
    }
    Some(MisjudgedAnchor { qid: j.anchor.qid.clone(), kind: j.anchor.kind, band, score_10, discarded, unreadable })
}
