//! Raw TOML shapes to the validated suite: the one place suite invariants are checked.

use super::model::{
    AnchorKind, AnchorText, AutoZeroScope, CleanlinessRules, DimId, Dimension, IdentityRules, Persona, QualityRules,
    Question, Rubric, Suite, TriggerPattern, VoiceRules,
};
use super::raw::{RawAnchorKind, RawDimension, RawPersona, RawQuality, RawQuestion, RawRubric, RawScope, RawSuite};
use crate::error::SuiteProblem;
use crate::lang::Language;
use regex::Regex;
use std::collections::BTreeSet;

pub(crate) fn suite(raw: RawSuite) -> Result<Suite, SuiteProblem> {
    non_empty("name", &raw.name)?;
    let language = Language::parse(&raw.language).ok_or_else(|| SuiteProblem::UnsupportedLanguage {
        value: raw.language.clone(),
        supported: Language::SUPPORTED,
    })?;
    let rubric = rubric(raw.rubric)?;
    if raw.questions.is_empty() {
        return Err(SuiteProblem::NoQuestions);
    }
    let mut seen = BTreeSet::new();
    let mut questions = Vec::with_capacity(raw.questions.len());
    for q in raw.questions {
        if !seen.insert(q.id.clone()) {
            return Err(SuiteProblem::DuplicateQuestion { id: q.id });
        }
        questions.push(question(q, &rubric.quality)?);
    }
    Ok(Suite { name: raw.name, language, persona: persona(raw.persona)?, rubric, questions })
}

fn non_empty(field: &str, value: &str) -> Result<(), SuiteProblem> {
    if value.trim().is_empty() {
        return Err(SuiteProblem::Empty { field: field.to_owned() });
    }
    Ok(())
}

fn persona(raw: RawPersona) -> Result<Persona, SuiteProblem> {
    non_empty("persona.name", &raw.name)?;
    non_empty("persona.partner", &raw.partner)?;
    non_empty("persona.system_prompt", &raw.system_prompt)?;
    Ok(Persona {
        name: raw.name,
        aliases: raw.aliases,
        partner: raw.partner,
        partner_aliases: raw.partner_aliases,
        system_prompt: raw.system_prompt.trim().to_owned(),
        markers: raw.markers,
    })
}

fn rubric(raw: RawRubric) -> Result<Rubric, SuiteProblem> {
    non_empty("rubric.version", &raw.version)?;
    Ok(Rubric {
        version: raw.version,
        auto_zero_scope: match raw.auto_zero_scope {
            RawScope::Answer => AutoZeroScope::Answer,
            RawScope::Dimension => AutoZeroScope::Dimension,
        },
        dimensions: dimensions(raw.dimensions)?,
        identity: IdentityRules { other_identity_markers: raw.identity.other_identity_markers },
        voice: VoiceRules { generic_markers: raw.voice.generic_markers },
        cleanliness: CleanlinessRules {
            bleed_ngram: at_least("rubric.cleanliness.bleed_ngram", raw.cleanliness.bleed_ngram, (3, "3.."))?,
            soft_phrases: raw.cleanliness.soft_phrases,
        },
        quality: quality(raw.quality)?,
    })
}

fn dimensions(raw: Vec<RawDimension>) -> Result<[Dimension; 5], SuiteProblem> {
    let mut slots: [Option<Dimension>; 5] = Default::default();
    for d in raw {
        let id = DimId::parse(&d.id).ok_or_else(|| SuiteProblem::UnknownDimension { id: d.id.clone() })?;
        if slots[id.index()].is_some() {
            return Err(SuiteProblem::DuplicateDimension { id: d.id });
        }
        slots[id.index()] = Some(dimension(id, d)?);
    }
    let mut out = Vec::with_capacity(5);
    for (slot, id) in slots.into_iter().zip(DimId::ALL) {
        out.push(slot.ok_or(SuiteProblem::MissingDimension { id: id.to_string() })?);
    }
    Ok(out.try_into().expect("five slots give five dimensions"))
}

fn dimension(id: DimId, raw: RawDimension) -> Result<Dimension, SuiteProblem> {
    if raw.min >= raw.max {
        return Err(SuiteProblem::BadRange { id: raw.id, min: raw.min, max: raw.max });
    }
    let mut auto_zero: Vec<TriggerPattern> =
        raw.auto_zero_phrases.into_iter().filter(|p| !p.trim().is_empty()).map(TriggerPattern::Phrase).collect();
    for pattern in raw.auto_zero_regexes {
        let regex = Regex::new(&pattern).map_err(|source| SuiteProblem::BadRegex {
            id: raw.id.clone(),
            pattern: pattern.clone(),
            source: Box::new(source),
        })?;
        auto_zero.push(TriggerPattern::Regex(regex));
    }
    Ok(Dimension { id, name: raw.name, description: raw.description, min: raw.min, max: raw.max, auto_zero })
}

fn quality(raw: RawQuality) -> Result<QualityRules, SuiteProblem> {
    band("rubric.quality", raw.min_words, raw.max_words)?;
    Ok(QualityRules {
        min_words: raw.min_words,
        max_words: raw.max_words,
        repetition_ngram: at_least("rubric.quality.repetition_ngram", raw.repetition_ngram, (2, "2.."))?,
        repetition_share: share("rubric.quality.repetition_share", raw.repetition_share)?,
        loop_share: share("rubric.quality.loop_share", raw.loop_share)?,
        mixing_share: share("rubric.quality.mixing_share", raw.mixing_share)?,
    })
}

fn at_least(field: &'static str, value: usize, (min, range): (usize, &'static str)) -> Result<usize, SuiteProblem> {
    if value < min {
        return Err(SuiteProblem::BadThreshold { field, value: value as f64, range });
    }
    Ok(value)
}

fn share(field: &'static str, value: f64) -> Result<f64, SuiteProblem> {
    if !(value > 0.0 && value <= 1.0) {
        return Err(SuiteProblem::BadThreshold { field, value, range: "(0, 1]" });
    }
    Ok(value)
}

fn band(owner: &str, min_words: usize, max_words: usize) -> Result<(), SuiteProblem> {
    if min_words >= max_words {
        return Err(SuiteProblem::BadLengthBand { owner: owner.to_owned(), min_words, max_words });
    }
    Ok(())
}

fn question(raw: RawQuestion, quality: &QualityRules) -> Result<Question, SuiteProblem> {
    non_empty("questions.id", &raw.id)?;
    non_empty(&format!("questions.text of {}", raw.id), &raw.text)?;
    if let Some(index) = raw.facts.iter().position(|g| g.iter().all(|p| p.trim().is_empty())) {
        return Err(SuiteProblem::EmptyFactGroup { qid: raw.id, index });
    }
    let min_facts = raw.min_facts.unwrap_or(raw.facts.len());
    if min_facts > raw.facts.len() {
        return Err(SuiteProblem::MinFactsTooLarge { qid: raw.id, min_facts, groups: raw.facts.len() });
    }
    let min_words = raw.min_words.unwrap_or(quality.min_words);
    let max_words = raw.max_words.unwrap_or(quality.max_words);
    band(&format!("question {}", raw.id), min_words, max_words)?;
    Ok(Question {
        id: raw.id,
        text: raw.text,
        name_self: raw.name_self,
        name_partner: raw.name_partner,
        facts: raw.facts,
        min_facts,
        false_claims: raw.false_claims,
        min_words,
        max_words,
        anchors: raw.anchors.into_iter().map(anchor).collect(),
    })
}

fn anchor(raw: super::raw::RawAnchor) -> AnchorText {
    AnchorText {
        kind: match raw.kind {
            RawAnchorKind::Ideal => AnchorKind::Ideal,
            RawAnchorKind::Generic => AnchorKind::Generic,
            RawAnchorKind::Contaminated => AnchorKind::Contaminated,
        },
        text: raw.text.trim().to_owned(),
    }
}
