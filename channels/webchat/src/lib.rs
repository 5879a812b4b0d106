//! `webchat`: a chat widget served by Switchboard itself, for demos and local testing.
//!
//! - `GET /channels/{instance}/` serves the page.
//! - `POST /channels/{instance}/messages` `{"session","id","text"}` submits a message.
//! - `POST /channels/{instance}/choices` `{"session","id","message","choice"}` submits a button pick.
//! - `POST /channels/{instance}/typing` `{"session","state"}` submits typing.
//! - `GET /channels/{instance}/events?session=S&after=N` long-polls the conversation: the
//!   agent's events and the consumer's own messages and choices, numbered in order, so that a
//!   page that reloads (`after=0`) shows both sides again, choices already made as made.
//! - `GET /channels/{instance}/favicon.svg` serves the page's icon.
//!
//! A session is a random id the page makes; whoever knows it can read that conversation, so
//! this channel is meant for demos, tests and trusted networks, not for the public web (use
//! LivePerson's own web messaging there). The conversation a page shows is kept in this
//! process's memory (the last `buffer` entries per session, for at most 10 000 sessions), so
//! a restart forgets it; everything on the LivePerson side is durable as for any channel.
//!
//! Links an agent sends are shown only for `http`, `https`, `tel` and `mailto` (a
//! `javascript:` link would run in the consumer's page): others are dropped here, and the page
//! checks again before it renders one.

mod config;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ChatState, ConsumerAddress, Delivered,
    DeliveryError, HttpRequest, HttpResponse, Inbound, InboundEvent, MessageRef, OutboundEvent,
    Support, async_trait, http,
};

pub use crate::config::{DEFAULT_POLL_SECS, WebchatConfig};
use crate::sessions::Sessions;

/// The page.
const PAGE: &str = include_str!("page.html");
/// The page's icon (a speech bubble).
const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 24 24\">\
<rect width=\"24\" height=\"24\" rx=\"6\" fill=\"#6366f1\"/><path fill=\"#fff\" \
d=\"M6 6h12a1.5 1.5 0 0 1 1.5 1.5v7A1.5 1.5 0 0 1 18 16h-7l-4 3v-3H6a1.5 1.5 0 0 1-1.5-1.5v-7A1.5 \
1.5 0 0 1 6 6z\"/></svg>";
/// URL schemes an agent's link may have to be shown.
const SAFE_SCHEMES: [&str; 4] = ["http://", "https://", "tel:", "mailto:"];
/// Longest a message may be, in characters.
const MAX_TEXT_CHARS: usize = 4000;

/// The webchat channel.
#[derive(Debug)]
pub struct Webchat {
    config: WebchatConfig,
    sessions: Sessions,
}

impl Webchat {
    /// Builds the channel from its settings.
    pub fn new(config: WebchatConfig) -> Self {
        let sessions = Sessions::new(config.buffer);
        Self { config, sessions }
    }
}

switchboard_core::register_channel! {
    kind: "webchat",
    description: "Browser chat widget served by Switchboard (demos, tests, trusted networks)",
    build: |config: &ChannelConfig| {
        let settings: WebchatConfig = config.parse()?;
        if settings.poll_secs == 0 || settings.poll_secs > 60 {
            return Err(config.error("poll_secs", "must be between 1 and 60"));
        }
        if settings.buffer == 0 {
            return Err(config.error("buffer", "must be at least 1"));
        }
        Ok(Arc::new(Webchat::new(settings)) as Arc<dyn Channel>)
    },
}

#[derive(Debug, Deserialize)]
struct MessageBody {
    session: String,
    id: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct ChoiceBody {
    session: String,
    id: String,
    message: String,
    choice: String,
}

#[derive(Debug, Deserialize)]
struct TypingBody {
    session: String,
    typing: bool,
}

/// Session and message ids: 8–64 characters of `[A-Za-z0-9_-]`.
fn valid_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn bad_request(message: &str) -> HttpResponse {
    json_error(http::StatusCode::BAD_REQUEST, "bad_request", message)
}

fn parse<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, String> {
    serde_json::from_slice(req.body()).map_err(|e| format!("invalid JSON body: {e}"))
}

impl Webchat {
    async fn submit(&self, ctx: &ChannelContext, event: InboundEvent) -> Result<(), HttpResponse> {
        ctx.submit(vec![event])
            .await
            .map_err(|e| http_util::submit_failed(&e))
    }

    fn ok() -> HttpResponse {
        http_util::json(http::StatusCode::OK, &serde_json::json!({ "ok": true }))
    }

    async fn on_message(&self, req: &HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let body: MessageBody = match parse(req) {
            Ok(b) => b,
            Err(message) => return bad_request(&message),
        };
        if !valid_id(&body.session) || !valid_id(&body.id) {
            return bad_request("`session` and `id` must be 8-64 characters of [A-Za-z0-9_-]");
        }
        let text = body.text.trim();
        if text.is_empty() {
            return bad_request("`text` is empty");
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return bad_request("`text` is longer than 4000 characters");
        }
        let event = InboundEvent::new(ctx.consumer(&body.session), Inbound::text(text))
            .with_platform_id(body.id.clone());
        if let Err(refused) = self.submit(ctx, event).await {
            return refused;
        }
        // Kept once it is accepted, so the page shows it again after a reload.
        self.sessions
            .push_consumer_text(&body.session, &body.id, text);
        Self::ok()
    }

    async fn on_choice(&self, req: &HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let body: ChoiceBody = match parse(req) {
            Ok(b) => b,
            Err(message) => return bad_request(&message),
        };
        if !valid_id(&body.session)
            || !valid_id(&body.id)
            || body.message.len() > 256
            || body.choice.len() > 64
        {
            return bad_request("invalid `session`, `id`, `message` or `choice`");
        }
        let event = InboundEvent::new(
            ctx.consumer(&body.session),
            Inbound::Choice {
                message: MessageRef::new(body.message.clone()),
                choice: body.choice.clone(),
            },
        )
        .with_platform_id(body.id.clone());
        if let Err(refused) = self.submit(ctx, event).await {
            return refused;
        }
        self.sessions
            .push_consumer_choice(&body.session, &body.id, &body.message, &body.choice);
        Self::ok()
    }

    async fn on_typing(&self, req: &HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let body: TypingBody = match parse(req) {
            Ok(b) => b,
            Err(message) => return bad_request(&message),
        };
        if !valid_id(&body.session) {
            return bad_request("invalid `session`");
        }
        let state = if body.typing {
            ChatState::Composing
        } else {
            ChatState::Paused
        };
        let event = InboundEvent::new(ctx.consumer(&body.session), Inbound::ChatState { state });
        match self.submit(ctx, event).await {
            Ok(()) => Self::ok(),
            Err(refused) => refused,
        }
    }

    async fn on_events(&self, req: &HttpRequest) -> HttpResponse {
        let query = http_util::query_pairs(req);
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let Some(session) = get("session").filter(|s| valid_id(s)) else {
            return bad_request("`session` is missing or invalid");
        };
        let after = match get("after").map(|a| a.parse::<u64>()) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return bad_request("`after` must be a number"),
        };
        let wait = Duration::from_secs(self.config.poll_secs);
        let events = self.sessions.wait(&session, after, wait).await;
        http_util::json(
            http::StatusCode::OK,
            &serde_json::json!({ "events": events }),
        )
    }
}

#[async_trait]
impl Channel for Webchat {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
            .with_rich_content(Support::Full)
            .with_images(Support::Full)
            .with_files(Support::Full)
            .with_typing(Support::Full)
            .with_max_text_chars(MAX_TEXT_CHARS)
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        match (req.method().as_str(), path.as_str()) {
            ("GET", "") => {
                let page = PAGE.replace("{{TITLE}}", &html_escape(&self.config.title));
                let mut response = http_util::text(http::StatusCode::OK, page);
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            ("POST", "/messages") => self.on_message(&req, ctx).await,
            ("POST", "/choices") => self.on_choice(&req, ctx).await,
            ("POST", "/typing") => self.on_typing(&req, ctx).await,
            ("GET", "/events") => self.on_events(&req).await,
            ("GET", "/favicon.svg") => {
                let mut response = http_util::text(http::StatusCode::OK, FAVICON.to_owned());
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("image/svg+xml"),
                );
                headers.insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("public, max-age=86400"),
                );
                response
            }
            (_, "" | "/messages" | "/choices" | "/typing" | "/events" | "/favicon.svg") => {
                json_error(
                    http::StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "method not allowed here",
                )
            }
            _ => json_error(
                http::StatusCode::NOT_FOUND,
                "not_found",
                "no such webchat endpoint",
            ),
        }
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        let event = without_unsafe_links(event);
        let value = serde_json::to_value(&event)
            .map_err(|e| DeliveryError::permanent(format!("cannot serialize the event: {e}")))?;
        self.sessions.push_agent(&to.id, value);
        Ok(Delivered::default())
    }
}

/// Whether a link an agent sent may be shown: `http`, `https`, `tel` and `mailto` only.
fn safe_link(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    SAFE_SCHEMES.iter().any(|scheme| lower.starts_with(scheme))
}

/// `event` without the links the page must not show: link buttons and card images whose URL
/// has another scheme (a `javascript:` link would run in the consumer's page) are dropped.
fn without_unsafe_links(event: &OutboundEvent) -> OutboundEvent {
    use switchboard_core::{ButtonAction, Outbound, RichContent};
    fn clean(content: &RichContent) -> (RichContent, usize) {
        let safe = |b: &switchboard_core::Button| match &b.action {
            ButtonAction::Link { url } => safe_link(url),
            _ => true,
        };
        let mut content = content.clone();
        let before = content.quick_replies.len();
        content.quick_replies.retain(safe);
        let mut dropped = before - content.quick_replies.len();
        for card in &mut content.cards {
            let before = card.buttons.len();
            card.buttons.retain(safe);
            dropped += before - card.buttons.len();
            if card.image_url.as_deref().is_some_and(|u| !safe_link(u)) {
                card.image_url = None;
                dropped += 1;
            }
        }
        (content, dropped)
    }
    let mut event = event.clone();
    let dropped = match &mut event.body {
        Outbound::Rich { content } | Outbound::SurveyQuestion { question: content } => {
            let (cleaned, dropped) = clean(content);
            *content = cleaned;
            dropped
        }
        _ => 0,
    };
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "links with a scheme other than http, https, tel or mailto were dropped"
        );
    }
    event
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
