//! The notification envelope and its changes (docs/protocol/liveperson.md §7.4), parsed leniently: unknown fields, enum
//! values and event types are kept as "other" or skipped, never an error (docs/protocol/liveperson.md §7.4 compatibility
//! rule). Only a body that is not a JSON object is refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::WebhookParseError;

/// One webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// `ms.MessagingEventNotification` or `cqm.ExConversationChangeNotification` (or another).
    pub notification_type: String,
    /// The changes, in the order LivePerson listed them.
    pub changes: Vec<NotificationChange>,
}

/// One element of `body.changes`.
#[derive(Debug, Clone, PartialEq)]
pub enum NotificationChange {
    /// A messaging event (content, rich content, accept status, chat state).
    Message(MessageChange),
    /// The complete current state of a conversation.
    Conversation(ConversationChange),
    /// Something this version does not understand; acknowledged and ignored.
    Unknown {
        /// Why it was skipped.
        reason: String,
    },
}

/// Who published a messaging event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The consumer (an echo of what the connector sent).
    Consumer,
    /// The agent assigned to the conversation.
    AssignedAgent,
    /// Another agent or a bot (e.g. the survey bot).
    Agent,
    /// A manager.
    Manager,
    /// LivePerson itself (automatic and system messages).
    Controller,
    /// A reader (the previous agent during a survey).
    Reader,
    /// A role this version does not know.
    Other(String),
}

impl Role {
    fn parse(s: &str) -> Role {
        match s {
            "CONSUMER" => Role::Consumer,
            "ASSIGNED_AGENT" => Role::AssignedAgent,
            "AGENT" => Role::Agent,
            "MANAGER" => Role::Manager,
            "CONTROLLER" => Role::Controller,
            "READER" => Role::Reader,
            other => Role::Other(other.to_owned()),
        }
    }
}

/// Who may see a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// Everybody, including the consumer.
    All,
    /// Agents and managers only: must never reach the consumer.
    AgentsAndManagers,
}

/// A messaging event change (docs/protocol/liveperson.md §7.4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageChange {
    /// `conversationId`, or `dialogId` when the change omits it.
    pub conversation_id: String,
    /// Whether the change named its `conversationId`. Older shapes, and the events of a
    /// survey dialog (the post-conversation-survey tutorial's), name only the `dialogId`:
    /// `conversation_id` is then the dialog id, and the dialog's conversation is learnt from
    /// the ExConversation notification that announced the dialog.
    #[serde(default)]
    pub names_conversation: bool,
    /// `dialogId` (MAIN: the conversation id).
    pub dialog_id: String,
    /// The per-dialog sequence (absent on chat states).
    pub sequence: Option<i64>,
    /// `originatorId`.
    pub originator_id: Option<String>,
    /// `originatorMetadata.role`.
    pub role: Option<Role>,
    /// `serverTimestamp` (epoch ms).
    pub server_timestamp: Option<i64>,
    /// `messageAudience` (absent means all).
    pub audience: Audience,
    /// Change-level `metadata` (ExternalId, survey `Question` …).
    pub metadata: Option<Value>,
    /// The event.
    pub event: MessageEvent,
}

/// The event inside a [`MessageChange`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MessageEvent {
    /// ContentEvent `text/plain`, maybe with quick replies.
    Text {
        /// The text.
        text: String,
        /// `quickReplies`, as sent.
        quick_replies: Option<Value>,
    },
    /// ContentEvent `hosted/file`.
    File {
        /// Where it is stored.
        relative_path: String,
        /// `JPG`, `PNG`, `PDF` …
        file_type: String,
        /// The caption.
        caption: Option<String>,
    },
    /// RichContentEvent: structured content (parsed from a string when sent as one).
    Rich {
        /// The template.
        content: Value,
        /// `quickReplies`, as sent.
        quick_replies: Option<Value>,
    },
    /// AcceptStatusEvent.
    AcceptStatus {
        /// `ACCEPT`, `READ`, `ACCESS`, `NACK`, `ACTION` …
        status: String,
        /// The sequences acknowledged.
        sequences: Vec<i64>,
    },
    /// ChatStateEvent.
    ChatState {
        /// `COMPOSING`, `ACTIVE`, `PAUSE`, … (unknown values such as `BACKGROUND` kept).
        state: String,
    },
    /// Another event or content type (secure forms …).
    Other {
        /// `event.type`.
        event_type: String,
        /// `event.contentType`, if any.
        content_type: Option<String>,
    },
}

/// One dialog of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    /// `dialogId`.
    pub dialog_id: String,
    /// `MAIN`, `POST_SURVEY` …
    pub dialog_type: String,
    /// `OPEN` or `CLOSE`.
    pub state: String,
}

/// A `cqm.ExConversationChangeNotification` change (docs/protocol/liveperson.md §7.4.2): the complete state.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationChange {
    /// `UPSERT` or `DELETE`.
    pub change_type: String,
    /// `result.convId`.
    pub conversation_id: String,
    /// `state`: the MAIN dialog (`OPEN`/`CLOSE`).
    pub state: Option<String>,
    /// `stage`: the whole conversation (`OPEN`/`CLOSE`).
    pub stage: Option<String>,
    /// `closeReason` (`AGENT`, `CONSUMER`, `SYSTEM`).
    pub close_reason: Option<String>,
    /// `skillId`.
    pub skill_id: Option<String>,
    /// The `CONSUMER` participant's id.
    pub consumer_id: Option<String>,
    /// Ids of `ASSIGNED_AGENT` participants.
    pub assigned_agents: Vec<String>,
    /// The dialogs.
    pub dialogs: Vec<DialogInfo>,
    /// `metaDataLastUpdateTs`, to discard stale notifications.
    pub last_update_ms: Option<i64>,
}

impl ConversationChange {
    /// The whole conversation is over: `stage: CLOSE` (or, without `stage`, `state: CLOSE`).
    pub fn is_closed(&self) -> bool {
        self.stage.as_deref() == Some("CLOSE")
            || (self.stage.is_none() && self.state.as_deref() == Some("CLOSE"))
    }

    /// The connector should treat the conversation as over: it is closed, or the change is a
    /// `DELETE` that does not say it is still open.
    ///
    /// [CONFLICT] docs/protocol/liveperson.md §7.4.2: the schema allows `DELETE`, no webhook example shows one, and SDK
    /// samples read it as "left the subscription", which need not mean closed. A `DELETE`
    /// showing the conversation open is therefore not taken as a close: wrongly keeping a
    /// conversation costs one refused SEND ("Conversation is close", after which a new one is
    /// opened and the message resent), while wrongly dropping it would send the consumer a
    /// false close notice and have their next message refused as "already has open
    /// conversation". A `DELETE` without a state, or showing it closed, is a close.
    pub fn ends_conversation(&self) -> bool {
        let says_open = match self.stage.as_deref() {
            Some(stage) => stage == "OPEN",
            None => self.state.as_deref() == Some("OPEN"),
        };
        self.is_closed() || (self.change_type == "DELETE" && !says_open)
    }

    /// The open POST_SURVEY dialog, when the conversation is in its survey.
    pub fn open_survey_dialog(&self) -> Option<&DialogInfo> {
        self.dialogs
            .iter()
            .find(|d| d.dialog_type == "POST_SURVEY" && d.state == "OPEN")
    }
}

impl MessageChange {
    /// True when this change must reach the consumer: not the consumer's own echo, not
    /// agent-only.
    pub fn is_for_consumer(&self, lp_consumer_id: Option<&str>) -> bool {
        if self.audience == Audience::AgentsAndManagers {
            return false;
        }
        if self.role == Some(Role::Consumer) {
            return false;
        }
        match (lp_consumer_id, self.originator_id.as_deref()) {
            (Some(mine), Some(from)) if !mine.is_empty() => mine != from,
            _ => true,
        }
    }

    /// The dedup key of sequenced events: `(conversationId, dialogId, sequence)` (docs/protocol/liveperson.md §7.5).
    pub fn dedup_key(&self) -> Option<String> {
        self.sequence
            .map(|s| format!("lp:{}:{}:{s}", self.conversation_id, self.dialog_id))
    }
}

/// Parses a notification body.
pub fn parse(body: &[u8]) -> Result<Notification, WebhookParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookParseError(format!("invalid JSON: {e}")))?;
    let Value::Object(root) = &value else {
        return Err(WebhookParseError("the body is not a JSON object".into()));
    };
    let notification_type = root
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let changes = match root.get("body").and_then(|b| b.get("changes")) {
        Some(Value::Array(changes)) => changes.as_slice(),
        Some(Value::Null) | None => &[],
        Some(_) => return Err(WebhookParseError("`body.changes` is not an array".into())),
    };
    let changes = changes
        .iter()
        .map(|change| match notification_type.as_str() {
            "cqm.ExConversationChangeNotification" => conversation_change(change),
            _ if change.get("event").is_some() => message_change(change),
            _ if change.get("result").is_some() => conversation_change(change),
            other => NotificationChange::Unknown {
                reason: format!("unknown notification type `{other}`"),
            },
        })
        .collect();
    Ok(Notification {
        notification_type,
        changes,
    })
}

fn string(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn non_null(value: Option<&Value>) -> Option<Value> {
    value.filter(|v| !v.is_null()).cloned()
}

fn message_change(change: &Value) -> NotificationChange {
    let event = &change["event"];
    let dialog_id = string(change, "dialogId");
    let named = string(change, "conversationId");
    let names_conversation = named.is_some();
    let conversation_id = named.or_else(|| dialog_id.clone());
    let (Some(conversation_id), Some(dialog_id)) = (conversation_id, dialog_id) else {
        return NotificationChange::Unknown {
            reason: "messaging event without dialogId".into(),
        };
    };
    let event_type = string(event, "type").unwrap_or_default();
    let content_type = string(event, "contentType");
    let quick_replies = non_null(event.get("quickReplies"));
    let event = match event_type.as_str() {
        "ContentEvent" => match (content_type.as_deref(), event.get("message")) {
            (Some("text/plain") | None, Some(Value::String(text))) => MessageEvent::Text {
                text: text.clone(),
                quick_replies,
            },
            (Some("hosted/file"), Some(message)) if message.is_object() => MessageEvent::File {
                relative_path: string(message, "relativePath").unwrap_or_default(),
                file_type: string(message, "fileType").unwrap_or_default(),
                caption: string(message, "caption"),
            },
            _ => MessageEvent::Other {
                event_type,
                content_type,
            },
        },
        "RichContentEvent" => {
            // The History API documents `content` as a JSON string: accept both (docs/protocol/liveperson.md §7.4.1).
            let content = match event.get("content").or_else(|| event.get("message")) {
                Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
                Some(v) => v.clone(),
                None => Value::Null,
            };
            if content.is_null() {
                MessageEvent::Other {
                    event_type,
                    content_type,
                }
            } else {
                MessageEvent::Rich {
                    content,
                    quick_replies,
                }
            }
        }
        "AcceptStatusEvent" => MessageEvent::AcceptStatus {
            status: string(event, "status").unwrap_or_default(),
            sequences: event
                .get("sequenceList")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
        },
        "ChatStateEvent" => MessageEvent::ChatState {
            state: string(event, "chatState").unwrap_or_default(),
        },
        _ => MessageEvent::Other {
            event_type,
            content_type,
        },
    };
    let role = change
        .get("originatorMetadata")
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        .map(Role::parse);
    NotificationChange::Message(MessageChange {
        conversation_id,
        names_conversation,
        dialog_id,
        sequence: change.get("sequence").and_then(Value::as_i64),
        originator_id: string(change, "originatorId"),
        role,
        server_timestamp: change.get("serverTimestamp").and_then(Value::as_i64),
        audience: match change.get("messageAudience").and_then(Value::as_str) {
            Some("AGENTS_AND_MANAGERS") => Audience::AgentsAndManagers,
            _ => Audience::All,
        },
        metadata: non_null(change.get("metadata")),
        event,
    })
}

fn conversation_change(change: &Value) -> NotificationChange {
    let result = &change["result"];
    let Some(conversation_id) = string(result, "convId") else {
        return NotificationChange::Unknown {
            reason: "conversation change without convId".into(),
        };
    };
    let details = &result["conversationDetails"];
    let participants = details
        .get("participants")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let with_role = |role: &'static str| {
        participants
            .iter()
            .filter(move |p| p.get("role").and_then(Value::as_str) == Some(role))
            .filter_map(|p| string(p, "id"))
    };
    let dialogs = details
        .get("dialogs")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| {
                    Some(DialogInfo {
                        dialog_id: string(d, "dialogId")?,
                        dialog_type: string(d, "dialogType").unwrap_or_else(|| "MAIN".into()),
                        state: string(d, "state").unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    NotificationChange::Conversation(ConversationChange {
        change_type: string(change, "type").unwrap_or_else(|| "UPSERT".into()),
        conversation_id,
        state: string(details, "state"),
        stage: string(details, "stage"),
        close_reason: string(details, "closeReason"),
        skill_id: string(details, "skillId").or_else(|| {
            details
                .get("conversationHandlerDetails")
                .and_then(|h| string(h, "skillId"))
        }),
        consumer_id: with_role("CONSUMER").next(),
        assigned_agents: with_role("ASSIGNED_AGENT").collect(),
        dialogs,
        last_update_ms: details.get("metaDataLastUpdateTs").and_then(Value::as_i64),
    })
}
