//! `Engine`: a loaded model, its tokenizer and chat template, ready to answer prompts.

use crate::error::EvalError;
use crate::generate::{self, Job};
use crate::gguf::GgufMeta;
use crate::likelihood::{ScoredText, TextContext, TextLogProbs};
use crate::lora::Adapter;
use crate::model::gguf_llama::{self, GgufLoader};
use crate::model::hf_llama::{self, HfConfig};
use crate::model::llama::Llama;
use crate::model::phi3::Phi3;
use crate::native::NativeLlama;
use crate::sampler::derive_seed;
use crate::spec::{Answer, GenerationOutput, GenerationParams, ModelInfo, ModelSpec, Prompt, Timing};
use crate::template::ChatTemplate;
use crate::tokenizer::{self, TextTokenizer};
use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The forward pass behind an engine.
#[derive(Debug)]
enum Model {
    /// Our batched llama (llama, mistral, SmolLM2, TinyLlama...) as a candle graph.
    Llama(Llama),
    /// The same llama on our packed CPU kernels (`native`).
    Native(NativeLlama),
    /// candle-transformers' quantized phi3, one sequence at a time.
    Phi3(Phi3),
}

/// A model ready to generate. Load once, call `generate` many times.
#[derive(Debug)]
pub struct Engine {
    model: Model,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    stop_ids: Vec<u32>,
    info: ModelInfo,
    device: Device,
    interrupt: Interrupt,
}

/// A flag that stops a running `generate` between two decoding steps, with the reason it
/// reports (`EvalError::Interrupted`); clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<std::sync::Mutex<Option<String>>>);

impl Interrupt {
    /// Stops the generation at its next step; the first reason given is kept.
    pub fn raise(&self, reason: impl Into<String>) {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert_with(|| reason.into());
    }

    /// `Err(Interrupted)` once raised.
    pub(crate) fn check(&self) -> Result<(), EvalError> {
        match self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            Some(reason) => Err(EvalError::Interrupted(reason.clone())),
            None => Ok(()),
        }
    }
}

/// Which kernels run a GGUF llama.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernels {
    /// Our packed kernels when the model's weights pack (`gguf_llama::native_plan`), else
    /// candle's with re-quantised inputs padded to `pad_to` columns.
    Native { pad_to: usize },
    /// candle's only, padded to `pad_to` columns (1: no padding).
    Candle { pad_to: usize },
}

impl Kernels {
    /// Ours on a CPU with AVX512-VNNI or AVX2; candle's (with their fastest padding) elsewhere.
    fn auto(device: &Device) -> Self {
        let pad_to = gguf_llama::fast_matmul_width(device);
        if device.is_cpu() && crate::native::simd::available() {
            Self::Native { pad_to }
        } else {
            Self::Candle { pad_to }
        }
    }
}

fn device() -> Result<Device, EvalError> {
    #[cfg(feature = "cuda")]
    {
        if candle_core::utils::cuda_is_available() {
            return Ok(Device::new_cuda(0)?);
        }
    }
    Ok(Device::Cpu)
}

impl Engine {
    /// Resolves `spec.reference` against the default cache and loads the model.
    pub fn load(spec: &ModelSpec) -> Result<Self, EvalError> {
        let path = crate::cache::resolve(&spec.reference, &crate::cache::default_cache_dir())?;
        Self::load_path(&path, spec)
    }

    /// Loads the model at `path` (a `.gguf` file or a safetensors directory).
    pub fn load_path(path: &Path, spec: &ModelSpec) -> Result<Self, EvalError> {
        let device = device()?;
        let kernels = Kernels::auto(&device);
        Self::load_path_with(path, spec, device, kernels)
    }

    /// `load_path` with the kernels chosen by the caller; tests compare them.
    pub(crate) fn load_path_with(
        path: &Path,
        spec: &ModelSpec,
        device: Device,
        kernels: Kernels,
    ) -> Result<Self, EvalError> {
        let adapter = spec.adapter.as_deref().map(Adapter::load).transpose()?;
        let mut engine = if path.is_dir() {
            load_hf(path, spec, adapter, device)?
        } else {
            load_gguf(path, spec, adapter, device, kernels)?
        };
        engine.info.adapter = spec.adapter.clone();
        Ok(engine)
    }

    /// The llama graph, tokenizer and chat template of the model at `path`, loaded on the CPU
    /// for candle's kernels without re-quantisation or padding, as the trainer needs them.
    pub(crate) fn load_for_training(
        path: &Path,
        template_override: Option<&str>,
    ) -> Result<(Llama, TextTokenizer, ChatTemplate), EvalError> {
        let spec = ModelSpec { template_override: template_override.map(String::from), ..ModelSpec::default() };
        let engine = Self::load_path_with(path, &spec, Device::Cpu, Kernels::Candle { pad_to: 1 })?;
        match engine.model {
            Model::Llama(llama) => Ok((llama, engine.tokenizer, engine.template)),
            Model::Native(_) | Model::Phi3(_) => Err(EvalError::TrainUnsupported {
                path: path.to_path_buf(),
                architecture: engine.info.architecture.clone(),
            }),
        }
    }

    pub fn model_info(&self) -> &ModelInfo {
        &self.info
    }

    /// Which kernels run the model, in words (benchmarks print it).
    pub fn kernels(&self) -> &'static str {
        match (&self.model, self.device.is_cpu()) {
            (Model::Native(_), _) => match crate::native::simd::level() {
                crate::native::simd::Level::Avx512Vnni => "phasegate CPU kernels (AVX512-VNNI)",
                crate::native::simd::Level::Avx2 => "phasegate CPU kernels (AVX2)",
                crate::native::simd::Level::Portable => "phasegate CPU kernels (portable)",
            },
            (_, true) => "candle CPU kernels",
            (_, false) => "candle CUDA kernels",
        }
    }

    /// The flag that stops this engine's generations (from another thread: cancel, timeout).
    pub fn interrupt(&self) -> Interrupt {
        self.interrupt.clone()
    }

    /// This engine, stopped by `interrupt` instead of its own flag.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// The longest prompt + answer the model takes, in tokens.
    pub fn context_len(&self) -> usize {
        match &self.model {
            Model::Llama(llama) => llama.cfg.max_seq,
            Model::Native(llama) => llama.cfg.max_seq,
            Model::Phi3(phi3) => phi3.max_seq,
        }
    }

    /// Tokens of `prompt` as the model sees it (chat template applied).
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<usize, EvalError> {
        Ok(self.prompt_ids(prompt)?.len())
    }

    fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>, EvalError> {
        self.tokenizer.encode(&self.template.render(prompt)?)
    }

    /// The prompt as the model sees it, after the chat template.
    pub fn render(&self, prompt: &Prompt) -> Result<String, EvalError> {
        self.template.render(prompt)
    }

    /// Generates `params.samples` answers per prompt, in prompt order then sample order.
    pub fn generate(&self, prompts: &[Prompt], params: &GenerationParams) -> Result<GenerationOutput, EvalError> {
        self.generate_until(prompts, params, &self.stop_ids)
    }

    /// `generate` that stops only on `stop_ids`: empty means exactly `max_new_tokens` tokens
    /// per answer, as benchmarks need.
    pub(crate) fn generate_until(
        &self,
        prompts: &[Prompt],
        params: &GenerationParams,
        stop_ids: &[u32],
    ) -> Result<GenerationOutput, EvalError> {
        validate(params)?;
        let wall = Instant::now();
        let ids = prompts.iter().map(|p| self.prompt_ids(p)).collect::<Result<Vec<_>, _>>()?;
        let context = self.context_len();
        if let Some((prompt, ids)) =
            prompts.iter().zip(&ids).find(|(_, ids)| ids.len() + params.max_new_tokens > context)
        {
            return Err(EvalError::ContextTooLong {
                qid: prompt.qid.clone(),
                prompt_tokens: ids.len(),
                max_new_tokens: params.max_new_tokens,
                context,
            });
        }
        let jobs: Vec<Job> = prompts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                (0..params.samples).map(move |s| Job { prompt: i, seed: derive_seed(params.seed, &p.qid, s) })
            })
            .collect();
        let interrupt = &self.interrupt;
        let (results, spent) = match &self.model {
            Model::Llama(llama) => {
                let decoder = generate::CandleDecoder { model: llama, device: &self.device };
                // Run on a worker of candle's thread pool: candle's parallel CPU ops (norms,
                // softmax, RoPE) then start on the current thread instead of waking a pool
                // thread for every small op.
                candle_core::utils::with_threadpool(|| {
                    generate::run(&decoder, &ids, &jobs, params, stop_ids, interrupt)
                })?
            }
            // Our kernels use candle's barrier pool from the calling thread.
            Model::Native(llama) => generate::run(llama, &ids, &jobs, params, stop_ids, interrupt)?,
            Model::Phi3(phi3) => {
                candle_core::utils::with_threadpool(|| phi3.run(&ids, &jobs, params, stop_ids, interrupt))?
            }
        };
        let mut answers = Vec::with_capacity(jobs.len());
        for (index, (job, result)) in jobs.iter().zip(results).enumerate() {
            answers.push(Answer {
                qid: prompts[job.prompt].qid.clone(),
                sample: index % params.samples,
                seed: job.seed,
                text: self.tokenizer.decode(&result.tokens)?,
                generated_tokens: result.tokens.len(),
                truncated: result.truncated,
                prompt_tokens: ids[job.prompt].len(),
            });
        }
        let rate = |n: usize, d: std::time::Duration| {
            if d.is_zero() { 0.0 } else { n as f64 / d.as_secs_f64() }
        };
        let timing = Timing {
            prompt_tokens: spent.prompt_tokens,
            generated_tokens: spent.generated_tokens,
            prompt_tokens_per_s: rate(spent.prompt_tokens, spent.prompt_time),
            generation_tokens_per_s: rate(spent.generated_tokens, spent.decode_time),
            wall_s: wall.elapsed().as_secs_f64(),
        };
        Ok(GenerationOutput { answers, timing })
    }

    /// Teacher-forced scoring of `texts`: each token's log-probability under this model, given
    /// its context and the text's tokens before it, from the logits generation samples from.
    /// Deterministic; llama-family models only.
    pub fn log_probs(&self, texts: &[ScoredText]) -> Result<Vec<TextLogProbs>, EvalError> {
        let mut prompts = Vec::with_capacity(texts.len());
        let mut forced = Vec::with_capacity(texts.len());
        for t in texts {
            let mut ids = self.tokenizer.encode_text(&t.text)?;
            let context = match &t.context {
                TextContext::Answer(prompt) => self.prompt_ids(prompt)?,
                TextContext::Plain => match self.tokenizer.bos {
                    Some(bos) => vec![bos],
                    None if ids.is_empty() => Vec::new(),
                    None => vec![ids.remove(0)],
                },
            };
            if context.len() + ids.len() > self.context_len() {
                return Err(EvalError::ContextTooLong {
                    qid: "<scored text>".into(),
                    prompt_tokens: context.len(),
                    max_new_tokens: ids.len(),
                    context: self.context_len(),
                });
            }
            // A row needs one context token to give the first text token's logits.
            if context.is_empty() {
                ids.clear();
            }
            prompts.push(context);
            forced.push(ids);
        }
        let batch = GenerationParams::default().max_batch;
        let interrupt = &self.interrupt;
        let log_probs = match &self.model {
            Model::Llama(llama) => {
                let decoder = generate::CandleDecoder { model: llama, device: &self.device };
                candle_core::utils::with_threadpool(|| {
                    generate::run_forced(&decoder, &prompts, &forced, batch, interrupt)
                })?
            }
            Model::Native(llama) => generate::run_forced(llama, &prompts, &forced, batch, interrupt)?,
            Model::Phi3(_) => {
                return Err(EvalError::ScoringUnsupported {
                    model: self.info.name.clone(),
                    architecture: self.info.architecture.clone(),
                });
            }
        };
        Ok(forced.into_iter().zip(log_probs).map(|(tokens, log_probs)| TextLogProbs { tokens, log_probs }).collect())
    }

    /// The llama, tokenizer and stop ids (tests use llama models only).
    #[cfg(test)]
    pub(crate) fn parts(&self) -> (&Llama, &TextTokenizer, &[u32]) {
        let Model::Llama(llama) = &self.model else { panic!("not a llama model") };
        (llama, &self.tokenizer, &self.stop_ids)
    }

    #[cfg(test)]
    pub(crate) fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The model on our kernels (tests).
    #[cfg(test)]
    pub(crate) fn native(&self) -> &NativeLlama {
        let Model::Native(llama) = &self.model else { panic!("not on our kernels") };
        llama
    }

    #[cfg(test)]
    pub(crate) fn is_candle(&self) -> bool {
        matches!(self.model, Model::Llama(_))
    }

    #[cfg(test)]
    pub(crate) fn add_stop_id(&mut self, id: u32) {
        self.stop_ids.push(id);
    }

    #[cfg(test)]
    pub(crate) fn model_mut(&mut self) -> &mut Llama {
        let Model::Llama(llama) = &mut self.model else { panic!("not a llama model") };
        llama
    }
}

fn validate(params: &GenerationParams) -> Result<(), EvalError> {
    let invalid = |param, message: &str| Err(EvalError::InvalidParam { param, message: message.into() });
    if params.samples == 0 {
        return invalid("samples", "must be at least 1");
    }
    if params.max_new_tokens == 0 {
        return invalid("max_new_tokens", "must be at least 1");
    }
    if !(params.top_p > 0.0 && params.top_p <= 1.0) {
        return invalid("top_p", "must be in (0, 1]");
    }
    if params.repetition_penalty.is_nan()
        || params.repetition_penalty <= 0.0
        || !params.temperature.is_finite()
        || params.temperature < 0.0
    {
        return invalid("temperature", "temperature must be >= 0 and repetition_penalty > 0");
    }
    Ok(())
}

fn model_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn parameter_count(c: &crate::model::llama::LlamaConfig, ffn: usize) -> u64 {
    let kv = c.n_kv_heads * c.head_dim();
    let per_layer = c.hidden * (2 * c.hidden + 2 * kv) + 3 * c.hidden * ffn + 2 * c.hidden;
    (c.vocab * c.hidden + c.n_layers * per_layer + c.hidden) as u64
}

fn load_gguf(
    path: &Path,
    spec: &ModelSpec,
    adapter: Option<Adapter>,
    device: Device,
    kernels: Kernels,
) -> Result<Engine, EvalError> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| EvalError::parse(path, e))?;
    let meta = GgufMeta { path, content: &content };
    let architecture = meta.string("general.architecture")?;
    if architecture != "llama" && architecture != "phi3" {
        return Err(EvalError::UnsupportedArchitecture { path: path.to_path_buf(), architecture });
    }
    let tokenizer = tokenizer::from_gguf(&meta)?;
    let own = meta
        .opt_string("tokenizer.chat_template")
        .or_else(|| config_template(path.with_file_name("tokenizer_config.json")));
    let template = ChatTemplate::choose(spec.template_override.as_deref(), own, &tokenizer, path)?;
    let name = meta.opt_string("general.name").unwrap_or_else(|| model_name(path));
    if architecture == "phi3" {
        let max_seq = meta.usize("phi3.context_length")?;
        let dtype = weight_dtype(&content, "blk.0.attn_qkv.weight");
        let phi3 = Phi3::load(path, content, max_seq, &mut reader, &device)?;
        return finish(Model::Phi3(phi3), tokenizer, template, name, architecture, dtype, device);
    }
    let cfg = gguf_llama::config(&meta)?;
    let requantize = spec.cpu_requantize;
    let native = matches!(kernels, Kernels::Native { .. }) && gguf_llama::native_plan(&content, &cfg);
    let pad_to = match kernels {
        Kernels::Native { pad_to } | Kernels::Candle { pad_to } => pad_to,
    };
    let loader = GgufLoader { meta, reader: &mut reader, adapter, requantize, pad_to, device: device.clone() };
    let (model, mut dtype) = if native {
        let (model, dtype) = loader.load_native(cfg)?;
        (Model::Native(model), dtype)
    } else {
        let (model, dtype) = loader.load(cfg)?;
        (Model::Llama(model), dtype)
    };
    if let Some(target) = requantize
        && (dtype == "q4_0" || dtype == "q4_1")
    {
        dtype = format!(
            "{dtype}->{}",
            serde_json::to_value(target).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        );
    }
    if !native && pad_to > 1 && requantize.is_some() {
        // The padded weights run other kernels (activations quantised per 256): say so, since
        // the environment recorded with the answers compares this between phases.
        dtype.push_str(&format!("+pad{pad_to}"));
    }
    finish(model, tokenizer, template, name, architecture, dtype, device)
}

fn weight_dtype(content: &Content, tensor: &str) -> String {
    content.tensor_infos.get(tensor).map_or_else(|| "unknown".into(), |i| format!("{:?}", i.ggml_dtype).to_lowercase())
}

fn load_hf(dir: &Path, spec: &ModelSpec, adapter: Option<Adapter>, device: Device) -> Result<Engine, EvalError> {
    let config = HfConfig::read(dir)?;
    let architecture = config.architectures.first().cloned().unwrap_or_else(|| "LlamaForCausalLM".into());
    if !matches!(architecture.as_str(), "LlamaForCausalLM" | "MistralForCausalLM") {
        return Err(EvalError::UnsupportedArchitecture { path: dir.to_path_buf(), architecture });
    }
    let mut tensors = hf_llama::read_tensors(dir)?;
    let tied = config.tie_word_embeddings || !tensors.contains_key("lm_head.weight");
    if let Some(mut adapter) = adapter {
        hf_llama::merge_adapter(&mut tensors, &mut adapter, tied)?;
    }
    let model = hf_llama::build(config.llama_config(), tensors, dir, &device)?;
    let inner = tokenizer::from_file(&dir.join("tokenizer.json"))?;
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json"));
    let add_bos = tokenizer_config.as_ref().and_then(|c| c.get("add_bos_token")?.as_bool()).unwrap_or(false);
    let tokenizer = TextTokenizer { inner, bos: config.bos_token_id, eos: config.eos(), add_bos };
    let own = config_template(dir.join("tokenizer_config.json"));
    let template = ChatTemplate::choose(spec.template_override.as_deref(), own, &tokenizer, dir)?;
    finish(Model::Llama(model), tokenizer, template, model_name(dir), "llama".into(), "f32".into(), device)
}

pub(crate) fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

pub(crate) fn config_template(path: PathBuf) -> Option<String> {
    read_json(&path)?.get("chat_template")?.as_str().map(String::from)
}

fn finish(
    model: Model,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    name: String,
    architecture: String,
    dtype: String,
    device: Device,
) -> Result<Engine, EvalError> {
    let stop_ids = template.stop_ids(&tokenizer);
    let parameters = match &model {
        Model::Llama(llama) => parameter_count(&llama.cfg, llama.layers.first().map_or(0, |l| l.gate_up.rows(0))),
        Model::Native(llama) => parameter_count(&llama.cfg, llama.ffn()),
        Model::Phi3(phi3) => phi3.parameters,
    };
    let info = ModelInfo { name, architecture, dtype, parameters, adapter: None };
    Ok(Engine { model, tokenizer, template, stop_ids, info, device, interrupt: Interrupt::default() })
}
