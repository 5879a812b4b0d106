//! Per-session buffers of outbound events, numbered, with long-poll waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Session {
    next: u64,
    events: VecDeque<(u64, Value)>,
}

/// All sessions' buffers.
#[derive(Debug)]
pub(crate) struct Sessions {
    capacity: usize,
    inner: Mutex<HashMap<String, Session>>,
    changed: Notify,
}

impl Sessions {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event; the oldest is dropped when the buffer is full.
    pub(crate) fn push(&self, session: &str, event: Value) {
        {
            let mut sessions = self.lock();
            let s = sessions.entry(session.to_owned()).or_default();
            s.next += 1;
            let n = s.next;
            s.events.push_back((n, event));
            while s.events.len() > self.capacity {
                s.events.pop_front();
            }
        }
        self.changed.notify_waiters();
    }

    fn after(&self, session: &str, after: u64) -> Vec<Value> {
        self.lock()
            .get(session)
            .map(|s| {
                s.events
                    .iter()
                    .filter(|(n, _)| *n > after)
                    .map(|(n, e)| json!({ "n": n, "event": e }))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Events numbered above `after`, waiting up to `wait` for one to arrive.
    pub(crate) async fn wait(&self, session: &str, after: u64, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            let events = self.after(session, after);
            if !events.is_empty() {
                return events;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }
}
