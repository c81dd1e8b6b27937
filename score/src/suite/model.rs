//! The validated suite. Built only by [`Suite::from_toml_str`](super::Suite::from_toml_str), so the
//! scorer can rely on its invariants: all five dimensions exist with min < max, regexes compile,
//! question ids are unique, thresholds are in range.

use crate::lang::Language;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An eval suite: who the persona is, how answers are scored and what is asked.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub language: Language,
    pub persona: Persona,
    pub rubric: Rubric,
    pub questions: Vec<Question>,
}

impl Suite {
    pub fn question(&self, qid: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == qid)
    }
}

/// The persona the fine-tune should produce, and the human partner it works with.
#[derive(Debug, Clone)]
pub struct Persona {
    pub name: String,
    pub aliases: Vec<String>,
    pub partner: String,
    pub partner_aliases: Vec<String>,
    /// The system prompt given to the model at eval time (and to the judge as the persona).
    pub system_prompt: String,
    /// Phrases that show the persona's own voice: how it refers to itself, its partner, its work.
    pub markers: Vec<String>,
}

impl Persona {
    /// The persona's name followed by its aliases.
    pub fn self_names(&self) -> Vec<String> {
        std::iter::once(self.name.clone()).chain(self.aliases.iter().cloned()).collect()
    }

    /// The partner's name followed by its aliases.
    pub fn partner_names(&self) -> Vec<String> {
        std::iter::once(self.partner.clone()).chain(self.partner_aliases.iter().cloned()).collect()
    }
}

/// Rubric dimension ids. The deterministic scorer has one rule per dimension, so the set is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DimId {
    D1,
    D2,
    D3,
    D4,
    D5,
}

impl DimId {
    pub const ALL: [DimId; 5] = [DimId::D1, DimId::D2, DimId::D3, DimId::D4, DimId::D5];

    pub fn parse(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str().eq_ignore_ascii_case(id))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::D1 => "D1",
            Self::D2 => "D2",
            Self::D3 => "D3",
            Self::D4 => "D4",
            Self::D5 => "D5",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an automatic-zero trigger zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoZeroScope {
    /// The whole answer scores the minimum on every dimension (the default: an answer that leaks
    /// template tokens or agent planning is unusable however good the rest is).
    Answer,
    /// Only the dimension whose trigger fired scores its minimum.
    Dimension,
}

#[derive(Debug, Clone)]
pub struct Rubric {
    pub version: String,
    pub auto_zero_scope: AutoZeroScope,
    /// Indexed by [`DimId`]: D1 first, D5 last.
    pub dimensions: [Dimension; 5],
    pub identity: IdentityRules,
    pub voice: VoiceRules,
    pub cleanliness: CleanlinessRules,
    pub quality: QualityRules,
}

impl Rubric {
    pub fn dimension(&self, id: DimId) -> &Dimension {
        &self.dimensions[id.index()]
    }

    /// Highest total one answer can score.
    pub fn max_total(&self) -> u32 {
        self.dimensions.iter().map(|d| d.max).sum()
    }

    /// Lowest total one answer can score.
    pub fn min_total(&self) -> u32 {
        self.dimensions.iter().map(|d| d.min).sum()
    }
}

#[derive(Debug, Clone)]
pub struct Dimension {
    pub id: DimId,
    pub name: String,
    pub description: String,
    pub min: u32,
    pub max: u32,
    pub auto_zero: Vec<TriggerPattern>,
}

impl Dimension {
    /// Map a rule's level (0 bad, 1 partial, 2 good) onto this dimension's range.
    pub(crate) fn scale(&self, level: u8) -> u32 {
        let span = self.max - self.min;
        self.min + span * u32::from(level.min(2)) / 2
    }
}

/// A phrase (accent- and case-insensitive substring) or a regex (on the raw answer).
#[derive(Debug, Clone)]
pub enum TriggerPattern {
    Phrase(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct IdentityRules {
    /// Self-descriptions that are not the persona ("modelo de linguagem", "language model").
    pub other_identity_markers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VoiceRules {
    /// Generic-assistant phrases ("espero ter ajudado", "as an AI").
    pub generic_markers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CleanlinessRules {
    /// This many consecutive words copied from the system prompt are an automatic zero.
    pub bleed_ngram: usize,
    /// Phrases that lower D4 to partial without zeroing ("Resposta:", "Assistente:").
    pub soft_phrases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct QualityRules {
    pub min_words: usize,
    pub max_words: usize,
    pub repetition_ngram: usize,
    /// Share of repeated n-grams above which the answer is flagged as repetitive.
    pub repetition_share: f64,
    /// Share of repeated n-grams above which the answer is a loop and D5 is zero.
    pub loop_share: f64,
    /// Share of the minority language's stopwords above which the answer mixes languages.
    pub mixing_share: f64,
}

/// One question and what each dimension checks for it.
#[derive(Debug, Clone)]
pub struct Question {
    /// "Q1", "Q2", ... unique within the suite.
    pub id: String,
    pub text: String,
    /// D1: the answer must say the persona's own name.
    pub name_self: bool,
    /// D1: the answer must name the partner.
    pub name_partner: bool,
    /// D2: each group lists accepted phrasings of one required fact.
    pub facts: Vec<Vec<String>>,
    /// D2: groups needed for full marks (all by default).
    pub min_facts: usize,
    /// D2: any of these present zeroes D2.
    pub false_claims: Vec<String>,
    /// D5: the expected length band, in words (the rubric's band unless the question overrides it).
    pub min_words: usize,
    pub max_words: usize,
    pub anchors: Vec<AnchorText>,
}

/// Which band a calibration anchor must score in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorKind {
    /// An ideal in-persona answer.
    Ideal,
    /// What a base model with no fine-tune typically says.
    Generic,
    /// An answer contaminated by agent/template behaviour.
    Contaminated,
}

/// A hand-written answer with a known expected score, used to calibrate scorers.
#[derive(Debug, Clone)]
pub struct AnchorText {
    pub kind: AnchorKind,
    pub text: String,
}
