//! Streams a job's log lines and metric points to the coordinator.
//!
//! Lines are batched (up to [`MAX_BATCH_LINES`] or [`BATCH_DELAY`]); each batch is kept until the
//! coordinator acknowledges it as durable. When the stream breaks (coordinator restart), a new one
//! is opened and the unacknowledged batches are sent again; the coordinator ignores lines it
//! already has (same job and seq). The input channel is bounded: a slow coordinator slows the
//! job's output readers rather than growing memory.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tonic::Code;

use phasegate_proto::client::AgentClient;
use phasegate_proto::domain::Lease;
use phasegate_proto::pb;

use crate::metrics::MetricPoint;
use crate::runner::{LogLine, Stream};

pub(crate) const MAX_BATCH_LINES: usize = 500;
pub(crate) const BATCH_DELAY: Duration = Duration::from_millis(200);
/// Unacknowledged batches kept before the reader waits for acknowledgements.
const MAX_IN_FLIGHT: usize = 8;

/// One item for the event stream.
#[derive(Debug)]
pub(crate) enum Event {
    Line(LogLine),
    Agent(String),
    Metric(MetricPoint),
}

/// Why the stream gave up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EventsError {
    #[error("the coordinator refused the job's events: {0}")]
    Rejected(String),
}

/// Sends everything received on `rx` until it closes and every batch is acknowledged.
pub(crate) async fn stream_events(
    client: AgentClient,
    lease: Lease,
    mut rx: mpsc::Receiver<Event>,
) -> Result<u64, EventsError> {
    let mut pending: VecDeque<pb::EventBatch> = VecDeque::new();
    // Line seqs start at the epoch's high bits so a retried job's lines never collide with the
    // earlier attempt's.
    let mut next_seq = lease.epoch.0 << 32;
    let mut next_batch = 0u64;
    let mut closed = false;
    let mut sent_total = 0u64;
    let mut link: Option<Link> = None;
    while !(closed && pending.is_empty()) {
        if !closed && pending.len() < MAX_IN_FLIGHT {
            let (batch, done) = collect_batch(&mut rx, lease, &mut next_seq, next_batch).await;
            closed = done;
            if let Some(b) = batch {
                next_batch += 1;
                sent_total += b.lines.len() as u64;
                if let Some(l) = link.as_mut()
                    && l.tx.send(b.clone()).await.is_err()
                {
                    link = None;
                }
                pending.push_back(b);
            }
        }
        if link.is_none() && !pending.is_empty() {
            link = open(&client, &pending).await?;
        }
        if let Some(l) = link.as_mut() {
            let block = closed || pending.len() >= MAX_IN_FLIGHT;
            if !l.drain_acks(&mut pending, block).await? {
                link = None;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(sent_total)
}

struct Link {
    tx: mpsc::Sender<pb::EventBatch>,
    acks: tonic::Streaming<pb::EventAck>,
}

/// Opens a stream and resends every pending batch on it. `Ok(None)` when the coordinator is
/// unreachable for now (the caller retries).
async fn open(client: &AgentClient, pending: &VecDeque<pb::EventBatch>) -> Result<Option<Link>, EventsError> {
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT * 2);
    for b in pending {
        let _ = tx.try_send(b.clone());
    }
    let mut client = client.clone();
    match client.stream_events(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Ok(resp) => Ok(Some(Link { tx, acks: resp.into_inner() })),
        Err(s) if s.code() == Code::FailedPrecondition => Err(EventsError::Rejected(s.message().to_owned())),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(None)
        }
    }
}

impl Link {
    /// Pops acknowledged batches. Waits for at least one ack when `block`. Returns false when the
    /// stream broke.
    async fn drain_acks(&mut self, pending: &mut VecDeque<pb::EventBatch>, block: bool) -> Result<bool, EventsError> {
        loop {
            // Nothing awaits an acknowledgement: waiting here would only wait out the timeout (a
            // job quiet before it exits would report its end that much later).
            if pending.is_empty() {
                return Ok(true);
            }
            let next = if block {
                tokio::time::timeout(Duration::from_secs(30), self.acks.next()).await.ok().flatten()
            } else {
                match tokio::time::timeout(Duration::from_millis(1), self.acks.next()).await {
                    Ok(item) => item,
                    Err(_) => return Ok(true),
                }
            };
            match next {
                Some(Ok(ack)) => {
                    while pending.front().is_some_and(|b| b.batch_seq <= ack.batch_seq) {
                        pending.pop_front();
                    }
                    if pending.is_empty() || !block {
                        return Ok(true);
                    }
                }
                Some(Err(s)) if s.code() == Code::FailedPrecondition => {
                    return Err(EventsError::Rejected(s.message().to_owned()));
                }
                _ => return Ok(false),
            }
        }
    }
}

/// Reads events until a batch is full, the delay passed, or the channel closed.
async fn collect_batch(
    rx: &mut mpsc::Receiver<Event>,
    lease: Lease,
    next_seq: &mut u64,
    batch_seq: u64,
) -> (Option<pb::EventBatch>, bool) {
    let mut batch = pb::EventBatch { lease: Some(lease.into()), batch_seq, ..Default::default() };
    let deadline = tokio::time::Instant::now() + BATCH_DELAY;
    let mut closed = false;
    while batch.lines.len() < MAX_BATCH_LINES {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => push(&mut batch, event, next_seq),
            Ok(None) => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    let empty = batch.lines.is_empty() && batch.metrics.is_empty();
    ((!empty).then_some(batch), closed)
}

fn push(batch: &mut pb::EventBatch, event: Event, next_seq: &mut u64) {
    let mut line = |stream: &str, text: String, ts_ms: u64| {
        *next_seq += 1;
        batch.lines.push(pb::LogLine { seq: *next_seq, stream: stream.to_owned(), text, ts_ms: ts_ms as i64 });
    };
    match event {
        Event::Line(l) => {
            let stream = match l.stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            line(stream, l.text, l.ts_ms);
        }
        Event::Agent(text) => line("agent", text, crate::now_ms()),
        Event::Metric(m) => batch.metrics.push(pb::MetricPoint {
            step: m.step,
            values: m.values.into_iter().map(|(key, value)| pb::KeyValueNumber { key, value }).collect(),
        }),
    }
}
