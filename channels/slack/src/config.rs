//! `[channels.<instance>]` keys of kind `slack`.
//!
//! Two ways to receive Slack's traffic (`mode`): the Events API, where Slack POSTs signed
//! requests to our public HTTPS Request URL, and Socket Mode, where we open a WebSocket to
//! Slack with an app-level token and need no public endpoint. Each mode has keys the other
//! ignores; a key the chosen mode would ignore is an error naming it, never silence.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::{ChannelConfig, ConfigError, Secret};

/// Slack's Web API, used unless `api_base_url` says otherwise.
pub const DEFAULT_API_BASE_URL: &str = "https://slack.com/api";

/// Where Slack's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Slack POSTs to `{public_url}/channels/{instance}/events` and `/interactivity`.
    #[default]
    EventsApi,
    /// We connect to Slack over a WebSocket (`apps.connections.open`).
    SocketMode,
}

/// The keys as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// `events_api` (default) or `socket_mode`.
    #[serde(default)]
    pub mode: Mode,
    /// The bot token (`xoxb-…`, or `xoxe.xoxb-…` with token rotation) from "OAuth &
    /// Permissions". Secret: put it in the environment
    /// (`SWITCHBOARD_CHANNELS__<INSTANCE>__BOT_TOKEN`).
    pub bot_token: Secret,
    /// The signing secret from "Basic Information"; every HTTP request from Slack is signed
    /// with it. Events API only (Socket Mode payloads are not signed).
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// The app-level token (`xapp-…`, scope `connections:write`) from "Basic Information →
    /// App-Level Tokens". Socket Mode only.
    #[serde(default)]
    pub app_token: Option<Secret>,
    /// With token rotation (`bot_token` = `xoxe.xoxb-…`): the refresh token (`xoxe-1-…`)
    /// issued with it.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// With token rotation: the app's Client ID ("Basic Information → App Credentials").
    #[serde(default)]
    pub client_id: Option<String>,
    /// With token rotation: the app's Client Secret.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// The workspace (`T…`) this bot token belongs to. Events from any other workspace the
    /// app is installed in are ignored. Learned from `auth.test` when absent.
    #[serde(default)]
    pub team_id: Option<String>,
    /// The Web API base URL (tests point it at a fake).
    #[serde(default = "default_api_base_url")]
    pub api_base_url: url::Url,
    /// Also take `app_mention` events in channels (the channel is then one conversation).
    /// Direct messages are always taken.
    #[serde(default)]
    pub app_mentions: bool,
    /// Timeout of every Web API call and file transfer, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Sent to the consumer when the agent closes the conversation.
    #[serde(default = "default_closed_text")]
    pub closed_text: String,
    /// Sent to the consumer when the conversation is transferred.
    #[serde(default = "default_transferred_text")]
    pub transferred_text: String,
}

fn default_api_base_url() -> url::Url {
    url::Url::parse(DEFAULT_API_BASE_URL).expect("the default base URL is a URL")
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

/// How an expiring bot token is refreshed (Slack's token rotation, `oauth.v2.access` with
/// `grant_type=refresh_token`).
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The refresh token the config gives (the store keeps the newest one).
    pub refresh_token: Secret,
    /// The app's Client ID.
    pub client_id: String,
    /// The app's Client Secret.
    pub client_secret: Secret,
}

/// The validated settings of one instance.
#[derive(Debug)]
pub struct Settings {
    /// The raw keys.
    pub config: SlackConfig,
    /// The API base without a trailing slash.
    pub api_base_url: String,
    /// Call timeout.
    pub timeout: Duration,
    /// Present when the bot token rotates.
    pub rotation: Option<Rotation>,
}

/// A bot token as Slack issues it: `xoxb-…`, or `xoxe.xoxb-…` when token rotation is on
/// (docs.slack.dev/authentication/tokens, …/using-token-rotation).
fn is_bot_token(token: &str) -> bool {
    token.starts_with("xoxb-") || token.starts_with("xoxe.xoxb-")
}

/// An app-level token: `xapp-{version}-{app id}-{number}-{hex}`, e.g.
/// `xapp-1-A0123ABC-4567890-abcdef…` (docs.slack.dev/authentication/tokens#app-level).
pub fn is_app_token(token: &str) -> bool {
    let Some(rest) = token.strip_prefix("xapp-") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    parts.len() >= 4
        && parts[0].chars().all(|c| c.is_ascii_digit())
        && parts[1].starts_with('A')
        && parts[1].len() > 1
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl Settings {
    /// Parses and checks an instance's keys; errors name the key.
    pub fn from_channel_config(cfg: &ChannelConfig) -> Result<Self, ConfigError> {
        let config: SlackConfig = cfg.parse()?;
        let token = config.bot_token.expose();
        if !is_bot_token(token) {
            return Err(cfg.error(
                "bot_token",
                "must be a bot token (`xoxb-…`, or `xoxe.xoxb-…` with token rotation, from OAuth & Permissions)",
            ));
        }
        match config.mode {
            Mode::EventsApi => {
                let Some(secret) = &config.signing_secret else {
                    return Err(cfg.error(
                        "signing_secret",
                        "is required with the Events API: copy the Signing Secret from Basic Information",
                    ));
                };
                if secret.expose().len() < 16 {
                    return Err(cfg.error(
                        "signing_secret",
                        "looks too short: copy the Signing Secret from Basic Information",
                    ));
                }
                if config.app_token.is_some() {
                    return Err(cfg.error(
                        "app_token",
                        "is used only with `mode = \"socket_mode\"`; remove it or set the mode",
                    ));
                }
            }
            Mode::SocketMode => {
                match &config.app_token {
                    None => {
                        return Err(cfg.error(
                            "app_token",
                            "is required with Socket Mode: create an app-level token with the `connections:write` scope (Basic Information → App-Level Tokens)",
                        ));
                    }
                    Some(t) if !is_app_token(t.expose()) => {
                        return Err(cfg.error(
                            "app_token",
                            "must be an app-level token (`xapp-1-A…-…`); bot (`xoxb-`) and user (`xoxp-`) tokens cannot open Socket Mode connections",
                        ));
                    }
                    Some(_) => {}
                }
                if config.signing_secret.is_some() {
                    return Err(cfg.error(
                        "signing_secret",
                        "is not used with Socket Mode (its payloads come over the app's own WebSocket, unsigned); remove it",
                    ));
                }
            }
        }
        let rotation = rotation(cfg, &config)?;
        let api_base_url = config
            .api_base_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        if !matches!(config.api_base_url.scheme(), "https" | "http") {
            return Err(cfg.error("api_base_url", "must be an http(s) URL"));
        }
        if config.timeout_secs == 0 {
            return Err(cfg.error("timeout_secs", "must be at least 1"));
        }
        if let Some(team) = &config.team_id
            && !(team.starts_with('T') || team.starts_with('E'))
        {
            return Err(cfg.error(
                "team_id",
                "must be a workspace id (`T…`) or an organization id (`E…`)",
            ));
        }
        Ok(Self {
            api_base_url,
            timeout: Duration::from_secs(config.timeout_secs),
            rotation,
            config,
        })
    }
}

/// The rotation keys: all three with an `xoxe.xoxb-` token, none with a plain one.
fn rotation(cfg: &ChannelConfig, config: &SlackConfig) -> Result<Option<Rotation>, ConfigError> {
    let rotating = config.bot_token.expose().starts_with("xoxe.");
    let given = [
        ("refresh_token", config.refresh_token.is_some()),
        ("client_id", config.client_id.is_some()),
        ("client_secret", config.client_secret.is_some()),
    ];
    if !rotating {
        if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
            return Err(cfg.error(
                key,
                "is used only with token rotation (a `xoxe.xoxb-…` bot token); this bot token does not expire, remove the key",
            ));
        }
        return Ok(None);
    }
    if let Some((key, _)) = given.iter().find(|(_, set)| !*set) {
        return Err(cfg.error(
            key,
            "is required with a rotating bot token (`xoxe.xoxb-…`), which expires every 12 hours and is refreshed with it",
        ));
    }
    let refresh_token = config
        .refresh_token
        .clone()
        .unwrap_or_else(|| Secret::new(""));
    if !refresh_token.expose().starts_with("xoxe-") {
        return Err(cfg.error(
            "refresh_token",
            "must be the refresh token issued with the bot token (`xoxe-1-…`)",
        ));
    }
    Ok(Some(Rotation {
        refresh_token,
        client_id: config.client_id.clone().unwrap_or_default(),
        client_secret: config
            .client_secret
            .clone()
            .unwrap_or_else(|| Secret::new("")),
    }))
}
