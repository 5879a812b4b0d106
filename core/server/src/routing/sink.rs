//! The durable [`EventSink`]: a channel's `submit` returns only once its events are in the
//! to-LivePerson outbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::{EventSink, ExpiredParts, InboundEvent, PartAdded, SubmitError};
use switchboard_store::{Direction, Enqueued, NewItem, Store};
use tokio::sync::Notify;
use tracing::Instrument as _;

use super::jobs::ToLpJob;
use crate::metrics as m;
use crate::telemetry;

/// How long a channel's message id is remembered for dedup (platform retries come within
/// minutes; a week covers restarts and replays).
pub const INBOUND_DEDUP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Writes submitted events to the store.
#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Store,
    wake: Arc<Notify>,
    trace: Option<switchboard_store::TraceLog>,
}

impl StoreSink {
    /// A sink on `store` that wakes the to-LivePerson worker through `wake`.
    pub fn new(store: Store, wake: Arc<Notify>) -> Self {
        Self {
            store,
            wake,
            trace: None,
        }
    }

    /// This sink recording each event's `received` and `stored` stages in `trace`.
    pub fn with_trace(mut self, trace: Option<switchboard_store::TraceLog>) -> Self {
        self.trace = trace;
        self
    }
}

/// Whether the request being handled may still start writing events, shared by the request
/// timeout and the writes of its handler: once the timeout answered 503 no write may start
/// (the sender retries, and the event must not exist twice), and once a write started the
/// timeout must let it finish and answer what the handler answers (a 503 after the commit
/// would make the sender repeat an event already accepted, and an event without a platform
/// id has no dedup key to drop the repeat).
#[derive(Debug, Default)]
pub struct WriteGate(AtomicU8);

const OPEN: u8 = 0;
const WRITING: u8 = 1;
const CLOSED: u8 = 2;

tokio::task_local! {
    static GATE: Arc<WriteGate>;
}

impl WriteGate {
    /// Runs `handler` with this gate governing the event writes it makes.
    pub async fn guard<F: std::future::Future>(self: &Arc<Self>, handler: F) -> F::Output {
        GATE.scope(self.clone(), handler).await
    }

    /// Called by the timeout: true when no write started, and none may start any more (the
    /// handler can be dropped and answered 503); false when a write is in flight (the
    /// handler must run to its end).
    pub fn close(&self) -> bool {
        self.0
            .compare_exchange(OPEN, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Called before a write that creates events: false when the request already timed
    /// out, and the write must not be made. Outside any request (a channel's own task),
    /// always true.
    pub(crate) fn enter() -> bool {
        GATE.try_with(|gate| {
            match gate
                .0
                .compare_exchange(OPEN, WRITING, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => true,
                Err(state) => state == WRITING,
            }
        })
        .unwrap_or(true)
    }
}

/// The platform id of an entry, as JSON (null without one).
fn event_platform_id(entry: &switchboard_store::TraceEntry) -> serde_json::Value {
    entry
        .platform_id
        .as_deref()
        .map_or(serde_json::Value::Null, Into::into)
}

fn unavailable(e: impl std::fmt::Display) -> SubmitError {
    tracing::error!(error = %e, "store refused a write");
    SubmitError::Unavailable {
        reason: "the store is unavailable".into(),
        retry_after: Some(Duration::from_secs(1)),
    }
}

#[async_trait]
impl EventSink for StoreSink {
    async fn submit(&self, instance: &str, events: Vec<InboundEvent>) -> Result<(), SubmitError> {
        if !WriteGate::enter() {
            return Err(SubmitError::Unavailable {
                reason: "the request timed out before its events were stored".into(),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        for event in events {
            let kind = event.body.kind();
            let dedup = event
                .platform_id
                .as_ref()
                .map(|id| format!("in:{}:{instance}:{id}", instance.len()));
            let mut entry = super::timeline::for_consumer(
                Direction::ToLivePerson,
                switchboard_store::TraceStage::Received,
                &event.consumer.key(),
            );
            entry.platform_id = event.platform_id.clone();
            entry.platform_alias = event
                .platform_id
                .as_deref()
                .and_then(super::timeline::platform_alias);
            entry.detail = serde_json::json!({ "kind": kind });
            let receipts = match &event.body {
                switchboard_core::Inbound::Receipt { status, messages } => Some((
                    serde_json::to_value(status).unwrap_or_default(),
                    messages.clone(),
                )),
                _ => None,
            };
            let span = telemetry::spans::store_write(&self.store, Direction::ToLivePerson);
            let item = NewItem {
                trace_context: telemetry::to_stored(&span),
                consumer_key: event.consumer.key(),
                payload: serde_json::to_value(ToLpJob::Inbound {
                    event: Box::new(event),
                    done: 0,
                    sending: None,
                    marked_at_ms: None,
                })
                .map_err(unavailable)?,
            };
            let outcome = self
                .store
                .enqueue(
                    Direction::ToLivePerson,
                    &[item],
                    dedup.as_deref().map(|k| (k, INBOUND_DEDUP_TTL)),
                )
                .instrument(span)
                .await
                .map_err(unavailable)?;
            let stored = match &outcome {
                Enqueued::Stored(ids) => ids.first().copied(),
                Enqueued::Duplicate => None,
            };
            if let (Some(trace), Some((status, messages)), Some(_)) =
                (&self.trace, &receipts, stored)
            {
                // The channel's delivery report: the agent event it names was confirmed.
                for message in messages {
                    let mut confirmed = entry.clone();
                    confirmed.direction = Direction::ToChannel;
                    confirmed.stage = switchboard_store::TraceStage::Confirmed;
                    confirmed.platform_id = Some(message.as_str().to_owned());
                    confirmed.platform_alias = None;
                    confirmed.conversation_id =
                        super::timeline::conversation_of_ref(message.as_str());
                    confirmed.detail = serde_json::json!({
                        "by": "delivery report",
                        "status": status,
                        "report": event_platform_id(&entry),
                    });
                    trace.record(confirmed);
                }
            }
            super::timeline::trace_received(self.trace.as_ref(), entry, stored);
            match outcome {
                Enqueued::Stored(_) => {
                    metrics::counter!(m::EVENTS_IN, "channel" => instance.to_owned(), "kind" => kind)
                        .increment(1);
                }
                Enqueued::Duplicate => {
                    metrics::counter!(m::EVENTS_DUPLICATE, "channel" => instance.to_owned())
                        .increment(1);
                }
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    async fn load_state(&self, instance: &str, key: &str) -> Result<Option<String>, SubmitError> {
        self.store
            .load_state(&format!("channel:{instance}"), key)
            .await
            .map_err(unavailable)
    }

    async fn save_state(&self, instance: &str, key: &str, value: &str) -> Result<(), SubmitError> {
        self.store
            .save_state(&format!("channel:{instance}"), key, value)
            .await
            .map_err(unavailable)
    }

    async fn add_part(
        &self,
        instance: &str,
        group: &str,
        (part, total, id): (u32, u32, &str),
        body: &str,
        wait: Duration,
    ) -> Result<PartAdded, SubmitError> {
        let added = self
            .store
            .add_part(&switchboard_store::NewPart {
                instance,
                group,
                part,
                id,
                total,
                body,
                wait,
            })
            .await
            .map_err(unavailable)?;
        Ok(match added {
            switchboard_store::PartAdded::Waiting => PartAdded::Waiting,
            switchboard_store::PartAdded::Complete { parts, id } => {
                PartAdded::Complete { parts, id }
            }
            switchboard_store::PartAdded::Late => PartAdded::Late,
        })
    }

    async fn finish_parts(
        &self,
        instance: &str,
        group: &str,
        submitted: bool,
    ) -> Result<(), SubmitError> {
        self.store
            .finish_parts(instance, group, submitted)
            .await
            .map_err(unavailable)
    }

    async fn expired_parts(&self, instance: &str) -> Result<Vec<ExpiredParts>, SubmitError> {
        let expired = self
            .store
            .take_expired_parts(instance, 50)
            .await
            .map_err(unavailable)?;
        Ok(expired
            .into_iter()
            .map(|e| ExpiredParts {
                group: e.group,
                total: e.total,
                parts: e.parts,
                id: e.id,
            })
            .collect())
    }
}
