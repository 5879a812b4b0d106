//! `slack`: a brand's customers write to the brand's Slack app in direct messages (and, if
//! enabled, mention it in channels); agents answer from LivePerson.
//!
//! - Inbound over the Events API (`POST /channels/{instance}/events` and `/interactivity`,
//!   `mode = "events_api"`): the `v0` signature over the raw body and the timestamp (±5
//!   minutes) are checked before anything is parsed; forged or stale requests get 401 JSON.
//!   Or over Socket Mode (`mode = "socket_mode"`, [`socket`]): a WebSocket the channel opens
//!   with the app-level token, for brands without a public HTTPS endpoint.
//! - Either way the event is stored and acknowledged at once, well inside Slack's three
//!   seconds; what is slow (`users.info`, file downloads) happens afterwards, in
//!   [`Channel::prepare`], just before the event goes to LivePerson, and never lands in the
//!   outbox. The channel and `ts` are the platform id, so Slack's retries reach the agent once.
//! - Events from another workspace than the bot token's, and every bot's message, are
//!   dropped; our own posts' echoes are kept as proof that an uncertain post landed.
//! - Outbound: `chat.postMessage` (texts split above 4,000 characters), Block Kit for buttons,
//!   quick replies and cards, always with a `text` fallback; files through
//!   `files.getUploadURLExternal` + `files.completeUploadExternal`. Slack shows no typing for
//!   bots: the channel declares it unsupported instead of faking it.
//! - `chat.postMessage` is not idempotent: each post is marked in the store first, and a post
//!   whose outcome is unknown is resolved from Slack's echo ([`outbound`]).
//! - A rotating bot token (`xoxe.xoxb-…`) is refreshed before it expires and kept in the store.

mod client;
mod config;
mod error;
pub mod inbound;
pub mod mrkdwn;
pub mod outbound;
mod socket;
mod tokens;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Attachment, AttachmentBody, Capabilities, Channel, ChannelConfig, ChannelContext, ChannelError,
    ConfigError, ConsumerAddress, ConsumerProfile, Delivered, DeliveryError, HttpRequest,
    HttpResponse, Inbound, InboundEvent, MessageRef, Outbound, OutboundEvent, SubmitError, Support,
    async_trait, http,
};

pub use client::WebClient;
pub use config::{DEFAULT_API_BASE_URL, Mode, Settings, SlackConfig, is_app_token};
pub use error::SlackApiError;

use crate::inbound::{ButtonPress, EventsBody, FileAccess, Origin, UserMessage};
use crate::outbound::{Part, Poster};

/// At most this many `users.info` answers are cached; the cache starts over when full.
const MAX_CACHED_USERS: usize = 10_000;
/// A stored file reference that still needs `files.info` (Slack Connect's `check_file_info`).
const FILE_INFO_REF: &str = "slack-file-info:";

/// The Slack channel of one instance.
pub struct SlackChannel {
    settings: Settings,
    client: WebClient,
    poster: Poster,
    /// `users.info` answers by user id (name, profile), so a consumer's messages don't each
    /// cost a lookup.
    users: Mutex<HashMap<String, ConsumerProfile>>,
    /// The runtime's context, once started: where the poster keeps its durable marks.
    ctx: OnceLock<ChannelContext>,
    /// The bot token's workspace: from `team_id`, else from `auth.test`.
    workspace: tokio::sync::OnceCell<Workspace>,
}

/// The workspace (and organization) the bot token belongs to.
#[derive(Debug, Clone)]
struct Workspace {
    team_id: String,
    enterprise_id: Option<String>,
}

impl Workspace {
    /// Whether an event from `origin` is for this installation. Events of an Enterprise Grid
    /// organization-wide install name the organization.
    fn admits(&self, origin: &Origin) -> bool {
        origin.team_id.as_deref() == Some(self.team_id.as_str())
            || origin
                .enterprise_id
                .as_ref()
                .is_some_and(|org| self.enterprise_id.as_ref() == Some(org))
    }
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("mode", &self.settings.config.mode)
            .field("api_base_url", &self.settings.api_base_url)
            .field("app_mentions", &self.settings.config.app_mentions)
            .finish_non_exhaustive()
    }
}

switchboard_core::register_channel! {
    kind: "slack",
    description: "Slack apps (Events API or Socket Mode, interactivity, Block Kit, files)",
    build: |config: &ChannelConfig| Ok(Arc::new(SlackChannel::from_config(config)?) as Arc<dyn Channel>),
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// What became of a payload from Slack (over HTTP or Socket Mode).
#[derive(Debug)]
pub(crate) enum Intake {
    /// `url_verification`: answer with the challenge.
    Challenge(String),
    /// Stored (or found to be a duplicate of something stored): acknowledge.
    Taken,
    /// Not for this channel: acknowledge and forget.
    Ignored,
    /// A body that can never be taken: acknowledge without retries.
    Invalid(String),
    /// Cannot be stored now: do not acknowledge, so that Slack sends it again.
    Unavailable(String, Option<Duration>),
}

impl From<SubmitError> for Intake {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(reason) => Intake::Invalid(reason),
            SubmitError::Unavailable { retry_after, .. } => {
                Intake::Unavailable(e.to_string(), retry_after)
            }
            other => Intake::Unavailable(other.to_string(), None),
        }
    }
}

/// A notice for the agent about a file that is not passed on.
fn file_notice(name: &str, why: &str) -> Inbound {
    Inbound::text(format!(
        "[The consumer shared a file that cannot be passed on: {name} ({why})]"
    ))
}

/// Why a file could not be fetched, in words for the agent.
fn fetch_failure(e: &SlackApiError) -> String {
    match e {
        SlackApiError::Refused { error, .. } => match error.as_str() {
            "file_too_large" => "larger than 20 MB".into(),
            "file_sign_in_page" => "Slack answered its sign-in page instead of the file: the app needs the files:read scope".into(),
            "file_not_on_slack" => "its link does not point to Slack".into(),
            other => format!("Slack refused it: {other}"),
        },
        other => other.to_string(),
    }
}

impl SlackChannel {
    /// Builds the channel from its config. Touches no network.
    pub fn from_config(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings = Settings::from_channel_config(config)?;
        let client = WebClient::new(
            &settings.api_base_url,
            settings.config.bot_token.clone(),
            settings.timeout,
            settings.rotation.clone(),
        )
        .map_err(|e| config.error("api_base_url", e))?;
        let workspace = tokio::sync::OnceCell::new();
        if let Some(team_id) = &settings.config.team_id {
            let _ = workspace.set(Workspace {
                team_id: team_id.clone(),
                enterprise_id: None,
            });
        }
        Ok(Self {
            settings,
            poster: Poster::new(client.clone()),
            client,
            users: Mutex::new(HashMap::new()),
            ctx: OnceLock::new(),
            workspace,
        })
    }

    /// The bot token's workspace, asked of `auth.test` once.
    async fn workspace(&self) -> Result<&Workspace, SlackApiError> {
        self.workspace
            .get_or_try_init(|| async {
                let answer = self.client.call("auth.test", &[]).await?;
                let team_id = answer["team_id"]
                    .as_str()
                    .ok_or_else(|| SlackApiError::Malformed("auth.test gave no team_id".into()))?;
                Ok(Workspace {
                    team_id: team_id.to_owned(),
                    enterprise_id: answer["enterprise_id"].as_str().map(str::to_owned),
                })
            })
            .await
    }

    /// The profile of a user, from the cache or `users.info` (best effort: a failed lookup
    /// gives an id-only profile and is tried again next time).
    async fn profile(&self, user: &str) -> ConsumerProfile {
        if let Some(p) = self.users.lock().expect("users lock").get(user) {
            return p.clone();
        }
        let looked_up = self
            .client
            .call(
                "users.info",
                &[("user", user.to_owned()), ("include_locale", "true".into())],
            )
            .await;
        let mut profile = ConsumerProfile {
            platform_user_id: Some(user.to_owned()),
            ..ConsumerProfile::default()
        };
        match looked_up {
            Ok(answer) => {
                let u = &answer["user"];
                let p = &u["profile"];
                let text =
                    |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
                profile.first_name = text(&p["first_name"]);
                profile.last_name = text(&p["last_name"]);
                profile.display_name = text(&p["display_name"])
                    .or_else(|| text(&p["real_name"]))
                    .or_else(|| text(&u["real_name"]));
                profile.username = text(&u["name"]);
                profile.email = text(&p["email"]);
                profile.language = text(&u["locale"]);
                let mut users = self.users.lock().expect("users lock");
                if users.len() >= MAX_CACHED_USERS {
                    users.clear();
                }
                users.insert(user.to_owned(), profile.clone());
            }
            Err(e) => tracing::info!(error = %e, "users.info failed; sending the id only"),
        }
        profile
    }

    /// The events of one consumer message as stored, without any network call: its mrkdwn
    /// text, then per shared file a reference to fetch later (or, when Slack gives no way to
    /// fetch it, a notice for the agent). [`Channel::prepare`] completes them.
    fn stored_events(&self, m: &UserMessage, ctx: &ChannelContext) -> Vec<InboundEvent> {
        let mut bodies = Vec::new();
        if !m.text.trim().is_empty() {
            bodies.push(Inbound::text(m.text.clone()));
        }
        for file in &m.files {
            let reference = match &file.access {
                FileAccess::Unavailable(why) => {
                    bodies.push(file_notice(&file.name, why));
                    continue;
                }
                _ if file
                    .size
                    .is_some_and(|n| n > client::MAX_DOWNLOAD_BYTES as u64) =>
                {
                    bodies.push(file_notice(&file.name, "larger than 20 MB"));
                    continue;
                }
                FileAccess::Download(url) => url.clone(),
                FileAccess::CheckFileInfo => format!("{FILE_INFO_REF}{}", file.id),
            };
            bodies.push(Inbound::File {
                file: Attachment {
                    name: Some(file.name.clone()),
                    mime: file.mime.clone(),
                    caption: None,
                    body: AttachmentBody::Url { url: reference },
                },
            });
        }
        let count = bodies.len();
        let profile = ConsumerProfile {
            platform_user_id: Some(m.user.clone()),
            ..ConsumerProfile::default()
        };
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                // One platform id per part, stable across Slack's retries.
                let id = if count == 1 {
                    m.key.clone()
                } else {
                    format!("{}:{i}", m.key)
                };
                let mut event = InboundEvent::new(ctx.consumer(m.channel.clone()), body)
                    .with_platform_id(id)
                    .with_profile(profile.clone());
                event.occurred_at_ms = m.sent_at_ms;
                event
            })
            .collect()
    }

    /// Whether an event from `origin` is for the bot token's workspace.
    async fn admitted(&self, origin: &Origin) -> Result<bool, Intake> {
        match self.workspace().await {
            Ok(ws) => Ok(ws.admits(origin)),
            Err(e) => Err(Intake::Unavailable(
                format!("cannot learn the bot token's workspace (auth.test): {e}"),
                Some(Duration::from_secs(5)),
            )),
        }
    }

    /// Takes an Events API body (verified, if it came over HTTP): stores its events and says
    /// how to answer. No call to Slack is made here beyond a one-time `auth.test`.
    pub(crate) async fn take_events(&self, body: &[u8], ctx: &ChannelContext) -> Intake {
        let parsed = match inbound::parse_events(body, self.settings.config.app_mentions) {
            Ok(parsed) => parsed,
            Err(e) => return Intake::Invalid(e),
        };
        match parsed {
            EventsBody::UrlVerification(challenge) => Intake::Challenge(challenge),
            EventsBody::Ignored(why) => {
                tracing::debug!(why, "ignored a Slack event");
                Intake::Ignored
            }
            EventsBody::OwnPost(post) => match self.poster.record_echo(Some(ctx), &post).await {
                Ok(()) => Intake::Taken,
                Err(e) => Intake::Unavailable(e.to_string(), Some(Duration::from_secs(1))),
            },
            EventsBody::Message(m) => {
                match self.admitted(&m.origin).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            team = m.origin.team_id.as_deref().unwrap_or(""),
                            "ignored an event from another workspace than the bot token's"
                        );
                        return Intake::Ignored;
                    }
                    Err(unavailable) => return unavailable,
                }
                match ctx.submit(self.stored_events(&m, ctx)).await {
                    Ok(()) => Intake::Taken,
                    Err(e) => e.into(),
                }
            }
        }
    }

    /// Takes an interaction payload's JSON (a button press).
    pub(crate) async fn take_interaction(&self, payload: &str, ctx: &ChannelContext) -> Intake {
        match inbound::parse_interaction(payload) {
            Ok(Some(press)) => self.take_press(press, payload, ctx).await,
            Ok(None) => Intake::Ignored,
            Err(e) => Intake::Invalid(e),
        }
    }

    async fn take_press(&self, press: ButtonPress, payload: &str, ctx: &ChannelContext) -> Intake {
        let Some((message, button)) = inbound::parse_button_value(&press.value) else {
            return Intake::Ignored;
        };
        let payload: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
        let id = |v: &serde_json::Value| v["id"].as_str().map(str::to_owned);
        let origin = Origin {
            team_id: id(&payload["team"]),
            enterprise_id: id(&payload["enterprise"]),
        };
        match self.admitted(&origin).await {
            Ok(true) => {}
            Ok(false) => return Intake::Ignored,
            Err(unavailable) => return unavailable,
        }
        let event = InboundEvent::new(
            ctx.consumer(press.channel.clone()),
            Inbound::Choice {
                message: MessageRef::new(message),
                choice: button.to_owned(),
            },
        )
        .with_platform_id(format!(
            "slack-action:{}:{}",
            press.channel, press.action_ts
        ))
        .with_profile(ConsumerProfile {
            platform_user_id: Some(press.user.clone()),
            ..ConsumerProfile::default()
        });
        match ctx.submit(vec![event]).await {
            Ok(()) => Intake::Taken,
            Err(e) => e.into(),
        }
    }

    /// The HTTP answer for an intake.
    fn answer(intake: Intake) -> HttpResponse {
        match intake {
            Intake::Challenge(challenge) => {
                http_util::json(http::StatusCode::OK, &json!({ "challenge": challenge }))
            }
            Intake::Taken | Intake::Ignored => http_util::empty(http::StatusCode::OK),
            Intake::Invalid(e) => no_retry(json_error(
                http::StatusCode::BAD_REQUEST,
                "invalid_event",
                &e,
            )),
            Intake::Unavailable(reason, after) => {
                tracing::warn!(reason = %reason, "a Slack request will be retried");
                unavailable(after)
            }
        }
    }

    /// The Events API's interactivity request: `payload=<JSON>`, form-encoded.
    async fn on_interactivity(&self, req: &HttpRequest, ctx: &ChannelContext) -> Intake {
        match inbound::interactivity_payload(req.body()) {
            Ok(payload) => self.take_interaction(&payload, ctx).await,
            Err(e) => Intake::Invalid(e),
        }
    }

    /// Completes a text: mentions become names (`users.info`), mrkdwn plain text.
    async fn plain_text(&self, mrkdwn_text: &str) -> String {
        let mut names = HashMap::new();
        for user in mrkdwn::mentioned_users(mrkdwn_text) {
            let p = self.profile(&user).await;
            if let Some(name) = p.display_name.or(p.username) {
                names.insert(user, name);
            }
        }
        mrkdwn::to_plain(mrkdwn_text, |id| names.get(id).cloned())
    }

    /// Fetches a stored file reference: the bytes, a notice when Slack refuses it for good, or
    /// an error worth retrying.
    async fn fetch_file(&self, file: Attachment, url: &str) -> Result<Inbound, DeliveryError> {
        let name = file.name.clone().unwrap_or_else(|| "file".into());
        let url = match url.strip_prefix(FILE_INFO_REF) {
            Some(id) => match self.file_info(id).await {
                Ok(Ok(url)) => url,
                Ok(Err(why)) => return Ok(file_notice(&name, why)),
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => return Ok(file_notice(&name, &fetch_failure(&e))),
            },
            None => url.to_owned(),
        };
        match self.client.download(&url, &file.mime).await {
            Ok(data) => Ok(Inbound::File {
                file: Attachment {
                    body: AttachmentBody::Inline { data },
                    ..file
                },
            }),
            Err(e) if e.is_retryable() => Err(e.into()),
            Err(e) => {
                tracing::info!(error = %e, "a consumer's file could not be fetched");
                Ok(file_notice(&name, &fetch_failure(&e)))
            }
        }
    }

    /// `files.info` for a Slack Connect file (`check_file_info`): its link, or why there is
    /// none.
    async fn file_info(&self, id: &str) -> Result<Result<String, &'static str>, SlackApiError> {
        let answer = self
            .client
            .call("files.info", &[("file", id.to_owned())])
            .await?;
        let file: wire::File = serde_json::from_value(answer["file"].clone())
            .map_err(|e| SlackApiError::Malformed(format!("files.info: {e}")))?;
        Ok(match inbound::file_access_of(&file) {
            FileAccess::Download(url) => Ok(url),
            FileAccess::CheckFileInfo => Err("Slack Connect does not share it with the app"),
            FileAccess::Unavailable(why) => Err(why),
        })
    }

    /// Posts a text, split into messages of at most [`outbound::MAX_TEXT`] characters.
    async fn post_text(
        &self,
        channel: &str,
        event: &OutboundEvent,
        text: &str,
    ) -> Result<Delivered, DeliveryError> {
        let pieces = outbound::split_text(text, outbound::MAX_TEXT);
        let parts = pieces
            .iter()
            .map(|text| Part::Message { text, blocks: None })
            .collect();
        Ok(self
            .poster
            .post(channel, event.id.as_str(), parts, self.ctx.get())
            .await?)
    }
}

/// Marks an answer so that Slack does not retry a request that can never succeed.
fn no_retry(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert("x-slack-no-retry", http::HeaderValue::from_static("1"));
    response
}

fn unavailable(after: Option<Duration>) -> HttpResponse {
    let mut response = json_error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "cannot take the event now; retry",
    );
    let secs = after.map_or(5, |d| d.as_secs().max(1)).to_string();
    if let Ok(v) = http::HeaderValue::from_str(&secs) {
        response.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    response
}

#[async_trait]
impl Channel for SlackChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
            .with_rich_content(Support::Full)
            .with_images(Support::Full)
            .with_files(Support::Full)
            .with_typing(Support::Unsupported)
            .with_max_text_chars(outbound::MAX_TEXT)
    }

    async fn start(&self, ctx: ChannelContext) -> Result<(), ChannelError> {
        let _ = self.ctx.set(ctx.clone());
        self.client.attach(&ctx).await;
        if let Err(e) = self.client.ensure_fresh().await {
            tracing::warn!(error = %e, "cannot refresh the Slack bot token at start; will retry on use");
        }
        if let Err(e) = self.workspace().await {
            tracing::warn!(error = %e, "auth.test failed at start; will retry with the first event");
        }
        if let (Mode::SocketMode, Some(app_token)) =
            (self.settings.config.mode, &self.settings.config.app_token)
        {
            socket::run(self, &ctx, app_token).await;
        }
        Ok(())
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        if path != "/events" && path != "/interactivity" {
            return json_error(http::StatusCode::NOT_FOUND, "not_found", "no such endpoint");
        }
        let Some(secret) = &self.settings.config.signing_secret else {
            return json_error(
                http::StatusCode::NOT_FOUND,
                "not_found",
                "this Slack channel runs in Socket Mode and takes no HTTP requests",
            );
        };
        if req.method() != http::Method::POST {
            return json_error(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "POST only",
            );
        }
        if let Err(e) = inbound::verify(&req, secret, unix_now()) {
            tracing::info!(reason = %e, "refused a Slack request");
            return e.to_response();
        }
        if let Some(retry) = http_util::header_str(&req, "x-slack-retry-num") {
            tracing::debug!(
                retry,
                reason = http_util::header_str(&req, "x-slack-retry-reason").unwrap_or(""),
                "Slack redelivers an event"
            );
        }
        let intake = if path == "/events" {
            self.take_events(req.body(), ctx).await
        } else {
            self.on_interactivity(&req, ctx).await
        };
        Self::answer(intake)
    }

    async fn prepare(&self, mut event: InboundEvent) -> Result<InboundEvent, DeliveryError> {
        if let Some(user) = event
            .profile
            .as_ref()
            .filter(|p| p.display_name.is_none() && p.username.is_none())
            .and_then(|p| p.platform_user_id.clone())
        {
            event.profile = Some(self.profile(&user).await);
        }
        event.body = match event.body {
            Inbound::Text { text } => Inbound::text(self.plain_text(&text).await),
            Inbound::File { file } => match &file.body {
                AttachmentBody::Url { url } => {
                    let url = url.clone();
                    self.fetch_file(file, &url).await?
                }
                AttachmentBody::Inline { .. } => Inbound::File { file },
            },
            other => other,
        };
        Ok(event)
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        let channel = to.id.as_str();
        let config = &self.settings.config;
        match &event.body {
            Outbound::Text { text } => self.post_text(channel, event, text).await,
            Outbound::Rich { content } | Outbound::SurveyQuestion { question: content } => {
                // The `text` is the notification and the fallback where blocks don't render.
                let fallback: String = content
                    .to_numbered_text()
                    .chars()
                    .take(outbound::MAX_TEXT)
                    .collect();
                let part = Part::Message {
                    text: &fallback,
                    blocks: Some(outbound::blocks(event.id.as_str(), content)),
                };
                Ok(self
                    .poster
                    .post(channel, event.id.as_str(), vec![part], self.ctx.get())
                    .await?)
            }
            Outbound::File { file } => match &file.body {
                AttachmentBody::Inline { data } => {
                    let part = Part::File {
                        name: file.name.as_deref().unwrap_or("file"),
                        data: data.clone(),
                        comment: file.caption.as_deref(),
                    };
                    Ok(self
                        .poster
                        .post(channel, event.id.as_str(), vec![part], self.ctx.get())
                        .await?)
                }
                AttachmentBody::Url { url } => {
                    let text = match &file.caption {
                        Some(c) => format!("{c}\n{url}"),
                        None => url.clone(),
                    };
                    self.post_text(channel, event, &text).await
                }
            },
            Outbound::Closed { .. } => self.post_text(channel, event, &config.closed_text).await,
            Outbound::Transferred { .. } => {
                self.post_text(channel, event, &config.transferred_text)
                    .await
            }
            // Slack shows no typing for bots and no receipts; kinds a later core adds are
            // dropped deliberately until this channel maps them.
            _ => Ok(Delivered::default()),
        }
    }
}
