//! Errors of model loading and generation.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or generating with it.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("failed to load gguf {path}: missing or invalid metadata key `{key}`")]
    GgufKey { path: PathBuf, key: String },
    #[error("failed to load {path}: tensor `{tensor}`: {message}")]
    Tensor { path: PathBuf, tensor: String, message: String },
    #[error("failed to load {path}: unsupported architecture `{architecture}`")]
    UnsupportedArchitecture { path: PathBuf, architecture: String },
    #[error("failed to build tokenizer from {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("failed to render chat template `{template}`: {message}")]
    Template { template: String, message: String },
    #[error("failed to find a chat template for {path}\nhint: set a template override (chatml, zephyr, phi3)")]
    NoTemplate { path: PathBuf },
    #[error("failed to apply lora adapter {path}: {message}")]
    Lora { path: PathBuf, message: String },
    #[error(
        "failed to apply lora adapter {path}: module `{module}` targets the output layer, which is tied to the token embedding in this model"
    )]
    LoraTiedOutput { path: PathBuf, module: String },
    #[error(
        "failed to resolve model `{reference}`: not a file, a directory, nor a cached model in {cache_dir}\nhint: run `phasegate models pull {reference}`"
    )]
    UnknownModel { reference: String, cache_dir: PathBuf },
    #[error("failed to pull model `{name}`: {message}")]
    Pull { name: String, message: String },
    #[error("failed to generate: invalid parameter `{param}`: {message}")]
    InvalidParam { param: &'static str, message: String },
    #[error(
        "failed to generate for question {qid}: its prompt ({prompt_tokens} tokens) plus `max_new_tokens` ({max_new_tokens}) exceed the model's context of {context} tokens\nhint: shorten the system prompt or the question, or lower max_new_tokens"
    )]
    ContextTooLong { qid: String, prompt_tokens: usize, max_new_tokens: usize, context: usize },
    #[error(
        "failed to score text with model {model} ({architecture}): teacher-forced scoring runs llama-family models only"
    )]
    ScoringUnsupported { model: String, architecture: String },
    #[error("failed to train on {path}: the trainer runs llama-family models only, not `{architecture}`")]
    TrainUnsupported { path: PathBuf, architecture: String },
    #[error("failed to train: invalid setting `{param}`: {message}")]
    TrainConfig { param: &'static str, message: String },
    #[error("failed to train: example {example}: {message}")]
    TrainData { example: usize, message: String },
    #[error("generation stopped: {0}")]
    Interrupted(String),
    #[error("failed to run the model: {0}")]
    Candle(#[from] candle_core::Error),
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Self::Parse { path: path.into(), message: message.to_string() }
    }
}
