//! Rendered token lengths of training conversations, with the tokenizer and chat template the
//! engine would use for the same model: what `phasegate lint` compares with `max_length`.
//!
//! Only the GGUF header (or the HF directory's tokenizer files) is read, never the weights, so
//! loading takes milliseconds. Conversations are rendered as trainers render them (every turn,
//! no generation prompt) and encoded on all cores, each thread rendering and encoding its share.

use std::path::Path;

use minijinja::Environment;

use crate::error::EvalError;
use crate::fast_count::{FastCounter, Memo};
use crate::gguf::GgufMeta;
use crate::template::ChatTemplate;
use crate::tokenizer::{self, TextTokenizer};

/// Fewer conversations than this per thread are not worth a thread.
const MIN_PER_THREAD: usize = 256;

/// One turn of a conversation to measure. A conversation whose only role is `text` is raw
/// text: it is encoded as it is, without the chat template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// A model's tokenizer and chat template, loaded without its weights.
#[derive(Debug)]
pub struct TokenCounter {
    tokenizer: TextTokenizer,
    /// Counts without encodings, when the tokenizer's pipeline is one it implements.
    fast: Option<FastCounter>,
    /// The BOS token's text, to see whether a rendered conversation starts with it.
    bos_text: Option<String>,
    template: ChatTemplate,
    env: Environment<'static>,
    name: String,
}

impl TokenCounter {
    /// Loads from a `.gguf` file or a Hugging Face directory (`tokenizer.json`,
    /// `tokenizer_config.json`); `template_override` names a template as `[eval] template` does.
    pub fn load(path: &Path, template_override: Option<&str>) -> Result<Self, EvalError> {
        let (tokenizer, own) = if path.is_dir() { hf_parts(path)? } else { gguf_parts(path)? };
        let template = ChatTemplate::choose(template_override, own, &tokenizer, path)?;
        let env = template.compiled()?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let fast = FastCounter::from_tokenizer(&tokenizer.inner);
        let bos_text = tokenizer.bos.and_then(|b| tokenizer.token_text(b));
        Ok(Self { tokenizer, fast, bos_text, template, env, name })
    }

    /// The model's name (its file or directory name) and the template's.
    pub fn describe(&self) -> String {
        format!("{} ({} template)", self.name, self.template.name())
    }

    /// The rendered length in tokens of each conversation, in order. A conversation the
    /// template refuses (a Jinja `raise_exception`, e.g. on roles out of order) is measured as
    /// its turns joined by newlines: the lint reports the order itself.
    pub fn lengths(&self, conversations: &[Vec<ChatMessage<'_>>]) -> Result<Vec<usize>, EvalError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_thread = conversations.len().div_ceil(threads.max(1)).max(MIN_PER_THREAD);
        // Each thread renders and encodes its own contiguous share, so rendering (minijinja,
        // single-threaded per call) runs in parallel too; the shares come back in order.
        let shares: Vec<Result<Vec<usize>, EvalError>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                conversations.chunks(per_thread).map(|share| scope.spawn(move || self.lengths_serial(share))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(self.error("a worker thread panicked"))))
                .collect()
        });
        let mut out = Vec::with_capacity(conversations.len());
        for share in shares {
            out.extend(share?);
        }
        Ok(out)
    }

    fn lengths_serial(&self, conversations: &[Vec<ChatMessage<'_>>]) -> Result<Vec<usize>, EvalError> {
        self.lengths_with(conversations, self.fast.as_ref())
    }

    /// Counted by `fast` when given, else by encoding with `tokenizers`.
    fn lengths_with(
        &self,
        conversations: &[Vec<ChatMessage<'_>>],
        fast: Option<&FastCounter>,
    ) -> Result<Vec<usize>, EvalError> {
        if let Some(fast) = fast {
            let mut memo = Memo::new();
            return Ok(conversations
                .iter()
                .map(|c| {
                    let text = self.render(c);
                    let n = fast.count(&text, &mut memo);
                    let starts_with_bos = self.bos_text.as_deref().is_some_and(|b| fast.starts_with_added(&text, b));
                    match (self.tokenizer.add_bos, self.tokenizer.bos) {
                        (true, Some(_)) if !starts_with_bos => n + 1,
                        _ => n,
                    }
                })
                .collect());
        }
        conversations
            .iter()
            .map(|c| {
                let text = self.render(c);
                let encoding =
                    self.tokenizer.inner.encode_fast(text.as_str(), false).map_err(|e| self.error(&e.to_string()))?;
                Ok(self.with_bos(encoding.get_ids()))
            })
            .collect()
    }

    fn error(&self, message: &str) -> EvalError {
        EvalError::Tokenizer { path: self.name.clone().into(), message: message.to_owned() }
    }

    fn render(&self, conversation: &[ChatMessage<'_>]) -> String {
        if conversation.iter().all(|m| m.role == "text") {
            return joined(conversation);
        }
        let messages: Vec<(&str, &str)> = conversation.iter().map(|m| (m.role, m.content)).collect();
        self.template.render_conversation(&self.env, &messages).unwrap_or_else(|_| joined(conversation))
    }

    fn with_bos(&self, ids: &[u32]) -> usize {
        match (self.tokenizer.add_bos, self.tokenizer.bos) {
            (true, Some(bos)) if ids.first() != Some(&bos) => ids.len() + 1,
            _ => ids.len(),
        }
    }
}

fn joined(conversation: &[ChatMessage<'_>]) -> String {
    conversation.iter().map(|m| m.content).collect::<Vec<_>>().join("\n")
}

fn gguf_parts(path: &Path) -> Result<(TextTokenizer, Option<String>), EvalError> {
    let file = std::fs::File::open(path).map_err(|e| EvalError::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let content =
        candle_core::quantized::gguf_file::Content::read(&mut reader).map_err(|e| EvalError::parse(path, e))?;
    let meta = GgufMeta { path, content: &content };
    let tokenizer = tokenizer::from_gguf(&meta)?;
    let own = meta
        .opt_string("tokenizer.chat_template")
        .or_else(|| crate::engine::config_template(path.with_file_name("tokenizer_config.json")));
    Ok((tokenizer, own))
}

fn hf_parts(dir: &Path) -> Result<(TextTokenizer, Option<String>), EvalError> {
    let inner = tokenizer::from_file(&dir.join("tokenizer.json"))?;
    let config = crate::engine::read_json(&dir.join("tokenizer_config.json"));
    let add_bos = config.as_ref().and_then(|c| c.get("add_bos_token")?.as_bool()).unwrap_or(false);
    let model = crate::model::hf_llama::HfConfig::read(dir).ok();
    let tokenizer = TextTokenizer {
        inner,
        bos: model.as_ref().and_then(|m| m.bos_token_id),
        eos: model.as_ref().and_then(|m| m.eos()),
        add_bos,
    };
    Ok((tokenizer, crate::engine::config_template(dir.join("tokenizer_config.json"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::spec::ModelSpec;
    use crate::tiny::{TinyOptions, TinyVocab, write_tiny_gguf, write_tiny_gguf_with};

    fn msg<'a>(role: &'a str, content: &'a str) -> ChatMessage<'a> {
        ChatMessage { role, content }
    }

    /// Conversations as chat datasets hold them: a system prompt, one to three exchanges of
    /// Portuguese text with digits, punctuation, newlines and the odd emoji.
    fn conversations(n: usize) -> Vec<Vec<(String, String)>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let words = [
            "Você",
            "é",
            "a",
            "Iara,",
            "parceira",
            "do",
            "Tomás.",
            "Ele",
            "programa",
            "em",
            "Rust",
            "desde",
            "2019",
            "—",
            "não",
            "é?",
            "Sim!",
            "3,5",
            "ação",
            "\n",
            "\n\n",
            "🙂",
            "código:",
            "`fn main()`",
            "  ",
            "ok.",
        ];
        let sentence = |rng: &mut rand::rngs::StdRng| {
            (0..rng.random_range(1..60)).map(|_| words[rng.random_range(0..words.len())]).collect::<Vec<_>>().join(" ")
        };
        (0..n)
            .map(|i| {
                let mut turns = Vec::new();
                if i % 3 != 0 {
                    turns.push(("system".to_owned(), sentence(&mut rng)));
                }
                for _ in 0..rng.random_range(1..4) {
                    turns.push(("user".to_owned(), sentence(&mut rng)));
                    turns.push(("assistant".to_owned(), sentence(&mut rng)));
                }
                turns
            })
            .collect()
    }

    fn fast_equals_encoded(path: &std::path::Path) {
        let counter = TokenCounter::load(path, None).unwrap();
        let fast = counter.fast.as_ref().expect("a byte-level BPE gets the fast count");
        let owned = conversations(2000);
        let chats: Vec<Vec<ChatMessage<'_>>> =
            owned.iter().map(|c| c.iter().map(|(r, t)| msg(r, t)).collect()).collect();
        let counted = counter.lengths_with(&chats, Some(fast)).unwrap();
        let encoded = counter.lengths_with(&chats, None).unwrap();
        assert_eq!(counted, encoded);
    }

    #[test]
    fn the_fast_count_equals_the_encoded_length_of_every_rendered_conversation() {
        let dir = tempfile::tempdir().unwrap();
        fast_equals_encoded(&write_tiny_gguf(dir.path()));
        let sp =
            write_tiny_gguf_with(dir.path(), &TinyOptions { vocab: TinyVocab::SentencePiece, ..Default::default() });
        assert!(TokenCounter::load(&sp, None).unwrap().fast.is_none(), "SentencePiece is encoded by tokenizers");
        // The real SmolLM2 tokenizer when the model cache holds it (`.ci/run` pulls it).
        let cache = std::env::var_os("PHASEGATE_MODEL_CACHE").map(std::path::PathBuf::from);
        match cache.map(|c| c.join("smollm2-135m-instruct.gguf")).filter(|p| p.is_file()) {
            Some(path) => fast_equals_encoded(&path),
            None => eprintln!("skipping SmolLM2: not in $PHASEGATE_MODEL_CACHE"),
        }
    }

    #[test]
    fn lengths_are_the_engines_tokens_of_the_whole_rendered_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_tiny_gguf(dir.path());
        let counter = TokenCounter::load(&path, None).unwrap();
        let engine = Engine::load_path(&path, &ModelSpec::default()).unwrap();
        let chat = vec![
            msg("system", "Você é a Iara."),
            msg("user", "Quem é o João?"),
            msg("assistant", "O João é o meu amigo."),
        ];
        let rendered = "<|im_start|>system\nVocê é a Iara.<|im_end|>\n<|im_start|>user\nQuem é o João?<|im_end|>\n<|im_start|>assistant\nO João é o meu amigo.<|im_end|>\n";
        let expected = engine.tokenizer().encode(rendered).unwrap().len();
        let long_answer = "O João é o meu amigo. ".repeat(20);
        let longer = vec![msg("user", "Quem é o João?"), msg("assistant", &long_answer)];
        let raw = vec![msg("text", "A avó dele cozinha pão e feijão.")];
        let lengths = counter.lengths(&[chat.clone(), longer, raw]).unwrap();
        assert_eq!(lengths[0], expected);
        assert!(lengths[1] > lengths[0] * 3, "{lengths:?}");
        assert_eq!(lengths[2], engine.tokenizer().encode("A avó dele cozinha pão e feijão.").unwrap().len());
        assert_eq!(counter.lengths(&[chat]).unwrap()[0], expected, "batch position does not change a length");
    }

    #[test]
    fn the_template_override_and_bos_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let spm = write_tiny_gguf_with(
            dir.path(),
            &TinyOptions { vocab: TinyVocab::SentencePiece, ..TinyOptions::default() },
        );
        let chat = vec![msg("user", "Olá, tudo bem?"), msg("assistant", "Eu estou bem, obrigado.")];
        let zephyr = TokenCounter::load(&spm, None).unwrap();
        let chatml = TokenCounter::load(&spm, Some("chatml")).unwrap();
        assert!(zephyr.describe().contains("model template") && chatml.describe().contains("chatml"));
        let engine = Engine::load_path(&spm, &ModelSpec::default()).unwrap();
        let tokenizer = engine.tokenizer();
        let eos = tokenizer.token_text(tokenizer.eos.unwrap()).unwrap();
        let text = format!("<|user|>\nOlá, tudo bem?{eos}\n<|assistant|>\nEu estou bem, obrigado.{eos}\n");
        assert!(tokenizer.add_bos);
        assert_eq!(zephyr.lengths(std::slice::from_ref(&chat)).unwrap()[0], tokenizer.encode(&text).unwrap().len());
        assert_ne!(zephyr.lengths(std::slice::from_ref(&chat)).unwrap(), chatml.lengths(&[chat]).unwrap());
        assert!(TokenCounter::load(&spm, Some("nope")).is_err());
    }
}
