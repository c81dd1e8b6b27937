//! The judge model behind a small trait, so the judge flow can be tested with canned replies, and
//! its implementation over `phasegate-eval`'s engine.

use std::path::Path;

use phasegate_eval::{CpuRequantize, Engine, EvalError, GenerationParams, Interrupt, ModelInfo, ModelSpec, Prompt};
use phasegate_proto::spec::{JudgeModel, Requantize};
use phasegate_score::judge::{JudgePrompt, JudgeRefused};

/// Sampling temperature of judge calls. Not greedy: the two calls with different seeds must be free
/// to differ, or the self-agreement check could never catch an unstable judgement.
pub(crate) const JUDGE_TEMPERATURE: f64 = 0.7;
/// Nucleus filtering of judge calls.
pub(crate) const JUDGE_TOP_P: f64 = 0.9;

/// One judge call: the prompt, and an id that fixes the call's sampling stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JudgeCall {
    /// Unique within a run, e.g. `Q3/1` for sample 1 of question Q3.
    pub(crate) id: String,
    pub(crate) prompt: JudgePrompt,
}

/// A judge model that failed to generate.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BackendError(pub(crate) String);

impl From<EvalError> for BackendError {
    fn from(e: EvalError) -> Self {
        Self(e.to_string())
    }
}

/// Generates judge replies.
///
/// Contract: returns exactly one reply per call, in call order. A reply depends only on the call's
/// id and prompt, `seed` and `max_new_tokens`, never on the other calls of the batch, so the same
/// run judges the same however its calls are batched. Different seeds draw different samples.
pub(crate) trait JudgeBackend {
    fn generate(&mut self, calls: &[JudgeCall], seed: u64, max_new_tokens: usize) -> Result<Vec<String>, BackendError>;

    /// A refusal naming the first call whose prompt plus `max_new_tokens` does not fit the judge's
    /// context; such a judge cannot judge every call.
    fn check_fits(&self, calls: &[JudgeCall], max_new_tokens: usize) -> Result<(), JudgeRefused> {
        let _ = (calls, max_new_tokens);
        Ok(())
    }
}

/// The judge over a loaded `phasegate-eval` engine. Each call is a prompt whose sampling seed
/// derives from (`seed`, call id), as eval answers derive theirs from (seed, question id, sample).
#[derive(Debug)]
pub(crate) struct EngineBackend {
    engine: Engine,
}

impl EngineBackend {
    /// Loads the judge model at `path` (already resolved against the model cache).
    /// `interrupt` stops its generations (cancellation, `score.timeout`).
    pub(crate) fn load(path: &Path, judge: &JudgeModel, interrupt: Interrupt) -> Result<Self, EvalError> {
        let spec = ModelSpec {
            reference: path.display().to_string(),
            adapter: None,
            template_override: judge.template.clone(),
            cpu_requantize: judge.cpu_requantize.map(|Requantize::Q8_0| CpuRequantize::Q8_0),
        };
        Ok(Self { engine: Engine::load_path(path, &spec)?.with_interrupt(interrupt) })
    }

    pub(crate) fn model_info(&self) -> &ModelInfo {
        self.engine.model_info()
    }
}

impl JudgeBackend for EngineBackend {
    fn generate(&mut self, calls: &[JudgeCall], seed: u64, max_new_tokens: usize) -> Result<Vec<String>, BackendError> {
        let prompts: Vec<Prompt> = calls
            .iter()
            .map(|c| Prompt { qid: c.id.clone(), system: Some(c.prompt.system.clone()), user: c.prompt.user.clone() })
            .collect();
        let params = GenerationParams {
            max_new_tokens,
            temperature: JUDGE_TEMPERATURE,
            top_p: JUDGE_TOP_P,
            samples: 1,
            seed,
            max_batch: calls.len().max(1),
            ..GenerationParams::default()
        };
        let output = self.engine.generate(&prompts, &params)?;
        Ok(output.answers.into_iter().map(|a| a.text).collect())
    }

    fn check_fits(&self, calls: &[JudgeCall], max_new_tokens: usize) -> Result<(), JudgeRefused> {
        let context = self.engine.context_len();
        for call in calls {
            let prompt = Prompt {
                qid: call.id.clone(),
                system: Some(call.prompt.system.clone()),
                user: call.prompt.user.clone(),
            };
            // A prompt that cannot be rendered fails in `generate`, with its own error.
            let Ok(prompt_tokens) = self.engine.prompt_tokens(&prompt) else { continue };
            if prompt_tokens + max_new_tokens > context {
                return Err(JudgeRefused::PromptTooLong {
                    call: call.id.clone(),
                    prompt_tokens,
                    max_new_tokens,
                    context,
                });
            }
        }
        Ok(())
    }
}
