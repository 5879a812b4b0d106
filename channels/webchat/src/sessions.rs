//! Each session's conversation as the page shows it: both sides, numbered in the order they
//! happened, bounded, with long-poll waiting. A page that reloads asks from the start and
//! gets the whole conversation back, the consumer's own messages and choices included.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;

/// The most sessions kept at once; beyond it, the one idle longest is forgotten.
const MAX_SESSIONS: usize = 10_000;

/// One entry of a conversation.
#[derive(Debug, Clone)]
enum Entry {
    /// An event the agent's side sent (a message, a receipt, typing, a closed notice…).
    Agent(Value),
    /// A message or choice of the consumer, as the page shows it.
    Consumer(Value),
}

#[derive(Debug)]
struct Session {
    next: u64,
    entries: VecDeque<(u64, Entry)>,
    touched: Instant,
}

impl Session {
    fn new() -> Self {
        Self {
            next: 0,
            entries: VecDeque::new(),
            touched: Instant::now(),
        }
    }
}

/// All sessions' conversations.
#[derive(Debug)]
pub(crate) struct Sessions {
    capacity: usize,
    inner: Mutex<HashMap<String, Session>>,
    changed: Notify,
}

impl Sessions {
    /// Sessions keeping the last `capacity` entries each.
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

    fn push(&self, session: &str, entry: Entry) {
        {
            let mut sessions = self.lock();
            // A message the page sent again (it retries when an answer is lost) is shown once.
            if let Entry::Consumer(message) = &entry
                && sessions.get(session).is_some_and(|s| {
                    s.entries
                        .iter()
                        .any(|(_, e)| matches!(e, Entry::Consumer(m) if m["id"] == message["id"]))
                })
            {
                return;
            }
            if !sessions.contains_key(session)
                && sessions.len() >= MAX_SESSIONS
                && let Some(idle) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.touched)
                    .map(|(k, _)| k.clone())
            {
                sessions.remove(&idle);
            }
            let s = sessions
                .entry(session.to_owned())
                .or_insert_with(Session::new);
            s.next += 1;
            s.touched = Instant::now();
            let n = s.next;
            s.entries.push_back((n, entry));
            while s.entries.len() > self.capacity {
                s.entries.pop_front();
            }
        }
        self.changed.notify_waiters();
    }

    /// Appends an event of the agent's side; the oldest entry goes when the session is full.
    pub(crate) fn push_agent(&self, session: &str, event: Value) {
        self.push(session, Entry::Agent(event));
    }

    /// Appends a message the consumer sent (`id` as the page named it).
    pub(crate) fn push_consumer_text(&self, session: &str, id: &str, text: &str) {
        self.push(session, Entry::Consumer(json!({ "id": id, "text": text })));
    }

    /// Appends the consumer's pick of button `choice` of the agent's message `message`,
    /// shown with the button's title when the message is still kept.
    pub(crate) fn push_consumer_choice(
        &self,
        session: &str,
        id: &str,
        message: &str,
        choice: &str,
    ) {
        let title = self.button_title(session, message, choice);
        self.push(
            session,
            Entry::Consumer(json!({
                "id": id,
                "text": title.unwrap_or_else(|| choice.to_owned()),
                "choice": { "message": message, "id": choice },
            })),
        );
    }

    /// The title of button `choice` in the agent's event `message` of this session.
    fn button_title(&self, session: &str, message: &str, choice: &str) -> Option<String> {
        let sessions = self.lock();
        let event = sessions
            .get(session)?
            .entries
            .iter()
            .find_map(|(_, e)| match e {
                Entry::Agent(event) if event["id"] == message => Some(event),
                _ => None,
            })?;
        find_button(&event["body"], choice)
    }

    fn after(&self, session: &str, after: u64) -> Vec<Value> {
        self.lock()
            .get(session)
            .map(|s| {
                s.entries
                    .iter()
                    .filter(|(n, _)| *n > after)
                    .map(|(n, e)| match e {
                        Entry::Agent(event) => json!({ "n": n, "event": event }),
                        Entry::Consumer(message) => json!({ "n": n, "consumer": message }),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Entries numbered above `after`, waiting up to `wait` for one to arrive.
    pub(crate) async fn wait(&self, session: &str, after: u64, wait: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            let entries = self.after(session, after);
            if !entries.is_empty() {
                return entries;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }
}

/// The title of the button with id `choice` anywhere in an event body (cards' buttons,
/// quick replies, a survey question's answers).
fn find_button(body: &Value, choice: &str) -> Option<String> {
    match body {
        Value::Object(map) => {
            if map.get("id").and_then(Value::as_str) == Some(choice)
                && map.contains_key("action")
                && let Some(title) = map.get("title").and_then(Value::as_str)
            {
                return Some(title.to_owned());
            }
            map.values().find_map(|v| find_button(v, choice))
        }
        Value::Array(items) => items.iter().find_map(|v| find_button(v, choice)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_sides_come_back_in_order_and_choices_with_their_titles() {
        let sessions = Sessions::new(10);
        sessions.push_consumer_text("s", "m1", "hello");
        sessions.push_consumer_text("s", "m1", "hello");
        sessions.push_agent(
            "s",
            json!({ "id": "lp:1", "body": { "type": "rich", "content": {
                "text": "Did that help?",
                "quick_replies": [{ "id": "b0", "title": "Yes thanks", "action": { "type": "reply" } }],
            }}}),
        );
        sessions.push_consumer_choice("s", "m2", "lp:1", "b0");
        sessions.push_consumer_choice("s", "m3", "lp:unknown", "b9");
        let all = sessions.wait("s", 0, Duration::from_millis(10)).await;
        let ns: Vec<u64> = all.iter().map(|e| e["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [1, 2, 3, 4]);
        assert_eq!(all[0]["consumer"]["text"], "hello");
        assert_eq!(all[1]["event"]["id"], "lp:1");
        assert_eq!(all[2]["consumer"]["text"], "Yes thanks");
        assert_eq!(all[2]["consumer"]["choice"]["message"], "lp:1");
        assert_eq!(all[3]["consumer"]["text"], "b9", "no title known: the id");
        assert!(
            sessions
                .wait("other", 0, Duration::from_millis(10))
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_session_keeps_its_last_entries_only() {
        let sessions = Sessions::new(3);
        for n in 0..5 {
            sessions.push_consumer_text("s", &format!("m{n}"), "x");
        }
        let all = sessions.wait("s", 0, Duration::from_millis(10)).await;
        let ns: Vec<u64> = all.iter().map(|e| e["n"].as_u64().unwrap()).collect();
        assert_eq!(ns, [3, 4, 5]);
    }
}
