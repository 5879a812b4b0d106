//! `[channels.<instance>]` keys of kind `telegram`.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::{ChannelConfig, ConfigError, Secret};

/// Telegram's Bot API, used unless `api_base_url` says otherwise.
pub const DEFAULT_API_BASE_URL: &str = "https://api.telegram.org";

/// How updates reach the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Telegram POSTs each update to `server.public_url/channels/<instance>/webhook` (needs
    /// public HTTPS).
    #[default]
    Webhook,
    /// The channel long-polls `getUpdates` (works behind NAT, on a laptop).
    Polling,
}

/// The keys as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot token from @BotFather (`123456:ABC-…`). Secret: put it in the environment
    /// (`SWITCHBOARD_CHANNELS__<INSTANCE>__BOT_TOKEN`).
    pub bot_token: Secret,
    /// `webhook` (default) or `polling`.
    #[serde(default)]
    pub mode: Mode,
    /// The secret Telegram presents in `X-Telegram-Bot-Api-Secret-Token` on every webhook call
    /// (1–256 characters of `A-Z a-z 0-9 _ -`). Required in webhook mode.
    #[serde(default)]
    pub secret_token: Option<Secret>,
    /// The Bot API base URL (tests point it at a fake; a self-hosted Bot API server works too).
    #[serde(default = "default_api_base_url")]
    pub api_base_url: url::Url,
    /// Long-poll wait of `getUpdates`, in seconds (Telegram caps it at 50).
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_secs: u64,
    /// Timeout of every other Bot API call, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Sent to the consumer when the agent closes the conversation.
    #[serde(default = "default_closed_text")]
    pub closed_text: String,
    /// Sent to the consumer when the conversation is transferred.
    #[serde(default = "default_transferred_text")]
    pub transferred_text: String,
    /// Sent to the consumer when what they sent cannot reach the agent (a voice message, a
    /// video, a file LivePerson does not take); the agent reads a description of it.
    #[serde(default = "default_not_carried_text")]
    pub not_carried_text: String,
}

fn default_api_base_url() -> url::Url {
    url::Url::parse(DEFAULT_API_BASE_URL).expect("the default base URL is a URL")
}
fn default_poll_timeout() -> u64 {
    25
}
fn default_timeout() -> u64 {
    10
}
fn default_closed_text() -> String {
    "The conversation has ended. Write again any time.".into()
}
fn default_transferred_text() -> String {
    "You are being transferred to another agent.".into()
}
fn default_not_carried_text() -> String {
    "Sorry, the agent cannot receive this here. Please write your message as text, or send a \
     photo (JPG, PNG or GIF up to 3 MB)."
        .into()
}

/// The ports Telegram delivers webhooks to (Bot API `setWebhook`; tdlib/telegram-bot-api
/// `WebhookActor.cpp`: "Webhook can be set up only on ports 80, 88, 443 or 8443").
const WEBHOOK_PORTS: [u16; 4] = [443, 80, 88, 8443];

/// Telegram's own Bot API delivers webhooks over HTTPS to a few ports only; `setWebhook`
/// refuses anything else with `400 Bad Request: bad webhook: …`. A self-hosted Bot API
/// server in `--local` mode lifts both rules, so they are checked for the default server
/// only.
fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    if parsed.scheme() != "https" {
        return Err(format!(
            "must be an https URL for Telegram webhooks (the webhook would be {url})"
        ));
    }
    match parsed.port_or_known_default() {
        Some(port) if WEBHOOK_PORTS.contains(&port) => Ok(()),
        _ => Err(format!(
            "must use port 443, 80, 88 or 8443 for Telegram webhooks (the webhook would be {url})"
        )),
    }
}

/// The validated settings of one instance.
#[derive(Debug)]
pub struct Settings {
    /// The raw keys.
    pub config: TelegramConfig,
    /// `{api_base_url}` without a trailing slash.
    pub api_base_url: String,
    /// Where Telegram should POST updates (webhook mode).
    pub webhook_url: Option<String>,
    /// Long-poll wait.
    pub poll_timeout: Duration,
    /// Call timeout.
    pub timeout: Duration,
}

impl Settings {
    /// Parses and checks an instance's keys; errors name the key.
    pub fn from_channel_config(cfg: &ChannelConfig) -> Result<Self, ConfigError> {
        let config: TelegramConfig = cfg.parse()?;
        let token = config.bot_token.expose();
        // As the Bot API server checks it (ClientManager.cpp: no leading 0, at most 80
        // characters, a numeric bot id before the colon).
        let valid_token = token.len() <= 80
            && token.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty()
                    && !id.starts_with('0')
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && !rest.is_empty()
            })
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b));
        if !valid_token {
            return Err(cfg.error(
                "bot_token",
                "must look like `123456:ABC-DEF…` (the token @BotFather gave)",
            ));
        }
        let api_base_url = config
            .api_base_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        if !matches!(config.api_base_url.scheme(), "https" | "http") {
            return Err(cfg.error("api_base_url", "must be an http(s) URL"));
        }
        if config.poll_timeout_secs > 50 {
            return Err(cfg.error("poll_timeout_secs", "must be at most 50 (Telegram's cap)"));
        }
        if config.timeout_secs == 0 {
            return Err(cfg.error("timeout_secs", "must be at least 1"));
        }
        let webhook_url = match config.mode {
            Mode::Polling => None,
            Mode::Webhook => {
                let Some(secret) = &config.secret_token else {
                    return Err(cfg.error(
                        "secret_token",
                        "is required in webhook mode: Telegram presents it on every call",
                    ));
                };
                let s = secret.expose();
                if s.is_empty()
                    || s.len() > 256
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(cfg.error(
                        "secret_token",
                        "must be 1-256 characters of A-Z a-z 0-9 _ -",
                    ));
                }
                let url = cfg.public_endpoint("/webhook")?;
                if api_base_url == DEFAULT_API_BASE_URL {
                    check_webhook_url(&url)
                        .map_err(|e| ConfigError::new("server.public_url", e))?;
                }
                Some(url)
            }
        };
        Ok(Self {
            api_base_url,
            webhook_url,
            poll_timeout: Duration::from_secs(config.poll_timeout_secs),
            timeout: Duration::from_secs(config.timeout_secs),
            config,
        })
    }
}
