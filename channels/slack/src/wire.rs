//! Slack payloads, named as Slack names them: the Events API envelope, the message event, and
//! the `block_actions` interactivity payload. Only the fields the channel uses; unknown fields
//! (Slack adds them all the time) are ignored, and every field that Slack may leave out has a
//! default, so an unexpected shape is "ignored", not an error.

use serde::Deserialize;

/// The body of a request to the Events API Request URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventsRequest {
    /// Sent once when the Request URL is saved in the app settings.
    UrlVerification {
        /// Echoed back in the answer.
        challenge: String,
    },
    /// An event the app subscribed to.
    EventCallback(Box<EventCallback>),
    /// More than 30,000 events in an hour from one workspace: Slack holds events back.
    AppRateLimited {
        /// The minute (Unix seconds) the limit started.
        #[serde(default)]
        minute_rate_limited: i64,
    },
    /// Any other request type Slack adds later.
    #[serde(other)]
    Other,
}

/// The `event_callback` envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct EventCallback {
    /// Unique per event; the same on Slack's retries of it.
    pub event_id: String,
    /// The workspace the event happened in.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The organization, on Enterprise Grid.
    #[serde(default)]
    pub enterprise_id: Option<String>,
    /// Our app (`A…`).
    #[serde(default)]
    pub api_app_id: Option<String>,
    /// When the event happened (Unix seconds).
    #[serde(default)]
    pub event_time: i64,
    /// The installations the event is for; `user_id` is our bot user.
    #[serde(default)]
    pub authorizations: Vec<Authorization>,
    /// The event itself.
    pub event: Event,
}

impl EventCallback {
    /// Our bot's user id, as the envelope says (used to ignore our own messages).
    pub fn bot_user(&self) -> Option<&str> {
        self.authorizations
            .iter()
            .find(|a| a.is_bot)
            .or(self.authorizations.first())
            .and_then(|a| a.user_id.as_deref())
    }
}

/// One entry of `authorizations`.
#[derive(Debug, Clone, Deserialize)]
pub struct Authorization {
    /// The installing bot's user id (`U…`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// True for the bot installation.
    #[serde(default)]
    pub is_bot: bool,
}

/// An inner event: `message` (subscribed as `message.im`) or `app_mention`; other types are
/// read far enough to be ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// `message`, `app_mention`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `file_share` for files; `message_changed`, `message_deleted`, `bot_message`,
    /// `channel_join`, … for what is not new user content.
    #[serde(default)]
    pub subtype: Option<String>,
    /// `im` for direct messages, `channel`, `group`, `mpim`.
    #[serde(default)]
    pub channel_type: Option<String>,
    /// The conversation (`D…` for a DM).
    #[serde(default)]
    pub channel: Option<String>,
    /// The sender (`U…`).
    #[serde(default)]
    pub user: Option<String>,
    /// Set on messages posted by bots (ours included).
    #[serde(default)]
    pub bot_id: Option<String>,
    /// The posting bot's profile (set with `bot_id`).
    #[serde(default)]
    pub bot_profile: Option<serde_json::Value>,
    /// The app that posted the message (ours: the envelope's `api_app_id`).
    #[serde(default)]
    pub app_id: Option<String>,
    /// Message metadata (`event_type`, `event_payload`), when the poster attached it.
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// mrkdwn text.
    #[serde(default)]
    pub text: Option<String>,
    /// The message id within its channel; a string, never a float.
    #[serde(default)]
    pub ts: Option<String>,
    /// Set on replies in a thread: the parent's `ts`.
    #[serde(default)]
    pub thread_ts: Option<String>,
    /// Files shared with the message (`subtype: "file_share"`).
    #[serde(default)]
    pub files: Vec<File>,
}

/// The [`Metadata::event_type`] of our posts: how the channel tells its own posts (echoed by
/// the Events API) from people's.
pub const METADATA_EVENT_TYPE: &str = "switchboard_message";

/// Message metadata (docs.slack.dev/messaging/message-metadata).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// The poster's event type (ours: `switchboard_message`).
    #[serde(default)]
    pub event_type: String,
    /// The poster's payload (ours: `{"id": part id}`).
    #[serde(default)]
    pub event_payload: serde_json::Map<String, serde_json::Value>,
}

/// A file shared by a user.
#[derive(Debug, Clone, Deserialize)]
pub struct File {
    /// `F…`.
    #[serde(default)]
    pub id: String,
    /// The file name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its MIME type.
    #[serde(default)]
    pub mimetype: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Where to download it with the bot token.
    #[serde(default)]
    pub url_private: Option<String>,
    /// Same, as an attachment download.
    #[serde(default)]
    pub url_private_download: Option<String>,
    /// `hosted`, `external`, `snippet`, `tombstone` (deleted), `hidden_by_limit` (beyond a
    /// free workspace's storage limit).
    #[serde(default)]
    pub mode: Option<String>,
    /// `visible`, or `check_file_info` (Slack Connect: call `files.info`), `access_denied`,
    /// `file_not_found`.
    #[serde(default)]
    pub file_access: Option<String>,
}

/// The JSON inside the `payload` field of an interactivity request.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Interaction {
    /// A button (or other block element) was used.
    BlockActions(BlockActions),
    /// Modals, shortcuts, legacy attachments: not used by this channel.
    #[serde(other)]
    Other,
}

/// A `block_actions` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct BlockActions {
    /// Who pressed.
    #[serde(default)]
    pub user: Option<IdOnly>,
    /// Where the message with the element is.
    #[serde(default)]
    pub container: Option<Container>,
    /// The channel, for message containers.
    #[serde(default)]
    pub channel: Option<IdOnly>,
    /// The element(s) used; Slack sends one.
    #[serde(default)]
    pub actions: Vec<Action>,
}

impl BlockActions {
    /// The conversation the pressed message is in.
    pub fn channel_id(&self) -> Option<&str> {
        self.container
            .as_ref()
            .and_then(|c| c.channel_id.as_deref())
            .or(self.channel.as_ref().map(|c| c.id.as_str()))
    }
}

/// An object of which only the id is used (`user`, `channel`).
#[derive(Debug, Clone, Deserialize)]
pub struct IdOnly {
    /// The id.
    pub id: String,
}

/// Where an interactive element lives.
#[derive(Debug, Clone, Deserialize)]
pub struct Container {
    /// `message`, `message_attachment` or `view`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The conversation, for messages.
    #[serde(default)]
    pub channel_id: Option<String>,
}

/// One used element.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    /// `button`, `static_select`, …
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The button's `value` (absent on link buttons).
    #[serde(default)]
    pub value: Option<String>,
    /// When it was pressed; unique per press in a channel.
    #[serde(default)]
    pub action_ts: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_envelope_parses() {
        // docs/protocol/channels.md §1.4 (the trailing comma of Slack's page removed).
        let body = r#"{"token":"one-long-verification-token","team_id":"T123ABC456","api_app_id":"A0PNCHHK2",
            "event":{"type":"message","channel":"D024BE91L","user":"U2147483697","text":"Hello hello can you hear me?",
              "ts":"1355517523.000005","event_ts":"1355517523.000005","channel_type":"im"},
            "type":"event_callback",
            "authorizations":[{"enterprise_id":null,"team_id":"T123ABC456","user_id":"U0BOTUSER","is_bot":true,"is_enterprise_install":false}],
            "event_id":"Ev0PV52K21","event_time":1355517523,"event_context":"4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMTIzIn0"}"#;
        let EventsRequest::EventCallback(cb) = serde_json::from_str(body).unwrap() else {
            panic!("not an event callback")
        };
        assert_eq!(cb.event_id, "Ev0PV52K21");
        assert_eq!(cb.bot_user(), Some("U0BOTUSER"));
        assert_eq!(cb.event.kind, "message");
        assert_eq!(cb.event.channel_type.as_deref(), Some("im"));
        assert_eq!(cb.event.ts.as_deref(), Some("1355517523.000005"));
    }

    #[test]
    fn unknown_request_and_interaction_types_are_other() {
        let r: EventsRequest = serde_json::from_str(r#"{"type":"brand_new","x":1}"#).unwrap();
        assert!(matches!(r, EventsRequest::Other));
        let i: Interaction = serde_json::from_str(r#"{"type":"view_submission"}"#).unwrap();
        assert!(matches!(i, Interaction::Other));
    }
}
