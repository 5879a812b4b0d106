//! The Messaging Send API's request objects ("UMS requests", docs/protocol/liveperson.md §4–§5) and its answers.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::EngineError;

/// LivePerson rejects a SEND request whose JSON is longer than this many characters with `400
/// Bad Request` (docs/protocol/liveperson.md §9; the how-to guide, LivePersonInc/lp-devassist-connectors `gh-pages`
/// `index.html`: "The size of the JSON request object cannot exceed 5000 characters").
///
/// [INFERRED] LivePerson is a Java service, whose strings count UTF-16 code units: an emoji
/// outside the Basic Multilingual Plane is two. The budget is counted that way (see
/// [`utf16_len`]), which is never less than the count in Unicode scalar values.
pub const MAX_SEND_CHARS: usize = 5000;

/// The length of `s` as LivePerson counts it: UTF-16 code units (see [`MAX_SEND_CHARS`]).
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// `AcceptStatusEvent` statuses a consumer publishes (docs/protocol/liveperson.md §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStatus {
    /// Delivered to the consumer's device.
    Accept,
    /// Seen by the consumer.
    Read,
    /// The consumer opened a file.
    Access,
    /// The consumer clicked structured content.
    Action,
}

impl AcceptStatus {
    fn wire(self) -> &'static str {
        match self {
            AcceptStatus::Accept => "ACCEPT",
            AcceptStatus::Read => "READ",
            AcceptStatus::Access => "ACCESS",
            AcceptStatus::Action => "ACTION",
        }
    }
}

/// Where an event goes: the conversation and its current dialog (MAIN or POST_SURVEY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogRef {
    /// `conversationId`.
    pub conversation_id: String,
    /// `dialogId` (equal to the conversation id for MAIN).
    pub dialog_id: String,
}

impl DialogRef {
    /// The MAIN dialog of a conversation.
    pub fn main(conversation_id: impl Into<String>) -> Self {
        let conversation_id = conversation_id.into();
        Self {
            dialog_id: conversation_id.clone(),
            conversation_id,
        }
    }

    /// True when this is not the MAIN dialog (a post-conversation survey).
    pub fn is_survey(&self) -> bool {
        self.dialog_id != self.conversation_id
    }
}

/// One SEND request a connector makes on a consumer's behalf.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SendRequest {
    /// `ms.PublishEvent` ContentEvent `text/plain`, with click metadata when it answers a button.
    Text {
        /// Where to.
        to: DialogRef,
        /// The text.
        text: String,
        /// Top-level `metadata` (the clicked button's `click.metadata`).
        metadata: Option<Value>,
    },
    /// `ms.PublishEvent` ContentEvent `hosted/file` after an upload.
    File {
        /// Where to.
        to: DialogRef,
        /// The `relativePath` the upload URL named.
        relative_path: String,
        /// `JPG`, `JPEG`, `PNG` or `GIF`.
        file_type: String,
        /// Caption (always sent: the schema requires it).
        caption: String,
        /// Optional `data:` URI thumbnail under 30 KB.
        preview: Option<String>,
    },
    /// `ms.PublishEvent` ChatStateEvent.
    ChatState {
        /// Where to.
        to: DialogRef,
        /// `COMPOSING`, `PAUSE`, `ACTIVE`, `INACTIVE` or `GONE`.
        state: &'static str,
    },
    /// `ms.PublishEvent` AcceptStatusEvent on the agent's events.
    AcceptStatus {
        /// Where to.
        to: DialogRef,
        /// Which status.
        status: AcceptStatus,
        /// The agent events' sequences.
        sequences: Vec<i64>,
        /// Top-level `metadata` (for `ACTION`).
        metadata: Option<Value>,
    },
    /// `cm.UpdateConversationField` closing the conversation (`Stage` skips the survey).
    Close {
        /// The conversation.
        conversation_id: String,
        /// Close with `Stage` (no post-conversation survey) instead of `ConversationStateField`.
        skip_survey: bool,
    },
    /// `cm.UpdateConversationField` `CSATRate` on a closed conversation.
    Csat {
        /// The (closed) conversation.
        conversation_id: String,
        /// 1–5.
        rate: u8,
        /// First-contact resolution.
        resolved: bool,
        /// `FILLED` or `PARTIALLY_FILLED`.
        status: &'static str,
    },
    /// `userprofile.SetUserProfile` mid-conversation.
    SetProfile {
        /// The profile body (see [`crate::profile_body`]).
        body: Value,
    },
    /// `ms.GenerateURLForUploadFile`.
    UploadUrl {
        /// Size in bytes.
        size: usize,
        /// `JPG`, `JPEG`, `PNG` or `GIF`.
        file_type: String,
    },
    /// `ms.GenerateURLForDownloadFile`.
    DownloadUrl {
        /// The agent file's `relativePath`.
        relative_path: String,
    },
}

impl SendRequest {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SendRequest::Text { .. } => "text",
            SendRequest::File { .. } => "file",
            SendRequest::ChatState { .. } => "chat_state",
            SendRequest::AcceptStatus { .. } => "accept_status",
            SendRequest::Close { .. } => "close",
            SendRequest::Csat { .. } => "csat",
            SendRequest::SetProfile { .. } => "set_profile",
            SendRequest::UploadUrl { .. } => "upload_url",
            SendRequest::DownloadUrl { .. } => "download_url",
        }
    }

    /// The JSON request object, with `id` as the request id.
    pub fn to_json(&self, id: &str) -> Value {
        let publish = |to: &DialogRef, event: Value| json!({ "dialogId": to.dialog_id, "conversationId": to.conversation_id, "event": event });
        let (kind, body, metadata) = match self {
            SendRequest::Text { to, text, metadata } => (
                "ms.PublishEvent",
                publish(
                    to,
                    json!({ "type": "ContentEvent", "contentType": "text/plain", "message": text }),
                ),
                metadata.clone(),
            ),
            SendRequest::File {
                to,
                relative_path,
                file_type,
                caption,
                preview,
            } => {
                let mut message = json!({ "caption": caption, "relativePath": relative_path, "fileType": file_type });
                if let Some(preview) = preview {
                    message["preview"] = json!(preview);
                }
                (
                    "ms.PublishEvent",
                    publish(
                        to,
                        json!({ "type": "ContentEvent", "contentType": "hosted/file", "message": message }),
                    ),
                    None,
                )
            }
            SendRequest::ChatState { to, state } => (
                "ms.PublishEvent",
                publish(to, json!({ "type": "ChatStateEvent", "chatState": state })),
                None,
            ),
            SendRequest::AcceptStatus {
                to,
                status,
                sequences,
                metadata,
            } => (
                "ms.PublishEvent",
                publish(
                    to,
                    json!({ "type": "AcceptStatusEvent", "status": status.wire(), "sequenceList": sequences }),
                ),
                metadata.clone(),
            ),
            SendRequest::Close {
                conversation_id,
                skip_survey,
            } => {
                let field = if *skip_survey {
                    json!({ "field": "Stage", "conversationState": "CLOSE" })
                } else {
                    json!({ "field": "ConversationStateField", "conversationState": "CLOSE" })
                };
                (
                    "cm.UpdateConversationField",
                    json!({ "conversationId": conversation_id, "conversationField": field }),
                    None,
                )
            }
            SendRequest::Csat {
                conversation_id,
                rate,
                resolved,
                status,
            } => (
                "cm.UpdateConversationField",
                json!({ "conversationId": conversation_id, "conversationField": {
                    "field": "CSATRate", "csatRate": rate,
                    "csatResolutionConfirmation": resolved, "status": status } }),
                None,
            ),
            SendRequest::SetProfile { body } => ("userprofile.SetUserProfile", body.clone(), None),
            SendRequest::UploadUrl { size, file_type } => (
                "ms.GenerateURLForUploadFile",
                json!({ "fileSize": size.to_string(), "fileType": file_type }),
                None,
            ),
            SendRequest::DownloadUrl { relative_path } => (
                "ms.GenerateURLForDownloadFile",
                json!({ "relativePath": relative_path }),
                None,
            ),
        };
        let mut request = json!({ "kind": "req", "id": id, "type": kind, "body": body });
        if let Some(metadata) = metadata {
            request["metadata"] = metadata;
        }
        request
    }
}

/// One element of a Send API answer: `{"reqId","code","body"}`. `code` is a string in REST
/// answers and an integer in error bodies (docs/protocol/liveperson.md §4.2 [CONFLICT]): both are accepted.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Answer {
    #[serde(default)]
    pub(crate) code: Option<Value>,
    #[serde(default)]
    pub(crate) body: Value,
}

impl Answer {
    /// `code` says OK: `"OK"`, or a 2xx number (also as a string, leniently).
    pub(crate) fn is_ok(&self) -> bool {
        match &self.code {
            Some(Value::String(s)) => {
                s.eq_ignore_ascii_case("OK")
                    || s.trim()
                        .parse::<u64>()
                        .is_ok_and(|n| (200..300).contains(&n))
            }
            Some(Value::Number(n)) => n.as_u64().is_some_and(|n| (200..300).contains(&n)),
            _ => false,
        }
    }

    /// [`Answer::is_ok`], or no `code` at all in an answer whose HTTP status was a success
    /// [INFERRED]: LivePerson always sends one, but an element without any says nothing
    /// against the status.
    pub(crate) fn succeeded(&self, http_success: bool) -> bool {
        self.is_ok() || (http_success && self.code.as_ref().is_none_or(Value::is_null))
    }

    /// The human message of a failure: `body.msg`, `body.title`/`details`, or a bare string body.
    pub(crate) fn message(&self) -> String {
        match &self.body {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                if let Some(msg) = o.get("msg").and_then(Value::as_str) {
                    return msg.to_owned();
                }
                let title = o.get("title").and_then(Value::as_str).unwrap_or_default();
                let details = o.get("details").and_then(Value::as_str).unwrap_or_default();
                format!("{title} {details}").trim().to_owned()
            }
            other => other.to_string(),
        }
    }

    pub(crate) fn error_code(&self) -> Option<u64> {
        self.body.get("errorCode").and_then(Value::as_u64)
    }

    /// The failure this element reports, recognising the two documented business errors.
    pub(crate) fn failure(&self) -> EngineError {
        let message = self.message();
        // [INFERRED] LivePerson documents no answer for a conversation it does not know (a
        // map restored from an older database, a simulator restarted); it cannot take
        // messages either, so the same recovery applies: open a new one and resend once.
        let lower = message.to_ascii_lowercase();
        if is_file_sharing_disabled(&lower) {
            EngineError::FileSharingDisabled { reason: message }
        } else if message.contains("Conversation is close")
            || lower.contains("conversation not found")
            || lower.contains("dialog not found")
        {
            EngineError::ConversationClosed
        } else if message.contains("already has open conversation") {
            EngineError::AlreadyOpen { reason: message }
        } else {
            EngineError::permanent(message)
        }
    }
}

/// [INFERRED] LivePerson documents the prerequisite (`messaging.file.sharing.enabled`, docs/protocol/liveperson.md §5.10)
/// but not the refusal's wording: any failure message naming file sharing as disabled, off or
/// not enabled counts, as does the site setting's own name.
fn is_file_sharing_disabled(lower: &str) -> bool {
    let names_it = lower.contains("file sharing")
        || lower.contains("file-sharing")
        || lower.contains("filesharing");
    let refuses = ["disabled", "not enabled", "is off", "not allowed"]
        .iter()
        .any(|w| lower.contains(w));
    (names_it && refuses) || lower.contains("file.sharing.enabled")
}

/// What a successful SEND answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOutcome {
    /// `body.sequence` for published events (the event's place in its dialog).
    pub sequence: Option<i64>,
    /// The whole `body` (upload URLs and other answers).
    pub body: Value,
}

/// Which credential a `401` refused, from its `errorCode` (docs/protocol/liveperson.md §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `40102` invalid/expired or `40105` missing AppJWT (and 401s without a code).
    AppJwt,
    /// `40103` invalid or `40104` missing ConsumerJWS.
    ConsumerJws,
}

pub(crate) fn refused(error_code: Option<u64>) -> Refused {
    match error_code {
        Some(40103) | Some(40104) => Refused::ConsumerJws,
        _ => Refused::AppJwt,
    }
}

/// The UTF-16 code units `c` takes inside a JSON string as serde_json writes it: `"`, `\\`
/// and the control characters with a short escape take two, the other control characters six
/// (`\u00XX`), everything else its own UTF-16 length (two outside the Basic Multilingual
/// Plane: serde_json writes non-ASCII characters unescaped).
fn json_escaped_units(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf16(),
    }
}

/// Splits `text` into pieces whose SEND request stays within [`MAX_SEND_CHARS`] UTF-16 code
/// units once serialized (escaping counts), preferring to cut at a line break or a space. The
/// caller sends the pieces as several SEND calls, in order: LivePerson would refuse one
/// request over the limit with a `400`.
pub fn split_for_send(text: &str, to: &DialogRef) -> Vec<String> {
    // With room for the `ExternalId` (id up to 64 characters) the router puts on each text
    // to recognise its echo.
    let probe = utf16_len(
        &SendRequest::Text {
            to: to.clone(),
            text: String::new(),
            metadata: Some(serde_json::json!([{ "type": "ExternalId", "id": "x".repeat(64) }])),
        }
        .to_json(&uuid::Uuid::nil().to_string())
        .to_string(),
    );
    // Room for the message, with a margin for metadata-free requests' own variation.
    let budget = MAX_SEND_CHARS.saturating_sub(probe + 16).max(64);
    let escaped_len = |s: &str| s.chars().map(json_escaped_units).sum::<usize>();
    if escaped_len(text) <= budget {
        return vec![text.to_owned()];
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // Largest prefix (in whole chars) that fits.
        let mut end = 0;
        let mut used = 0;
        for (i, c) in rest.char_indices() {
            let cost = json_escaped_units(c);
            if used + cost > budget {
                break;
            }
            used += cost;
            end = i + c.len_utf8();
        }
        if end >= rest.len() {
            pieces.push(rest.to_owned());
            break;
        }
        let cut = rest[..end]
            .rfind('\n')
            .or_else(|| rest[..end].rfind(' '))
            .filter(|&at| at > end / 2)
            .map(|at| at + 1)
            .unwrap_or(end);
        pieces.push(rest[..cut].trim_end().to_owned());
        rest = &rest[cut..];
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaped_lengths_are_serde_jsons_in_utf16_units() {
        let samples = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain(['é', '€', '👋', '𝄞', '\u{2028}', '\u{7f}']);
        for c in samples {
            let serde = super::utf16_len(&serde_json::Value::String(c.to_string()).to_string()) - 2;
            assert_eq!(super::json_escaped_units(c), serde, "{c:?}");
        }
    }
}
