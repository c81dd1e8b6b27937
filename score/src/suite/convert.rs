//! Raw TOML shapes to the validated suite: the one place suite invariants are checked.

use super::model::{
    AnchorKind, AnchorText, AutoZeroScope, Check, CleanlinessRules, DimId, Dimension, DimensionRules, FactsRules,
    IdentityRules, Persona, QualityRules, Question, Rubric, Rules, Suite, TriggerPattern, VoiceRules,
};
use super::raw::{
    RawAnchorKind, RawCheck, RawDimension, RawPersona, RawQuality, RawQuestion, RawRubric, RawScope, RawSuite,
};
use crate::error::SuiteProblem;
use crate::lang::Language;
use regex::Regex;
use std::collections::BTreeSet;

pub(crate) fn suite(raw: RawSuite, digest: String) -> Result<Suite, SuiteProblem> {
    non_empty("name", &raw.name)?;
    let language = Language::parse(&raw.language).ok_or_else(|| SuiteProblem::UnsupportedLanguage {
        value: raw.language.clone(),
        supported: Language::SUPPORTED,
    })?;
    let persona = raw.persona.map(persona).transpose()?;
    let (rubric, rules) = rubric(raw.rubric, persona.is_some())?;
    let system_prompt = match (&persona, raw.system_prompt) {
        (Some(_), Some(_)) => return Err(SuiteProblem::TwoSystemPrompts),
        (Some(p), None) => Some(p.system_prompt.clone()),
        (None, prompt) => prompt.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()),
    };
    if raw.questions.is_empty() {
        return Err(SuiteProblem::NoQuestions);
    }
    let mut seen = BTreeSet::new();
    let mut questions = Vec::with_capacity(raw.questions.len());
    for q in raw.questions {
        if !seen.insert(q.id.clone()) {
            return Err(SuiteProblem::DuplicateQuestion { id: q.id });
        }
        questions.push(question(q, &rules.quality)?);
    }
    Ok(Suite { name: raw.name, language, persona, system_prompt, rubric, rules, questions, digest })
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

fn rubric(raw: RawRubric, has_persona: bool) -> Result<(Rubric, Rules), SuiteProblem> {
    non_empty("rubric.version", &raw.version)?;
    let mut dimensions = Vec::with_capacity(raw.dimensions.len());
    let mut checks = Vec::with_capacity(raw.dimensions.len());
    for d in raw.dimensions {
        let (dimension, rules) = dimension(d, has_persona)?;
        dimensions.push(dimension);
        checks.push(rules);
    }
    let rubric = Rubric::new(&raw.version, dimensions).map_err(SuiteProblem::Rubric)?;
    let rules = Rules {
        auto_zero_scope: match raw.auto_zero_scope {
            RawScope::Answer => AutoZeroScope::Answer,
            RawScope::Dimension => AutoZeroScope::Dimension,
        },
        dimensions: checks,
        identity: IdentityRules {
            other_identity_markers: raw.identity.other_identity_markers,
            wrong_relations: raw.identity.wrong_relations,
            mild_relations: raw.identity.mild_relations,
        },
        facts: FactsRules { false_claims: raw.facts.false_claims, known_entities: raw.facts.known_entities },
        voice: VoiceRules { generic_markers: raw.voice.generic_markers },
        cleanliness: CleanlinessRules {
            bleed_ngram: at_least("rubric.cleanliness.bleed_ngram", raw.cleanliness.bleed_ngram, (3, "3.."))?,
            soft_phrases: raw.cleanliness.soft_phrases,
        },
        quality: quality(raw.quality)?,
    };
    Ok((rubric, rules))
}

fn dimension(raw: RawDimension, has_persona: bool) -> Result<(Dimension, DimensionRules), SuiteProblem> {
    let id = DimId::new(&raw.id).map_err(SuiteProblem::Rubric)?;
    let check = match raw.check {
        None if has_persona => Check::persona_default(&id),
        None | Some(RawCheck::None) => None,
        Some(RawCheck::Identity) => Some(Check::Identity),
        Some(RawCheck::Facts) => Some(Check::Facts),
        Some(RawCheck::Voice) => Some(Check::Voice),
        Some(RawCheck::Cleanliness) => Some(Check::Cleanliness),
        Some(RawCheck::Quality) => Some(Check::Quality),
    };
    if let Some(c) = check.filter(|c| c.needs_persona() && !has_persona) {
        return Err(SuiteProblem::CheckNeedsPersona { id: raw.id, check: c.as_str() });
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
    let dimension = Dimension {
        id: id.clone(),
        name: raw.name,
        description: raw.description,
        min: raw.min,
        max: raw.max,
        weight: raw.weight.unwrap_or(1.0),
    };
    Ok((dimension, DimensionRules { id, check, auto_zero }))
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
            RawAnchorKind::WordSalad => AnchorKind::WordSalad,
            RawAnchorKind::WordSaladPersona => AnchorKind::WordSaladPersona,
            RawAnchorKind::WrongIdentity => AnchorKind::WrongIdentity,
            RawAnchorKind::FluentHallucination => AnchorKind::FluentHallucination,
            RawAnchorKind::Truncated => AnchorKind::Truncated,
        },
        text: raw.text.trim().to_owned(),
    }
}
