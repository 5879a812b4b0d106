//! `[channels.<instance>]` settings of kind `sms`: the table as written (one flat table, so
//! that an unknown key is an error naming it), the gateway-independent keys' validation, and
//! the validated [`Settings`] holding either gateway's ([`GatewaySettings`]). Each gateway
//! validates its own keys ([`crate::kannel::config`], [`crate::vonage::config`]).

use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use switchboard_core::{ChannelConfig, ConfigError, Secret};

use crate::chars::header_safe;
use crate::kannel::config::{KannelKeys, KannelSettings};
use crate::keywords::{Keywords, KeywordsConfig};
use crate::vonage::config::{VonageKeys, VonageSettings};
use crate::vonage::signature::SignatureMethod;

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
    /// Vonage's (Nexmo's) SMS API: `POST /sms/json` for MT, signed inbound-message and
    /// delivery-receipt webhooks.
    Vonage,
}

impl GatewayKind {
    fn name(self) -> &'static str {
        match self {
            GatewayKind::Kannel => "kannel",
            GatewayKind::Vonage => "vonage",
        }
    }
}

/// The keys of a `[channels.<instance>]` table with `kind = "sms"`, as written in the file.
///
/// Gateway-specific keys are optional here and required by [`SmsConfig::validate`] for the
/// gateway that uses them; a key of the other gateway is an error naming it, so that a
/// Kannel password is never mistaken for a Vonage secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// The gateway: `"kannel"` or `"vonage"`.
    pub gateway: GatewayKind,
    /// Our sender: the number (E.164, `+15551234567`) or short code (`1000`) consumers see
    /// and answer to. With Vonage also an alphanumeric sender id of up to 11 characters
    /// (consumers cannot answer those).
    pub from: String,
    /// Where the gateway reaches this instance's callbacks (Kannel: `<base>/mo`,
    /// `<base>/dlr`; Vonage: `<base>/inbound`, `<base>/dlr`).
    /// Default: `{server.public_url}/channels/{instance}`.
    #[serde(default)]
    pub callback_base_url: Option<String>,
    /// Kannel: a long random secret (at least 16 characters of `A-Z a-z 0-9 - _ .`) that
    /// Kannel presents as the `token` query parameter of every callback. Required for Kannel.
    #[serde(default)]
    pub callback_token: Option<Secret>,
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
    #[serde(default)]
    pub dlr_mask: Option<u8>,
    /// Vonage: the account's API key (Dashboard → API Settings).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Vonage: the API secret, sent in the body of `POST /sms/json` (never in a URL).
    #[serde(default)]
    pub api_secret: Option<Secret>,
    /// Vonage: the signature secret of signed webhooks (Dashboard → API Settings → Signed
    /// webhooks). Every inbound message and delivery receipt must carry a valid `sig`.
    #[serde(default)]
    pub signature_secret: Option<Secret>,
    /// Vonage: the signature method chosen in the dashboard: `md5hash` (Vonage's default),
    /// `md5`, `sha1`, `sha256` or `sha512` (the HMAC variants). Default `md5hash`.
    #[serde(default)]
    pub signature_method: Option<SignatureMethod>,
    /// Vonage: the REST API's base URL. Default `https://rest.nexmo.com`; tests point it at a
    /// fake.
    #[serde(default)]
    pub api_base_url: Option<String>,
    /// Vonage: how long, in seconds, the parts of a long inbound message are awaited after
    /// the first one (Vonage does not put them together). When the wait is over, the parts
    /// that came reach the agent with a notice of what is missing. Default 600, 5 to 86400.
    #[serde(default)]
    pub concat_wait_secs: Option<u64>,
    /// How long, in seconds, a gateway call that ended without an answer (a timeout, a lost
    /// connection, a crash mid-call) waits for the gateway's report of that piece before it is
    /// sent again: a report proves the gateway took it, so the consumer does not get it twice.
    /// The consumer's later messages wait behind it (order is kept). Kannel reports the SMSC's
    /// acceptance (8) and Vonage `accepted` within seconds; lower it when the gateway always
    /// does, raise it for a slow SMSC. Default 120, 5 to 3600. Kannel: only with a `dlr_mask`
    /// that asks for the SMSC's answer (8 or 16); without one an uncertain call is sent again
    /// at once.
    #[serde(default)]
    pub report_wait_secs: Option<u64>,
    /// The most SMS parts one gateway call may need (concatenated SMS: 153 GSM-7 characters
    /// or 67 UCS-2 units per part). Longer texts are split into several gateway calls, each
    /// within this cap. Keep Kannel's `sendsms-user` `max-messages` at least this high, or
    /// Kannel truncates silently. Default 6, at most 255.
    #[serde(default = "default_max_parts")]
    pub max_parts: u32,
    /// Timeout of one gateway call, in seconds. Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The calling code (`44`, `1`) given to national numbers (`020 7946 0018`) a gateway
    /// reports, so that every consumer number is E.164. Default: none (national numbers are
    /// kept as they are).
    #[serde(default)]
    pub default_country_code: Option<String>,
    /// STOP / START / HELP handling (see the crate's README). Default: on, with the usual
    /// keywords.
    #[serde(default)]
    pub keywords: KeywordsConfig,
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
    /// Our sender number, short code or (Vonage) alphanumeric sender id.
    pub from: String,
    /// Where callbacks are mounted, without a trailing slash.
    pub callback_base_url: String,
    /// The cap on SMS parts per gateway call.
    pub max_parts: u32,
    /// Timeout of one gateway call.
    pub timeout: Duration,
    /// The calling code given to national numbers, without `+`.
    pub default_country_code: Option<String>,
    /// STOP / START / HELP handling.
    pub keywords: Keywords,
    /// How long an uncertain gateway call waits for the gateway's report before it is sent
    /// again (`report_wait_secs`).
    pub report_wait: Duration,
    /// The gateway and its settings.
    pub gateway: GatewaySettings,
}

impl Settings {
    /// The E.164 form of a number as this instance normalises it.
    pub fn normalize(&self, number: &str) -> String {
        crate::number::normalize(number, self.default_country_code.as_deref())
    }
}

/// Gateway-specific validated settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GatewaySettings {
    /// Kannel.
    Kannel(KannelSettings),
    /// Vonage's SMS API.
    Vonage(VonageSettings),
}

/// How long an uncertain gateway call waits for the gateway's report when `report_wait_secs`
/// is not set: Kannel reports the SMSC's acceptance (8) within seconds, Vonage `accepted` or
/// `delivered` within seconds to minutes.
pub const DEFAULT_REPORT_WAIT_SECS: u64 = 120;

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
        let callback_base_url = match &self.callback_base_url {
            Some(url) => url.clone(),
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
        let default_country_code = match &self.default_country_code {
            None => None,
            Some(raw) => Some(crate::number::country_code(raw).ok_or_else(|| {
                config.error(
                    "default_country_code",
                    "must be a calling code of 1 to 3 digits (`44`, `1`)",
                )
            })?),
        };
        let keywords = self.keywords.clone().validate(config)?;
        let gateway = match self.gateway {
            GatewayKind::Kannel => {
                GatewaySettings::Kannel(self.kannel(config, &callback_base_url)?)
            }
            GatewayKind::Vonage => GatewaySettings::Vonage(self.vonage(config, &from)?),
        };
        let report_wait = match self.report_wait_secs {
            None => DEFAULT_REPORT_WAIT_SECS,
            Some(_) if matches!(&gateway, GatewaySettings::Kannel(k) if k.dlr_mask & (8 | 16) == 0) =>
            {
                return Err(config.error(
                    "report_wait_secs",
                    "not used: dlr_mask asks for no SMSC report (8 or 16), so there is no \
                     report to wait for; remove it or add 8 to dlr_mask",
                ));
            }
            Some(s) if (5..=3600).contains(&s) => s,
            Some(_) => {
                return Err(config.error("report_wait_secs", "must be between 5 and 3600 seconds"));
            }
        };
        Ok(Settings {
            from,
            callback_base_url,
            max_parts: self.max_parts,
            timeout: Duration::from_secs(self.timeout_secs),
            default_country_code,
            keywords,
            report_wait: Duration::from_secs(report_wait),
            gateway,
        })
    }

    /// An error for the first key present that `gateway` does not use.
    fn refuse_foreign_keys(
        &self,
        config: &ChannelConfig,
        keys: &[(&str, bool)],
        gateway: GatewayKind,
    ) -> Result<(), ConfigError> {
        match keys.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(config.error(
                key,
                format!("not used with gateway = \"{}\": remove it", gateway.name()),
            )),
            None => Ok(()),
        }
    }

    /// Kannel's settings: the Vonage keys refused, Kannel's own checked by
    /// [`KannelKeys::validate`].
    fn kannel(
        &self,
        config: &ChannelConfig,
        callback_base_url: &str,
    ) -> Result<KannelSettings, ConfigError> {
        self.refuse_foreign_keys(
            config,
            &[
                ("api_key", self.api_key.is_some()),
                ("api_secret", self.api_secret.is_some()),
                ("signature_secret", self.signature_secret.is_some()),
                ("signature_method", self.signature_method.is_some()),
                ("api_base_url", self.api_base_url.is_some()),
                // Kannel puts long messages together itself (bearerbox).
                ("concat_wait_secs", self.concat_wait_secs.is_some()),
            ],
            GatewayKind::Kannel,
        )?;
        KannelKeys {
            callback_token: self.callback_token.clone(),
            sendsms_url: self.sendsms_url.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            dlr_mask: self.dlr_mask,
        }
        .validate(config, callback_base_url)
    }

    /// Vonage's settings: the Kannel keys refused, Vonage's own checked by
    /// [`VonageKeys::validate`].
    fn vonage(&self, config: &ChannelConfig, from: &str) -> Result<VonageSettings, ConfigError> {
        self.refuse_foreign_keys(
            config,
            &[
                ("callback_token", self.callback_token.is_some()),
                ("sendsms_url", self.sendsms_url.is_some()),
                ("username", self.username.is_some()),
                ("password", self.password.is_some()),
                ("dlr_mask", self.dlr_mask.is_some()),
            ],
            GatewayKind::Vonage,
        )?;
        VonageKeys {
            api_key: self.api_key.clone(),
            api_secret: self.api_secret.clone(),
            signature_secret: self.signature_secret.clone(),
            signature_method: self.signature_method,
            api_base_url: self.api_base_url.clone(),
            concat_wait_secs: self.concat_wait_secs,
        }
        .validate(config, from)
    }
}
