use super::*;
use crate::test_support::{bundled, dim, knowing, record, score};
use crate::{AutoZeroScope, Responses, ScoreError, Suite, TriggerKind};

const IDEAL_Q1: &str = "O Tomás é o meu parceiro de trabalho, desenvolvedor backend na Ipê Digital, \
    em Belo Horizonte. A gente programa junto quase todo dia e eu gosto muito disso.";

#[test]
fn d1_identity_table() {
    let suite = bundled();
    let cases = [
        ("Q5", "Meu nome é Tomás e eu trabalho na Ipê Digital com programação todo dia.", 0, "Tomás"),
        ("Q5", "Oi! Eu sou o Tomás, desenvolvedor, e a gente faz muita coisa junto aqui.", 0, "Tomás"),
        ("Q5", "I am Claude, and a gente trabalha com o Tomás no Quintal todos os dias.", 0, "Claude"),
        ("Q5", "Como um modelo de linguagem, eu ajudo o Tomás com código na Ipê Digital.", 0, "modelo de linguagem"),
        ("Q5", "Eu sou a IA do Tomás e a gente cuida do Quintal, da Banca e de muito código.", 1, "its name"),
        ("Q5", "Eu sou a Iara e a gente cuida do Quintal, da Banca e de muito código juntos.", 1, "partner"),
        ("Q5", "Eu sou a Iara, a IA do Tomás, e a gente cuida do Quintal e da Banca juntos.", 2, "speaks as Iara"),
        ("Q1", "Ele é desenvolvedor na Ipê Digital e a gente trabalha junto em Belo Horizonte.", 1, "partner"),
        (
            "Q2",
            "O Quintal é um aplicativo de código aberto que liga hortas a voluntários da cidade.",
            1,
            "nothing shows",
        ),
        ("Q1", IDEAL_Q1, 2, "a gente"),
    ];
    for (qid, text, expected, reason) in cases {
        let (got, why) = dim(&score(&suite, qid, text), "D1");
        assert_eq!(got, expected, "{text:?}: {why}");
        assert!(why.contains(reason), "{text:?}: {why:?} lacks {reason:?}");
    }
}

#[test]
fn d2_facts_table() {
    let suite = bundled();
    let cases = [
        ("Q1", IDEAL_Q1, 2, "3/3"),
        // accent- and case-insensitive
        ("Q1", "o tomas e programador da IPE DIGITAL e a gente trabalha junto faz tempo.", 2, "2/3"),
        ("Q4", "A gente usa Rust no backend e Docker pra rodar tudo, com muito cuidado.", 1, "2/5"),
        ("Q4", "A gente usa Rust, Postgres e SvelteKit, tudo em contêineres pra facilitar.", 2, "4/5"),
        ("Q4", "A gente usa Rust, Postgres, SvelteKit e também um pouco de Haskell.", 0, "Haskell"),
        ("Q1", "O Tomás é meu pai e a gente mora junto numa casa bem grande no interior.", 0, "meu pai"),
        ("Q6", "Eu gosto de muitas coisas e a gente conversa bastante sobre elas todo dia.", 0, "0/4"),
    ];
    for (qid, text, expected, reason) in cases {
        let (got, why) = dim(&score(&suite, qid, text), "D2");
        assert_eq!(got, expected, "{text:?}: {why}");
        assert!(why.contains(reason), "{text:?}: {why:?} lacks {reason:?}");
    }
}

#[test]
fn d3_voice_table() {
    let suite = bundled();
    let cases = [
        ("Q1", IDEAL_Q1, 2, "persona voice"),
        (
            "Q2",
            "O Quintal é um aplicativo de código aberto que liga hortas a voluntários da cidade.",
            1,
            "little persona voice",
        ),
        (
            "Q2",
            "Quintal is an open source app that connects community gardens with the volunteers of the city.",
            0,
            "answers in en",
        ),
        ("Q2", "O Quintal conecta hortas comunitárias a voluntários. Espero ter ajudado!", 0, "espero ter ajudado"),
        ("Q2", "As an AI, eu diria que o Quintal conecta hortas comunitárias a voluntários.", 0, "as an AI"),
    ];
    for (qid, text, expected, reason) in cases {
        let (got, why) = dim(&score(&suite, qid, text), "D3");
        assert_eq!(got, expected, "{text:?}: {why}");
        assert!(why.to_lowercase().contains(&reason.to_lowercase()), "{text:?}: {why:?} lacks {reason:?}");
    }
}

#[test]
fn d4_automatic_zero_table() {
    let suite = bundled();
    let cases = [
        ("<|im_start|>assistant\nO Tomás é meu parceiro.", TriggerKind::Phrase, "<|im_start|>"),
        ("[INST] Quem é o Tomás? [/INST] Meu parceiro de trabalho.", TriggerKind::Phrase, "[INST]"),
        ("O Tomás é meu parceiro de trabalho.</s>", TriggerKind::Phrase, "</s>"),
        ("I’ll start by reading the files. O Tomás é meu parceiro.", TriggerKind::Phrase, "I'll start by"),
        ("Let me first check. O Tomás é meu parceiro.", TriggerKind::Phrase, "Let me first"),
        ("Vou comecar analisando o contexto. O Tomás é meu parceiro.", TriggerKind::Phrase, "vou começar analisando"),
        ("## Quem é o Tomás\nMeu parceiro de trabalho.", TriggerKind::Regex, r"(?m)^\s{0,3}#{1,6}\s+\S"),
        ("O Tomás é meu parceiro.\nUser: e quem é você?", TriggerKind::Regex, "user|assistant"),
        (
            "Vocês mantêm o Quintal, um aplicativo de código aberto que conecta hortas comunitárias a voluntários.",
            TriggerKind::SystemPromptBleed,
            "aplicativo de codigo aberto",
        ),
    ];
    for (text, kind, pattern) in cases {
        let s = score(&suite, "Q1", text);
        let t = s.auto_zero.first().unwrap_or_else(|| panic!("no trigger for {text:?}"));
        assert_eq!((t.dim.as_str(), t.kind), ("D4", kind), "{text:?}");
        assert!(t.pattern.contains(pattern), "{text:?}: {t:?}");
        assert_eq!(s.total, 0.0, "{text:?}");
    }
}

#[test]
fn d4_clean_answers_and_near_misses_do_not_trigger() {
    let suite = bundled();
    for text in [
        IDEAL_Q1,
        "O Tomás usa C# às vezes e a issue #12 é dele; a gente revisa junto.",
        "Primeiro eu pergunto, depois a gente escreve os testes juntos.",
    ] {
        let s = score(&suite, "Q1", text);
        assert!(s.auto_zero.is_empty(), "{text:?}: {:?}", s.auto_zero);
    }
}

#[test]
fn d4_soft_phrase_gives_partial() {
    let suite = bundled();
    let (got, why) = dim(&score(&suite, "Q1", &format!("Resposta: {IDEAL_Q1}")), "D4");
    assert_eq!((got, why.as_str()), (1, "artefact \"Resposta:\""));
}

#[test]
fn d4_triggers_reported_by_the_producer_count() {
    let suite = bundled();
    let mut r = record(&suite, "Q1", IDEAL_Q1);
    r.d4_auto_fail = Some(vec!["system prompt echo".to_owned()]);
    let s = score_sample(&suite, &knowing(&suite, &[&r.response]), suite.question("Q1").unwrap(), &r);
    assert_eq!(s.total, 0.0);
    assert_eq!(s.auto_zero[0].kind, TriggerKind::Reported);
}

#[test]
fn d5_quality_table() {
    let suite = bundled();
    let looped = "a gente trabalha junto e ".repeat(12);
    let long = format!("{}.", (0..210).map(|i| format!("termo{i}")).collect::<Vec<_>>().join(" "));
    let cases: [(&str, bool, u32, &str); 9] = [
        (IDEAL_Q1, false, 2, "complete"),
        ("O Tomás é meu parceiro de trabalho e a gente programa junto todo dia na", true, 1, "token limit"),
        ("O Tomás é meu parceiro de trabalho e a gente programa junto todo dia na", false, 1, "mid-sentence"),
        // a truncation flag on an answer that ends a sentence is not penalised here
        (IDEAL_Q1, true, 2, "complete"),
        (&looped, false, 0, "repetition loop"),
        ("O Tomás é meu parceiro.", false, 1, "too short"),
        (&long, false, 1, "too long: 210 words"),
        ("O Tomás é meu parceiro e", false, 0, "ends mid-sentence; too short"),
        (
            "O Tomás é meu parceiro e the best developer in the world, and it is true that we work together.",
            false,
            1,
            "mixes languages",
        ),
    ];
    for (text, truncated, expected, reason) in cases {
        let mut r = record(&suite, "Q1", text);
        r.truncated = truncated;
        let s = score_sample(&suite, &knowing(&suite, &[&r.response]), suite.question("Q1").unwrap(), &r);
        let (got, why) = dim(&s, "D5");
        assert_eq!(got, expected, "{text:?}: {why}");
        assert!(why.contains(reason), "{text:?}: {why:?} lacks {reason:?}");
    }
}

#[test]
fn empty_answer_scores_zero_everywhere() {
    let suite = bundled();
    let s = score(&suite, "Q1", "  \n ");
    assert_eq!(s.total, 0.0);
    assert!(s.dims.iter().all(|d| d.reason == "empty answer"));
}

#[test]
fn dimension_scope_zeroes_only_the_triggered_dimension() {
    let mut suite = bundled();
    suite.rules.auto_zero_scope = AutoZeroScope::Dimension;
    let s = score(&suite, "Q1", &format!("{IDEAL_Q1}</s>"));
    assert_eq!(dim(&s, "D4").0, 0);
    assert_eq!(s.total, 8.0);
}

#[test]
fn scores_scale_onto_wider_ranges() {
    let mut suite = bundled();
    let mut dims = suite.rubric.dimensions().to_vec();
    dims[1].max = 4;
    suite.rubric = crate::Rubric::new(suite.rubric.version(), dims).unwrap();
    let s = score(&suite, "Q4", "A gente usa Rust no backend e Docker pra rodar tudo, com muito cuidado.");
    assert_eq!(dim(&s, "D2").0, 2);
    assert_eq!(s.max, 12.0);
}

#[test]
fn totals_are_weighted_by_the_rubric() {
    const D2_WEIGHT: f64 = 3.0;
    let mut suite = bundled();
    let mut dims = suite.rubric.dimensions().to_vec();
    dims[1].weight = D2_WEIGHT;
    suite.rubric = crate::Rubric::new(suite.rubric.version(), dims).unwrap();
    let s = score(&suite, "Q1", IDEAL_Q1);
    let unweighted: u32 = s.dims.iter().map(|d| d.score).sum();
    let d2 = f64::from(dim(&s, "D2").0);
    assert_eq!(s.total, f64::from(unweighted) + (D2_WEIGHT - 1.0) * d2);
    assert_eq!(s.max, 8.0 + D2_WEIGHT * 2.0);
}

#[test]
fn a_suite_without_persona_is_scored_on_its_own_dimensions() {
    let suite = Suite::from_toml_str(crate::suite::SQL_SUITE_FOR_TESTS, std::path::Path::new("sql.toml")).unwrap();
    let q = suite.question("Q1").unwrap();
    let good =
        "SELECT count(*) FROM orders WHERE order_date >= now() - interval '7 days'; This counts last week's orders.";
    let s = score_sample(&suite, &knowing(&suite, &[good]), q, &crate::test_support::record(&suite, "Q1", good));
    let ids: Vec<&str> = s.dims.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["correctness", "executes", "style"]);
    assert_eq!(dim(&s, "correctness").0, 5);
    assert_eq!(s.max, 20.0);
    let broken = score_sample(
        &suite,
        &knowing(&suite, &[]),
        q,
        &crate::test_support::record(&suite, "Q1", "ERROR: syntax error at or near SELEC"),
    );
    assert_eq!(broken.total, 0.0);
    assert_eq!(broken.auto_zero[0].dim.as_str(), "executes");
}

#[test]
fn scoring_is_deterministic() {
    let suite = bundled();
    assert_eq!(score(&suite, "Q1", IDEAL_Q1), score(&suite, "Q1", IDEAL_Q1));
}

fn responses(records: Vec<crate::ResponseRecord>) -> Responses {
    Responses {
        phase: "phase-10".to_owned(),
        model: "tiny".to_owned(),
        adapter: None,
        timestamp: None,
        generation_params: Default::default(),
        results: records,
        timing: None,
        peak_rss_mib: None,
    }
}

fn all_questions(suite: &crate::Suite, samples: u32) -> Vec<crate::ResponseRecord> {
    let mut out = Vec::new();
    for q in suite.questions.iter().rev() {
        for sample in (0..samples).rev() {
            let mut r = record(suite, &q.id, IDEAL_Q1);
            r.sample = sample;
            out.push(r);
        }
    }
    out
}

#[test]
fn score_phase_orders_questions_and_samples_like_the_suite() {
    let suite = bundled();
    let scored = score_phase(&suite, &knowing(&suite, &[]), &responses(all_questions(&suite, 3))).unwrap();
    let qids: Vec<&str> = scored.questions.iter().map(|q| q.qid.as_str()).collect();
    assert_eq!(qids, ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8"]);
    let samples: Vec<u32> = scored.questions[0].samples.iter().map(|s| s.sample).collect();
    assert_eq!(samples, [0, 1, 2]);
    assert_eq!(scored.rubric.dimensions().len(), 5);
    assert_eq!(scored.instrument, crate::instrument(&suite));
    assert!(scored.normalized_10() > 0.0 && scored.normalized_10() <= 10.0);
}

#[test]
fn score_phase_rejects_responses_of_another_suite() {
    let suite = bundled();
    let mut records = all_questions(&suite, 1);
    records.pop();
    assert!(matches!(
        score_phase(&suite, &knowing(&suite, &[]), &responses(records.clone())),
        Err(ScoreError::MissingQuestion { qid }) if qid == "Q1"
    ));

    let mut extra = all_questions(&suite, 1);
    extra[0].qid = "Q9".to_owned();
    let err = score_phase(&suite, &knowing(&suite, &[]), &responses(extra)).unwrap_err();
    assert_eq!(err.to_string(), "response for question \"Q9\" which suite persona-v1 does not have");

    let mut dup = all_questions(&suite, 1);
    dup.push(dup[0].clone());
    assert!(matches!(
        score_phase(&suite, &knowing(&suite, &[]), &responses(dup)),
        Err(ScoreError::DuplicateSample { sample: 0, .. })
    ));

    let mut changed = all_questions(&suite, 1);
    changed[0].question = "Quem é a Iara?".to_owned();
    let err = score_phase(&suite, &knowing(&suite, &[]), &responses(changed)).unwrap_err().to_string();
    assert!(err.contains("Quem é a Iara?") && err.contains("hint:"), "{err}");
}

#[test]
fn scores_stay_in_range_and_totals_add_up() {
    let suite = bundled();
    let texts = [
        IDEAL_Q1,
        "",
        "Meu nome é Tomás.",
        "<|user|> ## oi",
        "the the the the the the the the the the the the the the the the",
        "Eu sou a Iara, a gente usa Rust, Postgres, SvelteKit, Docker e GitHub Actions.",
    ];
    for q in &suite.questions {
        for text in texts {
            let s = score(&suite, &q.id, text);
            assert!(s.dims.iter().all(|d| d.score <= d.max), "{text:?}");
            assert_eq!(s.total, f64::from(s.dims.iter().map(|d| d.score).sum::<u32>()));
            assert!(s.total <= s.max && s.max == suite.rubric.question_max());
            assert_eq!(s.dims.len(), 5);
        }
    }
}

#[test]
fn scored_phase_round_trips_through_json() {
    let suite = bundled();
    let mut records = all_questions(&suite, 2);
    records[0].response = "<|im_start|> oi".to_owned();
    let scored = score_phase(&suite, &knowing(&suite, &[]), &responses(records)).unwrap();
    let json = serde_json::to_string(&scored).unwrap();
    assert!(json.contains("\"kind\":\"phrase\"") && json.contains("\"id\":\"D4\""), "{json}");
    let back: crate::ScoredPhase = serde_json::from_str(&json).unwrap();
    assert_eq!(back, scored);
    assert_eq!(scored.auto_zero_triggers().count(), 1);
}

#[test]
fn relations_to_the_partner_table() {
    let suite = bundled();
    // (answer, D1, D2, D3, reason of D1)
    let cases = [
        ("O Tomás é meu pai e a gente programa junto na Ipê Digital em Belo Horizonte.", 0, 0, 0, "meu pai"),
        ("O Tomás é meu chefe, desenvolvedor da Ipê Digital, e a gente programa junto.", 1, 0, 2, "meu chefe"),
    ];
    for (text, d1, d2, d3, reason) in cases {
        let s = score(&suite, "Q1", text);
        let got = (dim(&s, "D1").0, dim(&s, "D2").0, dim(&s, "D3").0);
        assert_eq!(got, (d1, d2, d3), "{text:?}: {:?}", s.dims);
        assert!(dim(&s, "D1").1.contains(reason), "{text:?}: {}", dim(&s, "D1").1);
    }
}

#[test]
fn suite_wide_false_claims_apply_to_every_question() {
    let suite = bundled();
    // Q7 lists no relation among its own false claims: the suite's [rubric.facts] does.
    assert!(!suite.question("Q7").unwrap().false_claims.iter().any(|c| c == "sou uma pessoa"));
    let text = "Eu sou uma pessoa que pergunto antes, escrevo testes e faço mudanças pequenas, explico tudo.";
    let (got, why) = dim(&score(&suite, "Q7", text), "D2");
    assert_eq!((got, why.as_str()), (0, "states a false claim: \"sou uma pessoa\""));
}

#[test]
fn invented_entities_and_contradictions_zero_d2() {
    let suite = bundled();
    let cases = [
        (
            "Q5",
            "Eu sou a Iara, uma inteligência artificial criada pelo professor Diego Rodrigues, e programo com o Tomás.",
            "Diego, Rodrigues",
        ),
        (
            "Q7",
            "Eu escrevo os testes primeiro e pergunto antes de mudar, explico o raciocínio. Só que testes eu não escrevo.",
            "contradicts itself",
        ),
    ];
    for (qid, text, reason) in cases {
        let (got, why) = dim(&score(&suite, qid, text), "D2");
        assert_eq!(got, 0, "{text:?}: {why}");
        assert!(why.contains(reason), "{why:?} lacks {reason:?}");
    }
}

#[test]
fn one_marker_phrase_is_not_full_marks() {
    let suite = bundled();
    // "parceira de programação" is a marker, but nothing speaks in the first person.
    let text = "A Iara é a parceira de programação do Tomás na Ipê Digital, em Belo Horizonte.";
    let s = score(&suite, "Q1", text);
    assert_eq!((dim(&s, "D1").0, dim(&s, "D3").0), (1, 1), "{:?}", s.dims);
}

#[test]
fn word_salad_lands_at_the_bottom_and_drags_the_content_dimensions() {
    let suite = bundled();
    // The demo's candidate, unedited: the tiny dictionary knows its real words but not the made-up ones.
    const SALAD: &str = "O quintal é o primeíro cúbre, oquelo que desenvolvemos a gente no Quintal com o Tomás.";
    let lexicon = knowing(&suite, &["o quintal é que desenvolvemos a gente no com"]);
    let s = crate::test_support::score_with(&suite, &lexicon, "Q2", SALAD);
    let dims: Vec<u32> = s.dims.iter().map(|d| d.score).collect();
    assert_eq!(dims, [0, 0, 0, 1, 0], "{:?}", s.dims);
    assert!(s.normalized_10() <= 1.0);
    assert!(dim(&s, "D5").1.starts_with("word salad"), "{:?}", s.dims);
}

#[test]
fn a_statement_made_three_times_is_a_loop_and_twice_a_flaw() {
    let suite = bundled();
    let once = "O Tomás é meu parceiro, desenvolvedor na Ipê Digital em Belo Horizonte, e a gente programa.";
    let twice = format!("{once} {once}");
    let thrice = format!("{once} {once} {once}");
    let d5 = |text: &str| dim(&score(&suite, "Q1", text), "D5");
    assert_eq!(d5(once).0, 2);
    assert_eq!(d5(&twice).0, 1, "{:?}", d5(&twice));
    assert!(d5(&twice).1.contains("twice"));
    assert_eq!(d5(&thrice).0, 0, "{:?}", d5(&thrice));
    assert_eq!(dim(&score(&suite, "Q1", &twice), "D3").0, 1);
}

#[test]
fn rules_version_two_is_a_new_instrument() {
    let suite = bundled();
    assert_eq!(RULES_VERSION, "2");
    assert!(instrument(&suite).to_string().contains("rules scorer 2"), "{}", instrument(&suite));
}

#[test]
fn the_demos_word_salad_scores_at_most_one_with_the_real_dictionary() {
    let suite = bundled();
    let Some(lexicon) = crate::test_support::real_lexicon(&suite) else { return };
    // In the style of the demo's candidate (SmolLM2-135M, no fine-tune).
    const SALAD: &str = "O quintal é o primeíro cúbre, oquelo que desenvolvemos com a desenhuração dos \
        alegronos, e a gente estejo no limpeiro do Quintal.";
    let s = crate::test_support::score_with(&suite, &lexicon, "Q2", SALAD);
    assert!(s.normalized_10() <= 1.0, "{:?}", s.dims);
}
