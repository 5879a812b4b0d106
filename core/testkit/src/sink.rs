//! An event sink for channel tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::{ChannelContext, EventSink, InboundEvent, SubmitError, async_trait};
use tokio::sync::{Notify, watch};

/// Records submitted events and keeps channel state in memory, as the runtime's store would.
///
/// It can be told to fail submits (as a store that is down) or to hold them until released (to
/// check that a channel acknowledges its platform only after `submit` returned).
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<InboundEvent>>,
    state: Mutex<HashMap<(String, String), String>>,
    failing: Mutex<bool>,
    holding: Mutex<bool>,
    release: Notify,
    entered: Notify,
}

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A context for `instance` submitting into this sink, and the sender that starts shutdown.
    pub fn context(self: &Arc<Self>, instance: &str) -> (ChannelContext, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (ChannelContext::new(instance, self.clone(), rx), tx)
    }

    /// Every event submitted so far, in order.
    pub fn events(&self) -> Vec<InboundEvent> {
        self.events.lock().expect("sink lock").clone()
    }

    /// Forgets the recorded events (state is kept).
    pub fn clear(&self) {
        self.events.lock().expect("sink lock").clear();
    }

    /// Makes submits fail with `SubmitError::Unavailable` (a store that is down) or succeed.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().expect("sink lock") = failing;
    }

    /// Makes submits wait until [`RecordingSink::release`] (or stop waiting when `false`).
    pub fn set_holding(&self, holding: bool) {
        *self.holding.lock().expect("sink lock") = holding;
        if !holding {
            self.release.notify_waiters();
        }
    }

    /// Lets held submits complete.
    pub fn release(&self) {
        self.set_holding(false);
    }

    /// Resolves once a submit has started (and is possibly being held).
    pub async fn submit_started(&self) {
        self.entered.notified().await;
    }

    /// A value saved by an instance.
    pub fn state(&self, instance: &str, key: &str) -> Option<String> {
        self.state
            .lock()
            .expect("sink lock")
            .get(&(instance.to_owned(), key.to_owned()))
            .cloned()
    }
}

#[async_trait]
impl EventSink for RecordingSink {
    async fn submit(&self, _instance: &str, events: Vec<InboundEvent>) -> Result<(), SubmitError> {
        self.entered.notify_waiters();
        loop {
            let released = self.release.notified();
            if !*self.holding.lock().expect("sink lock") {
                break;
            }
            released.await;
        }
        if *self.failing.lock().expect("sink lock") {
            return Err(SubmitError::Unavailable {
                reason: "the test store is down".into(),
                retry_after: Some(Duration::from_secs(3)),
            });
        }
        self.events.lock().expect("sink lock").extend(events);
        Ok(())
    }

    async fn load_state(&self, instance: &str, key: &str) -> Result<Option<String>, SubmitError> {
        Ok(self.state(instance, key))
    }

    async fn save_state(&self, instance: &str, key: &str, value: &str) -> Result<(), SubmitError> {
        self.state
            .lock()
            .expect("sink lock")
            .insert((instance.to_owned(), key.to_owned()), value.to_owned());
        Ok(())
    }
}
