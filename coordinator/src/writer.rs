//! Group commit: one task writes the state changes of many concurrent events in one transaction.
//!
//! Events are queued while the scheduler lock is held, so the queue order is the order in which
//! the core made the changes, and the writer applies them in that order. Each event is acknowledged
//! only after the transaction holding it committed. When a transaction fails, every event in it
//! fails; the shell then rebuilds the core from the store.

use tokio::sync::{mpsc, oneshot};

use crate::scheduler::Effects;
use crate::shell::now_ms;
use crate::store::{JobResult, StorageFault, Store, StoreError};

/// Most events one transaction carries.
const MAX_BATCH: usize = 512;

/// Why a queued event is not durable: shared by every event of the failed transaction.
#[derive(Debug, Clone)]
pub(crate) struct WriteFailure {
    message: String,
    fault: Option<StorageFault>,
}

impl WriteFailure {
    fn stopped() -> Self {
        Self { message: "the store writer stopped".to_owned(), fault: None }
    }

    /// The gRPC answer: a storage fault's own message (clients recognise it), else a store failure.
    pub fn status(&self) -> tonic::Status {
        match self.fault {
            Some(fault) => fault.status(&self.message),
            None => tonic::Status::unavailable(format!("coordinator store failure: {}", self.message)),
        }
    }
}

impl From<&StoreError> for WriteFailure {
    fn from(e: &StoreError) -> Self {
        Self { message: e.to_string(), fault: e.fault() }
    }
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Outcome = Result<(), WriteFailure>;

#[derive(Debug)]
struct Write {
    effects: Effects,
    result: JobResult,
    done: oneshot::Sender<Outcome>,
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
    rx: oneshot::Receiver<Outcome>,
}

impl Pending {
    /// Waits until the event is durable; the error says why it is not.
    pub async fn durable(&mut self) -> Outcome {
        match (&mut self.rx).await {
            Ok(outcome) => outcome,
            Err(_) => Err(WriteFailure::stopped()),
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
            let _ = w.done.send(Err(WriteFailure::stopped()));
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
        let outcome = store.apply_batch(&items, now_ms() as i64).await.map_err(|e| WriteFailure::from(&e));
        if let Err(e) = &outcome {
            tracing::error!(error = %e, events = batch.len(), "store write failed");
        }
        for w in batch {
            let _ = w.done.send(outcome.clone());
        }
    }
}
