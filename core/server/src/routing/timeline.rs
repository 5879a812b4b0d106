//! What the router writes to the store's trace (`switchboard trace`): the entries of each
//! stage, filled from what the outbox item or the event says, handed to the
//! [`TraceLog`] (which never makes the caller wait).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_store::{Direction, OutboxItem, TraceEntry, TraceLog, TraceStage};

use super::{Failure, Routing};

/// The `sent` entries of items being processed, by item, recorded after the attempt's own
/// entry so that a timeline reads attempt, then what it sent.
#[derive(Debug, Default)]
pub(super) struct PendingSent(Mutex<HashMap<i64, Vec<TraceEntry>>>);

impl PendingSent {
    fn push(&self, item: i64, entry: TraceEntry) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(item)
            .or_default()
            .push(entry);
    }

    fn take(&self, item: i64) -> Vec<TraceEntry> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&item)
            .unwrap_or_default()
    }
}

/// The identity trace rows give this process: `<host>:<pid>`, which operators can match
/// with their hosts and containers.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// The instance and id of a consumer key (`<len>:<instance>:<id>`, see
/// `ConsumerAddress::key`), as the webhook reads them.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let (len, rest) = key.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let instance = rest.get(..len)?;
    let id = rest.get(len..)?.strip_prefix(':')?;
    Some((instance, id))
}

/// An entry about consumer `key` (`<len>:<instance>:<id>`): its channel and its address.
pub(crate) fn for_consumer(direction: Direction, stage: TraceStage, key: &str) -> TraceEntry {
    let mut entry = TraceEntry::new(direction, stage);
    if let Some((instance, id)) = split_key(key) {
        entry.channel = Some(instance.to_owned());
        entry.consumer = Some(format!("{instance}:{id}"));
    }
    entry
}

/// An entry about outbox item `item`, with the ids its payload carries: the channel's
/// message id of a consumer event, the id (and conversation) of an agent event.
pub(crate) fn for_item(item: &OutboxItem, stage: TraceStage) -> TraceEntry {
    let mut entry = for_consumer(item.direction, stage, &item.consumer_key);
    entry.item = Some(item.id);
    let (platform_id, conversation) = payload_ids(item.direction, &item.payload);
    entry.platform_alias = platform_id.as_deref().and_then(platform_alias);
    entry.platform_id = platform_id;
    entry.conversation_id = conversation;
    entry
}

/// The platform id and conversation a stored payload names.
pub(crate) fn payload_ids(
    direction: Direction,
    payload: &Value,
) -> (Option<String>, Option<String>) {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match direction {
        Direction::ToLivePerson => match payload["job"].as_str() {
            Some("ack") => (None, text(&payload["dialog"]["conversation_id"])),
            _ => (text(&payload["event"]["platform_id"]), None),
        },
        Direction::ToChannel => {
            let id = text(&payload["work"]["event"]["id"]).or_else(|| text(&payload["work"]["id"]));
            let conversation = text(&payload["ack"]["dialog"]["conversation_id"])
                .or_else(|| id.as_deref().and_then(conversation_of_ref));
            (id, conversation)
        }
    }
}

/// The conversation an outbound event id names (`lp:{conversation}:{dialog}:{sequence}`, see
/// [`switchboard_liveperson::translate::message_ref`]).
pub(crate) fn conversation_of_ref(id: &str) -> Option<String> {
    id.strip_prefix("lp:")?.split(':').next().map(str::to_owned)
}

/// The bare id an operator knows inside a channel's composite platform id: Slack's `ts` in
/// `slack:{channel}:{ts}` (and `slack-action:{channel}:{action_ts}`), Telegram's `update_id`
/// in `tg:{update_id}`.
pub(crate) fn platform_alias(id: &str) -> Option<String> {
    let mut parts = id.split(':');
    match parts.next()? {
        "slack" | "slack-action" => parts.nth(1).map(str::to_owned),
        "tg" => parts.next().map(str::to_owned),
        _ => None,
    }
}

/// The detail of a `sent` entry towards LivePerson: the request's kind and the sequence
/// LivePerson gave it, and the dialog when it is not the conversation's main one.
pub(super) fn sent_detail(
    kind: &str,
    sequence: Option<i64>,
    target: &switchboard_liveperson::DialogRef,
) -> Value {
    let mut detail = json!({ "kind": kind, "sequence": sequence });
    if target.dialog_id != target.conversation_id {
        detail["dialog_id"] = target.dialog_id.as_str().into();
    }
    detail
}

/// The HTTP status an error's text names (`… 503 …`), if any.
fn http_status(reason: &str) -> Option<u16> {
    reason
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3)
        .filter_map(|w| w.parse::<u16>().ok())
        .find(|s| (400..600).contains(s))
}

impl Routing {
    /// Waits until the trace rows recorded so far are written (at shutdown).
    pub async fn flush_trace(&self) {
        if let Some(log) = &self.inner.settings.trace {
            log.flush().await;
        }
    }

    /// Records `entry` when tracing is on.
    pub(crate) fn trace(&self, entry: TraceEntry) {
        if let Some(log) = &self.inner.settings.trace {
            log.record(entry);
        }
    }

    /// Keeps a `sent` entry of `item` until its attempt is recorded ([`Routing::trace_outcome`]).
    pub(super) fn trace_sent(
        &self,
        item: &OutboxItem,
        detail: Value,
        fill: impl FnOnce(&mut TraceEntry),
    ) {
        if self.inner.settings.trace.is_none() {
            return;
        }
        let mut entry = for_item(item, TraceStage::Sent);
        entry.detail = detail;
        fill(&mut entry);
        self.inner.pending_sent.push(item.id, entry);
    }

    /// Records one attempt at `item` and what followed it: what it sent, or its dead letter.
    pub(super) fn trace_outcome(&self, item: &OutboxItem, result: &Result<(), Failure>) {
        let sent = self.inner.pending_sent.take(item.id);
        if self.inner.settings.trace.is_none() {
            return;
        }
        let target = match item.direction {
            Direction::ToLivePerson => "liveperson".to_owned(),
            Direction::ToChannel => split_key(&item.consumer_key)
                .map(|(instance, _)| instance.to_owned())
                .unwrap_or_default(),
        };
        let mut detail = json!({ "attempt": item.attempts + 1, "target": target });
        let (outcome, reason, after) = match result {
            Ok(()) => ("delivered", None, None),
            Err(Failure::Retry { after, reason, .. }) => ("retry", Some(reason), Some(*after)),
            Err(Failure::Wait { after, reason, .. }) => ("wait", Some(reason), Some(*after)),
            Err(Failure::Dead { reason }) => ("dead_letter", Some(reason), None),
        };
        detail["outcome"] = outcome.into();
        if let Some(reason) = reason {
            detail["error"] = reason.as_str().into();
            if let Some(status) = http_status(reason) {
                detail["status"] = status.into();
            }
        }
        if let Some(after) = after {
            detail["retry_in_ms"] = u64::try_from(after.as_millis()).unwrap_or(u64::MAX).into();
        }
        let mut attempt = for_item(item, TraceStage::Attempt);
        if let Some(conversation) = sent.iter().find_map(|s| s.conversation_id.clone()) {
            attempt.conversation_id.get_or_insert(conversation);
        }
        attempt.detail = detail;
        self.trace(attempt);
        for entry in sent {
            self.trace(entry);
        }
        if let Err(Failure::Dead { reason }) = result {
            let mut dead = for_item(item, TraceStage::DeadLettered);
            dead.detail = json!({ "reason": reason, "attempts": item.attempts + 1 });
            self.trace(dead);
        }
    }
}

/// Records the `received` entry of an event handed over for `key` (and `stored`, with its
/// outbox id, when it was not a duplicate).
pub(crate) fn trace_received(log: Option<&TraceLog>, mut entry: TraceEntry, stored: Option<i64>) {
    let Some(log) = log else { return };
    entry.stage = TraceStage::Received;
    let duplicate = stored.is_none();
    if let Value::Object(map) = &mut entry.detail {
        map.insert("duplicate".into(), duplicate.into());
    }
    log.record(entry.clone());
    if let Some(id) = stored {
        entry.stage = TraceStage::Stored;
        entry.item = Some(id);
        entry.detail = json!({});
        log.record(entry);
    }
}

/// Records that dead letter `letter` was put back into its outbox (by
/// `switchboard deadletters retry`, a process of its own: written at once). Its platform id
/// ties it to the event's earlier stages; a failure is only logged.
pub async fn trace_requeued(
    store: &switchboard_store::Store,
    letter: &switchboard_store::DeadLetter,
) {
    let mut entry = for_consumer(letter.direction, TraceStage::Requeued, &letter.consumer_key);
    (entry.platform_id, entry.conversation_id) = payload_ids(letter.direction, &letter.payload);
    entry.detail = json!({ "dead_letter": letter.id, "by": "switchboard deadletters retry" });
    let instance = format!("{} (cli)", instance_id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if let Err(e) = store.record_trace(&instance, &[(now, entry)]).await {
        tracing::warn!(error = %e, "cannot record the requeue in the trace");
    }
}

/// How many old trace rows one pruning transaction deletes (batches follow each other until
/// none is left).
pub const PRUNE_BATCH: usize = 500;
/// How often the pruning task looks for old trace rows.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_found_in_error_texts() {
        assert_eq!(
            http_status("LivePerson is unavailable (HTTP 503 Service Unavailable)"),
            Some(503)
        );
        assert_eq!(http_status("took 1500 ms, then 429"), Some(429));
        assert_eq!(http_status("connection refused"), None);
    }

    #[test]
    fn composite_ids_have_the_bare_id_as_alias() {
        assert_eq!(
            platform_alias("slack:D024BE91L:1795384800.000100").as_deref(),
            Some("1795384800.000100")
        );
        assert_eq!(
            platform_alias("slack:D024BE91L:1795384800.000100:1").as_deref(),
            Some("1795384800.000100")
        );
        assert_eq!(platform_alias("tg:829301").as_deref(), Some("829301"));
        assert_eq!(platform_alias("lp:c:d:4"), None);
        assert_eq!(platform_alias("a76999cf-a713"), None);
    }

    #[test]
    fn agent_event_ids_name_their_conversation() {
        let payload = json!({"instance": "tg", "consumer_id": "1", "work": {"kind": "deliver",
            "event": {"id": "lp:conv-1:conv-1:4", "body": {}}}});
        assert_eq!(
            payload_ids(Direction::ToChannel, &payload),
            (Some("lp:conv-1:conv-1:4".into()), Some("conv-1".into()))
        );
        let inbound = json!({"job": "inbound", "event": {"platform_id": "mo-7"}});
        assert_eq!(
            payload_ids(Direction::ToLivePerson, &inbound),
            (Some("mo-7".into()), None)
        );
    }
}
