use super::*;
use crate::{Language, SuiteError, SuiteProblem};
use std::path::Path;

const MINIMAL: &str = r#"
name = "mini"
language = "pt"

[persona]
name = "Iara"
partner = "Tomás"
system_prompt = "Você é a Iara."

[rubric]
version = "1"

[[rubric.dimensions]]
id = "D1"
name = "identidade"

[[rubric.dimensions]]
id = "D2"
name = "fatos"

[[rubric.dimensions]]
id = "D3"
name = "voz"

[[rubric.dimensions]]
id = "D4"
name = "limpeza"
auto_zero_phrases = ["</s>"]
auto_zero_regexes = ['(?m)^#+\s']

[[rubric.dimensions]]
id = "D5"
name = "qualidade"

[[questions]]
id = "Q1"
text = "Quem é o Tomás?"
facts = [["desenvolvedor"], ["Belo Horizonte", "BH"]]
"#;

fn parse(text: &str) -> Result<Suite, SuiteError> {
    Suite::from_toml_str(text, Path::new("suites/mini.toml"))
}

fn problem(text: &str) -> SuiteProblem {
    match parse(text) {
        Err(SuiteError::Invalid { problem, .. }) => problem,
        other => panic!("expected an invalid suite, got {other:?}"),
    }
}

#[test]
fn minimal_suite_gets_defaults() {
    let suite = parse(MINIMAL).unwrap();
    assert_eq!(suite.language, Language::Pt);
    let d1 = suite.rubric.dimension("d1").unwrap();
    assert_eq!((d1.min, d1.max, d1.weight), (0, 2, 1.0));
    assert_eq!(suite.rubric.question_max(), 10.0);
    assert_eq!(suite.rules.auto_zero_scope, AutoZeroScope::Answer);
    assert_eq!(suite.rules.dimensions[3].auto_zero.len(), 2);
    let checks: Vec<Option<Check>> = suite.rules.dimensions.iter().map(|d| d.check).collect();
    let defaults = [Check::Identity, Check::Facts, Check::Voice, Check::Cleanliness, Check::Quality];
    assert_eq!(checks, defaults.map(Some));
    let q = &suite.questions[0];
    assert_eq!(q.min_facts, 2);
    assert_eq!((q.min_words, q.max_words), (12, 220));
    assert_eq!(suite.rules.cleanliness.bleed_ngram, 10);
}

#[test]
fn bundled_suite_parses_with_eight_questions() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1/suite.toml");
    let suite = Suite::load(&path).unwrap();
    assert_eq!(suite.name, "persona-v1");
    assert_eq!(suite.questions.len(), 8);
    let prompt = suite.system_prompt.as_deref().unwrap();
    assert!(prompt.lines().count() >= 4);
    assert!(!prompt.contains('\\'));
    assert_eq!(suite.persona.as_ref().map(|p| p.system_prompt.as_str()), Some(prompt));
}

#[test]
fn unknown_keys_are_errors_naming_key_and_file() {
    let cases = [
        MINIMAL.replace("name = \"mini\"", "name = \"mini\"\nlanguag = \"pt\""),
        MINIMAL.replace("facts = ", "flase_claims = []\nfacts = "),
        MINIMAL.replace("name = \"fatos\"", "name = \"fatos\"\nmaximum = 3"),
        MINIMAL.replace("version = \"1\"", "version = \"1\"\n[rubric.quality]\nmin_word = 3"),
    ];
    for (text, key) in cases.iter().zip(["languag", "flase_claims", "maximum", "min_word"]) {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("suites/mini.toml"), "{err}");
    }
}

#[test]
fn invalid_suites_are_rejected_with_the_problem() {
    let cases: Vec<(String, &str)> = vec![
        (MINIMAL.replace("\"pt\"", "\"es\""), "unsupported language \"es\""),
        (MINIMAL.replace("id = \"D5\"", "id = \"D-5\""), "dimension id \"D-5\" is not of the form"),
        (MINIMAL.replace("id = \"D5\"", "id = \"total\""), "dimension id \"total\" is reserved"),
        (MINIMAL.replace("id = \"D5\"", "id = \"d4\""), "dimension d4 appears twice"),
        (MINIMAL.replace("name = \"qualidade\"", "name = \"qualidade\"\nmin = 2"), "D5 has min 2 not below max 2"),
        (MINIMAL.replace("name = \"qualidade\"", "name = \"qualidade\"\nweight = -1.0"), "D5 has weight -1"),
        (MINIMAL.replace(r"'(?m)^#+\s'", "'(unclosed'"), "invalid auto-zero regex \"(unclosed\""),
        (MINIMAL.replace("facts = ", "min_facts = 3\nfacts = "), "min_facts = 3 but lists 2"),
        (MINIMAL.replace("[\"desenvolvedor\"]", "[\" \"]"), "empty fact group at position 0"),
        (format!("{MINIMAL}\n[[questions]]\nid = \"Q1\"\ntext = \"de novo\""), "\"Q1\" is defined twice"),
        (
            MINIMAL.replace("facts = ", "min_words = 50\nmax_words = 40\nfacts = "),
            "length band 50..40 words of question Q1",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("invalid eval suite suites/mini.toml: "), "{err}");
        assert!(err.contains(expected), "{err:?} lacks {expected:?}");
    }
}

/// A suite of another kind of assistant, the bundled example with no persona (three weighted 0–5 dimensions).
pub(crate) const SQL_SUITE: &str = include_str!("../../../datasets/sql-assistant/suite.toml");

#[test]
fn suite_without_persona_owns_its_dimensions() {
    let suite = parse(SQL_SUITE).unwrap();
    assert!(suite.persona.is_none());
    assert_eq!(suite.system_prompt.as_deref(), Some("You write PostgreSQL queries for the analytics team."));
    let ids: Vec<&str> = suite.rubric.dimensions().iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["correctness", "executes", "style"]);
    assert_eq!(suite.rubric.question_max(), 20.0);
    assert_eq!(suite.rules.dimensions[1].check, Some(Check::Cleanliness));
}

#[test]
fn persona_checks_need_a_persona_and_unchecked_dimensions_are_not_rules_scored() {
    let voice = SQL_SUITE.replace("check = \"quality\"", "check = \"voice\"");
    assert!(matches!(problem(&voice), SuiteProblem::CheckNeedsPersona { id, .. } if id == "style"));
    let unchecked = SQL_SUITE.replace("check = \"quality\"", "");
    let suite = parse(&unchecked).unwrap();
    assert_eq!(suite.rules.dimensions[2].check, None);
    let err = crate::check_rules(&suite).unwrap_err().to_string();
    assert!(err.contains("dimension style of suite sql-assistant has no rules check"), "{err}");
}

#[test]
fn digest_follows_the_file_text() {
    let a = parse(MINIMAL).unwrap();
    let b = parse(&MINIMAL.replace("name = \"mini\"", "name = \"mini\"  # renamed")).unwrap();
    assert!(a.digest.starts_with("sha256:"));
    assert_ne!(a.digest, b.digest);
}

#[test]
fn load_names_a_missing_file() {
    let err = Suite::load(Path::new("no/such/suite.toml")).unwrap_err().to_string();
    assert!(err.starts_with("failed to read eval suite no/such/suite.toml"), "{err}");
}
