//! Agent-side messaging events to what a channel is asked to deliver.

use switchboard_core::{ChatState, Outbound, ReceiptStatus};

use crate::structured::{self, ClickAction};
use crate::webhook::{MessageChange, MessageEvent};

/// What one agent messaging event means for the consumer's channel.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// Deliver this, and remember its clicks (empty for plain events) for the consumer's
    /// [`Inbound::Choice`](switchboard_core::Inbound::Choice).
    Deliver {
        /// The canonical event.
        outbound: Outbound,
        /// Reply buttons and what each publishes.
        clicks: Vec<ClickAction>,
    },
    /// An agent file: fetch it (a one-minute download URL) right before delivering it.
    HostedFile {
        /// `relativePath`.
        relative_path: String,
        /// `fileType`.
        file_type: String,
        /// Caption.
        caption: Option<String>,
    },
    /// The agent accepted or read the consumer's messages with these sequences.
    Receipt {
        /// Delivered (ACCEPT) or read (READ).
        status: ReceiptStatus,
        /// The consumer events' sequences.
        sequences: Vec<i64>,
    },
}

/// Translates one agent messaging event, or `None` when the consumer has nothing to see
/// (unknown event types and statuses; `ACCESS`/`NACK`/`ACTION` receipts).
/// Callers filter echoes and agent-only messages first ([`MessageChange::is_for_consumer`]).
pub fn agent_event(change: &MessageChange) -> Option<AgentEvent> {
    let in_survey = change.dialog_id != change.conversation_id || has_question(change);
    match &change.event {
        MessageEvent::Text {
            text,
            quick_replies: Some(replies),
        } => {
            let translated = structured::translate_quick_replies(text, replies);
            if translated.content.quick_replies.is_empty() {
                // No usable reply: it is plain text (or nothing at all).
                return plain_text(change, text, "quickReplies");
            }
            let outbound = if in_survey {
                Outbound::SurveyQuestion {
                    question: translated.content,
                }
            } else {
                Outbound::Rich {
                    content: translated.content,
                }
            };
            Some(AgentEvent::Deliver {
                outbound,
                clicks: translated.clicks,
            })
        }
        MessageEvent::Text { text, .. } => plain_text(change, text, ""),
        MessageEvent::Rich {
            content,
            quick_replies,
        } => {
            let translated = structured::translate_rich(content, quick_replies.as_ref());
            if translated.is_empty() {
                // A consumer is never sent an empty message: what text the template holds, or
                // nothing (and the log says what was dropped).
                let text = structured::plain_text(content);
                tracing::warn!(
                    conversation = %change.conversation_id,
                    sequence = ?change.sequence,
                    dropped = ?structured::element_types(content),
                    fallback = if text.is_empty() { "nothing" } else { "its text" },
                    "structured content no channel can render"
                );
                return plain_text(change, &text, "");
            }
            Some(AgentEvent::Deliver {
                outbound: Outbound::Rich {
                    content: translated.content,
                },
                clicks: translated.clicks,
            })
        }
        MessageEvent::File {
            relative_path,
            file_type,
            caption,
        } => Some(AgentEvent::HostedFile {
            relative_path: relative_path.clone(),
            file_type: file_type.clone(),
            caption: caption.clone(),
        }),
        MessageEvent::AcceptStatus { status, sequences } => {
            let status = match status.as_str() {
                "ACCEPT" => ReceiptStatus::Delivered,
                "READ" => ReceiptStatus::Read,
                _ => return None,
            };
            Some(AgentEvent::Receipt {
                status,
                sequences: sequences.clone(),
            })
        }
        MessageEvent::ChatState { state } => {
            let state = match state.as_str() {
                "COMPOSING" => ChatState::Composing,
                "PAUSE" => ChatState::Paused,
                "ACTIVE" => ChatState::Active,
                "INACTIVE" => ChatState::Inactive,
                "GONE" => ChatState::Gone,
                _ => return None,
            };
            Some(AgentEvent::Deliver {
                outbound: Outbound::ChatState { state },
                clicks: Vec::new(),
            })
        }
        MessageEvent::Other { .. } => None,
    }
}

/// Plain agent text, without the trailing newline agents' texts often end with (docs/protocol/liveperson.md §7.4.1);
/// `None` when nothing is left. `dropped` names what was not usable, for the log.
fn plain_text(change: &MessageChange, text: &str, dropped: &str) -> Option<AgentEvent> {
    let text = text.trim_end_matches(['\n', '\r']);
    if !dropped.is_empty() {
        tracing::info!(
            conversation = %change.conversation_id,
            sequence = ?change.sequence,
            dropped,
            "nothing usable besides the text"
        );
    }
    if text.trim().is_empty() {
        tracing::debug!(
            conversation = %change.conversation_id,
            sequence = ?change.sequence,
            "an agent event without anything to show is not sent to the consumer"
        );
        return None;
    }
    Some(AgentEvent::Deliver {
        outbound: Outbound::text(text),
        clicks: Vec::new(),
    })
}

/// A survey question carries `metadata` of type `Question` (docs/protocol/liveperson.md §7.6).
fn has_question(change: &MessageChange) -> bool {
    change
        .metadata
        .as_ref()
        .and_then(|m| m.as_array())
        .is_some_and(|items| {
            items
                .iter()
                .any(|i| i.get("type").and_then(|t| t.as_str()) == Some("Question"))
        })
}
