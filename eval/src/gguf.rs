//! Typed reads of GGUF metadata with errors that name the file and key.

use crate::error::EvalError;
use crate::vocab::{VocabKind, VocabSpec};
use candle_core::quantized::gguf_file::{Content, Value};
use std::path::{Path, PathBuf};

/// A parsed GGUF header and the file it came from.
#[derive(Debug)]
pub(crate) struct GgufMeta<'a> {
    pub(crate) path: &'a Path,
    pub(crate) content: &'a Content,
}

impl GgufMeta<'_> {
    fn key_error(&self, key: &str) -> EvalError {
        EvalError::GgufKey { path: self.path.to_path_buf(), key: key.to_string() }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub(crate) fn string(&self, key: &str) -> Result<String, EvalError> {
        let value = self.get(key).ok_or_else(|| self.key_error(key))?;
        value.to_string().cloned().map_err(|_| self.key_error(key))
    }

    pub(crate) fn opt_string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.to_string().ok()).cloned()
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize, EvalError> {
        let value = self.get(key).ok_or_else(|| self.key_error(key))?;
        as_u64(value).map(|v| v as usize).ok_or_else(|| self.key_error(key))
    }

    pub(crate) fn opt_u32(&self, key: &str) -> Option<u32> {
        self.get(key).and_then(as_u64).map(|v| v as u32)
    }

    pub(crate) fn opt_f32(&self, key: &str) -> Option<f32> {
        match self.get(key)? {
            Value::F32(v) => Some(*v),
            Value::F64(v) => Some(*v as f32),
            _ => None,
        }
    }

    pub(crate) fn opt_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|v| v.to_bool().ok())
    }

    fn array(&self, key: &str) -> Result<&Vec<Value>, EvalError> {
        let value = self.get(key).ok_or_else(|| self.key_error(key))?;
        value.to_vec().map_err(|_| self.key_error(key))
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, EvalError> {
        self.array(key)?.iter().map(|v| v.to_string().cloned().map_err(|_| self.key_error(key))).collect()
    }

    /// The vocabulary stored under `tokenizer.ggml.*`.
    pub(crate) fn vocab(&self) -> Result<VocabSpec, EvalError> {
        let model = self.string("tokenizer.ggml.model")?;
        let kind = match model.as_str() {
            "gpt2" => VocabKind::ByteLevelBpe,
            "llama" => VocabKind::SentencePiece,
            _ => return Err(self.key_error("tokenizer.ggml.model")),
        };
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        let token_types = match self.array("tokenizer.ggml.token_type") {
            Ok(values) => values.iter().map(|v| as_i64(v).unwrap_or(1) as i32).collect(),
            Err(_) => vec![1; tokens.len()],
        };
        let scores = match self.array("tokenizer.ggml.scores") {
            Ok(values) => values.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect(),
            Err(_) => Vec::new(),
        };
        let merges = match kind {
            VocabKind::ByteLevelBpe => self.strings("tokenizer.ggml.merges")?,
            VocabKind::SentencePiece => Vec::new(),
        };
        let unk_id = self.opt_u32("tokenizer.ggml.unknown_token_id");
        Ok(VocabSpec { kind, tokens, token_types, scores, merges, unk_id })
    }

    pub(crate) fn path_buf(&self) -> PathBuf {
        self.path.to_path_buf()
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    as_i64(value).and_then(|v| u64::try_from(v).ok())
}

fn as_i64(value: &Value) -> Option<i64> {
    Some(match value {
        Value::U8(v) => i64::from(*v),
        Value::I8(v) => i64::from(*v),
        Value::U16(v) => i64::from(*v),
        Value::I16(v) => i64::from(*v),
        Value::U32(v) => i64::from(*v),
        Value::I32(v) => i64::from(*v),
        Value::U64(v) => i64::try_from(*v).ok()?,
        Value::I64(v) => *v,
        _ => return None,
    })
}
