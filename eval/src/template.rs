//! Chat templates: the model's own Jinja template, or a named override.

use crate::error::EvalError;
use crate::spec::Prompt;
use crate::tokenizer::TextTokenizer;
use minijinja::{Environment, ErrorKind, context};
use serde::Serialize;

const CHATML: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const ZEPHYR: &str = "{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";
const PHI3: &str = "{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// Tokens that end an assistant turn in common templates; a token counts as a stop token when
/// the template mentions it and the vocabulary has it.
const END_TOKENS: &[&str] = &["<|im_end|>", "<|end|>", "<|eot_id|>", "<|endoftext|>", "</s>"];

/// Names accepted as `template_override`.
pub const TEMPLATE_NAMES: &[&str] = &["chatml", "zephyr", "tinyllama", "phi3"];

/// The name a compiled template is kept under in its environment.
const COMPILED: &str = "chat";

/// A chat template ready to render.
#[derive(Debug, Clone)]
pub(crate) struct ChatTemplate {
    name: String,
    source: String,
    bos_token: String,
    eos_token: String,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

pub(crate) fn named(name: &str) -> Option<&'static str> {
    match name {
        "chatml" => Some(CHATML),
        "zephyr" | "tinyllama" => Some(ZEPHYR),
        "phi3" => Some(PHI3),
        _ => None,
    }
}

impl ChatTemplate {
    /// `override_name` wins over the model's template `own`.
    pub(crate) fn choose(
        override_name: Option<&str>,
        own: Option<String>,
        tokenizer: &TextTokenizer,
        model_path: &std::path::Path,
    ) -> Result<Self, EvalError> {
        let (name, source) = match (override_name, own) {
            (Some(name), _) => {
                let source = named(name).ok_or_else(|| EvalError::Template {
                    template: name.to_string(),
                    message: format!("unknown template name; known: {}", TEMPLATE_NAMES.join(", ")),
                })?;
                (name.to_string(), source.to_string())
            }
            (None, Some(source)) => ("model".to_string(), source),
            (None, None) => {
                return Err(EvalError::NoTemplate { path: model_path.to_path_buf() });
            }
        };
        let text = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or_default();
        Ok(Self { name, source, bos_token: text(tokenizer.bos), eos_token: text(tokenizer.eos) })
    }

    pub(crate) fn render(&self, prompt: &Prompt) -> Result<String, EvalError> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &prompt.system {
            messages.push(Message { role: "system", content: system });
        }
        messages.push(Message { role: "user", content: &prompt.user });
        let mut env = Environment::new();
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        let fail = |e: minijinja::Error| EvalError::Template { template: self.name.clone(), message: e.to_string() };
        let template = env.template_from_str(&self.source).map_err(fail)?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(fail)
    }

    /// An environment holding this template compiled once, for rendering many conversations.
    pub(crate) fn compiled(&self) -> Result<Environment<'static>, EvalError> {
        let mut env = Environment::new();
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(COMPILED, self.source.clone())
            .map_err(|e| EvalError::Template { template: self.name.clone(), message: e.to_string() })?;
        Ok(env)
    }

    /// A whole conversation as a trainer renders it: every turn, no generation prompt. `env`
    /// comes from [`ChatTemplate::compiled`].
    pub(crate) fn render_conversation(
        &self,
        env: &Environment<'static>,
        messages: &[(&str, &str)],
    ) -> Result<String, EvalError> {
        self.render_turns(env, messages, false)
    }

    /// `messages` rendered with `env` (from [`ChatTemplate::compiled`]), followed by the
    /// assistant's generation prompt when `add_generation_prompt`; the trainer finds where each
    /// assistant turn starts and ends by rendering the turns before it both ways.
    pub(crate) fn render_turns(
        &self,
        env: &Environment<'static>,
        messages: &[(&str, &str)],
        add_generation_prompt: bool,
    ) -> Result<String, EvalError> {
        let messages: Vec<Message> = messages.iter().map(|(role, content)| Message { role, content }).collect();
        let fail = |e: minijinja::Error| EvalError::Template { template: self.name.clone(), message: e.to_string() };
        env.get_template(COMPILED)
            .map_err(fail)?
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(fail)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Ids that end generation: EOS and the template's end-of-turn token.
    pub(crate) fn stop_ids(&self, tokenizer: &TextTokenizer) -> Vec<u32> {
        let mut ids: Vec<u32> = tokenizer.eos.into_iter().collect();
        for token in END_TOKENS {
            if self.source.contains(token)
                && let Some(id) = tokenizer.token_id(token)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }
}
