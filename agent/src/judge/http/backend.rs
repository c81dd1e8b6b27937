//! [`JudgeBackend`] over a judge server: a batch of calls goes out at most
//! `score.judge_concurrency` at a time and comes back in call order.

use futures::{StreamExt, TryStreamExt};
use phasegate_score::judge::JudgeRefused;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::client::{HttpJudge, HttpJudgeError};
use crate::judge::{BackendError, JudgeBackend, JudgeCall};

/// The judge server behind the judge flow, which runs on a blocking thread: each batch is driven
/// on the agent's runtime through `runtime`.
#[derive(Debug)]
pub(crate) struct HttpBackend {
    judge: HttpJudge,
    runtime: Handle,
    /// Set to the reason when the job is cancelled or `score.timeout` passes: requests in flight
    /// are dropped and the batch fails.
    stop: watch::Receiver<Option<String>>,
}

impl HttpBackend {
    pub(crate) fn new(judge: HttpJudge, runtime: Handle, stop: watch::Receiver<Option<String>>) -> Self {
        Self { judge, runtime, stop }
    }

    async fn batch(
        &self,
        calls: &[JudgeCall],
        seed: u64,
        max_new_tokens: usize,
    ) -> Result<Vec<String>, HttpJudgeError> {
        let replies = futures::stream::iter(calls)
            .map(|call| self.judge.complete(call, seed, max_new_tokens))
            .buffered(self.judge.concurrency)
            .try_collect();
        let mut stop = self.stop.clone();
        tokio::select! {
            replies = replies => replies,
            reason = stop.wait_for(Option::is_some) => {
                let reason = reason.ok().and_then(|r| r.clone()).unwrap_or_else(|| "the job ended".to_owned());
                Err(HttpJudgeError::Stopped(reason))
            }
        }
    }
}

impl JudgeBackend for HttpBackend {
    /// Must not be called from an async context (the score job calls it on a blocking thread).
    fn generate(&mut self, calls: &[JudgeCall], seed: u64, max_new_tokens: usize) -> Result<Vec<String>, BackendError> {
        let runtime = self.runtime.clone();
        runtime.block_on(self.batch(calls, seed, max_new_tokens)).map_err(|e| BackendError(e.to_string()))
    }

    /// The server's context is unknown here; a prompt that does not fit is the server's 4xx
    /// answer, which fails the job naming the endpoint.
    fn check_fits(&self, _calls: &[JudgeCall], _max_new_tokens: usize) -> Result<(), JudgeRefused> {
        Ok(())
    }
}
