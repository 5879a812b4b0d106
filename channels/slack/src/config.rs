//! `[channels.<instance>]` keys of kind `slack`.

use std::time::Duration;

use serde::Deserialize;
use switchboard_core::{ChannelConfig, ConfigError, Secret};

/// Slack's Web API, used unless `api_base_url` says otherwise.
pub const DEFAULT_API_BASE_URL: &str = "https://slack.com/api";

/// The keys as written in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The bot token (`xoxb-…`) from "OAuth & Permissions". Secret: put it in the environment
    /// (`SWITCHBOARD_CHANNELS__<INSTANCE>__BOT_TOKEN`).
    pub bot_token: Secret,
    /// The signing secret from "Basic Information"; every request from Slack is signed with it.
    pub signing_secret: Secret,
    /// The Web API base URL (tests point it at a fake).
    #[serde(default = "default_api_base_url")]
    pub api_base_url: String,
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

fn default_api_base_url() -> String {
    DEFAULT_API_BASE_URL.into()
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

/// The validated settings of one instance.
#[derive(Debug)]
pub struct Settings {
    /// The raw keys.
    pub config: SlackConfig,
    /// The API base without a trailing slash.
    pub api_base_url: String,
    /// Call timeout.
    pub timeout: Duration,
}

impl Settings {
    /// Parses and checks an instance's keys; errors name the key.
    pub fn from_channel_config(cfg: &ChannelConfig) -> Result<Self, ConfigError> {
        let config: SlackConfig = cfg.parse()?;
        if !config.bot_token.expose().starts_with("xoxb-") {
            return Err(cfg.error(
                "bot_token",
                "must be a bot token (`xoxb-…`, from OAuth & Permissions)",
            ));
        }
        if config.signing_secret.expose().len() < 16 {
            return Err(cfg.error(
                "signing_secret",
                "looks too short: copy the Signing Secret from Basic Information",
            ));
        }
        let api_base_url = config.api_base_url.trim_end_matches('/').to_owned();
        if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
            return Err(cfg.error("api_base_url", "must be an http(s) URL"));
        }
        if config.timeout_secs == 0 {
            return Err(cfg.error("timeout_secs", "must be at least 1"));
        }
        Ok(Self {
            api_base_url,
            timeout: Duration::from_secs(config.timeout_secs),
            config,
        })
    }
}
