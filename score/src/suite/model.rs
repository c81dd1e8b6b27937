//! The validated suite. Built only by [`Suite::from_toml_str`](super::Suite::from_toml_str), so the
//! scorer can rely on its invariants: the rubric is valid (see [`phasegate_rubric::Rubric`]), every
//! dimension the identity or voice check scores has a persona, regexes compile, question ids are
//! unique, thresholds are in range.

use crate::lang::Language;
pub use phasegate_rubric::{Dimension, Rubric};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// An eval suite: who the persona is, how answers are scored and what is asked.
#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub language: Language,
    /// The persona the fine-tune should produce; suites of other assistants have none.
    pub persona: Option<Persona>,
    /// The system prompt given at eval time: the persona's, or the suite's own `system_prompt`.
    pub system_prompt: Option<String>,
    /// The suite's rubric: the one rubric type the gate, importers and report read too.
    pub rubric: Rubric,
    pub rules: Rules,
    pub questions: Vec<Question>,
    /// `sha256:` of the suite file's text: the rules instrument is this scorer on this suite.
    pub digest: String,
}

impl Suite {
    pub fn question(&self, qid: &str) -> Option<&Question> {
        self.questions.iter().find(|q| q.id == qid)
    }

    /// Lowest and highest total one answer can score.
    pub fn total_range(&self) -> (f64, f64) {
        (self.rubric.question_min(), self.rubric.question_max())
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

/// A dimension id of the suite's rubric ("D1", "correctness"); see [`phasegate_rubric::DimensionId`].
pub use phasegate_rubric::DimensionId as DimId;

/// Which of the rules scorer's checks scores a dimension. A dimension without one cannot be
/// scored by the rules scorer (a judge or people score it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// Speaks as the persona, never as someone else (needs `[persona]`).
    Identity,
    /// Required facts present, false claims and invented entities absent.
    Facts,
    /// The persona's own voice in the suite's language (needs `[persona]`).
    Voice,
    /// No template tokens, agent planning or prompt copies beyond the automatic zeros.
    Cleanliness,
    /// Complete sentences, no loops, a sensible length, one language.
    Quality,
}

impl Check {
    /// The check a dimension of today's persona suites gets when it names none: D1 identity,
    /// D2 facts, D3 voice, D4 cleanliness, D5 quality.
    pub fn persona_default(id: &DimId) -> Option<Check> {
        const DEFAULTS: [(&str, Check); 5] = [
            ("D1", Check::Identity),
            ("D2", Check::Facts),
            ("D3", Check::Voice),
            ("D4", Check::Cleanliness),
            ("D5", Check::Quality),
        ];
        DEFAULTS.iter().find(|(d, _)| id.is(d)).map(|(_, c)| *c)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Identity => "identity",
            Check::Facts => "facts",
            Check::Voice => "voice",
            Check::Cleanliness => "cleanliness",
            Check::Quality => "quality",
        }
    }

    pub(crate) fn needs_persona(self) -> bool {
        matches!(self, Check::Identity | Check::Voice)
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

/// How the rules scorer scores the suite's rubric: one entry per rubric dimension, in rubric
/// order, and the settings of each check.
#[derive(Debug, Clone)]
pub struct Rules {
    pub auto_zero_scope: AutoZeroScope,
    /// Same order and ids as the rubric's dimensions.
    pub dimensions: Vec<DimensionRules>,
    pub identity: IdentityRules,
    pub facts: FactsRules,
    pub voice: VoiceRules,
    pub cleanliness: CleanlinessRules,
    pub quality: QualityRules,
}

impl Rules {
    /// The dimension the cleanliness check scores: system-prompt bleed and triggers reported by
    /// the responses file count against it (else against the first dimension).
    pub fn cleanliness_dimension(&self) -> &DimId {
        let d = self.dimensions.iter().find(|d| d.check == Some(Check::Cleanliness)).unwrap_or(&self.dimensions[0]);
        &d.id
    }
}

/// The rules of one rubric dimension.
#[derive(Debug, Clone)]
pub struct DimensionRules {
    pub id: DimId,
    pub check: Option<Check>,
    pub auto_zero: Vec<TriggerPattern>,
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
    /// Relations to the partner that are a wrong identity ("meu pai"): D1 zero.
    pub wrong_relations: Vec<String>,
    /// Relations that mis-state the partnership more mildly ("meu chefe"): D1 partial.
    pub mild_relations: Vec<String>,
}

/// `[rubric.facts]`: what the facts check applies to every question.
#[derive(Debug, Clone, Default)]
pub struct FactsRules {
    /// False claims checked on every question, beside each question's own.
    pub false_claims: Vec<String>,
    /// Names an answer may use that the persona and questions do not ("API", "Brasil"): they are
    /// not counted as invented entities.
    pub known_entities: Vec<String>,
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
#[serde(rename_all = "snake_case")]
pub enum AnchorKind {
    /// An ideal in-persona answer.
    Ideal,
    /// What a base model with no fine-tune typically says.
    Generic,
    /// An answer contaminated by agent/template behaviour.
    Contaminated,
    /// Fluent-looking nonsense of real words, or pseudo-words.
    WordSalad,
    /// Word salad with the persona's words in it (Iara, Tomás, Quintal, "a gente").
    WordSaladPersona,
    /// Speaks as someone else: the partner, a human, a generic AI; casts the partner as family.
    WrongIdentity,
    /// Fluent and in persona, but invents people, products or facts.
    FluentHallucination,
    /// A good answer cut off mid-sentence at the token limit.
    Truncated,
}

impl AnchorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorKind::Ideal => "ideal",
            AnchorKind::Generic => "generic",
            AnchorKind::Contaminated => "contaminated",
            AnchorKind::WordSalad => "word_salad",
            AnchorKind::WordSaladPersona => "word_salad_persona",
            AnchorKind::WrongIdentity => "wrong_identity",
            AnchorKind::FluentHallucination => "fluent_hallucination",
            AnchorKind::Truncated => "truncated",
        }
    }
}

/// A hand-written answer with a known expected score, used to calibrate scorers.
#[derive(Debug, Clone)]
pub struct AnchorText {
    pub kind: AnchorKind,
    pub text: String,
}
