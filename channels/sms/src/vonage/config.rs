//! Vonage's keys of a `[channels.<instance>]` table with `gateway = "vonage"`, and their
//! validation into [`VonageSettings`].

use std::time::Duration;

use reqwest::Url;
use switchboard_core::{ChannelConfig, ConfigError, Secret};

use super::signature::SignatureMethod;
use crate::chars::header_safe;

/// Vonage's REST host, where `POST /sms/json` goes unless `api_base_url` says otherwise.
pub const VONAGE_API_BASE_URL: &str = "https://rest.nexmo.com";

/// How long the parts of a long Vonage message are awaited when `concat_wait_secs` is not set:
/// parts arrive within seconds; Vonage's retries of a part refused meanwhile come within
/// minutes.
pub const DEFAULT_CONCAT_WAIT_SECS: u64 = 600;

/// Vonage's keys as written in the file (each optional there; required here where Vonage
/// needs them), taken from the instance's table by [`crate::SmsConfig`], which refuses the
/// other gateway's keys.
#[derive(Debug, Clone, Default)]
pub struct VonageKeys {
    /// `api_key`.
    pub api_key: Option<String>,
    /// `api_secret`.
    pub api_secret: Option<Secret>,
    /// `signature_secret`.
    pub signature_secret: Option<Secret>,
    /// `signature_method`.
    pub signature_method: Option<SignatureMethod>,
    /// `api_base_url`.
    pub api_base_url: Option<String>,
    /// `concat_wait_secs`.
    pub concat_wait_secs: Option<u64>,
}

/// Validated Vonage settings.
#[derive(Debug, Clone)]
pub struct VonageSettings {
    /// The API key.
    pub api_key: String,
    /// The API secret.
    pub api_secret: Secret,
    /// The webhook signature secret.
    pub signature_secret: Secret,
    /// The webhook signature method.
    pub signature_method: SignatureMethod,
    /// The REST API's base URL, without a trailing slash.
    pub api_base_url: Url,
    /// How long the parts of a long inbound message are awaited.
    pub concat_wait: Duration,
}

impl VonageKeys {
    /// Checks the keys, and the instance's `from` as Vonage takes it; errors name the key.
    pub fn validate(
        self,
        config: &ChannelConfig,
        from: &str,
    ) -> Result<VonageSettings, ConfigError> {
        // A number (with or without `+`, at most 15 digits) or an alphanumeric sender id.
        let digits = from.strip_prefix('+').unwrap_or(from);
        let number =
            !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit());
        let alphanumeric = from.len() <= 11
            && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && from.bytes().any(|b| b.is_ascii_alphabetic());
        if !number && !alphanumeric {
            return Err(config.error(
                "from",
                "must be a number (at most 15 digits) or an alphanumeric sender id of at most \
                 11 characters for gateway = \"vonage\"",
            ));
        }
        let Some(api_key) = self.api_key.filter(|k| !k.trim().is_empty()) else {
            return Err(config.error("api_key", "required for gateway = \"vonage\""));
        };
        // Vonage's API keys are 8 letters and digits (`definitions/sms.yml`, NewMessage.api_key:
        // minLength 8, maxLength 8).
        if api_key.len() != 8 || !api_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(config.error(
                "api_key",
                "must be the account's API key: 8 letters and digits",
            ));
        }
        let Some(api_secret) = self.api_secret.filter(|s| !s.is_empty()) else {
            return Err(config.error("api_secret", "required for gateway = \"vonage\""));
        };
        // `definitions/sms.yml`, NewMessage.api_secret: minLength 6, maxLength 32.
        if !header_safe(api_secret.expose()) || !(6..=32).contains(&api_secret.expose().len()) {
            return Err(config.error(
                "api_secret",
                "must be the account's API secret: 6 to 32 printable ASCII characters",
            ));
        }
        let Some(signature_secret) = self.signature_secret.filter(|s| !s.is_empty()) else {
            return Err(config.error(
                "signature_secret",
                "required for gateway = \"vonage\" (webhooks are only accepted signed)",
            ));
        };
        if !header_safe(signature_secret.expose()) {
            return Err(config.error("signature_secret", "must be printable ASCII"));
        }
        let base = self
            .api_base_url
            .as_deref()
            .unwrap_or(VONAGE_API_BASE_URL)
            .trim_end_matches('/');
        let api_base_url = match Url::parse(base) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none() =>
            {
                u
            }
            _ => {
                return Err(config.error(
                    "api_base_url",
                    "must be an http(s) URL without credentials or query",
                ));
            }
        };
        let concat_wait = match self.concat_wait_secs {
            None => DEFAULT_CONCAT_WAIT_SECS,
            Some(s) if (5..=86_400).contains(&s) => s,
            Some(_) => {
                return Err(config.error("concat_wait_secs", "must be between 5 and 86400 seconds"));
            }
        };
        Ok(VonageSettings {
            api_key,
            api_secret,
            signature_secret,
            signature_method: self.signature_method.unwrap_or_default(),
            api_base_url,
            concat_wait: Duration::from_secs(concat_wait),
        })
    }
}
