//! Tests of the packed kernels and of our CPU forward pass against candle's.

use super::matmul;
use super::packed::{GROUP, Kind, Packed, QuantRows, group_dot_portable};
use super::simd::{self, Level};
use crate::engine::Kernels;
use crate::generate::{CandleDecoder, Decoder};
use crate::tiny::{TinyLora, TinyOptions, TinyVocab, write_tiny_gguf_with, write_tiny_lora};
use crate::{CpuRequantize, Engine, GenerationParams, ModelSpec, Prompt};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

fn random_matrix(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows * cols).map(|_| rng.random_range(-1.0..1.0f32)).collect()
}

fn quantized(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> QTensor {
    let dense = Tensor::from_vec(random_matrix(rows, cols, seed), (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&dense, dtype).unwrap()
}

fn dequantized(t: &QTensor) -> Vec<f32> {
    t.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn packed_rows_are_the_stored_weights_exactly_for_q4_0_q4_1_and_q8_0() {
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        // Two stacked parts; 40 + 8 rows is not a whole number of groups.
        let (a, b) = (quantized(40, 96, dtype, 1), quantized(8, 96, dtype, 2));
        let packed = Packed::from_qtensors(&[&a, &b], false).unwrap();
        assert_eq!((packed.rows, packed.cols), (48, 96));
        let expected = [dequantized(&a), dequantized(&b)].concat();
        let mut row = vec![0f32; 96];
        for r in 0..48 {
            packed.row(r, &mut row);
            assert_eq!(row, expected[r * 96..(r + 1) * 96], "{dtype:?} row {r}");
        }
    }
}

#[test]
fn q4_weights_requantized_to_bytes_stay_within_8_bit_rounding() {
    let t = quantized(32, 64, GgmlDType::Q4_1, 3);
    let packed = Packed::from_qtensors(&[&t], true).unwrap();
    assert_eq!(packed.kind, Kind::Byte);
    let expected = dequantized(&t);
    let mut row = vec![0f32; 64];
    for r in 0..32 {
        packed.row(r, &mut row);
        let amax = expected[r * 64..(r + 1) * 64].iter().fold(0f32, |a, v| a.max(v.abs()));
        let diff = max_abs_diff(&row, &expected[r * 64..(r + 1) * 64]);
        assert!(diff <= amax / 127.0, "row {r}: {diff}");
    }
}

#[test]
fn unsupported_weight_types_and_widths_do_not_pack() {
    let f32_weights = quantized(16, 64, GgmlDType::F32, 4);
    assert!(Packed::from_qtensors(&[&f32_weights], false).is_err());
    let mixed = [quantized(16, 64, GgmlDType::Q4_0, 5), quantized(16, 64, GgmlDType::Q8_0, 6)];
    assert!(Packed::from_qtensors(&[&mixed[0], &mixed[1]], false).is_err());
}

/// The SIMD levels this CPU runs, for tests that compare each with the portable kernels.
fn simd_levels() -> Vec<Level> {
    let levels: Vec<Level> = [Level::Avx512Vnni, Level::Avx2].into_iter().filter(|l| l.supported()).collect();
    if levels.is_empty() {
        eprintln!("note: this CPU has no AVX512-VNNI nor AVX2; only the portable kernels are checked");
    }
    levels
}

#[test]
fn every_simd_kernel_gives_the_portable_kernels_sums() {
    for level in simd_levels() {
        for (dtype, to_byte) in [(GgmlDType::Q4_1, false), (GgmlDType::Q4_0, false), (GgmlDType::Q8_0, false)] {
            let packed = Packed::from_qtensors(&[&quantized(32, 256, dtype, 7)], to_byte).unwrap();
            let mut x = QuantRows::default();
            x.quantize(&random_matrix(1, 256, 8), 256);
            for g in 0..packed.groups() {
                let (blocks, bytes) = (packed.blocks(), packed.kind.block_bytes());
                let units = g * blocks..(g + 1) * blocks;
                let data = &packed.data[units.start * bytes..units.end * bytes];
                let d = &packed.d[units.start * GROUP..units.end * GROUP];
                let m = &packed.m[units.start * GROUP..units.end * GROUP];
                let (mut fast, mut portable) = ([0f32; GROUP], [0f32; GROUP]);
                simd::group_dot_at(level, packed.kind, data, d, m, x.row(0), &mut fast);
                group_dot_portable(packed.kind, data, d, m, x.row(0), &mut portable);
                let diff = max_abs_diff(&fast, &portable);
                assert!(diff < 1e-4, "{level:?} {dtype:?} group {g}: {diff}");
            }
        }
    }
}

#[test]
fn packed_matmul_matches_the_dense_product_within_activation_rounding() {
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let (rows, cols, m) = (72, 128, 3);
        let w = quantized(rows, cols, dtype, 9);
        let packed = Packed::from_qtensors(&[&w], false).unwrap();
        let dense = dequantized(&w);
        let x = random_matrix(m, cols, 10);
        let mut quant = QuantRows::default();
        quant.quantize(&x, cols);
        let mut out = Vec::new();
        matmul(&packed, &quant, &mut out);
        assert_eq!(out.len(), m * rows);
        for r in 0..m {
            for o in 0..rows {
                let exact: f32 = (0..cols).map(|k| dense[o * cols + k] * x[r * cols + k]).sum();
                let scale: f32 = (0..cols).map(|k| (dense[o * cols + k] * x[r * cols + k]).abs()).sum();
                // 8-bit activations: each product is off by at most half a step of its block.
                let diff = (out[r * rows + o] - exact).abs();
                assert!(diff <= scale / 100.0, "{dtype:?} row {r} output {o}: {} vs {exact}", out[r * rows + o]);
            }
        }
    }
}

fn spec_for(path: &Path) -> ModelSpec {
    ModelSpec { reference: path.to_string_lossy().into_owned(), ..ModelSpec::default() }
}

fn load(path: &Path, spec: &ModelSpec, kernels: Kernels) -> Engine {
    Engine::load_path_with(path, spec, Device::Cpu, kernels).unwrap()
}

const NATIVE: Kernels = Kernels::Native { pad_to: 1 };

/// `load` on our kernels, failing if the model fell back to candle's.
fn load_native(path: &Path, spec: &ModelSpec) -> Engine {
    let engine = load(path, spec, NATIVE);
    assert!(!engine.is_candle(), "{} runs on candle's graph", path.display());
    engine
}
const CANDLE: Kernels = Kernels::Candle { pad_to: 1 };

/// Logits of the last position of `ids`, run as one sequence.
fn last_logits<D: Decoder>(model: &D, ids: &[u32]) -> Vec<f32> {
    let n = ids.len();
    let mut cache = model.new_cache(None, 1, n).unwrap();
    let mask: Vec<f32> = (0..n * n).map(|k| if k % n <= k / n { 0.0 } else { f32::NEG_INFINITY }).collect();
    let positions: Vec<u32> = (0..n as u32).collect();
    model.forward(ids, &positions, &mask, 1, &mut cache).unwrap().remove(0)
}

fn logits_pair(native: &Engine, mut candle: Engine) -> (Vec<f32>, Vec<f32>) {
    // Our cache is f32; candle's default f16 cache would add its own rounding.
    candle.model_mut().cfg.kv_dtype = candle_core::DType::F32;
    let ids = native.tokenizer().encode("Quem é o João? A avó dele cozinha pão e feijão.").unwrap();
    let decoder = CandleDecoder { model: candle.parts().0, device: &Device::Cpu };
    (last_logits(native.native(), &ids), last_logits(&decoder, &ids))
}

/// Our kernels quantise activations to 8 bits per block of 32 (as ggml's do); candle's prompt
/// pass multiplies in f32. On the tiny random models that moves logits by 1–3% of the largest
/// one; a wiring mistake (RoPE pairs, heads, norms) moves them by tens of percent.
const LOGIT_TOLERANCE: f32 = 0.05;

#[test]
fn our_kernels_give_candles_logits_for_q4_0_q4_1_and_q8_0_models() {
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let dir = tempfile::tempdir().unwrap();
        let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype, ..TinyOptions::default() });
        let spec = spec_for(&path);
        let native = load(&path, &spec, NATIVE);
        assert_eq!(native.model_info().dtype, format!("{dtype:?}").to_lowercase());
        let (ours, theirs) = logits_pair(&native, load(&path, &spec, CANDLE));
        let spread = theirs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let diff = max_abs_diff(&ours, &theirs);
        assert!(diff < LOGIT_TOLERANCE * spread, "{dtype:?}: max logit difference {diff} (largest logit {spread})");
    }
}

#[test]
fn our_kernels_merge_a_lora_adapter_as_candles_path_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::Q8_0, ..TinyOptions::default() });
    let targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"];
    let lora = TinyLora { r: 4, alpha: 8.0, targets: targets.map(String::from).to_vec(), zero_b: false, seed: 9 };
    let adapter = write_tiny_lora(&dir.path().join("adapter"), &lora, TinyVocab::ByteLevel);
    let spec = ModelSpec { adapter: Some(adapter), ..spec_for(&path) };
    let (with_lora, candle_lora) = logits_pair(&load(&path, &spec, NATIVE), load(&path, &spec, CANDLE));
    let spread = candle_lora.iter().fold(0f32, |a, v| a.max(v.abs()));
    let diff = max_abs_diff(&with_lora, &candle_lora);
    assert!(diff < LOGIT_TOLERANCE * spread, "max logit difference {diff} (largest logit {spread})");
    let (base, _) = logits_pair(&load(&path, &spec_for(&path), NATIVE), load(&path, &spec_for(&path), CANDLE));
    assert!(max_abs_diff(&with_lora, &base) > LOGIT_TOLERANCE * spread, "the adapter changed nothing");
}

#[test]
fn cpu_requantize_q8_0_packs_q4_weights_as_bytes_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::Q4_1, ..TinyOptions::default() });
    let spec = ModelSpec { cpu_requantize: Some(CpuRequantize::Q8_0), ..spec_for(&path) };
    let engine = load(&path, &spec, NATIVE);
    assert_eq!(engine.model_info().dtype, "q4_1->q8_0");
    assert_eq!(engine.native().layers[0].qkv.kind, Kind::Byte);
}

#[test]
fn models_whose_weights_do_not_pack_run_on_candle() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::F32, ..TinyOptions::default() });
    let engine = load(&path, &spec_for(&path), NATIVE);
    assert!(engine.is_candle());
}

fn prompts() -> Vec<Prompt> {
    let prompt =
        |qid: &str, user: &str| Prompt { qid: qid.into(), system: Some("Você é a Lia.".into()), user: user.into() };
    vec![prompt("q1", "Quem é o João?"), prompt("q2", "Olá"), prompt("q3", "A avó dele cozinha pão e feijão à tarde?")]
}

/// Alone, a prompt's shared prefix is all but its last token; in a batch it is the system
/// prompt. The attention sums split differently, so logits differ in the last bits: greedy
/// tokens must agree, sampled ones may not on a random model's flat distributions.
#[test]
fn a_batch_with_a_shared_prefix_gives_each_row_its_greedy_tokens_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::Q4_1, ..TinyOptions::default() });
    let engine = load_native(&path, &spec_for(&path));
    let greedy = GenerationParams { temperature: 0.0, samples: 2, max_new_tokens: 10, ..Default::default() };
    let batched = engine.generate(&prompts(), &greedy).unwrap();
    for (i, prompt) in prompts().iter().enumerate() {
        let alone = engine.generate(std::slice::from_ref(prompt), &greedy).unwrap();
        for s in 0..2 {
            assert_eq!(batched.answers[i * 2 + s].text, alone.answers[s].text, "{} sample {s}", prompt.qid);
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_sampled_text_on_our_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::Q4_1, ..TinyOptions::default() });
    let engine = load_native(&path, &spec_for(&path));
    let params = GenerationParams { temperature: 0.8, samples: 3, max_new_tokens: 10, seed: 5, ..Default::default() };
    let first = engine.generate(&prompts(), &params).unwrap();
    assert_eq!(first.answers, engine.generate(&prompts(), &params).unwrap().answers);
    let other = GenerationParams { seed: 6, ..params };
    assert_ne!(first.answers, engine.generate(&prompts(), &other).unwrap().answers, "the seed changes nothing");
}

#[test]
fn real_smollm2_if_cached_greedy_text_of_our_kernels_follows_candles() {
    let Ok(path) = crate::resolve("smollm2-135m-instruct", &crate::default_cache_dir()) else {
        eprintln!(
            "skipped: smollm2-135m-instruct is not in the model cache (run `phasegate models pull smollm2-135m-instruct`)"
        );
        return;
    };
    if cfg!(debug_assertions) {
        eprintln!("skipped: debug build (run with --release)");
        return;
    }
    let spec = spec_for(&path);
    let system = Some("You are a helpful assistant.".into());
    let prompt = Prompt { qid: "q".into(), system, user: "What is the capital of France?".into() };
    let params = GenerationParams { temperature: 0.0, max_new_tokens: 40, ..Default::default() };
    let ours = load_native(&path, &spec).generate(std::slice::from_ref(&prompt), &params).unwrap();
    let theirs = load(&path, &spec, CANDLE).generate(std::slice::from_ref(&prompt), &params).unwrap();
    assert!(ours.answers[0].text.contains("Paris"), "{}", ours.answers[0].text);
    assert_eq!(ours.answers[0].text, theirs.answers[0].text);
}

#[test]
fn attention_kernels_give_the_plain_sums_over_strided_f16_rows() {
    let (stride, n, offset) = (192, 37, 64);
    let data: Vec<half::f16> = random_matrix(n, stride, 11).into_iter().map(half::f16::from_f32).collect();
    let mask: Vec<f32> = (0..n).map(|t| if t % 5 == 0 { f32::NEG_INFINITY } else { 0.25 }).collect();
    let p: Vec<f32> = (0..n).map(|t| if t % 5 == 0 { 0.0 } else { 1.0 / n as f32 }).collect();
    // 64 and 128 run in registers; 24 takes the portable loop on AVX512.
    for hd in [64, 128, 24] {
        let q = random_matrix(1, hd, 12);
        for level in [vec![Level::Portable], simd_levels()].concat() {
            let mut scores = vec![0f32; n];
            simd::attend_scores_at(level, &q, &data[offset..], stride, 0.125, &mask, &mut scores);
            for t in 0..n {
                let k = &data[offset + t * stride..offset + t * stride + hd];
                let expected = 0.125 * q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum::<f32>() + mask[t];
                let close = scores[t] == expected || (scores[t] - expected).abs() < 1e-4;
                assert!(close, "{level:?} head width {hd} position {t}: {} vs {expected}", scores[t]);
            }
            let mut out = vec![f32::NAN; hd];
            simd::attend_values_at(level, &p, &data[offset..], stride, &mut out);
            for i in 0..hd {
                let expected: f32 = (0..n).map(|t| p[t] * data[offset + t * stride + i].to_f32()).sum();
                assert!(
                    (out[i] - expected).abs() < 1e-5,
                    "{level:?} head width {hd} value {i}: {} vs {expected}",
                    out[i]
                );
            }
        }
    }
}
