//! Simulator configuration and App Install Manifest loading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// The five webhook subscription keys of an app installation (docs/protocol/liveperson.md §7.1).
pub const NOTIFICATION_TYPES: [&str; 5] = [
    "ms.MessagingEventNotification.ContentEvent",
    "ms.MessagingEventNotification.RichContentEvent",
    "ms.MessagingEventNotification.AcceptStatusEvent",
    "ms.MessagingEventNotification.ChatStateEvent",
    "cqm.ExConversationChangeNotification",
];

/// HMAC algorithm used for `x-liveperson-signature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureAlgorithm {
    /// `sha1=` + base64(HMAC-SHA1) — the default.
    #[default]
    Sha1,
    /// `sha256=` + base64(HMAC-SHA256) — per-account opt-in.
    Sha256,
}

/// A static header added to every delivery of one webhook (`{"header_name","header_value"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticHeader {
    /// Header name.
    pub header_name: String,
    /// Header value.
    pub header_value: String,
}

/// One webhook subscription: where to POST and how often to retry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    /// Endpoint URL.
    pub endpoint: String,
    /// Retry-by-count budget (0–5); `None` when omitted (no retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Static headers added to each delivery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<StaticHeader>,
}

/// `capabilities.webhooks.retry` of the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryConfig {
    /// Retry-by-TTL retention window in seconds (2 … 259200). Takes precedence over `max_retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_time: Option<u64>,
}

/// The webhook part of the app installation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhooksConfig {
    /// Endpoint per notification type key (see [`NOTIFICATION_TYPES`]).
    pub endpoints: BTreeMap<String, WebhookEndpoint>,
    /// Retry mode.
    pub retry: RetryConfig,
}

impl WebhooksConfig {
    /// All five notification types delivered to `url` with `max_retries`.
    pub fn all(url: &str, max_retries: Option<u32>) -> Self {
        let endpoints = NOTIFICATION_TYPES
            .iter()
            .map(|k| {
                (
                    (*k).to_string(),
                    WebhookEndpoint {
                        endpoint: url.to_string(),
                        max_retries,
                        headers: Vec::new(),
                    },
                )
            })
            .collect();
        Self {
            endpoints,
            retry: RetryConfig::default(),
        }
    }
}

/// Configuration of one simulated account with one app installation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    /// The account (site) id.
    pub account_id: String,
    /// The app installation's `client_id` (a UUID).
    pub client_id: String,
    /// The app installation's `client_secret` (26 lowercase alphanumerics); also the webhook HMAC key.
    /// The default is new and random for every configuration, so that nobody can sign a webhook
    /// for a simulator they did not start; set it to have a known one.
    pub client_secret: String,
    /// `client_name` of the installation.
    pub client_name: String,
    /// AppJWT lifetime in seconds.
    pub app_jwt_ttl_secs: u64,
    /// Webhook subscriptions.
    pub webhooks: WebhooksConfig,
    /// Webhook signature algorithm.
    pub signature: SignatureAlgorithm,
    /// Connect and read timeout of webhook deliveries, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// Multiplies every webhook retry delay (and the retention window): `0.001` turns 30 s into 30 ms.
    pub time_scale: f64,
    /// Also accept `Authorization: Bearer <jwt>` (LivePerson accepts the raw token only).
    pub accept_bearer: bool,
    /// Skill ids with a post-conversation survey; `"*"` enables it for every skill.
    pub survey_skills: Vec<String>,
    /// Skill assigned when the consumer asks for `-1` or none.
    pub default_skill_id: String,
    /// Skill LivePerson's routing moves a conversation to when it was asked for `-1`: the
    /// "created" notification shows `-1`, the next one this skill, before any agent joined.
    /// `None`: the conversation stays on `default_skill_id`.
    pub routed_skill_id: Option<String>,
    /// Account site setting `messaging.file.sharing.enabled`.
    pub file_sharing_enabled: bool,
    /// Lifetime of swift temp URLs in seconds (LivePerson: about 60).
    pub swift_url_ttl_secs: u64,
    /// Automatic welcome message sent (role `CONTROLLER`) when `AUTO_MESSAGES` is requested.
    pub auto_message: Option<String>,
    /// Host (`host:port`, no scheme) the Domain API returns; defaults to the listener address.
    pub public_host: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            account_id: "12345678".into(),
            client_id: "75588e18-0213-4e33-8174-883acac7e3c4".into(),
            client_secret: random_client_secret(),
            client_name: "Switchboard".into(),
            app_jwt_ttl_secs: 3600,
            webhooks: WebhooksConfig::default(),
            signature: SignatureAlgorithm::Sha1,
            webhook_timeout_ms: 5000,
            time_scale: 1.0,
            accept_bearer: false,
            survey_skills: Vec::new(),
            default_skill_id: "-1".into(),
            routed_skill_id: None,
            file_sharing_enabled: true,
            swift_url_ttl_secs: 60,
            auto_message: Some("Welcome! An agent will be with you shortly.".into()),
            public_host: None,
        }
    }
}

/// A client secret as LivePerson issues them: 26 lowercase letters and digits, random.
fn random_client_secret() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..26)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

impl SimConfig {
    /// Loads the webhook subscriptions (and `client_name`) from an App Install Manifest JSON
    /// (`capabilities.webhooks`, including `retry.retention_time` and per-webhook `headers`).
    pub fn with_manifest(mut self, json: &str) -> Result<Self, SimError> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| SimError::Config(format!("manifest: {e}")))?;
        if let Some(name) = v.get("client_name").and_then(|n| n.as_str()) {
            self.client_name = name.to_string();
        }
        let mut webhooks = WebhooksConfig::default();
        if let Some(map) = v
            .pointer("/capabilities/webhooks")
            .and_then(|w| w.as_object())
        {
            for (key, val) in map {
                if key == "retry" {
                    webhooks.retry = serde_json::from_value(val.clone())
                        .map_err(|e| SimError::Config(format!("manifest retry: {e}")))?;
                    if let Some(rt) = webhooks.retry.retention_time
                        && !(2..=259_200).contains(&rt)
                    {
                        return Err(SimError::Config(format!(
                            "retry.retention_time {rt} outside 2..=259200"
                        )));
                    }
                    continue;
                }
                let ep: WebhookEndpoint = serde_json::from_value(val.clone())
                    .map_err(|e| SimError::Config(format!("manifest webhook {key}: {e}")))?;
                if let Some(m) = ep.max_retries
                    && m > 5
                {
                    return Err(SimError::Config(format!("{key}: max_retries {m} > 5")));
                }
                webhooks.endpoints.insert(key.clone(), ep);
            }
        }
        self.webhooks = webhooks;
        Ok(self)
    }

    /// Whether a post-conversation survey is enabled for `skill_id`.
    pub fn survey_enabled_for(&self, skill_id: &str) -> bool {
        self.survey_skills.iter().any(|s| s == "*" || s == skill_id)
    }
}

#[cfg(test)]
mod tests {
    use super::SimConfig;

    #[test]
    fn the_default_client_secret_is_random_and_shaped_like_livepersons() {
        let (a, b) = (SimConfig::default(), SimConfig::default());
        assert_ne!(a.client_secret, b.client_secret);
        assert_eq!(a.client_secret.len(), 26);
        assert!(
            a.client_secret
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
