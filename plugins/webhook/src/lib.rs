//! `webhook`: a generic HTTP webhook channel, written as a third-party crate that depends only
//! on `switchboard-core` and becomes a channel kind once it is linked into a binary (see
//! `examples/01-brand-binary`).
//!
//! - Inbound: the platform POSTs `{"id", "from", "text", "name"?}` to
//!   `/channels/{instance}/inbound`, signed with
//!   `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with secret>`.
//!   The signature is checked before the body is parsed; the answer is 204 once the message
//!   is durably accepted.
//! - Outbound: each agent event is POSTed as `{"id", "to", "type", "text"}` to `outbound_url`,
//!   signed the same way. 2xx is delivered; 429 and 5xx are retried (honouring
//!   `Retry-After`); any other status is a permanent refusal.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ConsumerAddress, ConsumerProfile,
    Delivered, DeliveryError, HttpRequest, HttpResponse, Inbound, InboundEvent, OutboundEvent,
    Secret, async_trait, http,
};

/// The header carrying the body's signature, both ways.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// `[channels.<instance>]` keys of kind `webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The HMAC-SHA256 key that signs requests in both directions.
    pub secret: Secret,
    /// Where agent events are POSTed (`http://` or `https://`).
    pub outbound_url: String,
    /// How long one outbound POST may take, in seconds. Default 10.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

/// A consumer's message, as the platform POSTs it. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct Message {
    id: String,
    from: String,
    text: String,
    #[serde(default)]
    name: Option<String>,
}

/// An agent event, as this channel POSTs it.
#[derive(Debug, Serialize)]
struct Outgoing<'a> {
    id: &'a str,
    to: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    text: &'a str,
}

/// The `webhook` channel.
#[derive(Debug)]
pub struct WebhookChannel {
    config: WebhookConfig,
    http: reqwest::Client,
}

switchboard_core::register_channel! {
    kind: "webhook",
    description: "Generic HMAC-signed HTTP webhook (static plugin example)",
    build: |config: &ChannelConfig| Ok(Arc::new(WebhookChannel::new(config)?) as Arc<dyn Channel>),
}

/// `sha256=<hex>` of `body` keyed with `secret`: the value of [`SIGNATURE_HEADER`].
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a presented signature in constant time.
fn verify(secret: &Secret, body: &[u8], presented: Option<&str>) -> bool {
    let Some(hex_mac) = presented.and_then(|p| p.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(bytes) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    !secret.is_empty() && mac.verify_slice(&bytes).is_ok()
}

impl WebhookChannel {
    /// Builds the channel from its config, offline.
    pub fn new(config: &ChannelConfig) -> Result<Self, switchboard_core::ConfigError> {
        let settings: WebhookConfig = config.parse()?;
        if settings.secret.is_empty() {
            return Err(config.error("secret", "must not be empty"));
        }
        if !(settings.outbound_url.starts_with("http://")
            || settings.outbound_url.starts_with("https://"))
        {
            return Err(config.error("outbound_url", "must be an http:// or https:// URL"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .build()
            .map_err(|e| config.error("outbound_url", e.to_string()))?;
        Ok(Self {
            config: settings,
            http,
        })
    }
}

#[async_trait]
impl Channel for WebhookChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        if req.uri().path() != "/inbound" {
            return json_error(http::StatusCode::NOT_FOUND, "not_found", "POST /inbound");
        }
        let presented = http_util::header_str(&req, SIGNATURE_HEADER);
        if !verify(&self.config.secret, req.body(), presented) {
            return json_error(
                http::StatusCode::UNAUTHORIZED,
                "bad_signature",
                "missing or wrong X-Switchboard-Signature",
            );
        }
        if req.method() != http::Method::POST {
            return json_error(http::StatusCode::METHOD_NOT_ALLOWED, "method", "POST only");
        }
        let message: Message = match serde_json::from_slice(req.body()) {
            Ok(message) => message,
            Err(e) => {
                return json_error(http::StatusCode::BAD_REQUEST, "bad_request", &e.to_string());
            }
        };
        if message.text.trim().is_empty() {
            return json_error(
                http::StatusCode::BAD_REQUEST,
                "bad_request",
                "`text` is empty",
            );
        }
        let mut event = InboundEvent::new(ctx.consumer(message.from), Inbound::text(message.text))
            .with_platform_id(message.id);
        if let Some(name) = message.name {
            event = event.with_profile(ConsumerProfile {
                display_name: Some(name),
                ..ConsumerProfile::default()
            });
        }
        match ctx.submit(vec![event]).await {
            Ok(()) => http_util::empty(http::StatusCode::NO_CONTENT),
            Err(e) => http_util::submit_failed(&e),
        }
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        // Typing and receipts have no text form: a webhook consumer has nothing to show.
        let Some(text) = event.body.to_plain_text() else {
            return Ok(Delivered::default());
        };
        let body = serde_json::to_vec(&Outgoing {
            id: event.id.as_str(),
            to: &to.id,
            kind: event.body.kind(),
            text: &text,
        })
        .map_err(|e| DeliveryError::permanent(e.to_string()))?;
        let resp = self
            .http
            .post(&self.config.outbound_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(&self.config.secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::retryable(format!("POST failed: {}", e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(Delivered::default());
        }
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            let after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                .map(Duration::from_secs);
            let reason = format!("the endpoint answered {status}");
            return Err(match after {
                Some(after) => DeliveryError::retry_after(reason, after),
                None => DeliveryError::retryable(reason),
            });
        }
        Err(DeliveryError::permanent(format!(
            "the endpoint refused the event: {status}"
        )))
    }
}
