//! `relay`: a dynamic Switchboard plugin. A consumer's messages arrive as `POST /messages`
//! (`{"id","from","text"}`) with a bearer token; agent messages leave as JSON POSTs
//! (`{"id","to","text"}`) to `deliver_url` with the same token, sent with reqwest on the
//! plugin's own tokio runtime. Walked through in `docs/writing-a-channel.md`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ConsumerAddress, Delivered,
    DeliveryError, HttpRequest, HttpResponse, Inbound, InboundEvent, OutboundEvent, Secret,
    async_trait, http,
};

/// `[channels.<instance>]` keys of kind `relay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The bearer token both directions carry.
    pub token: Secret,
    /// Where agent messages are POSTed.
    pub deliver_url: String,
}

/// A consumer's message, as the platform POSTs it.
#[derive(Deserialize)]
struct Message {
    id: String,
    from: String,
    text: String,
}

/// An agent's message, as the relay POSTs it.
#[derive(Serialize)]
struct Delivery<'a> {
    id: &'a str,
    to: &'a str,
    text: &'a str,
}

/// The `relay` channel.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    http: reqwest::Client,
}

switchboard_core::export_plugin! {
    kind: "relay",
    description: "Relays messages to and from an HTTP endpoint (dynamic plugin example)",
    build: |config: &ChannelConfig| {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build();
        let http = http.map_err(|e| config.error("deliver_url", e.to_string()))?;
        Ok(Arc::new(Relay { config: config.parse()?, http }) as Arc<dyn Channel>)
    },
}

#[async_trait]
impl Channel for Relay {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let auth = http_util::header_str(&req, "authorization").unwrap_or("");
        let token = auth.strip_prefix("Bearer ").unwrap_or("");
        if !self.config.token.matches(token.as_bytes()) {
            return json_error(http::StatusCode::UNAUTHORIZED, "unauthorized", "bad token");
        }
        let message: Message = match serde_json::from_slice(req.body()) {
            Ok(message) => message,
            Err(e) => {
                return json_error(http::StatusCode::BAD_REQUEST, "bad_request", &e.to_string());
            }
        };
        let event = InboundEvent::new(ctx.consumer(message.from), Inbound::text(message.text))
            .with_platform_id(message.id);
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
        let Some(text) = event.body.to_plain_text() else {
            return Ok(Delivered::default()); // typing and receipts: nothing to relay
        };
        let body = Delivery {
            id: event.id.as_str(),
            to: &to.id,
            text: &text,
        };
        let sent = self
            .http
            .post(&self.config.deliver_url)
            .bearer_auth(self.config.token.expose());
        let resp = sent.json(&body).send().await.map_err(|e| {
            DeliveryError::retryable(format!("cannot reach the endpoint: {}", e.without_url()))
        })?;
        match resp.status() {
            s if s.is_success() => Ok(Delivered::default()),
            s if s.is_server_error() || s == 429 => Err(DeliveryError::retryable(s.to_string())),
            s => Err(DeliveryError::permanent(format!(
                "the endpoint refused it: {s}"
            ))),
        }
    }
}
