use super::*;
use crate::test_support::bundled;

/// A tiny Portuguese dictionary: enough words for the unit tests' answers, no affixes.
pub(crate) const TINY_AFF: &str = "SET UTF-8\n";
pub(crate) const TINY_DIC: &str = "\
40
a
o
é
e
eu
de
do
da
com
em
no
na
um
uma
que
sou
meu
minha
parceiro
trabalho
gente
nosso
projeto
ele
ela
quem
código
testes
escrever
gosto
muito
sobre
dia
todo
trabalhamos
juntos
para
não
mais
";

pub(crate) fn tiny(suite: &Suite) -> Lexicon {
    Lexicon::from_hunspell(TINY_AFF, TINY_DIC, suite).expect("tiny dictionary")
}

#[test]
fn knows_dictionary_words_in_any_case_and_suite_names() {
    let lexicon = tiny(&bundled());
    let cases = [("código", true), ("Código", true), ("Quintal", true), ("quintal", true), ("SvelteKit", true)];
    let unknown = [("cúbre", false), ("oquelo", false), ("primeíro", false)];
    for (word, expected) in cases.into_iter().chain(unknown) {
        assert_eq!(lexicon.knows(word), expected, "{word}");
    }
}

#[test]
fn vocabulary_has_the_suites_words_and_names_but_not_its_anchors() {
    let lexicon = tiny(&bundled());
    assert!(lexicon.vocabulary.contains("comunitárias") && lexicon.vocabulary.is_name("SvelteKit"));
    assert!(!lexicon.vocabulary.is_name("você"), "a capital at a sentence start is no name");
    assert!(!lexicon.vocabulary.contains("ChatGPT"), "anchors and markers of other identities are not suite words");
}

#[test]
fn load_names_the_pull_command_when_the_dictionary_is_missing() {
    let dir = std::env::temp_dir().join(format!("phasegate-no-dict-{}", std::process::id()));
    let err = Lexicon::load(&dir, &bundled()).unwrap_err().to_string();
    assert!(err.contains("phasegate models pull dictionary-pt"), "{err}");
    assert!(err.contains(&dir.join("dictionaries").join("pt").display().to_string()), "{err}");
}

#[test]
fn a_bad_dictionary_is_a_parse_error() {
    let err = Lexicon::from_hunspell("FLAG nonsense\n", "1\nx\n", &bundled()).unwrap_err();
    assert!(matches!(err, LexiconError::Parse { .. }), "{err}");
}
