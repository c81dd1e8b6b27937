//! Group commit: one task writes the state changes of many concurrent events in one transaction.
//!
//! Events are queued while the scheduler lock is held, so the queue order is the order in which
//! the core made the changes, and the writer applies them in that order. Each event is acknowledged
//! only after the transaction holding it committed. When a transaction fails, every event in it
//! fails; the shell then rebuilds the core from the store.

use tokio::sync::{mpsc, oneshot};

use crate::scheduler::Effects;
use crate::shell::now_ms;
use crate::store::{JobResult, Store};

/// Most events one transaction carries.
const MAX_BATCH: usize = 512;

#[derive(Debug)]
struct Write {
    effects: Effects,
    result: JobResult,
    done: oneshot::Sender<Result<(), String>>,
}

/// The sending side, held by the shell.
#[derive(Debug, Clone)]
pub(crate) struct WriteQueue {
    tx: mpsc::UnboundedSender<Write>,
}

/// An event waiting for its transaction.
#[derive(Debug)]
pub(crate) struct Pending {
    pub effects: Effects,
    rx: oneshot::Receiver<Result<(), String>>,
}

impl Pending {
    /// Waits until the event is durable; the error text says why it is not.
    pub async fn durable(&mut self) -> Result<(), String> {
        match (&mut self.rx).await {
            Ok(outcome) => outcome,
            Err(_) => Err("the store writer stopped".to_owned()),
        }
    }
}

impl WriteQueue {
    /// Starts the writer task for `store`.
    pub fn spawn<S: Store>(store: S) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Queues an event's changes. Call it while holding the scheduler lock.
    pub fn push(&self, effects: Effects, result: JobResult) -> Pending {
        let (done, rx) = oneshot::channel();
        let effects_copy = effects.clone();
        if let Err(mpsc::error::SendError(w)) = self.tx.send(Write { effects, result, done }) {
            let _ = w.done.send(Err("the store writer stopped".to_owned()));
        }
        Pending { effects: effects_copy, rx }
    }
}

async fn run<S: Store>(store: S, mut rx: mpsc::UnboundedReceiver<Write>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let items: Vec<(&Effects, &JobResult)> = batch.iter().map(|w| (&w.effects, &w.result)).collect();
        let outcome = store.apply_batch(&items, now_ms() as i64).await.map_err(|e| e.to_string());
        if let Err(e) = &outcome {
            tracing::error!(error = %e, events = batch.len(), "store write failed");
        }
        for w in batch {
            let _ = w.done.send(outcome.clone());
        }
    }
}
