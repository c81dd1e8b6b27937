//! The judge prompt. It carries only the persona, the question, the answer and the rubric (with the
//! question's expectations): never scores, anchor labels or other samples that could bias the judge.

use crate::suite::{AutoZeroScope, Dimension, Question, Suite};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// A two-message prompt: rendered with the judge model's own chat template by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgePrompt {
    pub system: String,
    pub user: String,
}

pub fn build_prompt(suite: &Suite, question: &Question, answer: &str) -> JudgePrompt {
    JudgePrompt { system: system_text(suite), user: user_text(suite, question, answer) }
}

/// `sha256:` of every prompt the judge is given for `suite` (the system text and each question's
/// user text around an empty answer): the judge instrument is this model with these prompts.
pub fn prompt_digest(suite: &Suite) -> String {
    let mut hasher = Sha256::new();
    hasher.update(system_text(suite).as_bytes());
    for q in &suite.questions {
        hasher.update(user_text(suite, q, "").as_bytes());
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

fn system_text(suite: &Suite) -> String {
    let mut out = String::from(
        "You are a strict evaluator of answers given by a fine-tuned persona model. Score the \
         answer on every rubric dimension with an integer in the dimension's range and give a \
         one-sentence reason. Reply with JSON only, no other text, in exactly this shape:\n",
    );
    out.push_str(&reply_shape(suite));
    out.push_str(&rubric_text(suite));
    out
}

/// The rubric section of a system prompt, shared with the pairwise judge.
pub(super) fn rubric_text(suite: &Suite) -> String {
    let mut out = String::from("\n\nRubric:\n");
    for d in suite.rubric.dimensions() {
        out.push_str(&dimension_line(d));
    }
    if suite.rules.auto_zero_scope == AutoZeroScope::Answer {
        out.push_str(
            "An automatic-zero finding (template tokens, agent task planning, copied system \
             prompt, markdown headers) gives every dimension its minimum.\n",
        );
    }
    out
}

fn reply_shape(suite: &Suite) -> String {
    let fields: Vec<String> = suite
        .rubric
        .dimensions()
        .iter()
        .map(|d| format!("\"{}\": {{\"score\": <{}-{}>, \"reason\": \"...\"}}", d.id, d.min, d.max))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn dimension_line(d: &Dimension) -> String {
    format!("- {} {} ({}-{}): {}\n", d.id, d.name, d.min, d.max, d.description)
}

fn user_text(suite: &Suite, q: &Question, answer: &str) -> String {
    let mut out = question_context(suite, q);
    let _ = write!(out, "\nAnswer to score:\n<<<\n{answer}\n>>>\n\nReply with the JSON object only.");
    out
}

/// The persona, the question and what it checks: the part of a user prompt before the answers,
/// shared with the pairwise judge.
pub(super) fn question_context(suite: &Suite, q: &Question) -> String {
    let mut out = match &suite.persona {
        Some(p) => format!(
            "Persona: {} (partner: {}), answering in {}.\nPersona system prompt:\n<<<\n{}\n>>>\n\n",
            p.name, p.partner, suite.language, p.system_prompt
        ),
        None => format!("The assistant answers in {}.\n", suite.language),
    };
    if let (None, Some(prompt)) = (&suite.persona, &suite.system_prompt) {
        let _ = write!(out, "Its system prompt:\n<<<\n{prompt}\n>>>\n\n");
    }
    let _ = writeln!(out, "Question {}: {}", q.id, q.text);
    out.push_str(&expectations(suite, q));
    out
}

fn expectations(suite: &Suite, q: &Question) -> String {
    let mut out = String::from("What this question checks:\n");
    if let Some(p) = &suite.persona {
        if q.name_self {
            let _ = writeln!(out, "- D1: the answer says its own name ({})", p.name);
        }
        if q.name_partner {
            let _ = writeln!(out, "- D1: the answer names the partner ({})", p.partner);
        }
    }
    for group in &q.facts {
        let _ = writeln!(out, "- D2 required fact, any of: {}", group.join(" | "));
    }
    if !q.false_claims.is_empty() {
        let _ = writeln!(out, "- D2 false claims (score 0 if stated): {}", q.false_claims.join(" | "));
    }
    let _ = writeln!(out, "- D5 expected length: {}-{} words", q.min_words, q.max_words);
    out
}
