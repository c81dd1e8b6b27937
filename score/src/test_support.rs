//! Fixtures shared by the unit tests.

use crate::lexicon::Lexicon;
use crate::responses::ResponseRecord;
use crate::scores::SampleScore;
use crate::suite::Suite;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// Scores `response` with a dictionary that knows every word of it: the rule under test, not the
/// spelling, decides. Tests of the dictionary share build their own lexicon ([`score_with`]).
pub(crate) fn score(suite: &Suite, qid: &str, response: &str) -> SampleScore {
    score_with(suite, &knowing(suite, &[response]), qid, response)
}

pub(crate) fn score_with(suite: &Suite, lexicon: &Lexicon, qid: &str, response: &str) -> SampleScore {
    let question = suite.question(qid).expect("question");
    crate::score_sample(suite, lexicon, question, &record(suite, qid, response))
}

/// A dictionary of exactly the words of `texts` (lowercase, accents kept).
pub(crate) fn knowing(suite: &Suite, texts: &[&str]) -> Lexicon {
    let words: BTreeSet<String> = texts
        .iter()
        .flat_map(|t| t.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).map(str::to_lowercase))
        .collect();
    let dic = format!("{}\n{}\n", words.len(), words.into_iter().collect::<Vec<_>>().join("\n"));
    Lexicon::from_hunspell("SET UTF-8\n", &dic, suite).expect("test dictionary")
}

/// The real dictionary of the suite's language when it is in the model cache; None (the test
/// skips) when it is not, unless `PHASEGATE_REQUIRE_DICTIONARY=1`, where a missing one fails.
pub(crate) fn real_lexicon(suite: &Suite) -> Option<Lexicon> {
    let cache = std::env::var_os("PHASEGATE_MODEL_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        base.join("phasegate").join("models")
    });
    match Lexicon::load(&cache, suite) {
        Ok(lexicon) => Some(lexicon),
        Err(e) if std::env::var("PHASEGATE_REQUIRE_DICTIONARY").is_ok_and(|v| v == "1") => {
            panic!("PHASEGATE_REQUIRE_DICTIONARY=1: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// Score and reason of one dimension.
pub(crate) fn dim(score: &SampleScore, id: &str) -> (u32, String) {
    let d = score.dim(id).expect("dimension scored");
    (d.score, d.reason.clone())
}
