//! Tiny random llama models written at test time (feature `testutil`): the same weights as a
//! GGUF file (q/k rows permuted as llama.cpp's converter does) and as a safetensors directory,
//! with a real tokenizer learned from a little Portuguese text.

use crate::lora::permute_for_gguf_rope;
use crate::vocab::{
    SPM_SPACE, TOKEN_TYPE_BYTE, TOKEN_TYPE_CONTROL, VocabKind, VocabSpec, byte_level_alphabet, tokenizer_json,
};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

const HIDDEN: usize = 64;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 128;
const MAX_SEQ: usize = 1024;
/// candle's phi3 allocates its KV cache for the whole context: keep it small.
const PHI3_MAX_SEQ: usize = 256;
const MERGES: usize = 160;
const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const ZEPHYR: &str = "{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// Text the tiny tokenizers learn their merges from.
pub const CORPUS: &str = "Quem é o João? O João é o meu amigo. Ele mora em São Paulo e gosta de ação. \
A avó dele cozinha pão e feijão. Você quer saber a história da família? A família é grande e \
a casa é antiga. Olá, tudo bem? Eu estou bem, obrigado. Não sei se ele vem amanhã à tarde.";

/// Which tokenizer family the tiny model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TinyVocab {
    /// `gpt2` byte-level BPE with a ChatML template, like SmolLM2.
    ByteLevel,
    /// `llama` SentencePiece with byte fallback and a Zephyr template, like TinyLlama.
    SentencePiece,
}

/// How to write the tiny model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyOptions {
    pub vocab: TinyVocab,
    /// GGUF weight type of the matmul weights: `F32`, `Q8_0`, `Q4_0`, `Q4_1`.
    pub dtype: GgmlDType,
    /// Output layer tied to the embedding (no `lm_head`/`output.weight`).
    pub tied: bool,
    pub seed: u64,
}

impl Default for TinyOptions {
    fn default() -> Self {
        Self { vocab: TinyVocab::ByteLevel, dtype: GgmlDType::Q8_0, tied: false, seed: 42 }
    }
}

/// Writes the default tiny model (byte-level BPE, Q8_0) as `dir/tiny.gguf`.
pub fn write_tiny_gguf(dir: &Path) -> PathBuf {
    write_tiny_gguf_with(dir, &TinyOptions::default())
}

/// The tiny vocabulary, as GGUF metadata would hold it.
pub(crate) fn vocab(kind: TinyVocab) -> VocabSpec {
    match kind {
        TinyVocab::ByteLevel => byte_level_vocab(),
        TinyVocab::SentencePiece => sentencepiece_vocab(),
    }
}

/// Learns `MERGES` merges over `words` (symbol sequences); ties go to the smallest pair.
fn learn_merges(mut words: Vec<Vec<String>>) -> Vec<(String, String)> {
    let mut merges = Vec::new();
    for _ in 0..MERGES {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for word in &words {
            for pair in word.windows(2) {
                *counts.entry((pair[0].clone(), pair[1].clone())).or_default() += 1;
            }
        }
        let Some(best) = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(p, _)| p.clone()) else {
            break;
        };
        for word in &mut words {
            let mut i = 0;
            while i + 1 < word.len() {
                if word[i] == best.0 && word[i + 1] == best.1 {
                    word[i] = format!("{}{}", best.0, best.1);
                    word.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push(best);
    }
    merges
}

fn byte_level_vocab() -> VocabSpec {
    let alphabet = byte_level_alphabet();
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    let mut token_types = vec![TOKEN_TYPE_CONTROL; 3];
    tokens.extend(alphabet.iter().map(|c| c.to_string()));
    let words = CORPUS
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            let text = if i == 0 { w.to_string() } else { format!(" {w}") };
            text.bytes().map(|b| alphabet[b as usize].to_string()).collect()
        })
        .collect();
    let merges = learn_merges(words);
    tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    token_types.resize(tokens.len(), 1);
    let merges = merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    VocabSpec { kind: VocabKind::ByteLevelBpe, tokens, token_types, scores: Vec::new(), merges, unk_id: None }
}

fn sentencepiece_vocab() -> VocabSpec {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut token_types = vec![2, TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    token_types.resize(tokens.len(), TOKEN_TYPE_BYTE);
    // Plain ASCII only: accented letters must go through byte fallback.
    let singles: Vec<String> = std::iter::once(SPM_SPACE)
        .chain(('a'..='z').chain('A'..='Z'))
        .chain("?.,!".chars())
        .map(String::from)
        .collect();
    let mut scores = vec![0.0; tokens.len()];
    scores.extend(singles.iter().map(|_| -1000.0));
    tokens.extend(singles.iter().cloned());
    let words = CORPUS
        .split(' ')
        .map(|w| {
            std::iter::once(SPM_SPACE.to_string())
                .chain(w.chars().map(String::from))
                .filter(|s| singles.contains(s))
                .collect()
        })
        .collect();
    let merges = learn_merges(words);
    for (rank, (a, b)) in merges.iter().enumerate() {
        let piece = format!("{a}{b}");
        if !tokens.contains(&piece) {
            tokens.push(piece);
            scores.push(-(rank as f32));
        }
    }
    token_types.resize(tokens.len(), 1);
    VocabSpec { kind: VocabKind::SentencePiece, tokens, token_types, scores, merges: Vec::new(), unk_id: Some(0) }
}

/// Random weights in Hugging Face layout and naming, f32.
pub(crate) fn hf_weights(options: &TinyOptions, vocab_size: usize) -> BTreeMap<String, Tensor> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut random = |rows: usize, cols: usize, scale: f32| {
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-scale..scale)).collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).expect("tensor")
    };
    let head_dim = HIDDEN / HEADS;
    let mut w = BTreeMap::new();
    let s = 2.0 / (HIDDEN as f32).sqrt();
    w.insert("model.embed_tokens.weight".to_string(), random(vocab_size, HIDDEN, 1.0));
    for i in 0..LAYERS {
        let p = |m: &str| format!("model.layers.{i}.{m}.weight");
        w.insert(p("self_attn.q_proj"), random(HIDDEN, HIDDEN, s));
        w.insert(p("self_attn.k_proj"), random(KV_HEADS * head_dim, HIDDEN, s));
        w.insert(p("self_attn.v_proj"), random(KV_HEADS * head_dim, HIDDEN, s));
        w.insert(p("self_attn.o_proj"), random(HIDDEN, HIDDEN, s));
        w.insert(p("mlp.gate_proj"), random(FFN, HIDDEN, s));
        w.insert(p("mlp.up_proj"), random(FFN, HIDDEN, s));
        w.insert(p("mlp.down_proj"), random(HIDDEN, FFN, 2.0 / (FFN as f32).sqrt()));
        w.insert(p("input_layernorm"), (random(1, HIDDEN, 0.1) + 1.0).and_then(|t| t.squeeze(0)).expect("norm"));
        w.insert(
            p("post_attention_layernorm"),
            (random(1, HIDDEN, 0.1) + 1.0).and_then(|t| t.squeeze(0)).expect("norm"),
        );
    }
    w.insert("model.norm.weight".to_string(), (random(1, HIDDEN, 0.1) + 1.0).and_then(|t| t.squeeze(0)).expect("norm"));
    if !options.tied {
        w.insert("lm_head.weight".to_string(), random(vocab_size, HIDDEN, 4.0 / (HIDDEN as f32).sqrt()));
    }
    w
}

fn template_for(kind: TinyVocab) -> (&'static str, u32, u32, bool) {
    match kind {
        TinyVocab::ByteLevel => (CHATML, 1, 2, false),
        TinyVocab::SentencePiece => (ZEPHYR, 1, 2, true),
    }
}

/// Writes the tiny model as `dir/tiny.gguf`.
pub fn write_tiny_gguf_with(dir: &Path, options: &TinyOptions) -> PathBuf {
    let spec = vocab(options.vocab);
    let weights = hf_weights(options, spec.tokens.len());
    let (template, bos, eos, add_bos) = template_for(options.vocab);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in &weights {
        let (gguf_name, t) = gguf_tensor(name, t);
        let dtype = if t.rank() == 1 || name.contains("embed") { GgmlDType::F32 } else { options.dtype };
        tensors.push((gguf_name, QTensor::quantize(&t, dtype).expect("quantize")));
    }
    let mut metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("tiny-llama".into())),
        ("llama.context_length", Value::U32(MAX_SEQ as u32)),
        ("llama.embedding_length", Value::U32(HIDDEN as u32)),
        ("llama.block_count", Value::U32(LAYERS as u32)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("llama.rope.dimension_count", Value::U32((HIDDEN / HEADS) as u32)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.chat_template", Value::String(template.into())),
    ];
    metadata.extend(tokenizer_metadata(&spec, bos, eos, add_bos));
    write_gguf(&dir.join("tiny.gguf"), &metadata, &tensors)
}

/// The `tokenizer.ggml.*` keys of `spec`.
fn tokenizer_metadata(spec: &VocabSpec, bos: u32, eos: u32, add_bos: bool) -> Vec<(&'static str, Value)> {
    let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let model = if spec.kind == VocabKind::ByteLevelBpe { "gpt2" } else { "llama" };
    let mut metadata = vec![
        ("tokenizer.ggml.model", Value::String(model.into())),
        ("tokenizer.ggml.tokens", strings(&spec.tokens)),
        ("tokenizer.ggml.token_type", Value::Array(spec.token_types.iter().map(|t| Value::I32(*t)).collect())),
        ("tokenizer.ggml.bos_token_id", Value::U32(bos)),
        ("tokenizer.ggml.eos_token_id", Value::U32(eos)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(add_bos)),
    ];
    if spec.kind == VocabKind::ByteLevelBpe {
        metadata.push(("tokenizer.ggml.merges", strings(&spec.merges)));
    } else {
        metadata.push(("tokenizer.ggml.scores", Value::Array(spec.scores.iter().map(|s| Value::F32(*s)).collect())));
        metadata.push(("tokenizer.ggml.unknown_token_id", Value::U32(0)));
    }
    metadata
}

fn write_gguf(path: &Path, metadata: &[(&str, Value)], tensors: &[(String, QTensor)]) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create dir");
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create gguf"));
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &md, &ts).expect("write gguf");
    path.to_path_buf()
}

/// Writes a tiny random phi3 model (the tensor names and metadata candle-transformers'
/// quantized phi3 loads: fused `attn_qkv`, fused gate+up `ffn_up`) as `dir/tiny-phi3.gguf`,
/// with the SentencePiece vocabulary and no chat template of its own (use the `phi3` override).
pub fn write_tiny_phi3_gguf(dir: &Path, seed: u64) -> PathBuf {
    let spec = sentencepiece_vocab();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut random = |shape: &[usize], scale: f32, offset: f32| {
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| offset + rng.random_range(-scale..scale)).collect();
        QTensor::quantize(&Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor"), GgmlDType::F32)
            .expect("quantize")
    };
    let s = 2.0 / (HIDDEN as f32).sqrt();
    let head_dim = HIDDEN / HEADS;
    let mut tensors = vec![
        ("token_embd.weight".to_string(), random(&[spec.tokens.len(), HIDDEN], 1.0, 0.0)),
        ("output_norm.weight".to_string(), random(&[HIDDEN], 0.1, 1.0)),
        ("output.weight".to_string(), random(&[spec.tokens.len(), HIDDEN], s, 0.0)),
    ];
    for i in 0..LAYERS {
        let name = |m: &str| format!("blk.{i}.{m}.weight");
        tensors.push((name("attn_norm"), random(&[HIDDEN], 0.1, 1.0)));
        tensors.push((name("ffn_norm"), random(&[HIDDEN], 0.1, 1.0)));
        tensors.push((name("attn_qkv"), random(&[(HEADS + 2 * KV_HEADS) * head_dim, HIDDEN], s, 0.0)));
        tensors.push((name("attn_output"), random(&[HIDDEN, HIDDEN], s, 0.0)));
        tensors.push((name("ffn_up"), random(&[2 * FFN, HIDDEN], s, 0.0)));
        tensors.push((name("ffn_down"), random(&[HIDDEN, FFN], 2.0 / (FFN as f32).sqrt(), 0.0)));
    }
    let mut metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("phi3".into())),
        ("general.name", Value::String("tiny-phi3".into())),
        ("phi3.context_length", Value::U32(PHI3_MAX_SEQ as u32)),
        ("phi3.embedding_length", Value::U32(HIDDEN as u32)),
        ("phi3.block_count", Value::U32(LAYERS as u32)),
        ("phi3.feed_forward_length", Value::U32(FFN as u32)),
        ("phi3.attention.head_count", Value::U32(HEADS as u32)),
        ("phi3.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        ("phi3.rope.dimension_count", Value::U32(head_dim as u32)),
        ("phi3.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
    ];
    metadata.extend(tokenizer_metadata(&spec, 1, 2, true));
    write_gguf(&dir.join("tiny-phi3.gguf"), &metadata, &tensors)
}

/// The GGUF name of a Hugging Face tensor, with q/k rows permuted as llama.cpp's converter does.
fn gguf_tensor(name: &str, t: &Tensor) -> (String, Tensor) {
    let renamed = name
        .replace("model.embed_tokens", "token_embd")
        .replace("model.norm", "output_norm")
        .replace("lm_head", "output")
        .replace("model.layers.", "blk.")
        .replace("self_attn.q_proj", "attn_q")
        .replace("self_attn.k_proj", "attn_k")
        .replace("self_attn.v_proj", "attn_v")
        .replace("self_attn.o_proj", "attn_output")
        .replace("mlp.gate_proj", "ffn_gate")
        .replace("mlp.up_proj", "ffn_up")
        .replace("mlp.down_proj", "ffn_down")
        .replace("post_attention_layernorm", "ffn_norm")
        .replace("input_layernorm", "attn_norm");
    let t = if name.ends_with("q_proj.weight") {
        permute_for_gguf_rope(t, HEADS).expect("permute q")
    } else if name.ends_with("k_proj.weight") {
        permute_for_gguf_rope(t, KV_HEADS).expect("permute k")
    } else {
        t.clone()
    };
    (renamed, t)
}

/// Writes the same tiny model as a Hugging Face directory; returns the directory.
pub fn write_tiny_safetensors(dir: &Path, options: &TinyOptions) -> PathBuf {
    let spec = vocab(options.vocab);
    let weights: HashMap<String, Tensor> = hf_weights(options, spec.tokens.len()).into_iter().collect();
    let (template, bos, eos, add_bos) = template_for(options.vocab);
    std::fs::create_dir_all(dir).expect("create dir");
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).expect("save safetensors");
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": HIDDEN, "intermediate_size": FFN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "vocab_size": spec.tokens.len(), "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": MAX_SEQ, "tie_word_embeddings": options.tied,
        "bos_token_id": bos, "eos_token_id": eos,
    });
    let tokenizer_config = serde_json::json!({
        "chat_template": template, "add_bos_token": add_bos,
        "bos_token": spec.tokens[bos as usize], "eos_token": spec.tokens[eos as usize],
    });
    let write = |name: &str, v: &serde_json::Value| std::fs::write(dir.join(name), v.to_string()).expect("write json");
    write("config.json", &config);
    write("tokenizer_config.json", &tokenizer_config);
    write("tokenizer.json", &tokenizer_json(&spec));
    dir.to_path_buf()
}

/// A PEFT adapter for the tiny model.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyLora {
    pub r: usize,
    pub alpha: f64,
    /// Module names, e.g. `q_proj`, `k_proj`, `v_proj`, `down_proj`, `lm_head`.
    pub targets: Vec<String>,
    /// B = 0: the adapter changes nothing.
    pub zero_b: bool,
    pub seed: u64,
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`.
pub fn write_tiny_lora(dir: &Path, lora: &TinyLora, vocab: TinyVocab) -> PathBuf {
    let vocab_size = self::vocab(vocab).tokens.len();
    let shapes = hf_weights(&TinyOptions { vocab, ..TinyOptions::default() }, vocab_size);
    let mut rng = StdRng::seed_from_u64(lora.seed);
    let mut tensors = HashMap::new();
    for (name, w) in &shapes {
        let module = name.trim_end_matches(".weight");
        if !lora.targets.iter().any(|t| module.ends_with(t.as_str())) {
            continue;
        }
        let (out, inp) = w.dims2().expect("2d");
        let mut random = |rows: usize, cols: usize, zero: bool| {
            let data: Vec<f32> =
                (0..rows * cols).map(|_| if zero { 0.0 } else { rng.random_range(-0.3..0.3f32) }).collect();
            Tensor::from_vec(data, (rows, cols), &Device::Cpu).expect("tensor")
        };
        tensors.insert(format!("base_model.model.{module}.lora_A.weight"), random(lora.r, inp, false));
        tensors.insert(format!("base_model.model.{module}.lora_B.weight"), random(out, lora.r, lora.zero_b));
    }
    std::fs::create_dir_all(dir).expect("create dir");
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).expect("save adapter");
    let config = serde_json::json!({
        "peft_type": "LORA", "r": lora.r, "lora_alpha": lora.alpha, "target_modules": lora.targets,
        "lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM",
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).expect("write adapter config");
    dir.to_path_buf()
}
