//! What the outboxes hold: serialized jobs, versioned by their `job` tag so that rows written
//! by one release are read by the next.

use serde::{Deserialize, Serialize};
use switchboard_core::{InboundEvent, OutboundEvent};
use switchboard_liveperson::DialogRef;

/// A conversation dialog, as stored in jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogWire {
    /// `conversationId`.
    pub conversation_id: String,
    /// `dialogId`.
    pub dialog_id: String,
}

impl From<&DialogWire> for DialogRef {
    fn from(d: &DialogWire) -> Self {
        DialogRef {
            conversation_id: d.conversation_id.clone(),
            dialog_id: d.dialog_id.clone(),
        }
    }
}

/// Work for the to-LivePerson worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum ToLpJob {
    /// A consumer event from a channel. `done` counts the requests already sent (a long text
    /// is several), so a retry resumes instead of repeating them.
    Inbound {
        /// The event.
        event: Box<InboundEvent>,
        /// Requests already sent.
        #[serde(default)]
        done: usize,
        /// A text request that was started but not confirmed (a crash or a timeout in
        /// between): before sending it again, LivePerson's echo is checked so that it is not
        /// published twice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sending: Option<usize>,
        /// When `sending` was marked, by the store's clock (the claim time of the attempt that
        /// marked it; unix ms): what the wait for its echo is measured from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        marked_at_ms: Option<i64>,
    },
    /// Tell LivePerson an agent event reached the consumer (`ACCEPT`, and `READ` too when the
    /// channel cannot report reads).
    Ack {
        /// The channel instance.
        instance: String,
        /// The consumer's platform id.
        consumer_id: String,
        /// Where the agent event was.
        dialog: DialogWire,
        /// Its sequence.
        sequence: i64,
        /// Also send `READ`.
        read: bool,
        /// Requests already sent.
        #[serde(default)]
        done: usize,
    },
}

/// Work for the to-channel worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToChannelJob {
    /// The channel instance.
    pub instance: String,
    /// The consumer's platform id.
    pub consumer_id: String,
    /// What to deliver.
    pub work: ChannelWork,
    /// The agent event to acknowledge once delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<AckRef>,
}

/// An agent event's coordinates, for the `ACCEPT` after delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRef {
    /// Where.
    pub dialog: DialogWire,
    /// Its sequence.
    pub sequence: i64,
}

/// The payload of a [`ToChannelJob`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelWork {
    /// A ready canonical event.
    Deliver {
        /// The event.
        event: OutboundEvent,
    },
    /// An agent file, downloaded right before delivery (its URLs live one minute).
    HostedFile {
        /// The outbound event id.
        id: String,
        /// `relativePath`.
        relative_path: String,
        /// `fileType`.
        file_type: String,
        /// Caption.
        #[serde(default)]
        caption: Option<String>,
    },
}

/// State scope: consumer message platform ids by LivePerson sequence (for agent receipts).
pub const SEQUENCE_SCOPE: &str = "lp-seq";
/// State scope: click tables of rich agent messages by message ref.
pub const CLICKS_SCOPE: &str = "lp-clicks";
/// State scope: the consumer's latest echoed text per dialog (`{"sequence", "text"}`, the text
/// hashed, and `"external_id"`, the `ExternalId` metadata our send carried, when the echo
/// has it), to recognise a send that reached LivePerson before a crash or an answer that
/// never came.
pub const ECHO_SCOPE: &str = "lp-echo";
/// State scope: last known skill per conversation (transfer detection).
pub const SKILL_SCOPE: &str = "lp-skill";

/// The key of a consumer event's sequence in [`SEQUENCE_SCOPE`].
pub fn sequence_key(dialog: &DialogWire, sequence: i64) -> String {
    format!("{}:{}:{sequence}", dialog.conversation_id, dialog.dialog_id)
}

/// The hash kept of an echoed consumer text.
pub fn text_digest(text: &str) -> String {
    bytes_digest(text.as_bytes())
}

/// A short hex digest of raw bytes (e.g. a webhook body), for identities derived from them.
pub fn bytes_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The `ExternalId` metadata id of a consumer text: step `step` of outbox item `item` (at most
/// 64 characters, developer-center `assets/schema/infra/metadata/ExternalId.json`). The same
/// for every attempt, so an echo of any of them is recognised.
pub fn external_id(item: i64, step: usize) -> String {
    format!("sb-{item}-{step}")
}

/// The `ExternalId` of ours that a consumer message's `metadata` carries, if any.
pub fn echoed_external_id(metadata: Option<&serde_json::Value>) -> Option<&str> {
    metadata?
        .as_array()?
        .iter()
        .filter(|m| m["type"] == "ExternalId")
        .filter_map(|m| m["id"].as_str())
        .find(|id| {
            id.strip_prefix("sb-")
                .and_then(|rest| rest.split_once('-'))
                .is_some_and(|(item, step)| {
                    item.parse::<i64>().is_ok() && step.parse::<usize>().is_ok()
                })
        })
}

/// The key of a dialog in [`ECHO_SCOPE`].
pub fn dialog_key(dialog: &DialogWire) -> String {
    format!("{}:{}", dialog.conversation_id, dialog.dialog_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_external_id_is_found_among_a_messages_metadata_and_no_other() {
        let ours = external_id(123_456_789_012, 3);
        assert!(ours.len() <= 64);
        let metadata = serde_json::json!([
            { "type": "ExternalId", "id": "Yes-1234" },
            { "type": "BotResponse", "intents": [] },
            { "type": "ExternalId", "id": ours },
        ]);
        assert_eq!(echoed_external_id(Some(&metadata)), Some(ours.as_str()));
        // A card's own id that merely looks like ours is not ours.
        let card = serde_json::json!([{ "type": "ExternalId", "id": "sb-card-1" }]);
        assert_eq!(echoed_external_id(Some(&card)), None);
        assert_eq!(echoed_external_id(Some(&serde_json::Value::Null)), None);
        assert_eq!(echoed_external_id(None), None);
    }
}
