use super::data::{Encoded, Encoder, batch};
use super::model::{LoraShape, TrainModel, summed_nll};
use super::*;
use crate::engine::{Engine, Kernels};
use crate::model::llama::{Group, Llama, Proj};
use crate::spec::{GenerationParams, ModelSpec, Prompt};
use crate::tiny::{TinyOptions, write_tiny_gguf, write_tiny_gguf_with, write_tiny_safetensors};
use candle_core::quantized::GgmlDType;
use candle_core::quantized::QMatMul;
use candle_core::{Device, Var};
use rand::Rng;

const ALL_MODULES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

fn message(role: &str, content: &str) -> TrainMessage {
    TrainMessage { role: role.into(), content: content.into() }
}

fn examples() -> Vec<TrainExample> {
    let pairs = [
        ("Quem é o João?", "O João é o meu amigo."),
        ("Onde ele mora?", "Ele mora em São Paulo."),
        ("Olá, tudo bem?", "Eu estou bem, obrigado."),
        ("A família é grande?", "A família é grande e a casa é antiga."),
    ];
    pairs
        .iter()
        .map(|(q, a)| TrainExample {
            messages: vec![message("system", "Você é a Lia."), message("user", q), message("assistant", a)],
        })
        .collect()
}

fn shape(targets: &[&str], seed: u64) -> LoraShape {
    LoraShape { r: 4, alpha: 8.0, targets: targets.iter().map(|t| t.to_string()).collect(), seed }
}

fn encode_all(path: &Path, loss_on: LossOn) -> (Llama, Vec<Encoded>, u32) {
    let (llama, tokenizer, template) = Engine::load_for_training(path, None).unwrap();
    let encoder = Encoder { tokenizer: &tokenizer, template: &template, env: template.compiled().unwrap() };
    let encoded = examples().iter().enumerate().map(|(i, e)| encoder.encode(i, e, loss_on, 256).unwrap()).collect();
    (llama, encoded, tokenizer.eos.unwrap_or(0))
}

/// Gives every B small random values, so that the gradients of A are not zero.
fn randomise_b(model: &TrainModel, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for (_, _, pair) in model.pairs() {
        let b = pair.b.as_tensor();
        let values: Vec<f64> = (0..b.elem_count()).map(|_| rng.random_range(-0.05..0.05)).collect();
        let t = Tensor::from_vec(values, b.dims(), &Device::Cpu).unwrap().to_dtype(b.dtype()).unwrap();
        pair.b.set(&t).unwrap();
    }
}

/// The eval pass's logits of the last position of `ids`, with an f32 KV cache.
fn eval_last_logits(llama: &Llama, ids: &[u32]) -> Vec<f32> {
    crate::tests::last_logits(llama, ids).flatten_all().unwrap().to_vec1().unwrap()
}

/// The training pass's logits at every position of `ids`.
fn train_logits(model: &TrainModel, ids: &[u32]) -> Vec<Vec<f32>> {
    let tokens = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = model.forward(&tokens).unwrap().squeeze(0).unwrap().to_dtype(DType::F32).unwrap();
    logits.to_vec2().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The largest difference between the training pass and the eval pass over prefixes of `ids`.
fn logits_gap(llama: &Llama, model: &TrainModel, ids: &[u32]) -> f32 {
    let all = train_logits(model, ids);
    [2, ids.len() / 2, ids.len()]
        .iter()
        .map(|&n| max_abs_diff(&all[n - 1], &eval_last_logits(llama, &ids[..n])))
        .fold(0.0, f32::max)
}

/// `llama` with every matmul weight dequantised: candle's quantised matmul also quantises its
/// input to 8 bits, which the training pass (dense f32) does not.
fn dequantised(llama: &Llama) -> Llama {
    let dense = |p: &mut Proj| {
        if let QMatMul::QTensor(t) = &p.w {
            p.w = QMatMul::Tensor(t.dequantize(&Device::Cpu).unwrap());
        }
    };
    let mut out = llama.clone();
    for layer in &mut out.layers {
        match &mut layer.qkv {
            Group::Split(projs) => projs.iter_mut().for_each(dense),
            Group::Fused { w, .. } => dense(w),
        }
        match &mut layer.gate_up {
            Group::Split(projs) => projs.iter_mut().for_each(dense),
            Group::Fused { w, .. } => dense(w),
        }
        dense(&mut layer.o);
        dense(&mut layer.down);
    }
    dense(&mut out.output);
    out
}

#[test]
fn the_training_forward_gives_the_eval_forwards_logits() {
    let dir = tempfile::tempdir().unwrap();
    let f32_gguf = TinyOptions { dtype: GgmlDType::F32, ..TinyOptions::default() };
    let paths = [
        write_tiny_gguf(&dir.path().join("q8")),
        write_tiny_gguf_with(&dir.path().join("f32"), &f32_gguf),
        write_tiny_gguf_with(&dir.path().join("tied"), &TinyOptions { tied: true, ..f32_gguf }),
        write_tiny_safetensors(&dir.path().join("hf"), &TinyOptions::default()),
        write_tiny_safetensors(&dir.path().join("hf-tied"), &TinyOptions { tied: true, ..TinyOptions::default() }),
    ];
    for path in paths {
        let (mut llama, encoded, _) = encode_all(&path, LossOn::Assistant);
        llama.cfg.kv_dtype = DType::F32;
        let model = TrainModel::from_llama(&llama, &shape(&ALL_MODULES, 1), DType::F32).unwrap();
        let ids = &encoded[0].ids;
        let tokens = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let at = Tensor::new(&[0u32, ids.len() as u32 - 1], &Device::Cpu).unwrap();
        let picked: Vec<Vec<f32>> = model.logits_at(&tokens, &at).unwrap().to_vec2().unwrap();
        let all = train_logits(&model, ids);
        assert_eq!(picked, [all[0].clone(), all[ids.len() - 1].clone()], "the loss's logits are the forward's");
        let quantised = logits_gap(&llama, &model, &encoded[0].ids);
        let gap = logits_gap(&dequantised(&llama), &model, &encoded[0].ids);
        let name = path.display();
        eprintln!("{name}: training vs eval logits, max abs difference {gap:e} ({quantised:e} as loaded)");
        assert!(gap < 1e-3, "{gap}");
    }
}

#[test]
fn the_loss_counts_the_assistant_turn_and_its_end_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf(dir.path());
    let (_, tokenizer, template) = Engine::load_for_training(&path, None).unwrap();
    let encoder = Encoder { tokenizer: &tokenizer, template: &template, env: template.compiled().unwrap() };
    let example = &examples()[0];
    let encoded = encoder.encode(0, example, LossOn::Assistant, 256).unwrap();
    let learnt: Vec<u32> = encoded.ids.iter().zip(&encoded.counted).filter(|(_, c)| **c).map(|(id, _)| *id).collect();
    assert_eq!(tokenizer.inner.decode(&learnt, false).unwrap(), "O João é o meu amigo.<|im_end|>\n");
    let all = encoder.encode(0, example, LossOn::All, 256).unwrap();
    assert_eq!(all.ids, encoded.ids);
    assert!(all.counted.iter().all(|c| *c));
    let short = encoder.encode(0, example, LossOn::Assistant, 8);
    assert!(matches!(short, Err(EvalError::TrainData { example: 0, .. })), "{short:?}");
    // SentencePiece with a BOS and a Zephyr template: the answer and its EOS, nothing else.
    let spm = write_tiny_gguf_with(
        &dir.path().join("spm"),
        &TinyOptions { vocab: crate::tiny::TinyVocab::SentencePiece, ..TinyOptions::default() },
    );
    let (_, tokenizer, template) = Engine::load_for_training(&spm, None).unwrap();
    let encoder = Encoder { tokenizer: &tokenizer, template: &template, env: template.compiled().unwrap() };
    let encoded = encoder.encode(0, example, LossOn::Assistant, 256).unwrap();
    assert_eq!(encoded.ids[0], tokenizer.bos.unwrap());
    let learnt: Vec<u32> = encoded.ids.iter().zip(&encoded.counted).filter(|(_, c)| **c).map(|(id, _)| *id).collect();
    assert_eq!(tokenizer.inner.decode(&learnt, false).unwrap().trim_end(), "O João é o meu amigo.</s>");
}

#[test]
fn lora_gradients_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::F32, ..TinyOptions::default() });
    let (llama, encoded, pad) = encode_all(&path, LossOn::Assistant);
    let model = TrainModel::from_llama(&llama, &shape(&ALL_MODULES, 3), DType::F64).unwrap();
    randomise_b(&model, 4);
    let rows: Vec<&Encoded> = encoded.iter().take(2).collect();
    let batch = batch(&rows, pad).unwrap();
    let loss = |m: &TrainModel| {
        let logits = m.logits_at(&batch.inputs, &batch.at).unwrap();
        (summed_nll(&logits, &batch.targets).unwrap() / batch.counted as f64).unwrap()
    };
    let grads = loss(&model).backward().unwrap();
    let vars = model.vars();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (mut worst, mut checked) = (0.0f64, 0);
    let step = 1e-5;
    // A and B of the first and last pairs and of an MLP pair, four entries each.
    for var in [vars[0], vars[1], vars[8], vars[9], vars[vars.len() - 2], vars[vars.len() - 1]] {
        let grad: Vec<f64> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let original = var.as_tensor().copy().unwrap();
        let values: Vec<f64> = original.flatten_all().unwrap().to_vec1().unwrap();
        for _ in 0..4 {
            let i = rng.random_range(0..values.len());
            let at = |delta: f64| {
                let mut v = values.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, original.dims(), &Device::Cpu).unwrap()).unwrap();
                loss(&model).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(step) - at(-step)) / (2.0 * step);
            var.set(&original).unwrap();
            let error = (numeric - grad[i]).abs() / numeric.abs().max(grad[i].abs()).max(1e-6);
            assert!(grad[i].abs() > 1e-8, "a zero gradient checks nothing");
            worst = worst.max(error);
            checked += 1;
        }
    }
    eprintln!("{checked} LoRA gradient entries: max relative error {worst:e}");
    assert!(worst < 1e-5, "{worst}");
}

fn fast_config(steps: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: ALL_MODULES.map(String::from).to_vec(),
        learning_rate: 1e-2,
        lr_scheduler: LrSchedule::Constant,
        batch_size: 2,
        max_steps: Some(steps),
        seed,
        ..TrainConfig::default()
    }
}

#[test]
fn training_lowers_the_loss_and_a_seed_gives_the_same_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf(dir.path());
    let started = Instant::now();
    let mut seen = Vec::new();
    let outcome = train(&path, &fast_config(30, 7), &examples(), |r| seen.push(r.clone())).unwrap();
    let (first, last) = (&outcome.records[0], &outcome.records[29]);
    eprintln!(
        "30 steps in {:.1} s: loss {:.3} -> {:.3}, grad norm {:.3} -> {:.3}, {:.0} tokens/s",
        started.elapsed().as_secs_f64(),
        first.loss,
        last.loss,
        first.grad_norm,
        last.grad_norm,
        last.tokens_per_s
    );
    assert_eq!(seen, outcome.records);
    assert_eq!(seen.iter().map(|r| r.step).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    assert!((last.epoch - 15.0).abs() < 1e-9, "two steps per epoch of four conversations: {}", last.epoch);
    assert!(last.loss < 0.5 * first.loss, "{} -> {}", first.loss, last.loss);
    let again = train(&path, &fast_config(30, 7), &examples(), |_| {}).unwrap();
    assert_eq!(again.adapter.values().unwrap(), outcome.adapter.values().unwrap(), "same seed, same adapter");
    let other = train(&path, &fast_config(3, 8), &examples(), |_| {}).unwrap();
    assert_ne!(other.adapter.values().unwrap(), outcome.adapter.values().unwrap());
}

#[test]
fn schedules_warm_up_then_decay_as_hugging_face_does() {
    use optim::lr_factor;
    assert_eq!(lr_factor(LrSchedule::Linear, 0, 2, 10), 0.0);
    assert_eq!(lr_factor(LrSchedule::Linear, 1, 2, 10), 0.5);
    assert_eq!(lr_factor(LrSchedule::Linear, 2, 2, 10), 1.0);
    assert_eq!(lr_factor(LrSchedule::Linear, 6, 2, 10), 0.5);
    assert_eq!(lr_factor(LrSchedule::Constant, 9, 2, 10), 1.0);
    assert!((lr_factor(LrSchedule::Cosine, 6, 2, 10) - 0.5).abs() < 1e-12);
    assert_eq!(lr_factor(LrSchedule::Cosine, 2, 2, 10), 1.0);
    let bad = TrainConfig { target_modules: vec!["lm_head".into()], ..TrainConfig::default() };
    assert!(matches!(bad.validate(), Err(EvalError::TrainConfig { param: "target_modules", .. })));
}

#[test]
fn gradient_accumulation_adds_up_to_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::F32, ..TinyOptions::default() });
    let whole = TrainConfig { batch_size: 4, ..fast_config(1, 2) };
    let split = TrainConfig { batch_size: 1, gradient_accumulation_steps: 4, ..fast_config(1, 2) };
    let a = train(&path, &whole, &examples(), |_| {}).unwrap();
    let b = train(&path, &split, &examples(), |_| {}).unwrap();
    assert!((a.records[0].loss - b.records[0].loss).abs() < 1e-5);
    assert!((a.records[0].grad_norm - b.records[0].grad_norm).abs() < 1e-4 * a.records[0].grad_norm);
}

fn read_config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap()).unwrap()
}

#[test]
fn the_adapter_is_written_in_pefts_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf(dir.path());
    let config =
        TrainConfig { target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()], ..fast_config(1, 1) };
    let outcome = train(&path, &config, &examples(), |_| {}).unwrap();
    let out = dir.path().join("adapter");
    write_peft_adapter(&out, &outcome.adapter, "tiny-llama").unwrap();
    let json = read_config(&out);
    assert_eq!(json["r"], 4);
    assert_eq!(json["lora_alpha"], 8.0);
    assert_eq!(json["lora_dropout"], 0.0);
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["bias"], "none");
    assert_eq!(json["fan_in_fan_out"], false);
    assert_eq!(json["base_model_name_or_path"], "tiny-llama");
    assert_eq!(json["target_modules"], serde_json::json!(["q_proj", "v_proj", "down_proj"]));
    let tensors = candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    let (hidden, kv, ffn) = (64, 32, 128);
    let mut expected = Vec::new();
    for layer in 0..2 {
        for (module, inp, outp) in
            [("self_attn.q_proj", hidden, hidden), ("self_attn.v_proj", hidden, kv), ("mlp.down_proj", ffn, hidden)]
        {
            let name = format!("base_model.model.model.layers.{layer}.{module}");
            expected.push((format!("{name}.lora_A.weight"), vec![4, inp]));
            expected.push((format!("{name}.lora_B.weight"), vec![outp, 4]));
        }
    }
    assert_eq!(tensors.len(), expected.len());
    for (name, dims) in expected {
        let t = tensors.get(&name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(t.dims(), dims.as_slice(), "{name}");
        assert_eq!(t.dtype(), DType::F32);
    }
}

fn greedy(engine: &Engine) -> Vec<String> {
    let prompts: Vec<Prompt> = ["Quem é o João?", "Olá, tudo bem?"]
        .iter()
        .enumerate()
        .map(|(i, u)| Prompt { qid: format!("q{i}"), system: Some("Você é a Lia.".into()), user: u.to_string() })
        .collect();
    let params = GenerationParams { max_new_tokens: 12, temperature: 0.0, seed: 3, ..GenerationParams::default() };
    engine.generate(&prompts, &params).unwrap().answers.into_iter().map(|a| a.text).collect()
}

#[test]
fn the_eval_engine_loads_the_written_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf_with(dir.path(), &TinyOptions { dtype: GgmlDType::F32, ..TinyOptions::default() });
    let load = |adapter: Option<&Path>| {
        let spec = ModelSpec { adapter: adapter.map(Path::to_path_buf), ..ModelSpec::default() };
        let mut engine = Engine::load_path_with(&path, &spec, Device::Cpu, Kernels::Candle { pad_to: 1 }).unwrap();
        engine.model_mut().cfg.kv_dtype = DType::F32;
        engine
    };
    let base = greedy(&load(None));
    let untrained = train(&path, &fast_config(0, 1), &examples(), |_| {}).unwrap();
    let zero = dir.path().join("untrained");
    write_peft_adapter(&zero, &untrained.adapter, "tiny").unwrap();
    assert_eq!(greedy(&load(Some(&zero))), base, "B = 0 changes nothing");
    let trained = train(&path, &fast_config(30, 1), &examples(), |_| {}).unwrap();
    let out = dir.path().join("trained");
    write_peft_adapter(&out, &trained.adapter, "tiny").unwrap();
    let engine = load(Some(&out));
    assert_ne!(greedy(&engine), base, "a trained adapter changes the answers");
    // The merged adapter in the eval pass gives the training pass's logits with the same pairs.
    let (llama, encoded, _) = encode_all(&path, LossOn::Assistant);
    let model = TrainModel::from_llama(&llama, &shape(&ALL_MODULES, 1), DType::F32).unwrap();
    for ((_, _, pair), (_, a, b)) in model.pairs().zip(&trained.adapter.pairs) {
        pair.a.set(a).unwrap();
        pair.b.set(b).unwrap();
    }
    let (merged, _, _) = engine.parts();
    let gap = logits_gap(merged, &model, &encoded[1].ids);
    eprintln!("trained adapter: training logits vs the eval engine's merged model, max abs difference {gap:e}");
    assert!(gap < 1e-3, "{gap}");
}

#[test]
fn adamw_moves_by_the_learning_rate_at_its_first_step_and_clipping_caps_the_norm() {
    let p = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0, 3.0], &Device::Cpu).unwrap()).unwrap();
    let mut adam = optim::AdamW::new(&[&p], 0.1).unwrap();
    let grad = Tensor::new(&[0.5f64, -4.0, 0.0], &Device::Cpu).unwrap();
    adam.step(&[&p], std::slice::from_ref(&grad), 0.01).unwrap();
    let got: Vec<f64> = p.as_tensor().to_vec1().unwrap();
    // Bias-corrected m / √v is the gradient's sign; decay scales by 1 - lr · wd first.
    let want = [1.0 * 0.999 - 0.01, -2.0 * 0.999 + 0.01, 3.0 * 0.999];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-9, "{got:?} vs {want:?}");
    }
    let norm = optim::global_norm(std::slice::from_ref(&grad)).unwrap();
    assert!((norm - 16.25f64.sqrt()).abs() < 1e-12);
    let clipped = optim::clip(vec![grad.clone()], norm, 1.0).unwrap();
    assert!((optim::global_norm(&clipped).unwrap() - 1.0).abs() < 1e-5);
    assert_eq!(optim::clip(vec![grad], norm, 0.0).unwrap()[0].to_vec1::<f64>().unwrap(), [0.5, -4.0, 0.0]);
}

#[test]
fn steps_report_the_scheduled_learning_rate_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_gguf(dir.path());
    let config = TrainConfig {
        lr_scheduler: LrSchedule::Linear,
        warmup_steps: 2,
        batch_size: 1,
        gradient_accumulation_steps: 2,
        max_steps: None,
        epochs: 2,
        ..fast_config(0, 1)
    };
    let outcome = train(&path, &config, &examples(), |_| {}).unwrap();
    let rates: Vec<f64> = outcome.records.iter().map(|r| r.learning_rate / config.learning_rate).collect();
    assert_eq!(rates, [0.0, 0.5, 1.0, 0.5]);
    let epochs: Vec<f64> = outcome.records.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, [0.5, 1.0, 1.5, 2.0]);
    assert!(outcome.records.iter().all(|r| r.loss > 0.0 && r.tokens_per_s > 0.0));
    let none = train(&path, &config, &[TrainExample { messages: vec![message("user", "Olá")] }], |_| {});
    assert!(matches!(none, Err(EvalError::TrainData { example: 0, .. })), "{none:?}");
}

/// The trainer on SmolLM2-135M from `$PHASEGATE_MODEL_CACHE`, when it is there; slow in a
/// debug build: `cargo test --release -p phasegate-eval -- --ignored smollm2`.
#[test]
#[ignore]
fn smollm2_trains_on_the_cpu() {
    let cache = std::env::var_os("PHASEGATE_MODEL_CACHE").map(std::path::PathBuf::from);
    let Some(path) = cache.map(|c| c.join("smollm2-135m-instruct.gguf")).filter(|p| p.is_file()) else {
        eprintln!("skipping: SmolLM2 is not in $PHASEGATE_MODEL_CACHE");
        return;
    };
    let config = TrainConfig {
        learning_rate: 1e-3,
        lr_scheduler: LrSchedule::Constant,
        batch_size: 2,
        max_steps: Some(10),
        ..TrainConfig::default()
    };
    let started = Instant::now();
    let outcome = train(&path, &config, &examples(), |r| eprintln!("{r:?}")).unwrap();
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM")).map(String::from))
        .unwrap_or_default();
    eprintln!("10 steps in {:.1} s; {peak}", started.elapsed().as_secs_f64());
    let (first, last) = (&outcome.records[0], &outcome.records[9]);
    assert!(last.loss < first.loss, "{} -> {}", first.loss, last.loss);
}
