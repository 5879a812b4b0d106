//! `telegram`: consumers on Telegram, through the brand's bot (Bot API).
//!
//! - **Webhook mode** (default): at start the channel calls `setWebhook` with
//!   `server.public_url + /channels/{instance}/webhook`, its `secret_token` and the update kinds
//!   it handles. Telegram POSTs each update there; the secret header is compared in constant
//!   time before anything is parsed, and the answer is 200 only after the events are stored
//!   (else 503 with `Retry-After`, and Telegram retries).
//! - **Polling mode**: `deleteWebhook`, then `getUpdates` long polling. The offset is saved
//!   (channel state) only after an update's events are stored, so a restart neither repeats
//!   nor skips one; errors back off up to a minute.
//! - Both: `update_id` is the events' platform id (the runtime drops repeats).
//! - Consumers' texts, images LivePerson takes (downloaded with `getFile`), locations,
//!   contacts and stickers reach the agent; what cannot (voice, video, other files…) is
//!   described to the agent and the consumer is told (`carry`). Inline-keyboard presses become
//!   choices (and are answered with `answerCallbackQuery`). The profile (names, username,
//!   language) goes along.
//! - Agent texts are split above 4096 UTF-16 units at line, sentence or word boundaries;
//!   buttons and quick replies become inline keyboards, cards photos with captions (their text
//!   and link when Telegram cannot fetch the image), files `sendPhoto`/`sendDocument`; each
//!   sent message is recorded so a retried event resumes after it; typing is shown with
//!   `sendChatAction`, refreshed every 4 s while the agent types.

mod carry;
mod client;
mod config;
mod error;
pub mod inbound;
pub mod outbound;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use switchboard_core::http_util::json_error;
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ChannelError, ChatState, ConfigError,
    ConsumerAddress, Delivered, DeliveryError, HttpRequest, HttpResponse, Outbound, OutboundEvent,
    Support, async_trait, http,
};

pub use client::BotClient;
pub use config::{DEFAULT_API_BASE_URL, Mode, Settings, TelegramConfig};
pub use error::BotApiError;

use crate::outbound::Sender;
use crate::wire::Update;

/// How often typing is re-sent while the agent types (Telegram shows it for 5 s).
const TYPING_REFRESH: Duration = Duration::from_secs(4);
/// The longest typing is shown without news from the agent.
const TYPING_MAX: Duration = Duration::from_secs(60);
/// The state key of the polling offset.
const OFFSET_KEY: &str = "offset";
/// The update kinds the channel handles.
const ALLOWED_UPDATES: [&str; 2] = ["message", "callback_query"];

/// The Telegram channel of one instance.
pub struct TelegramChannel {
    settings: Settings,
    client: BotClient,
    ctx: OnceLock<ChannelContext>,
    typing: Mutex<HashMap<i64, tokio::task::JoinHandle<()>>>,
    pacer: outbound::Pacer,
    migrations: outbound::Migrations,
}

impl std::fmt::Debug for TelegramChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramChannel")
            .field("mode", &self.settings.config.mode)
            .field("api_base_url", &self.settings.api_base_url)
            .finish_non_exhaustive()
    }
}

switchboard_core::register_channel! {
    kind: "telegram",
    description: "Telegram bots (Bot API: webhook or long polling, inline keyboards, media, typing)",
    build: |config: &ChannelConfig| Ok(Arc::new(TelegramChannel::from_config(config)?) as Arc<dyn Channel>),
}

impl TelegramChannel {
    /// Builds the channel from its config. Touches no network.
    pub fn from_config(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings = Settings::from_channel_config(config)?;
        let client = BotClient::new(
            &settings.api_base_url,
            settings.config.bot_token.clone(),
            settings.timeout,
        )
        .map_err(|e| config.error("api_base_url", e))?;
        Ok(Self {
            settings,
            client,
            ctx: OnceLock::new(),
            typing: Mutex::new(HashMap::new()),
            pacer: outbound::Pacer::default(),
            migrations: outbound::Migrations::default(),
        })
    }

    fn stop_typing(&self, chat: i64) {
        if let Some(task) = self.typing.lock().expect("typing lock").remove(&chat) {
            task.abort();
        }
    }

    fn start_typing(&self, chat: i64) {
        let client = self.client.clone();
        let task = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while started.elapsed() < TYPING_MAX {
                let sent = client
                    .call::<serde_json::Value>(
                        "sendChatAction",
                        &serde_json::json!({ "chat_id": chat, "action": "typing" }),
                        None,
                    )
                    .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "typing indicator not shown");
                }
                tokio::time::sleep(TYPING_REFRESH).await;
            }
        });
        if let Some(old) = self.typing.lock().expect("typing lock").insert(chat, task) {
            old.abort();
        }
    }

    /// Translates and submits one update; `Err` when it must be tried again later.
    async fn take_update(&self, update: &Update, ctx: &ChannelContext) -> Result<(), Retry> {
        let translated = inbound::translate(update, &self.client, ctx)
            .await
            .map_err(|e| Retry {
                reason: e.to_string(),
                after: e.retry_after(),
            })?;
        ctx.submit(translated.events).await.map_err(|e| Retry {
            reason: e.to_string(),
            after: None,
        })?;
        if let Some(chat) = translated.tell_consumer {
            // Best effort, like the callback answer: the event is stored either way.
            self.pacer.wait(chat).await;
            let told = self
                .client
                .call::<serde_json::Value>(
                    "sendMessage",
                    &serde_json::json!({ "chat_id": chat, "text": self.settings.config.not_carried_text }),
                    None,
                )
                .await;
            if let Err(e) = told {
                tracing::info!(error = %e, "the consumer could not be told that their message did not reach the agent");
            }
        }
        if let Some(id) = translated.answer_callback {
            let answered = self
                .client
                .call::<bool>(
                    "answerCallbackQuery",
                    &serde_json::json!({ "callback_query_id": id }),
                    None,
                )
                .await;
            if let Err(e) = answered {
                tracing::info!(error = %e, "a button press was stored but not answered");
            }
        }
        Ok(())
    }

    async fn register_webhook(&self, ctx: &ChannelContext) -> Result<(), ChannelError> {
        let Some(url) = &self.settings.webhook_url else {
            return Ok(());
        };
        let secret = self
            .settings
            .config
            .secret_token
            .as_ref()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default();
        let params = serde_json::json!({
            "url": url,
            "secret_token": secret,
            "allowed_updates": ALLOWED_UPDATES,
        });
        // Retried from 1 s doubling to a minute (jittered), never less than Telegram asks: it
        // allows one setWebhook a second and says how long to wait (Client.cpp,
        // `process_set_webhook_query`: 429 "retry after 1").
        let register = (|| self.client.call::<bool>("setWebhook", &params, None))
            .retry(
                ExponentialBuilder::new()
                    .with_min_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(60))
                    .without_max_times()
                    .with_jitter(),
            )
            .when(|e: &BotApiError| e.is_retryable())
            .adjust(|e, wait| wait.map(|w| e.retry_after().map_or(w, |after| after.max(w))))
            .notify(|e, wait| {
                tracing::warn!(instance = ctx.instance(), error = %e, ?wait, "setWebhook failed; retrying");
            });
        tokio::select! {
            _ = ctx.shutdown_requested() => Ok(()),
            registered = register => match registered {
                Ok(_) => {
                    tracing::info!(instance = ctx.instance(), "Telegram webhook registered");
                    Ok(())
                }
                Err(e) => Err(ChannelError::Start(format!("setWebhook refused: {e}"))),
            },
        }
    }

    async fn poll(&self, ctx: &ChannelContext) -> Result<(), ChannelError> {
        let mut backoff = Duration::from_secs(1);
        let mut deleted = false;
        loop {
            if ctx.is_shutting_down() {
                return Ok(());
            }
            let step = async {
                if !deleted {
                    self.client
                        .call::<bool>("deleteWebhook", &serde_json::json!({}), None)
                        .await
                        .map_err(|e| Retry::from_api(&e))?;
                    deleted = true;
                }
                let offset = ctx
                    .load_state(OFFSET_KEY)
                    .await
                    .map_err(|e| Retry::new(e.to_string()))?
                    .and_then(|v| v.parse::<i64>().ok());
                let mut params = serde_json::json!({
                    "timeout": self.settings.poll_timeout.as_secs(),
                    "allowed_updates": ALLOWED_UPDATES,
                });
                if let Some(offset) = offset {
                    params["offset"] = offset.into();
                }
                let wait = self.settings.poll_timeout + self.settings.timeout;
                let updates: Vec<serde_json::Value> = self
                    .client
                    .call("getUpdates", &params, Some(wait))
                    .await
                    .map_err(|e| Retry::from_api(&e))?;
                for raw in updates {
                    let Some(id) = raw.get("update_id").and_then(serde_json::Value::as_i64) else {
                        continue;
                    };
                    match serde_json::from_value::<Update>(raw) {
                        Ok(update) => self.take_update(&update, ctx).await?,
                        Err(e) => {
                            tracing::warn!(instance = ctx.instance(), update_id = id, error = %e, "skipped a Telegram update the channel cannot read")
                        }
                    }
                    ctx.save_state(OFFSET_KEY, &(id + 1).to_string())
                        .await
                        .map_err(|e| Retry::new(e.to_string()))?;
                }
                Ok::<(), Retry>(())
            };
            let outcome = tokio::select! {
                _ = ctx.shutdown_requested() => return Ok(()),
                outcome = step => outcome,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(retry) => {
                    tracing::warn!(instance = ctx.instance(), reason = %retry.reason, "Telegram polling failed; backing off");
                    let wait = retry.after.unwrap_or(backoff).max(backoff);
                    tokio::select! {
                        _ = ctx.shutdown_requested() => return Ok(()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }
}

/// Something to try again later.
#[derive(Debug)]
struct Retry {
    reason: String,
    after: Option<Duration>,
}

impl Retry {
    fn new(reason: String) -> Self {
        Self {
            reason,
            after: None,
        }
    }
    fn from_api(e: &BotApiError) -> Self {
        Self {
            reason: e.to_string(),
            after: e.retry_after(),
        }
    }
}

#[async_trait]
impl Channel for TelegramChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
            .with_rich_content(Support::Full)
            .with_images(Support::Full)
            .with_files(Support::Full)
            .with_typing(Support::Full)
            .with_max_text_chars(outbound::MAX_TEXT)
    }

    async fn start(&self, ctx: ChannelContext) -> Result<(), ChannelError> {
        let _ = self.ctx.set(ctx.clone());
        match self.settings.config.mode {
            Mode::Webhook => self.register_webhook(&ctx).await,
            Mode::Polling => self.poll(&ctx).await,
        }
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let _ = self.ctx.get_or_init(|| ctx.clone());
        if req.uri().path().trim_end_matches('/') != "/webhook" {
            return json_error(http::StatusCode::NOT_FOUND, "not_found", "no such endpoint");
        }
        if req.method() != http::Method::POST {
            return json_error(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "POST only",
            );
        }
        let Some(secret) = &self.settings.config.secret_token else {
            return json_error(
                http::StatusCode::NOT_FOUND,
                "not_found",
                "this instance polls; it has no webhook",
            );
        };
        if let Err(refused) = inbound::check_secret(&req, secret) {
            return *refused;
        }
        let update = match inbound::parse_update(req.body()) {
            Ok(update) => update,
            Err(e) => {
                // An authentic update this channel cannot read (a shape a later Bot API
                // brought): Telegram retries anything but a 2xx for a day and holds the chat's
                // later updates behind it (WebhookActor.cpp), so it is acknowledged, as
                // polling skips it.
                if let Some(id) = inbound::update_id(req.body()) {
                    tracing::warn!(instance = ctx.instance(), update_id = id, error = %e, "acknowledged a Telegram update the channel cannot read");
                    return inbound::ok();
                }
                return json_error(http::StatusCode::BAD_REQUEST, "invalid_update", &e);
            }
        };
        match self.take_update(&update, ctx).await {
            Ok(()) => inbound::ok(),
            Err(retry) => {
                tracing::warn!(instance = ctx.instance(), reason = %retry.reason, "a Telegram update will be retried");
                let mut response = json_error(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "cannot take the update now; retry",
                );
                let secs = retry.after.map(|d| d.as_secs().max(1)).unwrap_or(5);
                if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
                    response.headers_mut().insert(http::header::RETRY_AFTER, v);
                }
                response
            }
        }
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        let chat: i64 = to.id.parse().map_err(|_| {
            DeliveryError::permanent(format!("`{}` is not a Telegram chat id", to.id))
        })?;
        if let Outbound::ChatState { state } = &event.body {
            match state {
                ChatState::Composing => self.start_typing(chat),
                _ => self.stop_typing(chat),
            }
            return Ok(Delivered::default());
        }
        self.stop_typing(chat);
        let Some(ctx) = self.ctx.get() else {
            return Err(DeliveryError::retryable("the channel has not started yet"));
        };
        let to = self.migrations.resolve(ctx, chat).await?;
        Sender {
            client: &self.client,
            pacer: &self.pacer,
            migrations: &self.migrations,
            ctx,
            consumer: chat,
            chat_id: std::sync::atomic::AtomicI64::new(to),
            closed_text: &self.settings.config.closed_text,
            transferred_text: &self.settings.config.transferred_text,
        }
        .deliver(event)
        .await
    }

    async fn shutdown(&self) {
        for (_, task) in self.typing.lock().expect("typing lock").drain() {
            task.abort();
        }
    }
}
