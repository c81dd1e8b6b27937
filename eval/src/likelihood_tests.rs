//! `Engine::log_probs` over the tiny random model: teacher-forced log-probabilities are the
//! log-softmax of the very logits the generator samples from.

use crate::engine::Kernels;
use crate::model::llama::Llama;
use crate::tests::last_logits;
use crate::tiny::write_tiny_gguf;
use crate::{Engine, ModelSpec, Prompt, ScoredText, TextContext};
use candle_core::Device;
use std::path::Path;

/// Step-by-step decoding and one full pass differ only by rounding (of the f16 KV cache here).
const LOG_PROB_TOLERANCE: f64 = 2e-3;
/// With an f32 cache only the order of f32 sums differs.
const EXACT_CACHE_TOLERANCE: f64 = 1e-4;
const ANSWER: &str = "O João é o meu amigo e mora em São Paulo.";

fn engine(path: &Path, kernels: Kernels) -> Engine {
    let spec = ModelSpec { reference: path.to_string_lossy().into_owned(), ..ModelSpec::default() };
    Engine::load_path_with(path, &spec, Device::Cpu, kernels).unwrap()
}

fn question() -> Prompt {
    Prompt { qid: "Q1".into(), system: Some("Você é a Lia.".into()), user: "Quem é o João?".into() }
}

fn texts() -> Vec<ScoredText> {
    vec![
        ScoredText { context: TextContext::Answer(question()), text: ANSWER.into() },
        ScoredText { context: TextContext::Plain, text: ANSWER.into() },
        ScoredText { context: TextContext::Answer(question()), text: "feijão pão avó".into() },
        ScoredText { context: TextContext::Plain, text: String::new() },
    ]
}

/// The generator's logits after `ids`, from one plain forward pass, as log-softmax.
fn log_softmax_after(model: &Llama, ids: &[u32]) -> Vec<f64> {
    let logits: Vec<f32> = last_logits(model, ids).to_vec2().unwrap().remove(0);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln();
    logits.iter().map(|&l| l as f64 - max - log_sum).collect()
}

#[test]
fn log_probs_are_the_log_softmax_of_the_generators_logits_for_each_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&write_tiny_gguf(dir.path()), Kernels::Candle { pad_to: 1 });
    let scored = engine.log_probs(&texts()).unwrap();
    let (llama, tokenizer, _) = engine.parts();
    let contexts = [
        tokenizer.encode(&engine.render(&question()).unwrap()).unwrap(),
        vec![tokenizer.bos.expect("the tiny model has a BOS token")],
    ];
    for (scored, context) in scored.iter().zip(&contexts) {
        assert_eq!(scored.tokens, tokenizer.encode_text(ANSWER).unwrap());
        for (t, (&token, &lp)) in scored.tokens.iter().zip(&scored.log_probs).enumerate() {
            let prefix: Vec<u32> = context.iter().chain(&scored.tokens[..t]).copied().collect();
            let expected = log_softmax_after(llama, &prefix)[token as usize];
            assert!((lp - expected).abs() < LOG_PROB_TOLERANCE, "token {t}: {lp} vs {expected}");
        }
    }
}

#[test]
fn log_probs_are_finite_non_positive_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&write_tiny_gguf(dir.path()), Kernels::Candle { pad_to: 1 });
    // Exact f32 cache: batched or alone, with or without a shared prefix, only the split of the
    // attention sums differs.
    engine.model_mut().cfg.kv_dtype = candle_core::DType::F32;
    let first = engine.log_probs(&texts()).unwrap();
    assert_eq!(first, engine.log_probs(&texts()).unwrap());
    for scored in &first[..3] {
        assert_eq!(scored.log_probs.len(), scored.tokens.len());
        assert!(!scored.tokens.is_empty());
        assert!(scored.log_probs.iter().all(|lp| lp.is_finite() && *lp <= 0.0), "{:?}", scored.log_probs);
        assert!(scored.mean_nll().is_some_and(|nll| nll >= 0.0));
    }
    // An empty text has nothing to score.
    assert!(first[3].tokens.is_empty() && first[3].mean_nll().is_none());
    // Scored one by one or in a batch, each text gets the same figures up to rounding.
    let alone = engine.log_probs(&texts()[2..3]).unwrap();
    for (a, b) in alone[0].log_probs.iter().zip(&first[2].log_probs) {
        assert!((a - b).abs() < EXACT_CACHE_TOLERANCE, "{a} vs {b}");
    }
}

#[test]
fn our_kernels_score_like_candles() {
    if !crate::native::simd::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf(dir.path());
    let candle = engine(&path, Kernels::Candle { pad_to: 1 }).log_probs(&texts()).unwrap();
    let ours = engine(&path, Kernels::Native { pad_to: 1 });
    assert!(!ours.is_candle(), "the tiny Q8_0 model should run on our kernels");
    for (a, b) in ours.log_probs(&texts()).unwrap().iter().zip(&candle) {
        assert_eq!(a.tokens, b.tokens);
        // Our kernels quantise activations to 8 bits: close, not equal.
        let mean = |s: &crate::TextLogProbs| s.mean_nll().unwrap_or(0.0);
        assert!((mean(a) - mean(b)).abs() < 0.05, "{} vs {}", mean(a), mean(b));
    }
}

/// Answers of the training labels (`datasets/persona-v1/labels/train.json`): r002 (`excellent`)
/// and r058 (`gibberish`, pseudo-Portuguese), to Q3 of the bundled suite.
const EXCELLENT: &str = "A Banca é o sistema que a Ipê Digital faz para feiras de produtores rurais. Ela cuida do \
    cadastro dos feirantes, recebe os pedidos, processa os pagamentos por Pix e gera relatórios de vendas no fim do dia.";
const PSEUDO: &str =
    "A Bânca fáz u quê? Elá pagâmo u feirânte cum lubrâ, trênsio, dô relatôrio pixâdo mánu quêla vindô.";
/// Measured on the training labels: prose ≈ 3.6 nats per token as the answer turn, pseudo-Portuguese ≈ 6.6.
const PSEUDO_NLL_MARGIN: f64 = 1.5;

#[test]
fn real_smollm2_if_cached_finds_prose_likelier_than_pseudo_language_and_its_own_words_shuffled() {
    if cfg!(debug_assertions) {
        eprintln!("skipped: debug build (candle is too slow unoptimised); run it with `cargo test --release`");
        return;
    }
    let Ok(path) = crate::resolve("smollm2-135m-instruct", &crate::default_cache_dir()) else {
        assert!(
            std::env::var_os("PHASEGATE_REQUIRE_REAL_MODEL").is_none(),
            "smollm2-135m-instruct is not in the model cache but PHASEGATE_REQUIRE_REAL_MODEL is set"
        );
        eprintln!(
            "skipped: smollm2-135m-instruct is not in the model cache (run `phasegate models pull smollm2-135m-instruct`)"
        );
        return;
    };
    let engine = Engine::load_path(&path, &ModelSpec::default()).unwrap();
    let q3 = Prompt { qid: "Q3".into(), system: Some("Você é a Iara.".into()), user: "O que é a Banca?".into() };
    let answers = [(q3.clone(), EXCELLENT.to_owned()), (q3, PSEUDO.to_owned())];
    let figures = crate::measure_fluency(&engine, &answers).unwrap();
    let (prose, pseudo) = (figures[0].unwrap(), figures[1].unwrap());
    assert!(prose.answer_nll + PSEUDO_NLL_MARGIN < pseudo.answer_nll, "{prose:?} vs {pseudo:?}");
    assert!(prose.order_gain() > 0.5 && prose.answer_order_gain() > 0.5, "{prose:?}");
    assert_eq!(figures, crate::measure_fluency(&engine, &answers).unwrap());
}
