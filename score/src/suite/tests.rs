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
    let d1 = suite.rubric.dimension(DimId::D1);
    assert_eq!((d1.min, d1.max), (0, 2));
    assert_eq!(suite.rubric.max_total(), 10);
    assert_eq!(suite.rubric.auto_zero_scope, AutoZeroScope::Answer);
    assert_eq!(suite.rubric.dimension(DimId::D4).auto_zero.len(), 2);
    let q = &suite.questions[0];
    assert_eq!(q.min_facts, 2);
    assert_eq!((q.min_words, q.max_words), (12, 220));
    assert_eq!(suite.rubric.cleanliness.bleed_ngram, 10);
}

#[test]
fn bundled_suite_parses_with_eight_questions() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/persona-v1/suite.toml");
    let suite = Suite::load(&path).unwrap();
    assert_eq!(suite.name, "persona-v1");
    assert_eq!(suite.questions.len(), 8);
    assert!(suite.persona.system_prompt.lines().count() >= 4);
    assert!(!suite.persona.system_prompt.contains('\\'));
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
        (MINIMAL.replace("id = \"D5\"", "id = \"D6\""), "unknown rubric dimension \"D6\""),
        (MINIMAL.replace("id = \"D5\"", "id = \"D4\""), "rubric dimension D4 is defined twice"),
        (MINIMAL.replace("name = \"qualidade\"", "name = \"qualidade\"\nmin = 2"), "D5 has min 2 not below max 2"),
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

#[test]
fn missing_dimension_is_named() {
    let text = MINIMAL.replace("[[rubric.dimensions]]\nid = \"D3\"\nname = \"voz\"\n", "");
    assert!(matches!(problem(&text), SuiteProblem::MissingDimension { id } if id == "D3"));
}

#[test]
fn load_names_a_missing_file() {
    let err = Suite::load(Path::new("no/such/suite.toml")).unwrap_err().to_string();
    assert!(err.starts_with("failed to read eval suite no/such/suite.toml"), "{err}");
}
