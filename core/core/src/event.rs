//! The canonical event model: what flows between channels and the LivePerson engine.
//!
//! Inbound events go from a consumer to an agent ([`InboundEvent`]); outbound events go from an
//! agent to a consumer ([`OutboundEvent`]). Both are plain data with a stable JSON form (tagged
//! by `type`, snake_case), because they are stored in the outboxes and cross the dynamic
//! plugin boundary serialized.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::address::ConsumerAddress;
use crate::rich::RichContent;

/// Switchboard's own id for an outbound event, given to the channel with the event.
///
/// A channel hands it back to refer to that event: in a delivery or read receipt, or when the
/// consumer clicks a button the event carried. Channels treat it as opaque; it is at most 64
/// ASCII characters so that it fits in callback data and DLR URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageRef(pub String);

impl MessageRef {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One event from a consumer, as a channel submits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// Who sent it, on which channel instance.
    pub consumer: ConsumerAddress,
    /// The platform's own id for this event (Kannel's message id, Slack's `event_id`,
    /// Telegram's `update_id`, ...). The runtime drops a second event with the same id from the
    /// same instance, so a platform's retries never reach the agent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
    /// When the platform says the event happened, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at_ms: Option<i64>,
    /// What the channel knows about the consumer; becomes LivePerson SDEs when a conversation
    /// is created. Channels send it when they have it; it need not be on every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ConsumerProfile>,
    /// The event itself.
    pub body: Inbound,
}

impl InboundEvent {
    /// An event with no platform id, timestamp or profile.
    pub fn new(consumer: ConsumerAddress, body: Inbound) -> Self {
        Self {
            consumer,
            platform_id: None,
            occurred_at_ms: None,
            profile: None,
            body,
        }
    }

    /// Sets the platform id used for de-duplication.
    pub fn with_platform_id(mut self, id: impl Into<String>) -> Self {
        self.platform_id = Some(id.into());
        self
    }

    /// Attaches the consumer's profile.
    pub fn with_profile(mut self, profile: ConsumerProfile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// Sets when the event happened.
    pub fn at_ms(mut self, ms: i64) -> Self {
        self.occurred_at_ms = Some(ms);
        self
    }
}

/// The kinds of event a consumer can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Inbound {
    /// A text message.
    Text {
        /// The text, as plain text (channels convert their markup).
        text: String,
    },
    /// An image or other file.
    File {
        /// The file.
        file: Attachment,
    },
    /// Typing, stopped typing, present or gone.
    ChatState {
        /// The new state.
        state: ChatState,
    },
    /// The platform reports that agent messages reached the consumer or were read.
    Receipt {
        /// Delivered or read.
        status: ReceiptStatus,
        /// The outbound events concerned.
        messages: Vec<MessageRef>,
    },
    /// The consumer picked a button or quick reply an agent message offered.
    Choice {
        /// The outbound event that carried the button.
        message: MessageRef,
        /// The [`Button::id`](crate::rich::Button::id) of the button picked.
        choice: String,
    },
    /// An answer to the post-conversation survey (CSAT and/or first-contact resolution).
    Survey {
        /// The answer.
        answer: SurveyAnswer,
    },
    /// The consumer ended the conversation.
    Close,
    /// Only the consumer's profile changed (carried in [`InboundEvent::profile`]).
    ProfileUpdate,
}

impl Inbound {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Inbound::Text { text: text.into() }
    }

    /// A short name of the kind, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Text { .. } => "text",
            Inbound::File { .. } => "file",
            Inbound::ChatState { .. } => "chat_state",
            Inbound::Receipt { .. } => "receipt",
            Inbound::Choice { .. } => "choice",
            Inbound::Survey { .. } => "survey",
            Inbound::Close => "close",
            Inbound::ProfileUpdate => "profile_update",
        }
    }
}

/// One event for a consumer, as the runtime hands it to [`Channel::deliver`](crate::Channel::deliver).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundEvent {
    /// Switchboard's id for this event; see [`MessageRef`].
    pub id: MessageRef,
    /// The event itself.
    pub body: Outbound,
}

impl OutboundEvent {
    /// Builds an outbound event.
    pub fn new(id: impl Into<String>, body: Outbound) -> Self {
        Self {
            id: MessageRef::new(id),
            body,
        }
    }
}

/// The kinds of event an agent (or LivePerson itself) can send to a consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outbound {
    /// A text message.
    Text {
        /// Plain text.
        text: String,
    },
    /// Cards, buttons or quick replies, always with a plain-text fallback.
    Rich {
        /// The content.
        content: RichContent,
    },
    /// An image or other file.
    File {
        /// The file.
        file: Attachment,
    },
    /// The agent is typing, or stopped.
    ChatState {
        /// The new state.
        state: ChatState,
    },
    /// The agent's side accepted or read the consumer's messages.
    Receipt {
        /// Delivered (accepted) or read.
        status: ReceiptStatus,
        /// The [`InboundEvent::platform_id`]s of the consumer's messages concerned.
        messages: Vec<String>,
    },
    /// The conversation was closed.
    Closed {
        /// Who closed it.
        by: ClosedBy,
    },
    /// The conversation was transferred to another skill or put back in the queue.
    Transferred {
        /// The new skill's name or id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skill: Option<String>,
    },
    /// A post-conversation survey question, answered with an [`Inbound::Choice`].
    SurveyQuestion {
        /// The question and its answers as quick replies.
        question: RichContent,
    },
}

impl Outbound {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        Outbound::Text { text: text.into() }
    }

    /// What a channel that carries only text sends for this event: the text, rich content
    /// and survey questions as [`RichContent::to_numbered_text`], a file as its caption and
    /// link (or a notice when it has no link), a short notice for `Closed` and `Transferred`.
    /// `None` for typing and receipts, which a text-only channel drops.
    pub fn to_plain_text(&self) -> Option<String> {
        match self {
            Outbound::Text { text } => Some(text.clone()),
            Outbound::Rich { content } => Some(content.to_numbered_text()),
            Outbound::SurveyQuestion { question } => Some(question.to_numbered_text()),
            Outbound::File { file } => {
                let caption = file.caption.as_deref().unwrap_or("").trim();
                let link = match &file.body {
                    AttachmentBody::Url { url } => url.clone(),
                    AttachmentBody::Inline { .. } => {
                        "(a file was sent that cannot be shown here)".into()
                    }
                };
                Some(if caption.is_empty() {
                    link
                } else {
                    format!("{caption}\n{link}")
                })
            }
            Outbound::Closed {
                by: ClosedBy::Consumer,
            } => Some("You ended the conversation.".into()),
            Outbound::Closed { .. } => Some("The conversation has been closed.".into()),
            Outbound::Transferred { .. } => {
                Some("You are being transferred to another agent.".into())
            }
            Outbound::ChatState { .. } | Outbound::Receipt { .. } => None,
        }
    }

    /// A short name of the kind, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Outbound::Text { .. } => "text",
            Outbound::Rich { .. } => "rich",
            Outbound::File { .. } => "file",
            Outbound::ChatState { .. } => "chat_state",
            Outbound::Receipt { .. } => "receipt",
            Outbound::Closed { .. } => "closed",
            Outbound::Transferred { .. } => "transferred",
            Outbound::SurveyQuestion { .. } => "survey_question",
        }
    }
}

/// Presence and typing, as LivePerson's `chatState` models it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatState {
    /// Typing.
    Composing,
    /// Stopped typing.
    Paused,
    /// Present and attentive.
    Active,
    /// The app is open but the person is away.
    Inactive,
    /// The app was closed.
    Gone,
}

/// Delivered or read, for receipts in either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Reached the other side's device or client.
    Delivered,
    /// Seen by the person.
    Read,
}

/// Who closed a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// An agent (or bot) closed it.
    Agent,
    /// The consumer closed it.
    Consumer,
    /// LivePerson closed it (auto-close after inactivity).
    System,
}

/// A post-conversation survey answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SurveyAnswer {
    /// Customer satisfaction, 1 (worst) to 5 (best).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csat: Option<u8>,
    /// First-contact resolution: whether the consumer says the issue was resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<bool>,
}

/// What Switchboard knows about a consumer, from the channel; becomes LivePerson SDEs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConsumerProfile {
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// The name the platform shows, when it has no first/last split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The platform user name (`@handle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Phone number in E.164 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Preferred language as an IETF tag (`en-US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The platform's user id, when it differs from the address id (a Slack user in a DM
    /// channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_user_id: Option<String>,
}

/// An image or file, inline or by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The MIME type (`image/png`).
    pub mime: String,
    /// A caption shown with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// The bytes, or where to get them.
    pub body: AttachmentBody,
}

impl Attachment {
    /// True for `image/*` MIME types.
    pub fn is_image(&self) -> bool {
        self.mime.starts_with("image/")
    }
}

/// The content of an [`Attachment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttachmentBody {
    /// The bytes themselves (base64 in JSON).
    Inline {
        /// The file content.
        #[serde(with = "base64_bytes")]
        data: Bytes,
    },
    /// A URL anyone holding it can fetch (a public link or a signed temporary URL).
    Url {
        /// The URL.
        url: String,
    },
}

pub(crate) mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inbound_text_has_a_stable_json_form() {
        let e = InboundEvent::new(ConsumerAddress::new("tg", "42"), Inbound::text("hi"))
            .with_platform_id("u-1");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"consumer":{"instance":"tg","id":"42"},"platform_id":"u-1",
                   "body":{"type":"text","text":"hi"}})
        );
        let back: InboundEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn every_outbound_kind_has_a_plain_text_form_or_none() {
        let file = |body| Outbound::File {
            file: Attachment {
                name: None,
                mime: "image/png".into(),
                caption: Some("The box".into()),
                body,
            },
        };
        let url = AttachmentBody::Url {
            url: "https://x.example/box.png".into(),
        };
        let inline = AttachmentBody::Inline {
            data: Bytes::from_static(b"png"),
        };
        assert_eq!(Outbound::text("hi").to_plain_text().as_deref(), Some("hi"));
        assert_eq!(
            file(url).to_plain_text().as_deref(),
            Some("The box\nhttps://x.example/box.png")
        );
        assert!(
            file(inline)
                .to_plain_text()
                .unwrap()
                .starts_with("The box\n(")
        );
        let closed = Outbound::Closed {
            by: ClosedBy::Agent,
        };
        assert!(closed.to_plain_text().is_some());
        let typing = Outbound::ChatState {
            state: ChatState::Composing,
        };
        assert_eq!(typing.to_plain_text(), None);
    }

    #[test]
    fn close_is_a_bare_tag() {
        let v = serde_json::to_value(Inbound::Close).unwrap();
        assert_eq!(v, json!({"type":"close"}));
    }

    #[test]
    fn inline_attachments_round_trip_as_base64() {
        let file = Attachment {
            name: Some("a.png".into()),
            mime: "image/png".into(),
            caption: None,
            body: AttachmentBody::Inline {
                data: Bytes::from_static(&[0, 1, 2, 255]),
            },
        };
        let v = serde_json::to_value(&file).unwrap();
        assert_eq!(v["body"], json!({"kind":"inline","data":"AAEC/w=="}));
        let back: Attachment = serde_json::from_value(v).unwrap();
        assert_eq!(back, file);
        assert!(back.is_image());
    }

    #[test]
    fn bad_base64_is_an_error_not_a_panic() {
        let v = json!({"mime":"image/png","body":{"kind":"inline","data":"%%%"}});
        assert!(serde_json::from_value::<Attachment>(v).is_err());
    }
}
