//! What the engine needs to know about the brand's LivePerson account and app installation.

use std::time::Duration;

use reqwest::Url;
use switchboard_core::Secret;

use crate::error::EngineError;

/// The production Domain API, used when `liveperson.domain_api` is not set.
pub const DEFAULT_DOMAIN_API: &str = "https://api.liveperson.net";

/// The `Client-Properties` features announced when `liveperson.features` is not set.
///
/// LivePerson leaves a capability off unless the client names it ("Some of the client
/// capabilities are not supported by default. In order to enable them, the client should
/// include the feature name in this field.": developer-center
/// `assets/schema/infra/clientPropertiesHeader.json`). Surveys need `MULTI_DIALOG`, and the
/// post-conversation-survey tutorial
/// (`pages/Documents/ClientSideConfiguration/MessagingWindowAPI/Tutorials/post-conversation-survey-pcs.md`,
/// step 1) and the demo connector's README (LivePersonInc/lp-demo-app-connector-api) announce
/// it with `RICH_CONTENT` and `QUICK_REPLIES`. Every channel renders all three: natively, or
/// as the router's numbered text (a survey answer typed as a number is still an answer), so
/// the default is the same whatever channels are enabled.
pub const DEFAULT_FEATURES: [&str; 3] = ["RICH_CONTENT", "QUICK_REPLIES", "MULTI_DIALOG"];

/// Every feature name LivePerson documents for `Client-Properties`: the schema's enum
/// (`clientPropertiesHeader.json`) plus `QUICK_REPLIES` and `MULTI_DIALOG`, which the PCS
/// tutorial uses although the schema's list predates them ([CONFLICT]: both accepted).
pub const KNOWN_FEATURES: [&str; 8] = [
    "CO_BROWSE",
    "CO_APP",
    "PHOTO_SHARING",
    "SECURE_FORMS",
    "AUTO_MESSAGES",
    "RICH_CONTENT",
    "QUICK_REPLIES",
    "MULTI_DIALOG",
];

/// [`DEFAULT_FEATURES`] as owned strings.
pub fn default_features() -> Vec<String> {
    DEFAULT_FEATURES.iter().map(|f| (*f).to_owned()).collect()
}

/// Checks `features` against [`KNOWN_FEATURES`]; the error names `liveperson.features`.
pub fn validate_features(features: &[String]) -> Result<(), EngineError> {
    if let Some(unknown) = features
        .iter()
        .find(|f| !KNOWN_FEATURES.contains(&f.as_str()))
    {
        return Err(EngineError::Config {
            key: "liveperson.features",
            message: format!(
                "`{unknown}` is not a Client-Properties feature LivePerson knows (one of {})",
                KNOWN_FEATURES.join(", ")
            ),
        });
    }
    Ok(())
}

/// Settings of the LivePerson engine: the account, the app installation's credentials and how
/// new conversations are routed.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The LivePerson account (site) id.
    pub account_id: String,
    /// The app installation's `client_id`.
    pub client_id: String,
    /// The app installation's `client_secret`: token requests and webhook signatures.
    pub client_secret: Secret,
    /// Base URL of the Domain API (`https://api.liveperson.net` unless overridden).
    pub domain_api: String,
    /// Allow plain `http://` to hosts other than loopback (never in production).
    pub allow_insecure_http: bool,
    /// Routing of new conversations.
    pub routing: ConversationRouting,
    /// `Client-Properties` features sent on every CONVERSATION and SEND call (the header is
    /// always sent; [`DEFAULT_FEATURES`] unless configured).
    pub features: Vec<String>,
    /// How long Domain API answers are reused.
    pub domain_ttl: Duration,
    /// Timeout of each HTTP call to LivePerson.
    pub request_timeout: Duration,
    /// Webhook signature settings.
    pub webhooks: WebhookSettings,
}

/// Which skill or campaign a new conversation is routed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationRouting {
    /// `skillId` of `cm.ConsumerRequestConversation` (`-1` = any skill when unset).
    pub skill_id: Option<String>,
    /// `campaignInfo.campaignId` (preferred routing, needed for reporting).
    pub campaign_id: Option<String>,
    /// `campaignInfo.engagementId`.
    pub engagement_id: Option<String>,
    /// `ttrDefName`: `NORMAL`, `URGENT` or `PRIORITIZED`.
    pub ttr: Option<String>,
    /// `conversationContext.lang` when the consumer's language is unknown.
    pub language: Option<String>,
}

impl ConversationRouting {
    /// `campaignInfo` names a campaign *and* its engagement or neither: every documented
    /// example carries both (developer-center
    /// `pages/Documents/MessagingChannels/ConnectorAPI/SendAPI/conversation.md`, and the
    /// Monitoring API that yields them returns them together).
    pub fn validate(&self) -> Result<(), EngineError> {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        match (set(&self.campaign_id), set(&self.engagement_id)) {
            (true, false) => Err(EngineError::Config {
                key: "liveperson.engagement_id",
                message: "must be set with liveperson.campaign_id: LivePerson routes by the \
                          campaign and engagement together"
                    .into(),
            }),
            (false, true) => Err(EngineError::Config {
                key: "liveperson.campaign_id",
                message: "must be set with liveperson.engagement_id: LivePerson routes by the \
                          campaign and engagement together"
                    .into(),
            }),
            _ => Ok(()),
        }
    }
}

/// How incoming webhooks are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Accept `x-liveperson-signature: sha256=...` (per-account opt-in at LivePerson) besides
    /// the default `sha1=`.
    pub accept_sha256: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            accept_sha256: true,
        }
    }
}

impl EngineConfig {
    /// A configuration with the defaults for everything but the account and credentials.
    pub fn new(
        account_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Self {
            account_id: account_id.into(),
            client_id: client_id.into(),
            client_secret,
            domain_api: DEFAULT_DOMAIN_API.to_owned(),
            allow_insecure_http: false,
            routing: ConversationRouting::default(),
            features: default_features(),
            domain_ttl: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            webhooks: WebhookSettings::default(),
        }
    }

    /// Points the engine at another Domain API (the simulator, a test fake).
    pub fn with_domain_api(mut self, url: impl Into<String>) -> Self {
        self.domain_api = url.into();
        self
    }

    /// Checks what can be checked without the network; the error names the setting.
    pub fn validate(&self) -> Result<(), EngineError> {
        let required = [
            ("liveperson.account_id", self.account_id.as_str()),
            ("liveperson.client_id", self.client_id.as_str()),
            ("liveperson.client_secret", self.client_secret.expose()),
        ];
        for (key, value) in required {
            if value.trim().is_empty() {
                return Err(EngineError::Config {
                    key,
                    message: "must be set".into(),
                });
            }
        }
        if !self
            .account_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(EngineError::Config {
                key: "liveperson.account_id",
                message: "may only hold letters, digits, '-' and '_'".into(),
            });
        }
        let url = Url::parse(&self.domain_api).map_err(|e| EngineError::Config {
            key: "liveperson.domain_api",
            message: format!("not a URL: {e}"),
        })?;
        check_scheme(&url, self.allow_insecure_http).map_err(|message| EngineError::Config {
            key: "liveperson.domain_api",
            message,
        })?;
        validate_features(&self.features)?;
        self.routing.validate()
    }

    /// The scheme service hosts are called with: `http` only when the Domain API itself is
    /// reached over `http` (the simulator and tests).
    pub(crate) fn service_scheme(&self) -> &'static str {
        if self.domain_api.starts_with("http://") {
            "http"
        } else {
            "https"
        }
    }
}

/// `https` always; `http` only to loopback unless explicitly allowed.
pub(crate) fn check_scheme(url: &Url, allow_insecure_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url.host_str().unwrap_or_default()) => Ok(()),
        "http" => Err(format!(
            "plain http:// is only allowed to loopback hosts (got `{}`); set \
             liveperson.allow_insecure_http = true to override",
            url.host_str().unwrap_or_default()
        )),
        other => Err(format!("unsupported scheme `{other}` (use https)")),
    }
}

/// True for `localhost`, `127.x.x.x` and `[::1]`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}
