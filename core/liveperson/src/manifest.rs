//! The App Install Manifest a brand registers with LivePerson for this deployment (§7.1).

use serde_json::{Value, json};

/// The five notification types a connector subscribes to.
pub const WEBHOOK_TYPES: [&str; 5] = [
    "ms.MessagingEventNotification.ContentEvent",
    "ms.MessagingEventNotification.RichContentEvent",
    "ms.MessagingEventNotification.AcceptStatusEvent",
    "ms.MessagingEventNotification.ChatStateEvent",
    "cqm.ExConversationChangeNotification",
];

/// What goes into the manifest besides the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// `client_name`: shown to agents as the conversation's source.
    pub client_name: String,
    /// `description`.
    pub description: String,
    /// `retry.retention_time` in seconds (2 … 259200): TTL retries keep per-conversation
    /// order, which count-based retries do not (§7.5).
    pub retention_time_secs: u32,
    /// `max_retries` on each webhook (0 … 5), used when LivePerson retries by count.
    pub max_retries: Option<u8>,
    /// The `capabilities.engagement` block; [`default_engagement`] when `None`.
    pub engagement: Option<Value>,
}

/// The engagement block of LivePerson's manifest template (§7.1), with the template's
/// documented first values (its lists are elided with "..." in the sources).
pub fn default_engagement() -> Value {
    json!({
        "design_engagement": false,
        "design_window": false,
        "entry_point": ["section"],
        "visitor_behavior": ["visited_location"],
        "target_audience": ["external_referral"],
        "goal": ["url"],
        "consumer_identity": ["auth"],
        "language_selection": false,
    })
}

impl Default for ManifestOptions {
    fn default() -> Self {
        Self {
            client_name: "Switchboard".into(),
            description: "Switchboard connector (SMS, Slack, Telegram and more)".into(),
            retention_time_secs: 86_400,
            max_retries: None,
            engagement: None,
        }
    }
}

/// The manifest JSON with every webhook pointing at `{public_url}/webhooks/liveperson`.
pub fn manifest(public_url: &str, options: &ManifestOptions) -> Value {
    let endpoint = format!("{}/webhooks/liveperson", public_url.trim_end_matches('/'));
    let mut webhooks = serde_json::Map::new();
    for kind in WEBHOOK_TYPES {
        let mut hook = json!({ "endpoint": endpoint });
        if let Some(n) = options.max_retries {
            hook["max_retries"] = json!(n.min(5));
        }
        webhooks.insert(kind.into(), hook);
    }
    webhooks.insert(
        "retry".into(),
        json!({ "retention_time": options.retention_time_secs.clamp(2, 259_200) }),
    );
    json!({
        "client_name": options.client_name,
        "description": options.description,
        "grant_types": ["client_credentials"],
        "scope": "msg.consumer",
        "capabilities": {
            "webhooks": webhooks,
            "engagement": options.engagement.clone().unwrap_or_else(default_engagement),
        },
    })
}
