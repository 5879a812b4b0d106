//! The App Install Manifest a brand registers with LivePerson for this deployment (docs/protocol/liveperson.md §7.1).

use serde_json::{Value, json};

/// The five notification types a connector subscribes to.
pub const WEBHOOK_TYPES: [&str; 5] = [
    "ms.MessagingEventNotification.ContentEvent",
    "ms.MessagingEventNotification.RichContentEvent",
    "ms.MessagingEventNotification.AcceptStatusEvent",
    "ms.MessagingEventNotification.ChatStateEvent",
    "cqm.ExConversationChangeNotification",
];

/// `logo_uri` of LivePerson's manifest template (the icon Conversational Cloud shows for a
/// connector app).
pub const DEFAULT_LOGO_URI: &str = "/src/modules/campaigns/assets/img/software/Mobile-App.png";

/// What goes into the manifest besides the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// `client_name`: shown to agents as the conversation's source.
    pub client_name: String,
    /// `description`.
    pub description: String,
    /// `logo_uri`; [`DEFAULT_LOGO_URI`] by default.
    pub logo_uri: String,
    /// `retry.retention_time` in seconds (2 … 259200): TTL retries keep per-conversation
    /// order, which count-based retries do not (docs/protocol/liveperson.md §7.5).
    pub retention_time_secs: u32,
    /// `max_retries` on each webhook (0 … 5), used when LivePerson retries by count.
    pub max_retries: Option<u8>,
    /// Keys replacing those of [`default_engagement`] in `capabilities.engagement` (a whole
    /// object; keys it does not name keep their defaults).
    pub engagement: Option<Value>,
}

/// The engagement block of LivePerson's manifest template, with its full lists: 10
/// `visitor_behavior` values, 16 `target_audience` values and 5 `goal` values, as the
/// Connector API's getting-started page prints them ("Without a clear reason to change them,
/// you can use the default values found in the schema"; developer-center
/// `pages/Documents/MessagingChannels/ConnectorAPI/getting-started.md`, "Conversational Cloud
/// Application Manifest Schema - Example Using the Connector API"). The demo connector's app
/// form uses the same lists (LivePersonInc/lp-demo-app-connector-api,
/// `web/app/components/lp-app-installations/lp-app-installations/lp-app-installations.component.ts`),
/// with `entry_point` `["url", "section"]` where the page has `["section"]`; the page wins.
pub fn default_engagement() -> Value {
    json!({
        "design_engagement": false,
        "design_window": false,
        "entry_point": ["section"],
        "visitor_behavior": [
            "visited_location", "time_on_location", "flow", "engaged_in_session",
            "about_to_abandon", "cart_value", "cart_items", "visitor_error", "viewed_products",
            "service_activity",
        ],
        "target_audience": [
            "external_referral", "search_keywords", "ip", "platform", "geo_location",
            "returning_visitors", "marketing_source", "customer_type", "age", "balance",
            "customer_id", "gender", "store_zip_code", "store_number", "company_size",
            "registration_date",
        ],
        "goal": ["url", "purchase_total", "num_of_pages", "lead", "service_activity"],
        "consumer_identity": ["auth"],
        "language_selection": false,
    })
}

/// [`default_engagement`] with the keys of `overrides` replacing its own (a non-object
/// override replaces nothing).
fn engagement(overrides: Option<&Value>) -> Value {
    let mut block = default_engagement();
    if let (Some(Value::Object(overrides)), Value::Object(block)) = (overrides, &mut block) {
        for (key, value) in overrides {
            block.insert(key.clone(), value.clone());
        }
    }
    block
}

impl Default for ManifestOptions {
    fn default() -> Self {
        Self {
            client_name: "Switchboard".into(),
            description: "Switchboard connector (SMS, Slack, Telegram and more)".into(),
            logo_uri: DEFAULT_LOGO_URI.into(),
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
        "logo_uri": options.logo_uri,
        "capabilities": {
            "webhooks": webhooks,
            "engagement": engagement(options.engagement.as_ref()),
        },
    })
}
