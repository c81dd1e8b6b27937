//! The suite file exactly as written in TOML. Every table rejects unknown keys so a typo such as
//! `flase_claims` fails loudly instead of silently checking nothing.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSuite {
    pub(crate) name: String,
    pub(crate) language: String,
    #[serde(default)]
    pub(crate) persona: Option<RawPersona>,
    /// The eval system prompt of a suite without a persona.
    #[serde(default)]
    pub(crate) system_prompt: Option<String>,
    pub(crate) rubric: RawRubric,
    #[serde(default)]
    pub(crate) questions: Vec<RawQuestion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPersona {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) aliases: Vec<String>,
    pub(crate) partner: String,
    #[serde(default)]
    pub(crate) partner_aliases: Vec<String>,
    pub(crate) system_prompt: String,
    #[serde(default)]
    pub(crate) markers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRubric {
    pub(crate) version: String,
    #[serde(default)]
    pub(crate) auto_zero_scope: RawScope,
    pub(crate) dimensions: Vec<RawDimension>,
    #[serde(default)]
    pub(crate) identity: RawIdentity,
    #[serde(default)]
    pub(crate) facts: RawFacts,
    #[serde(default)]
    pub(crate) voice: RawVoice,
    #[serde(default)]
    pub(crate) cleanliness: RawCleanliness,
    #[serde(default)]
    pub(crate) quality: RawQuality,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawScope {
    #[default]
    Answer,
    Dimension,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDimension {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) min: u32,
    #[serde(default = "default_max")]
    pub(crate) max: u32,
    #[serde(default)]
    pub(crate) weight: Option<f64>,
    /// The rules scorer's check for this dimension; D1..D5 of a persona suite default to theirs.
    #[serde(default)]
    pub(crate) check: Option<RawCheck>,
    #[serde(default)]
    pub(crate) auto_zero_phrases: Vec<String>,
    #[serde(default)]
    pub(crate) auto_zero_regexes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawCheck {
    Identity,
    Facts,
    Voice,
    Cleanliness,
    Quality,
    /// Explicitly none: the rules scorer does not score this dimension.
    None,
}

fn default_max() -> u32 {
    2
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    #[serde(default)]
    pub(crate) other_identity_markers: Vec<String>,
    #[serde(default)]
    pub(crate) wrong_relations: Vec<String>,
    #[serde(default)]
    pub(crate) mild_relations: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFacts {
    #[serde(default)]
    pub(crate) false_claims: Vec<String>,
    #[serde(default)]
    pub(crate) known_entities: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVoice {
    #[serde(default)]
    pub(crate) generic_markers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCleanliness {
    pub(crate) bleed_ngram: usize,
    pub(crate) soft_phrases: Vec<String>,
}

impl Default for RawCleanliness {
    fn default() -> Self {
        Self { bleed_ngram: 10, soft_phrases: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawQuality {
    pub(crate) min_words: usize,
    pub(crate) max_words: usize,
    pub(crate) repetition_ngram: usize,
    pub(crate) repetition_share: f64,
    pub(crate) loop_share: f64,
    pub(crate) mixing_share: f64,
}

impl Default for RawQuality {
    fn default() -> Self {
        Self {
            min_words: 12,
            max_words: 220,
            repetition_ngram: 3,
            repetition_share: 0.15,
            loop_share: 0.35,
            mixing_share: 0.2,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuestion {
    pub(crate) id: String,
    pub(crate) text: String,
    #[serde(default)]
    pub(crate) name_self: bool,
    #[serde(default)]
    pub(crate) name_partner: bool,
    #[serde(default)]
    pub(crate) facts: Vec<Vec<String>>,
    pub(crate) min_facts: Option<usize>,
    #[serde(default)]
    pub(crate) false_claims: Vec<String>,
    pub(crate) min_words: Option<usize>,
    pub(crate) max_words: Option<usize>,
    #[serde(default)]
    pub(crate) anchors: Vec<RawAnchor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnchor {
    pub(crate) kind: RawAnchorKind,
    pub(crate) text: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawAnchorKind {
    Ideal,
    Generic,
    Contaminated,
    WordSalad,
    WordSaladPersona,
    WrongIdentity,
    FluentHallucination,
    Truncated,
}
