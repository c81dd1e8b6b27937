//! Errors of the crate. Messages complete "failed to ..." or say which value is wrong, and name the
//! file where there is one.

use std::path::PathBuf;

/// Loading or validating an eval suite failed.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("failed to read eval suite {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax errors and unknown or missing keys; the message names the key and its line.
    #[error("failed to parse eval suite {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid eval suite {path}: {problem}")]
    Invalid { path: PathBuf, problem: SuiteProblem },
}

/// What is wrong with a suite that parsed as TOML.
#[derive(Debug, thiserror::Error)]
pub enum SuiteProblem {
    #[error("unsupported language {value:?} (supported: {supported})")]
    UnsupportedLanguage { value: String, supported: &'static str },
    #[error("field {field} must not be empty")]
    Empty { field: String },
    #[error("rubric: {0}")]
    Rubric(phasegate_rubric::RubricError),
    #[error("rubric dimension {id} uses the {check} check, which needs a [persona] table")]
    CheckNeedsPersona { id: String, check: &'static str },
    #[error("the suite has both [persona].system_prompt and a top-level system_prompt; keep one")]
    TwoSystemPrompts,
    #[error("rubric dimension {id} has an invalid auto-zero regex {pattern:?}: {source}")]
    BadRegex {
        id: String,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("question id {id:?} is defined twice")]
    DuplicateQuestion { id: String },
    #[error("question {qid} has an empty fact group at position {index}")]
    EmptyFactGroup { qid: String, index: usize },
    #[error("question {qid} asks for min_facts = {min_facts} but lists {groups} fact groups")]
    MinFactsTooLarge { qid: String, min_facts: usize, groups: usize },
    #[error("length band {min_words}..{max_words} words of {owner} is empty")]
    BadLengthBand { owner: String, min_words: usize, max_words: usize },
    #[error("{field} = {value} is outside {range}")]
    BadThreshold { field: &'static str, value: f64, range: &'static str },
    #[error("the suite has no questions")]
    NoQuestions,
}

/// Reading or parsing an eval responses file failed.
#[derive(Debug, thiserror::Error)]
pub enum ResponsesError {
    #[error("failed to read eval responses {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse eval responses {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Scoring a responses file against a suite failed: the two do not describe the same eval.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("response for question {qid:?} which suite {suite} does not have")]
    UnknownQuestion { qid: String, suite: String },
    #[error("question {qid} has no responses")]
    MissingQuestion { qid: String },
    #[error("question {qid} sample {sample} appears twice")]
    DuplicateSample { qid: String, sample: u32 },
    #[error(
        "question {qid} text differs: responses have {found:?}, suite {suite} has {expected:?}\n\
         hint: the responses were generated from another suite version"
    )]
    QuestionMismatch { qid: String, suite: String, expected: String, found: String },
    #[error(
        "rubric dimension {id} of suite {suite} has no rules check\n\
         hint: give it `check = \"facts\"` (or identity, voice, cleanliness, quality), or score the suite with a judge or by hand"
    )]
    NoRulesCheck { id: String, suite: String },
}

/// Loading the dictionary of a suite's language failed.
#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    #[error(
        "failed to find the {language} dictionary in {dir}\n\
         hint: phasegate models pull {package}"
    )]
    Missing { language: crate::Language, dir: PathBuf, package: &'static str },
    #[error("failed to read the dictionary {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse the dictionary {path}: {message}")]
    Parse { path: PathBuf, message: String },
}
