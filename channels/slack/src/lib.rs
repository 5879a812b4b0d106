//! `slack`: a brand's customers write to the brand's Slack app in direct messages (and, if
//! enabled, mention it in channels); agents answer from LivePerson.
//!
//! - Inbound at `POST /channels/{instance}/events` (Events API) and
//!   `POST /channels/{instance}/interactivity` (button presses): the `v0` signature over the
//!   raw body and the timestamp (±5 minutes) are checked before anything is parsed; forged or
//!   stale requests get 401 JSON. `url_verification` is answered with its challenge. Messages
//!   are acknowledged only after they are stored (else 503, and Slack retries); `event_id` is
//!   the platform id, so Slack's retries reach the agent once.
//! - mrkdwn becomes plain text (mentions resolved through `users.info`); shared files are
//!   downloaded with the bot token and handed on; button presses become choices; the profile
//!   (names, e-mail where the scope allows, locale) goes to LivePerson.
//! - Outbound: `chat.postMessage` (texts split above 4,000 characters), Block Kit for buttons,
//!   quick replies and cards, always with a `text` fallback; files through
//!   `files.getUploadURLExternal` + `files.completeUploadExternal`. Slack shows no typing for
//!   bots: the channel declares it unsupported instead of faking it.
//! - `chat.postMessage` is not idempotent, so every post carries its id in message `metadata`
//!   and a post that failed ambiguously (timeout, 5xx) is looked up in the conversation's
//!   history before it is sent again: Slack's hiccups neither lose nor repeat agent messages.

mod client;
mod config;
mod error;
pub mod inbound;
pub mod mrkdwn;
pub mod outbound;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Attachment, AttachmentBody, Capabilities, Channel, ChannelConfig, ChannelContext, ChannelError,
    ConfigError, ConsumerAddress, ConsumerProfile, Delivered, DeliveryError, HttpRequest,
    HttpResponse, Inbound, InboundEvent, MessageRef, Outbound, OutboundEvent, Support, async_trait,
    http,
};

pub use client::WebClient;
pub use config::{DEFAULT_API_BASE_URL, Settings, SlackConfig};
pub use error::ApiError;

use crate::inbound::{ButtonPress, EventsBody, UserMessage};
use crate::outbound::{Part, Poster};

/// At most this many `users.info` answers are cached; the cache starts over when full.
const MAX_CACHED_USERS: usize = 10_000;

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
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("api_base_url", &self.settings.api_base_url)
            .field("app_mentions", &self.settings.config.app_mentions)
            .finish_non_exhaustive()
    }
}

switchboard_core::register_channel! {
    kind: "slack",
    description: "Slack apps (Events API, interactivity, Block Kit, files)",
    build: |config: &ChannelConfig| Ok(Arc::new(SlackChannel::from_config(config)?) as Arc<dyn Channel>),
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl SlackChannel {
    /// Builds the channel from its config. Touches no network.
    pub fn from_config(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings = Settings::from_channel_config(config)?;
        let client = WebClient::new(
            &settings.api_base_url,
            settings.config.bot_token.clone(),
            settings.timeout,
        )
        .map_err(|e| config.error("api_base_url", e))?;
        Ok(Self {
            settings,
            poster: Poster::new(client.clone()),
            client,
            users: Mutex::new(HashMap::new()),
            ctx: OnceLock::new(),
        })
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

    /// The events of one consumer message: its text (mentions resolved to names), then each
    /// shared file. A file that cannot be fetched for good becomes a notice to the agent; one
    /// that may be fetched later fails the whole message, so that Slack retries it.
    async fn message_events(
        &self,
        m: &UserMessage,
        ctx: &ChannelContext,
    ) -> Result<Vec<InboundEvent>, ApiError> {
        let profile = self.profile(&m.user).await;
        let mut names = HashMap::new();
        for user in mrkdwn::mentioned_users(&m.text) {
            let p = self.profile(&user).await;
            if let Some(name) = p.display_name.or(p.username) {
                names.insert(user, name);
            }
        }
        let text = mrkdwn::to_plain(&m.text, |id| names.get(id).cloned());
        let mut bodies = Vec::new();
        if !text.trim().is_empty() {
            bodies.push(Inbound::text(text));
        }
        for file in &m.files {
            let fetched = match file.size {
                Some(size) if size > client::MAX_DOWNLOAD_BYTES as u64 => Err(ApiError::Refused {
                    error: "file_too_large".into(),
                    retry_after: None,
                }),
                _ => self.client.download(&file.url).await,
            };
            match fetched {
                Ok(data) => bodies.push(Inbound::File {
                    file: Attachment {
                        name: Some(file.name.clone()),
                        mime: file.mime.clone(),
                        caption: None,
                        body: AttachmentBody::Inline { data },
                    },
                }),
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::info!(error = %e, "a consumer's file could not be fetched");
                    bodies.push(Inbound::text(format!(
                        "[the consumer shared a file that could not be fetched: {}]",
                        file.name
                    )));
                }
            }
        }
        let count = bodies.len();
        Ok(bodies
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
            .collect())
    }

    async fn on_events(&self, req: &HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let body = match inbound::parse_events(req.body(), self.settings.config.app_mentions) {
            Ok(body) => body,
            Err(e) => {
                return no_retry(json_error(
                    http::StatusCode::BAD_REQUEST,
                    "invalid_event",
                    &e,
                ));
            }
        };
        let message = match body {
            EventsBody::UrlVerification(challenge) => {
                return http_util::json(http::StatusCode::OK, &json!({ "challenge": challenge }));
            }
            EventsBody::Ignored(why) => {
                tracing::debug!(why, "ignored a Slack event");
                return http_util::empty(http::StatusCode::OK);
            }
            EventsBody::Message(m) => m,
        };
        let events = match self.message_events(&message, ctx).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "a Slack event will be retried");
                return unavailable();
            }
        };
        match ctx.submit(events).await {
            Ok(()) => http_util::empty(http::StatusCode::OK),
            Err(e) => http_util::submit_failed(&e),
        }
    }

    async fn on_interactivity(&self, req: &HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let press: ButtonPress = match inbound::parse_interactivity(req.body()) {
            Ok(Some(press)) => press,
            Ok(None) => return http_util::empty(http::StatusCode::OK),
            Err(e) => {
                return no_retry(json_error(
                    http::StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    &e,
                ));
            }
        };
        let Some((message, button)) = inbound::parse_button_value(&press.value) else {
            return http_util::empty(http::StatusCode::OK);
        };
        let profile = self.profile(&press.user).await;
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
        .with_profile(profile);
        match ctx.submit(vec![event]).await {
            Ok(()) => http_util::empty(http::StatusCode::OK),
            Err(e) => http_util::submit_failed(&e),
        }
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

fn unavailable() -> HttpResponse {
    let mut response = json_error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "cannot take the event now; retry",
    );
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("5"),
    );
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
        let _ = self.ctx.set(ctx);
        Ok(())
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        if path != "/events" && path != "/interactivity" {
            return json_error(http::StatusCode::NOT_FOUND, "not_found", "no such endpoint");
        }
        if req.method() != http::Method::POST {
            return json_error(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "POST only",
            );
        }
        if let Err(e) = inbound::verify(&req, &self.settings.config.signing_secret, unix_now()) {
            tracing::info!(reason = %e, "refused a Slack request");
            return e.to_response();
        }
        if path == "/events" {
            self.on_events(&req, ctx).await
        } else {
            self.on_interactivity(&req, ctx).await
        }
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
