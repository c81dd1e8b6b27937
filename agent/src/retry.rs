//! The one retry policy of a job's calls to the coordinator.
//!
//! A coordinator restart must cost a job nothing: marking it running, downloading its bundle and
//! inputs, uploading artifacts and reporting its end are all retried with exponential backoff and
//! jitter while the coordinator does not answer, for at least [`OUTAGE_TTLS`] lease TTLs of
//! silence. An answer that refuses the call (bad lease, bad input, too large) ends the retries at
//! once: retrying would change nothing. The coordinator makes every such call idempotent (same
//! lease, same artifact digest, same event seq, same completion), so a call that reached it before
//! the connection broke is safe to repeat.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;
use tonic::{Code, Status};

/// How many lease TTLs of coordinator silence a job's call rides out before it gives up.
pub(crate) const OUTAGE_TTLS: u32 = 3;
/// The first pause after a failed call; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// When this agent last heard from the coordinator (any answered call: a heartbeat, a
/// registration, another job's call). A call's silence is counted from the later of its own start
/// and this, so a coordinator restarting again and again — answering other calls in between —
/// does not make a job's call give up although each of its own attempts met a restart.
#[derive(Debug, Default)]
pub(crate) struct Contact(std::sync::Mutex<Option<tokio::time::Instant>>);

impl Contact {
    pub(crate) fn note(&self) {
        if let Ok(mut at) = self.0.lock() {
            *at = Some(tokio::time::Instant::now());
        }
    }

    fn last(&self) -> Option<tokio::time::Instant> {
        self.0.lock().ok().and_then(|at| *at)
    }
}

/// Backoff with jitter, and how long an outage may last.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// How long the coordinator may stay silent before the call gives up; `None` retries for ever.
    pub give_up_after: Option<Duration>,
    /// The agent's last contact with the coordinator, when it keeps one.
    pub contact: Option<std::sync::Arc<Contact>>,
}

impl RetryPolicy {
    /// The policy for a lease TTL: rides out [`OUTAGE_TTLS`] TTLs of silence.
    pub(crate) fn for_lease_ttl(ttl: Duration) -> Self {
        Self { first_delay: FIRST_DELAY, max_delay: MAX_DELAY, give_up_after: Some(ttl * OUTAGE_TTLS), contact: None }
    }

    /// The same, with silence counted from the agent's last contact too.
    pub(crate) fn with_contact(self, contact: std::sync::Arc<Contact>) -> Self {
        Self { contact: Some(contact), ..self }
    }

    /// The same backoff without a limit (a job's completion: it is kept until delivered or refused).
    pub(crate) fn forever(self) -> Self {
        Self { give_up_after: None, ..self }
    }

    /// The pause after the `failures`-th failed call in a row (1-based): exponential, capped, with
    /// jitter in `[delay/2, delay]` so agents restarting together do not call in step.
    pub(crate) fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exp = self.first_delay.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// Whether a failed call means "the coordinator did not answer" (retry) rather than "it answered
/// no" (stop). Transport failures surface as `Unavailable` or `Unknown`; a coordinator that is
/// out of disk space answers `Unavailable` until space is back.
pub(crate) fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted | Code::Internal
    )
}

/// Calls `call` until it succeeds, fails for good, or the coordinator stayed silent longer than
/// the policy allows; `what` names the call in the log. Returns the last status on failure.
pub(crate) async fn retry<T, F, Fut>(policy: RetryPolicy, what: &str, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = tokio::time::Instant::now();
    let mut failures = 0u32;
    loop {
        match call().await {
            Ok(v) => {
                if let Some(c) = &policy.contact {
                    c.note();
                }
                return Ok(v);
            }
            Err(s) if !is_transient(&s) => return Err(s),
            Err(s) => {
                failures += 1;
                let quiet_since = policy.contact.as_ref().and_then(|c| c.last()).map_or(started, |at| at.max(started));
                if policy.give_up_after.is_some_and(|limit| quiet_since.elapsed() >= limit) {
                    tracing::warn!(
                        call = what,
                        failures,
                        error = s.message(),
                        "coordinator still unreachable; giving up"
                    );
                    return Err(s);
                }
                let pause = policy.delay(failures, rand::rng().random::<f64>());
                tracing::info!(call = what, failures, error = s.message(), "coordinator unreachable; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_jitter_stays_within_half_of_it() {
        let p = RetryPolicy::for_lease_ttl(TTL);
        assert_eq!(p.delay(1, 1.0), FIRST_DELAY);
        assert_eq!(p.delay(2, 1.0), FIRST_DELAY * 2);
        assert_eq!(p.delay(3, 1.0), FIRST_DELAY * 4);
        assert_eq!(p.delay(30, 1.0), MAX_DELAY);
        assert_eq!(p.delay(30, 0.0), MAX_DELAY / 2);
        assert_eq!(p.delay(1, 0.0), FIRST_DELAY / 2);
    }

    #[test]
    fn transport_failures_are_transient_and_refusals_are_not() {
        for code in [Code::Unavailable, Code::Unknown, Code::Cancelled, Code::DeadlineExceeded] {
            assert!(is_transient(&Status::new(code, "x")), "{code:?}");
        }
        for code in [
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::NotFound,
            Code::Unauthenticated,
            Code::ResourceExhausted,
        ] {
            assert!(!is_transient(&Status::new(code, "x")), "{code:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_is_retried_through_an_outage_and_succeeds_when_the_coordinator_answers() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let got = retry(RetryPolicy::for_lease_ttl(TTL), "test", || async {
            // Down for the first 2.5 s, as across a coordinator restart.
            calls.fetch_add(1, Ordering::SeqCst);
            if started.elapsed() < Duration::from_millis(2500) {
                Err(Status::unavailable("tcp connect error"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(got.map_err(|s| s.code()), Ok(7));
        assert!(calls.load(Ordering::SeqCst) > 2);
    }

    /// A coordinator killed again and again: each attempt of the call meets a restart, but the
    /// agent's heartbeats get through in between, so the call keeps trying; it gives up only once
    /// the coordinator has been silent for three TTLs.
    #[tokio::test(start_paused = true)]
    async fn answers_in_between_keep_a_call_retrying_through_restart_after_restart() {
        let contact = std::sync::Arc::new(Contact::default());
        let policy = RetryPolicy::for_lease_ttl(TTL).with_contact(contact.clone());
        let started = tokio::time::Instant::now();
        let heartbeats = {
            let contact = contact.clone();
            tokio::spawn(async move {
                for _ in 0..15 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    contact.note();
                }
            })
        };
        let got: Result<(), Status> = retry(policy, "test", || async { Err(Status::unavailable("restarting")) }).await;
        assert_eq!(got.map_err(|s| s.code()), Err(Code::Unavailable));
        let took = started.elapsed();
        let limit = TTL * OUTAGE_TTLS;
        let last_answer = Duration::from_secs(15);
        assert!(took >= last_answer + limit, "gave up {took:?} in, before {limit:?} of silence after the last answer");
        assert!(took < last_answer + limit + MAX_DELAY, "{took:?}");
        heartbeats.await.unwrap();
        // Without the agent's contact the same call gives up after three TTLs of its own failures.
        let alone = tokio::time::Instant::now();
        let _ = retry(RetryPolicy::for_lease_ttl(TTL), "test", || async { Err::<(), _>(Status::unavailable("down")) })
            .await;
        assert!(alone.elapsed() < limit + MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_ends_the_retries_at_once() {
        let calls = AtomicU32::new(0);
        let got: Result<(), Status> = retry(RetryPolicy::for_lease_ttl(TTL), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Status::failed_precondition("stale lease"))
        })
        .await;
        assert_eq!(got.map_err(|s| s.code()), Err(Code::FailedPrecondition));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn silence_longer_than_three_ttls_gives_up_and_not_before() {
        let started = tokio::time::Instant::now();
        let got: Result<(), Status> =
            retry(RetryPolicy::for_lease_ttl(TTL), "test", || async { Err(Status::unavailable("down")) }).await;
        assert_eq!(got.map_err(|s| s.code()), Err(Code::Unavailable));
        let waited = started.elapsed();
        assert!(waited >= TTL * OUTAGE_TTLS, "gave up after {waited:?}");
        assert!(waited < TTL * OUTAGE_TTLS + MAX_DELAY * 2, "kept going for {waited:?}");
    }
}
