//! One table row per lint finding kind, through the public entry point.

use super::*;
use crate::finding::Severity;
use crate::verdict::Verdict;

const SYSTEM: &str = "Você é a Iara.";

fn line(turns: &[(&str, &str)]) -> String {
    let conv: Vec<serde_json::Value> =
        turns.iter().map(|(from, value)| serde_json::json!({"from": from, "value": value})).collect();
    serde_json::json!({ "conversations": conv }).to_string()
}

fn chat(user: &str, answer: &str) -> String {
    line(&[("system", SYSTEM), ("human", user), ("gpt", answer)])
}

/// Distinct, clean examples: none of them trips a rule.
fn clean() -> Vec<String> {
    [
        ("Oi, tudo bem?", "Tudo ótimo por aqui, e com você?"),
        ("Que linguagem o backend usa?", "O backend é escrito em Rust, com axum por cima do tokio."),
        ("Onde ficam os dados?", "Num PostgreSQL, com migrações versionadas no repositório."),
        ("Vocês escrevem testes antes?", "Sim, a gente prefere escrever o teste primeiro e depois o código."),
    ]
    .iter()
    .map(|(u, a)| chat(u, a))
    .collect()
}

fn suite() -> EvalSuite {
    EvalSuite {
        name: "persona".into(),
        system_prompt: Some(SYSTEM.into()),
        probes: vec![Probe {
            qid: "Q5".into(),
            side: ProbeSide::Question,
            label: "question".into(),
            text: "Me fala sobre você.".into(),
        }],
    }
}

fn run(lines: &[String], config: &LintConfig, lengths: &TokenLengths, baseline: Option<&[String]>) -> LintReport {
    let datasets = [parse_dataset("train.jsonl", lines.join("\n").as_bytes()).unwrap()];
    let baseline = baseline.map(|b| [parse_dataset("base.jsonl", b.join("\n").as_bytes()).unwrap()]);
    let suite = suite();
    lint(&LintInput {
        datasets: &datasets,
        baseline: baseline.as_ref().map(|b| &b[..]),
        suite: Some(&suite),
        config,
        token_lengths: lengths,
    })
}

fn skipped() -> TokenLengths {
    TokenLengths::Skipped("no model".into())
}

fn measured(lengths: Vec<usize>) -> TokenLengths {
    TokenLengths::Measured { model: "tiny".into(), lengths }
}

#[test]
fn a_clean_dataset_passes_with_info_only() {
    let report = run(
        &clean(),
        &LintConfig { max_length: Some(512), epochs: None, ..LintConfig::default() },
        &measured(vec![40, 50, 60, 70]),
        Some(&clean()),
    );
    assert_eq!(report.verdict, Verdict::Pass, "{:#?}", report.findings);
    assert!(report.findings.iter().all(|f| f.severity == Severity::Info), "{:#?}", report.findings);
    assert!(report.contaminated.is_empty() && report.duplicates.exact.is_empty() && report.duplicates.near.is_empty());
    assert!(report.diff.as_ref().unwrap().is_empty());
    assert_eq!(report.examples, 4);
}

#[test]
fn each_finding_kind_is_reported_with_its_default_severity() {
    let base = clean();
    let with = |extra: &[String]| [base.clone(), extra.to_vec()].concat();
    let epochs = LintConfig { epochs: Some(8), ..LintConfig::default() };
    let limit = LintConfig { max_length: Some(100), ..LintConfig::default() };
    // rule, dataset lines, config, token lengths, baseline lines, severity, an example it names
    type Row = (LintRule, Vec<String>, LintConfig, TokenLengths, Option<Vec<String>>, Severity, usize);
    let rows: Vec<Row> = vec![
        (
            LintRule::MalformedRecord,
            with(&["{\"conversations\": 3}".into()]),
            LintConfig::default(),
            skipped(),
            None,
            Severity::Fail,
            0,
        ),
        (LintRule::EmptyTurn, with(&[chat("Oi?", " ")]), LintConfig::default(), skipped(), None, Severity::Warn, 4),
        (
            LintRule::RoleOrder,
            with(&[line(&[("gpt", "Olá"), ("human", "Oi"), ("gpt", "Tudo bem")])]),
            LintConfig::default(),
            skipped(),
            None,
            Severity::Warn,
            4,
        ),
        (
            LintRule::UnknownRole,
            with(&[line(&[("human", "Oi"), ("tool", "{}"), ("gpt", "Ok")])]),
            LintConfig::default(),
            skipped(),
            None,
            Severity::Warn,
            4,
        ),
        (
            LintRule::MissingAssistant,
            with(&[line(&[("system", SYSTEM), ("human", "Oi")])]),
            LintConfig::default(),
            skipped(),
            None,
            Severity::Warn,
            4,
        ),
        (LintRule::ExactDuplicate, with(&[base[1].clone()]), LintConfig::default(), skipped(), None, Severity::Warn, 4),
        (
            LintRule::NearDuplicate,
            with(&[chat("Que linguagem o backend usa?", "O backend é escrito em Rust, com axum por cima do tokio!!")]),
            LintConfig { near_duplicate_threshold: 0.6, ..LintConfig::default() },
            skipped(),
            None,
            Severity::Info,
            1,
        ),
        (
            LintRule::Contamination,
            with(&[chat("Me fala sobre você.", "Sou a Iara.")]),
            LintConfig::default(),
            skipped(),
            None,
            Severity::Fail,
            4,
        ),
        (LintRule::TokenLengths, base.clone(), LintConfig::default(), skipped(), None, Severity::Info, 0),
        (
            LintRule::OverMaxLength,
            base.clone(),
            limit.clone(),
            measured(vec![40, 50, 60, 170]),
            None,
            Severity::Warn,
            3,
        ),
        (LintRule::MaxLengthBelowP95, base.clone(), limit, measured(vec![40, 50, 60, 170]), None, Severity::Warn, 0),
        (LintRule::EpochExposure, base.clone(), epochs, skipped(), None, Severity::Info, 0),
        (
            LintRule::SystemPromptMismatch,
            with(&[line(&[("system", "Você é um assistente."), ("human", "Oi"), ("gpt", "Olá")])]),
            LintConfig::default(),
            skipped(),
            None,
            Severity::Warn,
            4,
        ),
        (
            LintRule::DatasetDiff,
            base.clone(),
            LintConfig::default(),
            skipped(),
            Some(base[..2].to_vec()),
            Severity::Info,
            0,
        ),
    ];
    assert_eq!(rows.len(), LintRule::ALL.len(), "one row per rule");
    for (rule, lines, config, lengths, baseline, severity, example) in rows {
        let report = run(&lines, &config, &lengths, baseline.as_deref());
        let found: Vec<&LintFinding> = report.findings_of(rule).collect();
        assert_eq!(found.len(), 1, "{rule:?}: {:#?}", report.findings);
        assert_eq!(found[0].severity, severity, "{rule:?}");
        if !found[0].examples.is_empty() || example != 0 {
            assert!(found[0].examples.contains(&example), "{rule:?}: {:?}", found[0]);
        }
        let clean_report = run(&base, &LintConfig::default(), &skipped(), None);
        assert_eq!(
            clean_report.findings_of(rule).count(),
            usize::from(rule == LintRule::TokenLengths),
            "{rule:?} on the clean set"
        );
    }
}

#[test]
fn severities_follow_the_config_and_decide_the_verdict() {
    let lines = [clean(), vec![chat("Me fala sobre você.", "Sou a Iara.")]].concat();
    assert_eq!(run(&lines, &LintConfig::default(), &skipped(), None).verdict, Verdict::Fail);
    let mut config = LintConfig::default();
    config.severity.insert(LintRule::Contamination, LintLevel::Warn);
    let report = run(&lines, &config, &skipped(), None);
    assert_eq!(report.verdict, Verdict::Warn);
    config.severity.insert(LintRule::Contamination, LintLevel::Off);
    let report = run(&lines, &config, &skipped(), None);
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(report.findings_of(LintRule::Contamination).count(), 0);
    assert_eq!(report.contaminated.len(), 1, "the data is still reported, only the finding is off");
}

#[test]
fn the_report_serialises_to_the_documented_json_shape() {
    let lines = [clean(), vec![chat("Me fala sobre você.", "Sou a Iara.")]].concat();
    let report = run(
        &lines,
        &LintConfig { max_length: Some(100), ..LintConfig::default() },
        &measured(vec![1, 2, 3, 4, 500]),
        Some(&clean()),
    );
    let json = serde_json::to_value(&report).unwrap();
    for key in ["examples", "format", "token_lengths", "duplicates", "contaminated", "diff", "findings", "verdict"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    for key in ["min", "p50", "p95", "max", "over_max_length"] {
        assert!(json["token_lengths"].get(key).is_some(), "{key}");
    }
    assert!(json["duplicates"]["exact"].is_array() && json["duplicates"]["near"].is_array());
    assert_eq!(json["contaminated"][0]["qid"], "Q5");
    assert_eq!(json["contaminated"][0]["example_index"], 4);
    assert_eq!(json["contaminated"][0]["kind"], "verbatim");
    for key in ["before", "after", "added", "removed", "changed"] {
        assert!(json["diff"].get(key).is_some(), "{key}");
    }
    assert_eq!(json["diff"]["added"], 1);
    assert_eq!(json["verdict"], "fail");
    assert_eq!(json["findings"][0]["rule"], "contamination");
    let back: LintReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn markdown_names_the_verdict_findings_and_contaminated_questions() {
    let lines = [clean(), vec![chat("Me fala sobre você.", "Sou a Iara.")]].concat();
    let report = run(&lines, &LintConfig::default(), &skipped(), Some(&clean()));
    let md = render_markdown(&report);
    assert!(md.contains("## Dataset lint: FAIL"), "{md}");
    assert!(
        md.contains("`contamination`") && md.contains("| Q5 | question | #4 | train.jsonl line 5 | verbatim |"),
        "{md}"
    );
    assert!(md.contains("+1 like 'Me fala sobre…'"), "{md}");
}
