//! An in-memory [`EventSink`]: where channels' submitted events wait until the router takes
//! them.
//!
//! It is bounded (a full inbox answers `Unavailable`, which channels turn into 503 +
//! `Retry-After`), drops duplicates by `(instance, platform_id)`, and keeps channel state.
//! It is not durable: the SQLite/PostgreSQL store replaces it as the runtime's sink so that
//! accepted events survive a restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_core::{EventSink, InboundEvent, SubmitError};

use crate::metrics as m;

/// A bounded in-memory inbox.
#[derive(Debug)]
pub struct MemoryInbox {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<InboundEvent>,
    seen: HashSet<(String, String)>,
    state: HashMap<(String, String), String>,
}

impl MemoryInbox {
    /// An inbox holding at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Takes up to `max` events in arrival order.
    pub fn take(&self, max: usize) -> Vec<InboundEvent> {
        let mut inner = self.lock();
        let n = max.min(inner.queue.len());
        let taken: Vec<_> = inner.queue.drain(..n).collect();
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => "inbox").set(inner.queue.len() as f64);
        taken
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update of plain collections;
        // the data is still consistent enough to keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventSink for MemoryInbox {
    async fn submit(&self, instance: &str, events: Vec<InboundEvent>) -> Result<(), SubmitError> {
        let mut inner = self.lock();
        let fresh: Vec<InboundEvent> = events
            .into_iter()
            .filter(|e| match &e.platform_id {
                Some(id) => !inner.seen.contains(&(instance.to_string(), id.clone())),
                None => true,
            })
            .collect();
        if inner.queue.len() + fresh.len() > self.capacity {
            metrics::counter!(m::BACKPRESSURE, "queue" => "inbox").increment(1);
            return Err(SubmitError::Unavailable {
                reason: "inbox full".into(),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        for e in fresh {
            if let Some(id) = &e.platform_id {
                // A second copy inside the same batch is a duplicate too.
                if !inner.seen.insert((instance.to_string(), id.clone())) {
                    metrics::counter!(m::EVENTS_DUPLICATE, "channel" => instance.to_string())
                        .increment(1);
                    continue;
                }
            }
            metrics::counter!(m::EVENTS_IN, "channel" => instance.to_string(), "kind" => e.body.kind())
                .increment(1);
            inner.queue.push_back(e);
        }
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => "inbox").set(inner.queue.len() as f64);
        Ok(())
    }

    async fn load_state(&self, instance: &str, key: &str) -> Result<Option<String>, SubmitError> {
        Ok(self
            .lock()
            .state
            .get(&(instance.to_string(), key.to_string()))
            .cloned())
    }

    async fn save_state(&self, instance: &str, key: &str, value: &str) -> Result<(), SubmitError> {
        self.lock()
            .state
            .insert((instance.to_string(), key.to_string()), value.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{ConsumerAddress, Inbound};

    fn ev(id: &str) -> InboundEvent {
        InboundEvent::new(ConsumerAddress::new("a", "1"), Inbound::text(id)).with_platform_id(id)
    }

    #[tokio::test]
    async fn drops_duplicates_and_refuses_when_full() {
        let inbox = MemoryInbox::new(2);
        inbox.submit("a", vec![ev("1"), ev("1")]).await.unwrap();
        inbox.submit("a", vec![ev("1")]).await.unwrap();
        assert_eq!(inbox.len(), 1);
        inbox.submit("a", vec![ev("2")]).await.unwrap();
        let err = inbox.submit("a", vec![ev("3")]).await.unwrap_err();
        assert!(matches!(err, SubmitError::Unavailable { .. }));
        assert_eq!(inbox.take(10).len(), 2);
        assert!(inbox.is_empty());
    }
}
