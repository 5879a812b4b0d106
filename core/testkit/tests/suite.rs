//! The conformance suite catches what it claims to: a channel that breaks every rule is
//! reported rule by rule.

use std::sync::Arc;

use serde::Deserialize;
use switchboard_core::{
    Bytes, Capabilities, Channel, ChannelConfig, ChannelContext, ConsumerAddress, Delivered,
    DeliveryError, HttpRequest, HttpResponse, Inbound, InboundEvent, OutboundEvent, Secret,
    async_trait, http, http_util,
};
use switchboard_testkit::conformance::{self, Harness, PlatformFailure};

const TOKEN: &str = "sloppy-secret-token-123456";

/// Accepts anything, acknowledges before storing, logs its token, and shows it in `Debug`.
#[derive(Debug)]
struct Sloppy {
    #[allow(dead_code)] // Shown by the derived Debug, which is the point.
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SloppyConfig {
    token: Secret,
}

switchboard_core::register_channel! {
    kind: "testkit-sloppy",
    description: "breaks every rule of docs/channel-spec.md",
    build: |config: &ChannelConfig| {
        let c: SloppyConfig = config.parse()?;
        Ok(Arc::new(Sloppy { token: c.token.expose().to_owned() }) as Arc<dyn Channel>)
    },
}

#[async_trait]
impl Channel for Sloppy {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        tracing::debug!(token = %self.token, "request");
        let text = String::from_utf8_lossy(req.body()).into_owned();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let event = InboundEvent::new(ctx.consumer("someone"), Inbound::text(text));
            let _ = ctx.submit(vec![event]).await;
        });
        http_util::empty(http::StatusCode::OK)
    }

    async fn deliver(
        &self,
        _: &ConsumerAddress,
        _: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        Ok(Delivered::default())
    }
}

struct SloppyHarness;

fn request(body: &str, token: &str) -> HttpRequest {
    http::Request::builder()
        .method("POST")
        .uri("/in")
        .header("x-token", token)
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

#[async_trait]
impl Harness for SloppyHarness {
    fn config(&self) -> ChannelConfig {
        ChannelConfig::new(
            "sloppy",
            "testkit-sloppy",
            serde_json::json!({ "token": TOKEN }),
        )
    }
    fn secrets(&self) -> Vec<String> {
        vec![TOKEN.into()]
    }
    fn genuine(&self, _: u32, text: &str) -> HttpRequest {
        request(text, TOKEN)
    }
    fn genuine_with_body(&self, _: Bytes) -> Option<HttpRequest> {
        None
    }
    fn forged(&self, _: u32, text: &str) -> Option<HttpRequest> {
        Some(request(text, "wrong"))
    }
    fn consumer(&self, instance: &str) -> ConsumerAddress {
        ConsumerAddress::new(instance, "someone")
    }
    async fn fail_next_delivery(&self, _: PlatformFailure) -> bool {
        true
    }
}

#[tokio::test]
async fn a_channel_breaking_the_rules_is_reported_rule_by_rule() {
    let outcome = tokio::spawn(async { conformance::run(&SloppyHarness).await }).await;
    let panic = outcome
        .expect_err("the suite must fail this channel")
        .into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    for rule in [
        "2.1: a forged request got 200",
        "1.3: Debug output shows a secret",
        "2.3: the platform was answered before submit returned",
        "2.3: a failed submit was acknowledged",
        "2.4: an event has no platform_id",
        "3.3: delivery during Outage returned Ok",
        "3.3: delivery during Refusal returned Ok",
        "1.3: a secret (26 chars) appears in the logs",
    ] {
        assert!(message.contains(rule), "missing `{rule}` in:\n{message}");
    }
}
