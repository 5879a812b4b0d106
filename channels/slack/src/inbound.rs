//! Requests from Slack: the signature and timestamp checks (on the raw bytes, before anything
//! is parsed), then the Events API envelope and interactivity payloads.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_core::http_util::json_error;
use switchboard_core::{HttpRequest, HttpResponse, Secret, http};

use crate::wire;

/// Requests whose timestamp is further than this from now are refused (replays).
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a request was refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `X-Slack-Request-Timestamp` or `X-Slack-Signature` is missing or malformed.
    #[error("missing or malformed X-Slack-Request-Timestamp / X-Slack-Signature")]
    Missing,
    /// The timestamp is more than five minutes from now.
    #[error("the request timestamp is more than five minutes off")]
    Stale,
    /// The signature does not match.
    #[error("the signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// The 401 to answer.
    pub fn to_response(self) -> HttpResponse {
        json_error(
            http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            &self.to_string(),
        )
    }
}

/// HMAC-SHA256 keyed with the signing secret over `v0:{timestamp}:{body}`.
fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`: how Slack signs (for tests and fakes).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret.as_bytes(), timestamp, body)
        .finalize()
        .into_bytes();
    format!("v0={}", hex::encode(tag))
}

/// Checks a request's signature and timestamp against `now` (Unix seconds).
pub fn verify(req: &HttpRequest, secret: &Secret, now: i64) -> Result<(), SignatureError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let timestamp = header("x-slack-request-timestamp").ok_or(SignatureError::Missing)?;
    let signature = header("x-slack-signature").ok_or(SignatureError::Missing)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Missing)?;
    if now.abs_diff(ts) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let presented = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Missing)?;
    mac(secret.expose().as_bytes(), timestamp, req.body())
        .verify_slice(&presented)
        .map_err(|_| SignatureError::Mismatch)
}

/// Where an event comes from: the workspace (and organization) in its envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The envelope's `team_id`.
    pub team_id: Option<String>,
    /// The envelope's `enterprise_id` (Enterprise Grid).
    pub enterprise_id: Option<String>,
}

/// A consumer's message, as an `event_callback` carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMessage {
    /// The dedup key: `slack:{channel}:{ts}`. The same message reaches us twice when the app
    /// takes both `message` and `app_mention` events (two `event_id`s, one `ts`), and again on
    /// Slack's retries (same `event_id`): the channel and `ts` identify it in every case.
    pub key: String,
    /// The conversation: the DM channel (`D…`), or the channel of an app mention.
    pub channel: String,
    /// The sender.
    pub user: String,
    /// mrkdwn text.
    pub text: String,
    /// When it was sent (Unix milliseconds), from `ts`.
    pub sent_at_ms: Option<i64>,
    /// Files shared with it.
    pub files: Vec<SharedFile>,
    /// The workspace it was sent in.
    pub origin: Origin,
}

/// A file a consumer shared.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedFile {
    /// `F…`.
    pub id: String,
    /// The file name.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Its size, when Slack says.
    pub size: Option<u64>,
    /// How it can be fetched, if at all.
    pub access: FileAccess,
}

/// How a shared file can be fetched (docs.slack.dev/reference/objects/file-object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAccess {
    /// `url_private_download` (or `url_private`), fetched with the bot token.
    Download(String),
    /// `file_access: "check_file_info"` (files from another organization in a Slack Connect
    /// conversation): the event carries no link; `files.info` may give one.
    CheckFileInfo,
    /// Slack gives no way to fetch it; the reason is shown to the agent.
    Unavailable(&'static str),
}

/// A message our own app posted, as Slack echoes it in the conversation (the app receives
/// every message of its DMs, its own included). It tells the poster that a post whose answer
/// was lost did land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnPost {
    /// The conversation.
    pub channel: String,
    /// Its `ts`.
    pub ts: String,
    /// The part id our post carried in its `metadata`, when Slack echoes it.
    pub part: Option<String>,
    /// Files it shared.
    pub files: Vec<String>,
}

/// What an Events API body is.
#[derive(Debug, Clone, PartialEq)]
pub enum EventsBody {
    /// Answer with the challenge.
    UrlVerification(String),
    /// A message to take.
    Message(UserMessage),
    /// Our own post, echoed (never submitted).
    OwnPost(OwnPost),
    /// Something this channel does not take (acknowledged).
    Ignored(&'static str),
}

/// How a shared file can be fetched, from its `mode`, `file_access` and links.
pub fn file_access_of(f: &wire::File) -> FileAccess {
    match (f.mode.as_deref(), f.file_access.as_deref()) {
        (Some("hidden_by_limit"), _) => {
            FileAccess::Unavailable("hidden by the workspace's file storage limit (free plan)")
        }
        (Some("tombstone"), _) => FileAccess::Unavailable("deleted"),
        (_, Some("check_file_info")) => FileAccess::CheckFileInfo,
        (_, Some("access_denied")) => {
            FileAccess::Unavailable("its owner's organization does not share it with the app")
        }
        (_, Some("file_not_found")) => FileAccess::Unavailable("not found"),
        (Some("external"), _) => FileAccess::Unavailable("stored outside Slack"),
        _ => match f
            .url_private_download
            .clone()
            .or_else(|| f.url_private.clone())
        {
            Some(url) if !url.is_empty() => FileAccess::Download(url),
            _ => FileAccess::Unavailable("Slack gave no link to it"),
        },
    }
}

/// Parses an Events API body (already verified). `app_mentions` says whether mentions of the
/// app in channels count; direct messages always do.
///
/// Ignored (acknowledged, never submitted): messages from bots (any `bot_id`, the
/// `bot_message` subtype, our own bot user; our own app's posts come out as
/// [`EventsBody::OwnPost`]); subtypes other than plain messages and `file_share` (edits,
/// deletions, joins, `thread_broadcast`, …); messages in channels other than DMs unless they
/// mention the app and `app_mentions` is on; every other event type.
pub fn parse_events(body: &[u8], app_mentions: bool) -> Result<EventsBody, String> {
    let request: wire::EventsRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid event body: {e}"))?;
    let callback = match request {
        wire::EventsRequest::UrlVerification { challenge } => {
            return Ok(EventsBody::UrlVerification(challenge));
        }
        wire::EventsRequest::EventCallback(callback) => callback,
        wire::EventsRequest::AppRateLimited {
            minute_rate_limited,
        } => {
            tracing::warn!(
                minute_rate_limited,
                "Slack is rate-limiting this app's events (over 30,000 an hour)"
            );
            return Ok(EventsBody::Ignored("app_rate_limited notice"));
        }
        wire::EventsRequest::Other => return Ok(EventsBody::Ignored("not an event callback")),
    };
    let event = &callback.event;
    let taken = match event.kind.as_str() {
        "message" => event.channel_type.as_deref() == Some("im"),
        "app_mention" => app_mentions,
        _ => false,
    };
    if !taken {
        return Ok(EventsBody::Ignored("event kind or channel not taken"));
    }
    let user = event.user.as_deref().unwrap_or("");
    let from_bot = event.bot_id.is_some()
        || event.bot_profile.is_some()
        || event.subtype.as_deref() == Some("bot_message");
    let ours = (!user.is_empty() && Some(user) == callback.bot_user())
        || (event.app_id.is_some() && event.app_id == callback.api_app_id);
    if ours {
        let (Some(channel), Some(ts)) = (event.channel.as_deref(), event.ts.as_deref()) else {
            return Ok(EventsBody::Ignored("our own message"));
        };
        if event
            .subtype
            .as_deref()
            .is_some_and(|s| s != "bot_message" && s != "file_share")
        {
            return Ok(EventsBody::Ignored("a change to our own message"));
        }
        let part = event
            .metadata
            .as_ref()
            .filter(|m| m.event_type == crate::wire::METADATA_EVENT_TYPE)
            .and_then(|m| m.event_payload.get("id"))
            .and_then(|id| id.as_str())
            .map(str::to_owned);
        return Ok(EventsBody::OwnPost(OwnPost {
            channel: channel.to_owned(),
            ts: ts.to_owned(),
            part,
            files: event.files.iter().map(|f| f.id.clone()).collect(),
        }));
    }
    if from_bot {
        return Ok(EventsBody::Ignored("a bot's message"));
    }
    match event.subtype.as_deref() {
        None | Some("file_share") => {}
        Some(_) => return Ok(EventsBody::Ignored("edits, deletions and other subtypes")),
    }
    if user.is_empty() {
        return Ok(EventsBody::Ignored("a message without a sender"));
    }
    let channel = event.channel.as_deref().ok_or("no `event.channel`")?;
    let key = match event.ts.as_deref() {
        Some(ts) if !ts.is_empty() => format!("slack:{channel}:{ts}"),
        _ => format!("slack:{}", callback.event_id),
    };
    let files = event
        .files
        .iter()
        .map(|f| SharedFile {
            id: f.id.clone(),
            name: f.name.clone().unwrap_or_else(|| f.id.clone()),
            mime: f
                .mimetype
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: f.size,
            access: file_access_of(f),
        })
        .collect();
    Ok(EventsBody::Message(UserMessage {
        key,
        channel: channel.to_owned(),
        user: user.to_owned(),
        text: event.text.clone().unwrap_or_default(),
        sent_at_ms: event.ts.as_deref().and_then(ts_millis),
        files,
        origin: Origin {
            team_id: callback.team_id.clone(),
            enterprise_id: callback.enterprise_id.clone(),
        },
    }))
}

/// A Slack `ts` (`"1355517523.000005"`) in Unix milliseconds.
fn ts_millis(ts: &str) -> Option<i64> {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    let secs: i64 = secs.parse().ok()?;
    let millis: i64 = micros.get(..3).unwrap_or(micros).parse().unwrap_or(0);
    secs.checked_mul(1000)?.checked_add(millis)
}

/// A button press (`block_actions`).
#[derive(Debug, Clone, PartialEq)]
pub struct ButtonPress {
    /// Where the message with the button was (the consumer's conversation).
    pub channel: String,
    /// Who pressed it.
    pub user: String,
    /// The button's `value`.
    pub value: String,
    /// `action_ts` (with the channel, the dedup key).
    pub action_ts: String,
}

/// Parses an interactivity body (`payload=<JSON>`, already verified). `Ok(None)` for payload
/// types this channel does not take and for link buttons (Slack opened the link itself).
pub fn parse_interactivity(body: &[u8]) -> Result<Option<ButtonPress>, String> {
    let payload = interactivity_payload(body)?;
    parse_interaction(&payload)
}

/// The `payload` field of an interactivity request's form body.
pub fn interactivity_payload(body: &[u8]) -> Result<String, String> {
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| format!("invalid form: {e}"))?;
    form.into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .ok_or_else(|| "no `payload` field".to_owned())
}

/// Parses an interaction payload's JSON (the `payload` field over HTTP; the envelope's
/// `payload` object in Socket Mode). `Ok(None)` as in [`parse_interactivity`].
pub fn parse_interaction(payload: &str) -> Result<Option<ButtonPress>, String> {
    let interaction: wire::Interaction =
        serde_json::from_str(payload).map_err(|e| format!("invalid payload: {e}"))?;
    let wire::Interaction::BlockActions(actions) = interaction else {
        return Ok(None);
    };
    let Some(action) = actions.actions.first() else {
        return Ok(None);
    };
    let Some(value) = action.value.as_deref() else {
        return Ok(None);
    };
    let channel = actions.channel_id().ok_or("no channel")?;
    Ok(Some(ButtonPress {
        channel: channel.to_owned(),
        user: actions
            .user
            .as_ref()
            .map(|u| u.id.clone())
            .unwrap_or_default(),
        value: value.to_owned(),
        action_ts: action.action_ts.clone().unwrap_or_default(),
    }))
}

/// A button's `value`: the agent message's ref and the button id, which come back on a press.
pub fn button_value(message: &str, button: &str) -> String {
    format!("{message}|{button}")
}

/// The (message ref, button id) a pressed button's `value` carries.
pub fn parse_button_value(value: &str) -> Option<(&str, &str)> {
    let (message, button) = value.rsplit_once('|')?;
    (!message.is_empty() && !button.is_empty()).then_some((message, button))
}
