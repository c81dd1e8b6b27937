//! `lint`: parsed datasets + eval suite + `[lint]` + token lengths → a [`LintReport`].
//!
//! Pure: the caller reads the files, renders and counts tokens, and prints or stores the report.

use std::collections::BTreeMap;

use super::config::{LintConfig, LintRule};
use super::contamination::{self, EvalSuite};
use super::diff;
use super::duplicates;
use super::example::{Dataset, Example};
use super::lengths;
use super::normalise::{dataset_digest, example_digest, hex, normalise};
use super::par;
use super::report::{DatasetSummary, Duplicates, LintFinding, LintReport, verdict};
use super::schema::{self, SchemaProblem};
use crate::finding::excerpt;

/// Examples named in one message; the finding's `examples` list has them all.
const NAMED: usize = 5;

/// The rendered token length of every example, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLengths {
    /// One length per example, in the order of `LintInput::datasets`' examples; `model`
    /// names the tokenizer in messages.
    Measured { model: String, lengths: Vec<usize> },
    /// Not measured; the reason becomes an info finding.
    Skipped(String),
}

/// What one lint looks at.
#[derive(Debug, Clone, Copy)]
pub struct LintInput<'a> {
    pub datasets: &'a [Dataset],
    pub baseline: Option<&'a [Dataset]>,
    pub suite: Option<&'a EvalSuite>,
    pub config: &'a LintConfig,
    pub token_lengths: &'a TokenLengths,
}

/// Flattened examples of several files, with where each came from.
struct Corpus<'a> {
    examples: Vec<&'a Example>,
    files: Vec<&'a str>,
    digests: Vec<[u8; 32]>,
}

impl<'a> Corpus<'a> {
    fn new(datasets: &'a [Dataset]) -> Self {
        let mut c = Corpus { examples: Vec::new(), files: Vec::new(), digests: Vec::new() };
        for d in datasets {
            for e in &d.examples {
                c.examples.push(e);
                c.files.push(&d.file);
            }
        }
        c.digests = par::map(&c.examples, |e| example_digest(e));
        c
    }

    fn location(&self, i: usize) -> String {
        format!("{} {}", self.files[i], self.examples[i].position)
    }

    /// "#4 (train.jsonl line 5), #9 (...) and 3 more".
    fn name(&self, indices: &[usize]) -> String {
        let mut named: Vec<String> =
            indices.iter().take(NAMED).map(|&i| format!("#{i} ({})", self.location(i))).collect();
        if indices.len() > NAMED {
            named.push(format!("and {} more", indices.len() - NAMED));
        }
        named.join(", ")
    }
}

struct Findings<'c> {
    config: &'c LintConfig,
    list: Vec<LintFinding>,
}

impl Findings<'_> {
    fn push(&mut self, rule: LintRule, message: String, examples: Vec<usize>) {
        if let Some(severity) = self.config.severity_of(rule) {
            self.list.push(LintFinding { rule, severity, message, examples });
        }
    }
}

pub fn lint(input: &LintInput<'_>) -> LintReport {
    let corpus = Corpus::new(input.datasets);
    let mut findings = Findings { config: input.config, list: Vec::new() };
    malformed(input.datasets, &mut findings);
    schema_findings(&corpus, &mut findings);
    let duplicates = Duplicates {
        exact: duplicates::exact(&corpus.digests),
        near: duplicates::near(&corpus.examples, &corpus.digests, input.config.near_duplicate_threshold),
    };
    duplicate_findings(&corpus, &duplicates, input.config, &mut findings);
    let contaminated = match input.suite {
        Some(suite) => {
            let mut found =
                contamination::find(&corpus.examples, suite, input.config.ngram_size, input.config.ngram_threshold);
            for c in &mut found {
                c.location = corpus.location(c.example_index);
            }
            contamination_findings(suite, &found, &mut findings);
            system_prompt(&corpus, suite, &mut findings);
            found
        }
        None => Vec::new(),
    };
    let token_lengths = length_findings(&corpus, input.token_lengths, input.config, &mut findings);
    exposure(&corpus, &duplicates, input.config, &mut findings);
    let diff = input.baseline.map(|baseline| {
        let before = Corpus::new(baseline);
        let d = diff::diff(&before.examples, &before.digests, &corpus.examples, &corpus.digests);
        findings.push(LintRule::DatasetDiff, diff_message(&d), Vec::new());
        d
    });
    let list = findings.list;
    LintReport {
        examples: corpus.examples.len(),
        format: common_format(input.datasets),
        digest: dataset_digest(&corpus.digests),
        datasets: input.datasets.iter().map(summary).collect(),
        token_lengths,
        duplicates,
        contaminated,
        diff,
        verdict: verdict(&list),
        findings: list,
    }
}

fn summary(d: &Dataset) -> DatasetSummary {
    let digests: Vec<[u8; 32]> = d.examples.iter().map(example_digest).collect();
    DatasetSummary {
        file: d.file.clone(),
        format: d.format,
        layout: d.layout,
        examples: d.examples.len(),
        malformed: d.malformed.len(),
        digest: dataset_digest(&digests),
    }
}

fn common_format(datasets: &[Dataset]) -> String {
    match datasets.split_first() {
        Some((first, rest)) if rest.iter().all(|d| d.format == first.format) => first.format.as_str().to_owned(),
        Some(_) => "mixed".to_owned(),
        None => "none".to_owned(),
    }
}

fn malformed(datasets: &[Dataset], findings: &mut Findings<'_>) {
    for d in datasets.iter().filter(|d| !d.malformed.is_empty()) {
        let named: Vec<String> = d
            .malformed
            .iter()
            .take(NAMED)
            .map(|m| match m.field.as_str() {
                "(record)" => format!("{}: {}", m.position, m.problem),
                field => format!("{}: field `{field}` {}", m.position, m.problem),
            })
            .collect();
        let more = d.malformed.len().saturating_sub(NAMED);
        let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
        let message = format!(
            "{}: {} malformed record{} skipped: {}{tail}",
            d.file,
            d.malformed.len(),
            plural(d.malformed.len()),
            named.join("; ")
        );
        findings.push(LintRule::MalformedRecord, message, Vec::new());
    }
}

fn schema_findings(corpus: &Corpus<'_>, findings: &mut Findings<'_>) {
    let mut by_rule: BTreeMap<LintRule, Vec<(usize, String)>> = BTreeMap::new();
    for (i, e) in corpus.examples.iter().enumerate() {
        for p in schema::check(e) {
            let rule = match p {
                SchemaProblem::EmptyTurn { .. } => LintRule::EmptyTurn,
                SchemaProblem::RoleOrder { .. } => LintRule::RoleOrder,
                SchemaProblem::UnknownRole { .. } => LintRule::UnknownRole,
                SchemaProblem::MissingAssistant => LintRule::MissingAssistant,
            };
            let list = by_rule.entry(rule).or_default();
            if list.last().is_none_or(|(last, _)| *last != i) {
                list.push((i, p.describe(e)));
            }
        }
    }
    for (rule, hits) in by_rule {
        let what = match rule {
            LintRule::EmptyTurn => "an empty turn",
            LintRule::RoleOrder => "turns out of order",
            LintRule::UnknownRole => "an unknown role",
            _ => "no assistant turn at the end",
        };
        let named: Vec<String> =
            hits.iter().take(NAMED).map(|(i, d)| format!("#{i} ({}): {d}", corpus.location(*i))).collect();
        let more = hits.len().saturating_sub(NAMED);
        let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
        let message = format!("{} example{} with {what}: {}{tail}", hits.len(), plural(hits.len()), named.join("; "));
        findings.push(rule, message, hits.into_iter().map(|(i, _)| i).collect());
    }
}

fn duplicate_findings(corpus: &Corpus<'_>, dups: &Duplicates, config: &LintConfig, findings: &mut Findings<'_>) {
    if !dups.exact.is_empty() {
        let copies: usize = dups.exact.iter().map(|g| g.indices.len() - 1).sum();
        let groups: Vec<String> = dups.exact.iter().take(NAMED).map(|g| corpus.name(&g.indices)).collect();
        let message = format!(
            "{copies} exact duplicate{} ({} group{}): {}",
            plural(copies),
            dups.exact.len(),
            plural(dups.exact.len()),
            groups.join("; ")
        );
        let examples = dups.exact.iter().flat_map(|g| g.indices[1..].iter().copied()).collect();
        findings.push(LintRule::ExactDuplicate, message, examples);
    }
    if !dups.near.is_empty() {
        let groups: Vec<String> = dups
            .near
            .iter()
            .take(NAMED)
            .map(|g| format!("{} (Jaccard {:.2})", corpus.name(&g.indices), g.jaccard))
            .collect();
        let message = format!(
            "{} group{} of near-duplicates (Jaccard ≥ {}): {}",
            dups.near.len(),
            plural(dups.near.len()),
            config.near_duplicate_threshold,
            groups.join("; ")
        );
        let examples = dups.near.iter().flat_map(|g| g.indices.iter().copied()).collect();
        findings.push(LintRule::NearDuplicate, message, examples);
    }
}

fn contamination_findings(suite: &EvalSuite, found: &[contamination::Contaminated], findings: &mut Findings<'_>) {
    let mut by_qid: BTreeMap<&str, Vec<&contamination::Contaminated>> = BTreeMap::new();
    for c in found {
        by_qid.entry(&c.qid).or_default().push(c);
    }
    for (qid, hits) in by_qid {
        let question = suite.probes.iter().find(|p| p.qid == qid && p.side == contamination::ProbeSide::Question);
        let quoted = question.map(|q| format!(" \"{}\"", excerpt(&q.text, 60))).unwrap_or_default();
        let named: Vec<String> = hits
            .iter()
            .take(NAMED)
            .map(|c| {
                let kind = match c.kind {
                    contamination::MatchKind::Verbatim => "verbatim".to_owned(),
                    contamination::MatchKind::Ngram => format!("{:.0}% of n-grams", c.overlap * 100.0),
                };
                format!("{} {kind} in #{} ({})", c.what, c.example_index, c.location)
            })
            .collect();
        let more = hits.len().saturating_sub(NAMED);
        let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
        let message = format!(
            "eval question {qid}{quoted} is in the training data ({} match{}): {}{tail}; the eval would measure recall of training answers",
            hits.len(),
            if hits.len() == 1 { "" } else { "es" },
            named.join("; ")
        );
        let mut examples: Vec<usize> = hits.iter().map(|c| c.example_index).collect();
        examples.dedup();
        findings.push(LintRule::Contamination, message, examples);
    }
}

fn system_prompt(corpus: &Corpus<'_>, suite: &EvalSuite, findings: &mut Findings<'_>) {
    let eval = suite.system_prompt.as_deref().map(normalise).filter(|s| !s.is_empty());
    let mut differs = Vec::new();
    let mut missing = Vec::new();
    for (i, e) in corpus.examples.iter().enumerate() {
        match (e.system().map(normalise), &eval) {
            (Some(train), Some(eval)) if train != *eval => differs.push(i),
            (None, Some(_)) => missing.push(i),
            (Some(_), None) => differs.push(i),
            _ => {}
        }
    }
    let n = corpus.examples.len();
    let message = match &eval {
        Some(_) if !differs.is_empty() => Some(format!(
            "{} of {n} examples train with a system prompt different from the eval's ({}): {}",
            differs.len(),
            suite.name,
            corpus.name(&differs)
        )),
        Some(_) if !missing.is_empty() && missing.len() == n => Some(format!(
            "no example has a system prompt, but the eval ({}) sends one: the model is evaluated under a prompt it never trained with",
            suite.name
        )),
        None if !differs.is_empty() => Some(format!(
            "{} of {n} examples train with a system prompt, but the eval ({}) sends none",
            differs.len(),
            suite.name
        )),
        _ => None,
    };
    if let Some(message) = message {
        let examples = if differs.is_empty() { Vec::new() } else { differs };
        findings.push(LintRule::SystemPromptMismatch, message, examples);
    }
}

fn length_findings(
    corpus: &Corpus<'_>,
    lengths: &TokenLengths,
    config: &LintConfig,
    findings: &mut Findings<'_>,
) -> Option<lengths::TokenLengthStats> {
    let (model, lengths) = match lengths {
        TokenLengths::Skipped(why) => {
            findings.push(LintRule::TokenLengths, format!("token lengths not measured: {why}"), Vec::new());
            return None;
        }
        TokenLengths::Measured { model, lengths } => (model, lengths),
    };
    let stats = lengths::stats(lengths, config.max_length)?;
    findings.push(
        LintRule::TokenLengths,
        format!(
            "rendered lengths with {model}: min {}, p50 {}, p95 {}, max {} tokens",
            stats.min, stats.p50, stats.p95, stats.max
        ),
        Vec::new(),
    );
    if let Some(max) = config.max_length {
        if stats.over_max_length > 0 {
            let over: Vec<usize> = stats.over.iter().map(|o| o.example_index).collect();
            let named: Vec<String> = stats
                .over
                .iter()
                .take(NAMED)
                .map(|o| {
                    format!(
                        "#{} ({}, {} tokens, +{})",
                        o.example_index,
                        corpus.location(o.example_index),
                        o.tokens,
                        o.excess
                    )
                })
                .collect();
            findings.push(
                LintRule::OverMaxLength,
                format!(
                    "{} example{} exceed{} max_length {max} by up to {} tokens ({} tokens would be truncated in training): {}",
                    stats.over_max_length,
                    plural(stats.over_max_length),
                    if stats.over_max_length == 1 { "s" } else { "" },
                    stats.max_excess,
                    stats.truncated_tokens,
                    named.join(", ")
                ),
                over,
            );
        }
        if stats.p95 > max {
            findings.push(
                LintRule::MaxLengthBelowP95,
                format!(
                    "max_length {max} is below the p95 rendered length ({} tokens): more than 5% of the examples are cut",
                    stats.p95
                ),
                Vec::new(),
            );
        }
    }
    Some(stats)
}

fn exposure(corpus: &Corpus<'_>, dups: &Duplicates, config: &LintConfig, findings: &mut Findings<'_>) {
    let Some(epochs) = config.epochs else { return };
    let n = corpus.examples.len();
    let mut message = format!(
        "{epochs} epochs × {n} examples = {} example presentations; each example is seen {epochs} times",
        u64::from(epochs) * n as u64
    );
    let mut examples = Vec::new();
    if let Some(g) = dups.exact.iter().max_by_key(|g| (g.indices.len(), std::cmp::Reverse(g.indices[0]))) {
        message.push_str(&format!(
            ", and the most repeated one (#{}, {} copies) {} times",
            g.indices[0],
            g.indices.len(),
            g.indices.len() as u64 * u64::from(epochs)
        ));
        examples = g.indices.clone();
    }
    findings.push(LintRule::EpochExposure, message, examples);
}

fn diff_message(d: &diff::DiffReport) -> String {
    let mut parts = vec![format!(
        "dataset {} → {} examples: +{} added, −{} removed, {} changed",
        d.before, d.after, d.added, d.removed, d.changed
    )];
    for (sign, groups) in [("+", &d.added_groups), ("−", &d.removed_groups)] {
        for g in groups.iter().take(3) {
            parts.push(format!("{sign}{} example{} like '{}…'", g.count, plural(g.count), g.prefix));
        }
    }
    parts.join("; ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Hex digest of one example, for callers that store it.
pub fn digest_hex(example: &Example) -> String {
    hex(&example_digest(example))
}
