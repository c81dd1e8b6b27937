//! Tests over tiny random models written at test time.

use crate::engine::Kernels;
use crate::model::llama::{Group, KvCache, Llama, logits_l1};
use crate::tiny::{TinyLora, TinyOptions, TinyVocab, write_tiny_gguf_with, write_tiny_lora, write_tiny_safetensors};
use crate::vocab::{SPM_SPACE, VocabSpec, byte_level_alphabet, tokenizer_json};
use crate::{Engine, EvalError, GenerationParams, ModelSpec, Prompt};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Tokenizer;

const PORTUGUESE: &str = "Quem é o João? A avó dele cozinha pão e feijão, à tarde. Ação!";
/// Logits of the same f32 weights through different layouts differ only by rounding.
const LOGIT_TOLERANCE: f32 = 1e-3;

fn spec_for(reference: &Path) -> ModelSpec {
    ModelSpec { reference: reference.to_string_lossy().into_owned(), ..ModelSpec::default() }
}

fn load(path: &Path, adapter: Option<&Path>) -> Result<Engine, EvalError> {
    let spec = ModelSpec { adapter: adapter.map(Path::to_path_buf), ..spec_for(path) };
    // candle's graph: these tests look inside it (`parts`); `native::tests` covers our kernels.
    Engine::load_path_with(path, &spec, Device::Cpu, Kernels::Candle { pad_to: 1 })
}

fn prompt(qid: &str, user: &str) -> Prompt {
    Prompt { qid: qid.into(), system: Some("Você é a Lia.".into()), user: user.into() }
}

/// Logits of the last position of `ids`, run as one sequence through the eval pass (the likelihood
/// and trainer tests compare against it too).
pub(crate) fn last_logits(model: &Llama, ids: &[u32]) -> Tensor {
    let n = ids.len();
    let device = Device::Cpu;
    let mut cache = KvCache::new(&model.cfg, 1, n, &device).unwrap();
    let tokens = Tensor::new(ids, &device).unwrap().unsqueeze(0).unwrap();
    let positions = Tensor::arange(0u32, n as u32, &device).unwrap().unsqueeze(0).unwrap();
    let mask: Vec<f32> = (0..n * n).map(|k| if k % n <= k / n { 0.0 } else { f32::NEG_INFINITY }).collect();
    let mask = Tensor::from_vec(mask, (1, 1, n, n), &device).unwrap();
    model.forward(&tokens, &positions, &mask, &mut cache).unwrap()
}

fn sample_ids(engine: &Engine) -> Vec<u32> {
    let (_, tokenizer, _) = engine.parts();
    tokenizer.encode(PORTUGUESE).unwrap()
}

fn tokenizer_of(spec: &VocabSpec) -> Tokenizer {
    tokenizer_json(spec).to_string().parse().unwrap()
}

/// Byte-level BPE as defined: apply the lowest-ranked merge present, repeatedly.
fn reference_bpe(word: &str, spec: &VocabSpec) -> Vec<u32> {
    let alphabet = byte_level_alphabet();
    let ranks: HashMap<&str, usize> = spec.merges.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let mut symbols: Vec<String> = word.bytes().map(|b| alphabet[b as usize].to_string()).collect();
    loop {
        let best = (0..symbols.len().saturating_sub(1))
            .filter_map(|i| ranks.get(format!("{} {}", symbols[i], symbols[i + 1]).as_str()).map(|r| (*r, i)))
            .min();
        let Some((_, i)) = best else { break };
        let merged = format!("{}{}", symbols[i], symbols[i + 1]);
        symbols.splice(i..i + 2, [merged]);
    }
    symbols.iter().map(|s| spec.tokens.iter().position(|t| t == s).unwrap() as u32).collect()
}

/// SentencePiece BPE as llama.cpp runs it: merge the adjacent pair whose joined piece has the
/// highest score (leftmost on ties); characters outside the vocabulary become byte tokens.
fn reference_spm(text: &str, spec: &VocabSpec) -> Vec<u32> {
    let id = |s: &str| spec.tokens.iter().position(|t| t == s).filter(|&i| spec.token_types[i] == 1);
    let normalized = format!("{SPM_SPACE}{}", text.replace(' ', &SPM_SPACE.to_string()));
    let mut symbols: Vec<String> = normalized.chars().map(String::from).collect();
    loop {
        let best = (0..symbols.len().saturating_sub(1))
            .filter_map(|i| id(&format!("{}{}", symbols[i], symbols[i + 1])).map(|t| (spec.scores[t], i)))
            .fold(None::<(f32, usize)>, |acc, c| match acc {
                Some(a) if a.0 >= c.0 => Some(a),
                _ => Some(c),
            });
        let Some((_, i)) = best else { break };
        let merged = format!("{}{}", symbols[i], symbols[i + 1]);
        symbols.splice(i..i + 2, [merged]);
    }
    symbols
        .iter()
        .flat_map(|s| match id(s) {
            Some(t) => vec![t as u32],
            None => s.bytes().map(|b| id_of(spec, &format!("<0x{b:02X}>"))).collect(),
        })
        .collect()
}

fn id_of(spec: &VocabSpec, token: &str) -> u32 {
    spec.tokens.iter().position(|t| t == token).unwrap() as u32
}

#[test]
fn byte_level_tokenizer_matches_reference_bpe_and_round_trips_portuguese() {
    let spec = crate::tiny::vocab(TinyVocab::ByteLevel);
    let tokenizer = tokenizer_of(&spec);
    for word in ["Quem", " é", " João", " feijão", " avó", " família"] {
        let ids = tokenizer.encode(word, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, reference_bpe(word, &spec), "word {word:?}");
    }
    let ids = tokenizer.encode(PORTUGUESE, false).unwrap().get_ids().to_vec();
    assert!(ids.len() < PORTUGUESE.len(), "merges were applied");
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), PORTUGUESE);
}

#[test]
fn sentencepiece_tokenizer_matches_reference_and_uses_byte_fallback_for_accents() {
    let spec = crate::tiny::vocab(TinyVocab::SentencePiece);
    let tokenizer = tokenizer_of(&spec);
    for text in ["Quem e o Joao", "Quem é o João?", PORTUGUESE] {
        let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, reference_spm(text, &spec), "text {text:?}");
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), text);
    }
    let ids = tokenizer.encode("é", false).unwrap().get_ids().to_vec();
    let byte_tokens: Vec<u32> = "é".bytes().map(|b| id_of(&spec, &format!("<0x{b:02X}>"))).collect();
    assert!(ids.ends_with(&byte_tokens), "{ids:?}");
}

#[test]
fn gguf_metadata_tokenizer_equals_tokenizer_json_for_both_kinds() {
    for vocab in [TinyVocab::ByteLevel, TinyVocab::SentencePiece] {
        let dir = tempfile::tempdir().unwrap();
        let options = TinyOptions { vocab, ..TinyOptions::default() };
        let gguf = write_tiny_gguf_with(dir.path(), &options);
        let hf = write_tiny_safetensors(&dir.path().join("hf"), &options);
        let from_gguf = load(&gguf, None).unwrap();
        let from_json = load(&hf, None).unwrap();
        assert_eq!(sample_ids(&from_gguf), sample_ids(&from_json), "{vocab:?}");
    }
}

#[test]
fn chat_template_renders_system_user_and_generation_prompt_and_stops_on_end_token() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    let text = engine.render(&prompt("q1", "Olá?")).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nVocê é a Lia.<|im_end|>\n<|im_start|>user\nOlá?<|im_end|>\n<|im_start|>assistant\n"
    );
    let (_, tokenizer, stops) = engine.parts();
    assert!(stops.contains(&tokenizer.token_id("<|im_end|>").unwrap()));
    let ids = tokenizer.encode(&text).unwrap();
    assert_eq!(ids[0], tokenizer.token_id("<|im_start|>").unwrap(), "special tokens are matched");
}

#[test]
fn template_override_zephyr_replaces_the_models_template() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::tiny::write_tiny_gguf(dir.path());
    let spec = ModelSpec { template_override: Some("zephyr".into()), ..spec_for(&path) };
    let engine = Engine::load_path(&path, &spec).unwrap();
    let text = engine.render(&prompt("q1", "Oi")).unwrap();
    assert!(text.starts_with("<|system|>\nVocê é a Lia.<|im_end|>\n<|user|>\nOi"), "{text}");
    assert!(text.ends_with("<|assistant|>\n"));
    let bad = ModelSpec { template_override: Some("nope".into()), ..spec_for(&path) };
    assert!(matches!(Engine::load_path(&path, &bad), Err(EvalError::Template { .. })));
}

#[test]
fn gguf_with_permuted_qk_and_safetensors_give_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let options = TinyOptions { dtype: GgmlDType::F32, ..TinyOptions::default() };
    let gguf = load(&write_tiny_gguf_with(dir.path(), &options), None).unwrap();
    let hf = load(&write_tiny_safetensors(&dir.path().join("hf"), &options), None).unwrap();
    let ids = sample_ids(&hf);
    let diff = logits_l1(&last_logits(gguf.parts().0, &ids), &last_logits(hf.parts().0, &ids));
    assert!(diff < LOGIT_TOLERANCE, "max |Δlogit| = {diff}");
}

fn lora(dir: &Path, targets: &[&str], zero_b: bool) -> std::path::PathBuf {
    let lora = TinyLora { r: 4, alpha: 8.0, targets: targets.iter().map(|t| t.to_string()).collect(), zero_b, seed: 9 };
    write_tiny_lora(&dir.join("adapter"), &lora, TinyVocab::ByteLevel)
}

const ALL_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

#[test]
fn lora_with_zero_b_leaves_logits_identical_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = lora(dir.path(), &ALL_TARGETS, true);
    let gguf = write_tiny_gguf_with(dir.path(), &TinyOptions::default());
    let hf = write_tiny_safetensors(&dir.path().join("hf"), &TinyOptions::default());
    for path in [gguf, hf] {
        let base = load(&path, None).unwrap();
        let merged = load(&path, Some(&adapter)).unwrap();
        let ids = sample_ids(&base);
        let diff = logits_l1(&last_logits(base.parts().0, &ids), &last_logits(merged.parts().0, &ids));
        assert_eq!(diff, 0.0, "{}", path.display());
    }
}

#[test]
fn merged_lora_equals_explicit_lora_forward_on_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = lora(dir.path(), &ALL_TARGETS, false);
    let hf = write_tiny_safetensors(&dir.path().join("hf"), &TinyOptions::default());
    let merged = load(&hf, Some(&adapter)).unwrap();
    let mut explicit = load(&hf, None).unwrap();
    let pairs = crate::lora::load_pairs(&adapter).unwrap();
    let model = explicit.model_mut();
    for (index, layer) in model.layers.iter_mut().enumerate() {
        let (Group::Split([q, k, v]), Group::Split([gate, up])) = (&mut layer.qkv, &mut layer.gate_up) else {
            panic!("safetensors projections are not fused");
        };
        let projs = [q, k, v, &mut layer.o, gate, up, &mut layer.down];
        for (proj, module) in projs.into_iter().zip([
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ]) {
            let pair = &pairs[&format!("model.layers.{index}.{module}.weight")];
            proj.lora = Some((pair.a.clone(), pair.b.clone(), pair.scale));
        }
    }
    let ids = sample_ids(&merged);
    let base = last_logits(load(&hf, None).unwrap().parts().0, &ids);
    let with_lora = last_logits(merged.parts().0, &ids);
    assert!(logits_l1(&base, &with_lora) > 0.01, "the adapter must change something");
    let diff = logits_l1(&with_lora, &last_logits(explicit.parts().0, &ids));
    assert!(diff < LOGIT_TOLERANCE, "max |Δlogit| = {diff}");
}

#[test]
fn gguf_lora_merge_permutes_q_and_k_deltas_like_the_converter() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = lora(dir.path(), &ALL_TARGETS, false);
    let options = TinyOptions { dtype: GgmlDType::F32, ..TinyOptions::default() };
    let gguf = load(&write_tiny_gguf_with(dir.path(), &options), Some(&adapter)).unwrap();
    let hf = load(&write_tiny_safetensors(&dir.path().join("hf"), &options), Some(&adapter)).unwrap();
    let ids = sample_ids(&hf);
    let diff = logits_l1(&last_logits(gguf.parts().0, &ids), &last_logits(hf.parts().0, &ids));
    assert!(diff < LOGIT_TOLERANCE, "max |Δlogit| = {diff}");
}

#[test]
fn lora_on_a_tied_output_layer_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = lora(dir.path(), &["lm_head"], false);
    let options = TinyOptions { tied: true, ..TinyOptions::default() };
    let gguf = write_tiny_gguf_with(dir.path(), &options);
    let hf = write_tiny_safetensors(&dir.path().join("hf"), &options);
    for path in [gguf, hf] {
        let err = load(&path, Some(&adapter)).unwrap_err();
        assert!(matches!(err, EvalError::LoraTiedOutput { .. }), "{err}");
    }
}

fn greedy(max_new_tokens: usize) -> GenerationParams {
    GenerationParams { temperature: 0.0, max_new_tokens, ..GenerationParams::default() }
}

fn suite() -> Vec<Prompt> {
    vec![prompt("q1", "Quem é o João?"), prompt("q2", "Olá"), prompt("q3", "A avó dele cozinha pão e feijão à tarde?")]
}

#[test]
fn batched_greedy_equals_one_at_a_time_greedy() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    let batched = engine.generate(&suite(), &greedy(12)).unwrap();
    for (i, p) in suite().iter().enumerate() {
        let single = engine.generate(std::slice::from_ref(p), &greedy(12)).unwrap();
        assert_eq!(single.answers[0].text, batched.answers[i].text, "{}", p.qid);
        assert_eq!(single.answers[0].prompt_tokens, batched.answers[i].prompt_tokens);
    }
    assert!(batched.answers.iter().all(|a| a.generated_tokens > 0));
}

#[test]
fn same_seed_gives_same_text_and_records_distinct_seeds_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    let params = GenerationParams {
        temperature: 1.0,
        samples: 3,
        seed: 5,
        max_new_tokens: 10,
        max_batch: 4,
        ..Default::default()
    };
    let first = engine.generate(&suite(), &params).unwrap();
    let second = engine.generate(&suite(), &params).unwrap();
    assert_eq!(first.answers, second.answers);
    assert_eq!(first.answers.len(), 9);
    let seeds: std::collections::HashSet<u64> = first.answers.iter().map(|a| a.seed).collect();
    assert_eq!(seeds.len(), 9);
    assert_eq!(first.answers[4].seed, crate::derive_seed(5, "q2", 1));
    assert_eq!((first.answers[4].qid.as_str(), first.answers[4].sample), ("q2", 1));
    let texts: std::collections::HashSet<&str> = first.answers.iter().map(|a| a.text.as_str()).collect();
    assert!(texts.len() > 1, "sampling at temperature 1 varies");
}

#[test]
fn truncation_and_stop_tokens_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    let out = engine.generate(&suite()[..1], &greedy(5)).unwrap();
    let answer = &out.answers[0];
    if answer.generated_tokens == 5 {
        assert!(answer.truncated);
    }
    let (_, tokenizer, _) = engine.parts();
    let first = tokenizer.encode(&answer.text).unwrap()[0];
    engine.add_stop_id(first);
    let stopped = engine.generate(&suite()[..1], &greedy(5)).unwrap();
    assert_eq!((stopped.answers[0].generated_tokens, stopped.answers[0].truncated), (0, false));
    assert!(out.timing.generated_tokens > 0 && out.timing.generation_tokens_per_s > 0.0);
}

#[test]
fn q4_1_weights_requantised_to_q8_0_still_generate() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::Q4_1, ..TinyOptions::default() });
    let spec = ModelSpec { cpu_requantize: Some(crate::CpuRequantize::Q8_0), ..spec_for(&path) };
    let pad_to = crate::model::gguf_llama::fast_matmul_width(&Device::Cpu);
    let engine = Engine::load_path_with(&path, &spec, Device::Cpu, Kernels::Candle { pad_to }).unwrap();
    let expected = match pad_to {
        1 => "q4_1->q8_0".to_string(),
        width => format!("q4_1->q8_0+pad{width}"),
    };
    assert_eq!(engine.model_info().dtype, expected);
    let out = engine.generate(&suite(), &greedy(4)).unwrap();
    assert_eq!(out.answers.len(), 3);
}

#[test]
fn zero_padded_q8_0_weights_keep_the_logits_up_to_activation_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::Q4_1, ..TinyOptions::default() });
    let spec = ModelSpec { cpu_requantize: Some(crate::CpuRequantize::Q8_0), ..spec_for(&path) };
    let plain = Engine::load_path_with(&path, &spec, Device::Cpu, Kernels::Candle { pad_to: 1 }).unwrap();
    let padded = Engine::load_path_with(&path, &spec, Device::Cpu, Kernels::Candle { pad_to: 256 }).unwrap();
    let pad = |e: &Engine| match &e.parts().0.layers[0].qkv {
        Group::Fused { w, .. } => w.pad,
        Group::Split(projs) => projs[0].pad,
    };
    assert!(pad(&padded) > 0, "the tiny model's width is not a multiple of 256");
    assert_eq!(pad(&plain), 0);
    let ids = [1u32, 5, 9, 13, 2, 7];
    let base = last_logits(plain.parts().0, &ids);
    let diff = logits_l1(&base, &last_logits(padded.parts().0, &ids));
    let scale = logits_l1(&base, &base.zeros_like().unwrap());
    // On a CPU with VNNI the padded weights take candle's repacked kernels, which quantise the
    // activations per 256 values (Q8_K) instead of per 32 (Q8_0): a rounding difference of a
    // few percent on this random model, nothing more.
    assert!(diff < 0.05 * scale, "mean |Δlogit| = {diff} for mean |logit| = {scale}");
}

#[test]
fn padding_q8_0_rows_appends_exact_zeros() {
    let device = Device::Cpu;
    let dense = Tensor::randn(0f32, 1.0, (3, 64), &device).unwrap();
    let q = candle_core::quantized::QTensor::quantize(&dense, GgmlDType::Q8_0).unwrap();
    let padded = crate::model::gguf_llama::pad_q8_0_rows(&q, 256, &device).unwrap();
    assert_eq!(padded.shape().dims(), &[3, 256]);
    let (before, after) = (q.dequantize(&device).unwrap(), padded.dequantize(&device).unwrap());
    let head = after.narrow(1, 0, 64).unwrap();
    assert_eq!(head.to_vec2::<f32>().unwrap(), before.to_vec2::<f32>().unwrap());
    let tail = after.narrow(1, 64, 192).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(tail, 0.0);
}

#[test]
fn invalid_parameters_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    let params = GenerationParams { samples: 0, ..Default::default() };
    assert!(matches!(engine.generate(&suite(), &params), Err(EvalError::InvalidParam { param: "samples", .. })));
}

/// Ids llama.cpp gives for "Quem é o João?" with SmolLM2's vocabulary.
const SMOLLM2_REFERENCE_IDS: [u32; 7] = [6317, 391, 26411, 263, 14186, 17031, 47];

#[test]
fn real_smollm2_if_cached_tokenizer_matches_llama_cpp_and_generates() {
    let Ok(path) = crate::resolve("smollm2-135m-instruct", &crate::default_cache_dir()) else {
        eprintln!(
            "skipped: smollm2-135m-instruct is not in the model cache (run `phasegate models pull smollm2-135m-instruct`)"
        );
        return;
    };
    let engine = load(&path, None).unwrap();
    let (_, tokenizer, stops) = engine.parts();
    assert_eq!(tokenizer.inner.encode("Quem é o João?", false).unwrap().get_ids(), SMOLLM2_REFERENCE_IDS);
    assert!(stops.contains(&tokenizer.token_id("<|im_end|>").unwrap()));
    let out = engine.generate(&[prompt("q1", "What is the capital of France?")], &greedy(8)).unwrap();
    assert!(out.answers[0].generated_tokens > 0);
}

#[test]
fn a_shared_prefix_gives_the_same_logits_as_one_plain_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    // Exact f32 cache: only the split of the attention sums differs.
    engine.model_mut().cfg.kv_dtype = candle_core::DType::F32;
    let model = engine.parts().0;
    let ids = sample_ids(&engine);
    let (n, split) = (ids.len(), ids.len() - 3);
    let device = Device::Cpu;
    let mut first = KvCache::new(&model.cfg, 1, split, &device).unwrap();
    let causal = |rows: usize, offset: usize| -> Vec<f32> {
        let width = offset + rows;
        (0..rows * width).map(|k| if k % width <= offset + k / width { 0.0 } else { f32::NEG_INFINITY }).collect()
    };
    let run = |cache: &mut KvCache, from: usize, to: usize| {
        let tokens = Tensor::new(&ids[from..to], &device).unwrap().unsqueeze(0).unwrap();
        let positions = Tensor::arange(from as u32, to as u32, &device).unwrap().unsqueeze(0).unwrap();
        let mask = Tensor::from_vec(causal(to - from, from), (1, 1, to - from, to), &device).unwrap();
        model.forward(&tokens, &positions, &mask, cache).unwrap()
    };
    run(&mut first, 0, split);
    let prefix = first.into_prefix().unwrap();
    let mut rest = KvCache::with_prefix(&model.cfg, Some(prefix), 1, n - split, &device).unwrap();
    let split_logits = run(&mut rest, split, n);
    let diff = logits_l1(&split_logits, &last_logits(model, &ids));
    assert!(diff < SHARED_PREFIX_TOLERANCE, "max logit difference {diff}");
}

/// Splitting attention over a shared prefix changes only the f32 rounding of partial sums.
const SHARED_PREFIX_TOLERANCE: f32 = 1e-3;

#[test]
fn phi3_gguf_generates_with_the_phi3_template_override_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::tiny::write_tiny_phi3_gguf(dir.path(), 3);
    assert!(matches!(load(&path, None), Err(EvalError::NoTemplate { .. })));
    let spec = ModelSpec { template_override: Some("phi3".into()), ..spec_for(&path) };
    let engine = Engine::load_path(&path, &spec).unwrap();
    assert_eq!(engine.model_info().architecture, "phi3");
    assert!(engine.render(&suite()[0]).unwrap().contains("<|user|>\nQuem é o João?<|end|>"));
    let params = GenerationParams { temperature: 1.0, samples: 2, max_new_tokens: 6, seed: 4, ..Default::default() };
    let first = engine.generate(&suite(), &params).unwrap();
    assert_eq!(first.answers, engine.generate(&suite(), &params).unwrap().answers);
    assert_eq!(first.answers.len(), 6);
    assert!(first.answers.iter().all(|a| a.generated_tokens > 0 && a.generated_tokens <= 6));
    let greedy_one = engine.generate(&suite()[..1], &greedy(6)).unwrap();
    let greedy_all = engine.generate(&suite(), &greedy(6)).unwrap();
    assert_eq!(greedy_one.answers[0].text, greedy_all.answers[0].text);
}

#[test]
fn a_raised_interrupt_stops_generation_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    engine.interrupt().raise("the run was cancelled");
    match engine.generate(&suite(), &greedy(4)) {
        Err(EvalError::Interrupted(reason)) => assert_eq!(reason, "the run was cancelled"),
        other => panic!("expected an interruption, got {other:?}"),
    }
}

#[test]
fn a_prompt_longer_than_the_context_names_its_question() {
    let dir = tempfile::tempdir().unwrap();
    let engine = load(&crate::tiny::write_tiny_gguf(dir.path()), None).unwrap();
    let context = engine.context_len();
    let long = prompt("Q7", &"palavra ".repeat(context));
    match engine.generate(&[suite()[0].clone(), long], &greedy(4)) {
        Err(e @ EvalError::ContextTooLong { .. }) => {
            let text = e.to_string();
            assert!(text.contains("question Q7") && text.contains(&format!("context of {context}")), "{text}");
        }
        other => panic!("expected a context error, got {other:?}"),
    }
}

#[test]
fn a_fused_projection_group_gives_the_outputs_of_its_parts() {
    use crate::model::llama::Proj;
    use candle_core::quantized::{QMatMul, QTensor};
    let device = Device::Cpu;
    let proj = |rows: usize| {
        let w = Tensor::randn(0f32, 1.0, (rows, 64), &device).unwrap();
        Proj::new(QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap())
    };
    let parts = [proj(64), proj(16), proj(16)];
    let split = Group::Split(parts.clone());
    let fused = Group::fuse(parts).unwrap();
    assert!(matches!(fused, Group::Fused { rows: [64, 16, 16], .. }));
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64), &device).unwrap();
    for (a, b) in split.forward(&x).unwrap().iter().zip(fused.forward(&x).unwrap().iter()) {
        assert_eq!(a.dims(), b.dims());
        assert_eq!(
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
