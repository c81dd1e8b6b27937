//! Fixtures shared by the unit tests.

use crate::responses::ResponseRecord;
use crate::scores::SampleScore;
use crate::suite::Suite;
use std::path::Path;

/// The bundled suite, read at compile time so tests need no working directory.
pub(crate) fn bundled() -> Suite {
    let text = include_str!("../../datasets/persona-v1/suite.toml");
    Suite::from_toml_str(text, Path::new("datasets/persona-v1/suite.toml")).expect("bundled suite")
}

pub(crate) fn record(suite: &Suite, qid: &str, response: &str) -> ResponseRecord {
    ResponseRecord {
        qid: qid.to_owned(),
        question: suite.question(qid).expect("question").text.clone(),
        response: response.to_owned(),
        sample: 0,
        seed: Some(7),
        truncated: false,
        tokens: None,
        d4_auto_fail: None,
        d4_auto_score: None,
    }
}

pub(crate) fn score(suite: &Suite, qid: &str, response: &str) -> SampleScore {
    let question = suite.question(qid).expect("question");
    crate::score_sample(suite, question, &record(suite, qid, response))
}

/// Score and reason of one dimension.
pub(crate) fn dim(score: &SampleScore, id: &str) -> (u32, String) {
    let d = score.dim(id).expect("dimension scored");
    (d.score, d.reason.clone())
}
