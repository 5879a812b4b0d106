//! `[channels.<instance>]` settings of kind `sms`, and their validation.

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use switchboard_core::{ChannelConfig, ConfigError, Secret};

/// The most concatenated parts one SMS may have (the UDH reference format's limit).
pub const MAX_PARTS_LIMIT: u32 = 255;

/// Which SMS gateway carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GatewayKind {
    /// Kannel's HTTP interface: `sendsms` for MT, an `sms-service` get-url for MO and a
    /// `dlr-url` for delivery reports.
    Kannel,
}

/// The keys of a `[channels.<instance>]` table with `kind = "sms"`, as written in the file.
///
/// Gateway-specific keys are optional here and required by [`SmsConfig::validate`] for the
/// gateway that uses them, so that a second gateway adds its keys without a new table shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The gateway: `"kannel"`.
    pub gateway: GatewayKind,
    /// Our sender: the number (E.164, `+15551234567`) or short code (`1000`) consumers see
    /// and answer to.
    pub from: String,
    /// Where the gateway reaches this instance's callbacks (`<base>/mo`, `<base>/dlr`).
    /// Default: `{server.public_url}/channels/{instance}`.
    #[serde(default)]
    pub callback_base_url: Option<String>,
    /// A long random secret (at least 16 characters of `A-Z a-z 0-9 - _ .`) that the gateway
    /// presents as the `token` query parameter of every callback. Required.
    pub callback_token: Secret,
    /// Kannel: the smsbox `sendsms` URL (`http://127.0.0.1:13013/cgi-bin/sendsms`), without
    /// credentials or query.
    #[serde(default)]
    pub sendsms_url: Option<String>,
    /// Kannel: the `sendsms-user` user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Kannel: the `sendsms-user` password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Kannel: the delivery reports to ask for, as Kannel's bit mask (1 delivered to phone,
    /// 2 not delivered to phone, 4 buffered on the SMSC, 8 accepted by the SMSC, 16 rejected
    /// by the SMSC). Default 31 (all). Only 1 becomes a delivery receipt; 2 and 16 are
    /// logged as failures; 0 asks for none.
    #[serde(default = "default_dlr_mask")]
    pub dlr_mask: u8,
    /// The most SMS parts one gateway call may need (concatenated SMS: 153 GSM-7 characters
    /// or 67 UCS-2 units per part). Longer texts are split into several gateway calls, each
    /// within this cap. Keep Kannel's `sendsms-user` `max-messages` at least this high, or
    /// Kannel truncates silently. Default 6, at most 255.
    #[serde(default = "default_max_parts")]
    pub max_parts: u32,
    /// Timeout of one gateway call, in seconds. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_dlr_mask() -> u8 {
    31
}
fn default_max_parts() -> u32 {
    6
}
fn default_timeout_secs() -> u64 {
    10
}

/// Validated settings, gateway details resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our sender number or short code.
    pub from: String,
    /// Where callbacks are mounted, without a trailing slash.
    pub callback_base_url: String,
    /// The callback token.
    pub callback_token: Secret,
    /// The cap on SMS parts per gateway call.
    pub max_parts: u32,
    /// Timeout of one gateway call.
    pub timeout: Duration,
    /// The gateway and its settings.
    pub gateway: GatewaySettings,
}

/// Gateway-specific validated settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GatewaySettings {
    /// Kannel.
    Kannel(KannelSettings),
}

/// Validated Kannel settings.
#[derive(Debug, Clone)]
pub struct KannelSettings {
    /// The sendsms URL.
    pub sendsms_url: Url,
    /// The `sendsms-user` name.
    pub username: String,
    /// The `sendsms-user` password.
    pub password: Secret,
    /// The DLR mask.
    pub dlr_mask: u8,
}

/// True for a token we can put into URLs and kannel.conf without escaping (Kannel reads `%`
/// in its URL templates as an escape code).
fn url_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl SmsConfig {
    /// Parses and validates an instance's settings. Touches neither network nor files.
    pub fn from_channel_config(config: &ChannelConfig) -> Result<Settings, ConfigError> {
        let raw: SmsConfig = config.parse()?;
        raw.validate(config)
    }

    /// Checks the keys and resolves defaults; errors name the key.
    pub fn validate(self, config: &ChannelConfig) -> Result<Settings, ConfigError> {
        let from = self.from.trim().to_owned();
        if from.is_empty() || from.len() > 32 || !header_safe(&from) {
            return Err(config.error("from", "must be a sender number or short code"));
        }
        let token = self.callback_token.expose();
        if token.len() < 16 || token.len() > 128 || !url_safe(token) {
            return Err(config.error(
                "callback_token",
                "must be 16 to 128 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        let callback_base_url = match self.callback_base_url {
            Some(url) => url,
            None => config.public_endpoint("")?,
        };
        let callback_base_url = callback_base_url.trim_end_matches('/').to_owned();
        match Url::parse(&callback_base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => {
                return Err(config.error(
                    "callback_base_url",
                    "must be an http(s) URL without a query",
                ));
            }
        }
        if callback_base_url.contains('%') {
            return Err(config.error(
                "callback_base_url",
                "must not contain `%` (Kannel reads it as an escape code)",
            ));
        }
        if self.max_parts == 0 || self.max_parts > MAX_PARTS_LIMIT {
            return Err(config.error("max_parts", "must be between 1 and 255"));
        }
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(config.error("timeout_secs", "must be between 1 and 300"));
        }
        let gateway = match self.gateway {
            GatewayKind::Kannel => {
                let Some(url) = self.sendsms_url else {
                    return Err(config.error("sendsms_url", "required for gateway = \"kannel\""));
                };
                let sendsms_url = match Url::parse(&url) {
                    Ok(u)
                        if matches!(u.scheme(), "http" | "https")
                            && u.username().is_empty()
                            && u.password().is_none()
                            && u.query().is_none() =>
                    {
                        u
                    }
                    _ => {
                        return Err(config.error(
                            "sendsms_url",
                            "must be an http(s) URL without credentials or query",
                        ));
                    }
                };
                let Some(username) = self.username.filter(|u| !u.is_empty()) else {
                    return Err(config.error("username", "required for gateway = \"kannel\""));
                };
                if !header_safe(&username) {
                    return Err(config.error("username", "must be printable ASCII"));
                }
                let Some(password) = self.password.filter(|p| !p.is_empty()) else {
                    return Err(config.error("password", "required for gateway = \"kannel\""));
                };
                if !header_safe(password.expose()) {
                    return Err(config.error("password", "must be printable ASCII"));
                }
                if self.dlr_mask > 31 {
                    return Err(config.error("dlr_mask", "must be between 0 and 31"));
                }
                GatewaySettings::Kannel(KannelSettings {
                    sendsms_url,
                    username,
                    password,
                    dlr_mask: self.dlr_mask,
                })
            }
        };
        Ok(Settings {
            from,
            callback_base_url,
            callback_token: self.callback_token,
            max_parts: self.max_parts,
            timeout: Duration::from_secs(self.timeout_secs),
            gateway,
        })
    }
}
