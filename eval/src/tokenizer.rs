//! The text tokenizer of a model: `tokenizer.json` when present, else GGUF metadata.

use crate::error::EvalError;
use crate::gguf::GgufMeta;
use crate::vocab::{VocabKind, tokenizer_json};
use std::path::Path;
use tokenizers::Tokenizer;

/// A tokenizer plus the special ids generation needs.
#[derive(Debug, Clone)]
pub(crate) struct TextTokenizer {
    pub(crate) inner: Tokenizer,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    /// Prepend BOS when the rendered prompt does not start with it.
    pub(crate) add_bos: bool,
}

impl TextTokenizer {
    /// Encodes already-templated text; special tokens in it are matched, none are added.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, EvalError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| EvalError::Tokenizer { path: "<prompt>".into(), message: e.to_string() })?;
        let mut ids = encoding.get_ids().to_vec();
        if let (true, Some(bos)) = (self.add_bos, self.bos)
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Encodes running text, such as an answer after its prompt: no BOS, special tokens matched.
    pub(crate) fn encode_text(&self, text: &str) -> Result<Vec<u32>, EvalError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| EvalError::Tokenizer { path: "<text>".into(), message: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes generated ids, dropping special tokens.
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String, EvalError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| EvalError::Tokenizer { path: "<output>".into(), message: e.to_string() })
    }

    pub(crate) fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub(crate) fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }
}

pub(crate) fn from_file(path: &Path) -> Result<Tokenizer, EvalError> {
    Tokenizer::from_file(path).map_err(|e| EvalError::Tokenizer { path: path.to_path_buf(), message: e.to_string() })
}

/// The tokenizer of a GGUF model: a sibling `tokenizer.json` wins over the metadata.
pub(crate) fn from_gguf(meta: &GgufMeta<'_>) -> Result<TextTokenizer, EvalError> {
    let sibling = meta.path.with_file_name("tokenizer.json");
    let vocab = meta.vocab()?;
    let inner = if sibling.is_file() {
        from_file(&sibling)?
    } else {
        let json = tokenizer_json(&vocab).to_string();
        json.parse::<Tokenizer>().map_err(|e| EvalError::Tokenizer { path: meta.path_buf(), message: e.to_string() })?
    };
    let default_add_bos = vocab.kind == VocabKind::SentencePiece;
    Ok(TextTokenizer {
        inner,
        bos: meta.opt_u32("tokenizer.ggml.bos_token_id"),
        eos: meta.opt_u32("tokenizer.ggml.eos_token_id"),
        add_bos: meta.opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos),
    })
}
