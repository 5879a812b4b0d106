//! Kannel's keys of a `[channels.<instance>]` table with `gateway = "kannel"`, and their
//! validation into [`KannelSettings`].

use reqwest::Url;
use switchboard_core::{ChannelConfig, ConfigError, Secret};

use super::wire::{DLR_URL_MAX, dlr_url_len};
use crate::chars::{header_safe, url_safe};

/// Kannel's DLR mask when none is configured: every report.
pub const DEFAULT_DLR_MASK: u8 = 31;

/// Kannel's keys as written in the file (each optional there; required here), taken from the
/// instance's table by [`crate::SmsConfig`], which refuses the other gateway's keys.
#[derive(Debug, Clone, Default)]
pub struct KannelKeys {
    /// `callback_token`.
    pub callback_token: Option<Secret>,
    /// `sendsms_url`.
    pub sendsms_url: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<Secret>,
    /// `dlr_mask`.
    pub dlr_mask: Option<u8>,
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
    /// The callback token.
    pub callback_token: Secret,
}

impl KannelKeys {
    /// Checks the keys for an instance whose callbacks are under `callback_base_url`; errors
    /// name the key.
    pub fn validate(
        self,
        config: &ChannelConfig,
        callback_base_url: &str,
    ) -> Result<KannelSettings, ConfigError> {
        let Some(callback_token) = self.callback_token else {
            return Err(config.error("callback_token", "required for gateway = \"kannel\""));
        };
        let token = callback_token.expose();
        if token.len() < 16 || token.len() > 128 || !url_safe(token) {
            return Err(config.error(
                "callback_token",
                "must be 16 to 128 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        let dlr_url = dlr_url_len(callback_base_url, token);
        if dlr_url > DLR_URL_MAX {
            return Err(config.error(
                "callback_base_url",
                format!(
                    "with callback_token, makes a dlr-url of {dlr_url} characters; Kannel's SQL \
                     delivery-report storages keep {DLR_URL_MAX} (the reports of longer ones are \
                     lost): shorten the URL or the token"
                ),
            ));
        }
        let Some(url) = &self.sendsms_url else {
            return Err(config.error("sendsms_url", "required for gateway = \"kannel\""));
        };
        let sendsms_url = match Url::parse(url) {
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
        let dlr_mask = self.dlr_mask.unwrap_or(DEFAULT_DLR_MASK);
        if dlr_mask > 31 {
            return Err(config.error("dlr_mask", "must be between 0 and 31"));
        }
        Ok(KannelSettings {
            sendsms_url,
            username,
            password,
            dlr_mask,
            callback_token,
        })
    }
}
