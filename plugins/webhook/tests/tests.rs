//! Tests of the `webhook` channel: the conformance suite against the testkit's webhook
//! receiver, and signatures both ways.

use std::time::Duration;

use serde_json::json;
use switchboard_core::{
    Bytes, Channel, ChannelConfig, ConsumerAddress, DeliveryError, HttpRequest, Inbound, Outbound,
    OutboundEvent, Secret, async_trait, find_registration, http,
};
use switchboard_plugin_webhook::{SIGNATURE_HEADER, sign};
use switchboard_testkit::RecordingSink;
use switchboard_testkit::conformance::{self, Harness, PlatformFailure};
use switchboard_testkit::webhook_receiver::WebhookReceiver;

const SECRET: &str = "webhook-signing-secret-0123456789";
const CONSUMER: &str = "consumer-42";

fn config(receiver: &WebhookReceiver) -> ChannelConfig {
    ChannelConfig::new(
        "hooks",
        "webhook",
        json!({ "secret": SECRET, "outbound_url": receiver.url("/events") }),
    )
}

fn signed(body: Bytes, secret: &str) -> HttpRequest {
    http::Request::builder()
        .method("POST")
        .uri("/inbound")
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sign(&Secret::new(secret), &body))
        .body(body)
        .unwrap()
}

fn message(n: u32, text: &str) -> Bytes {
    let body = json!({ "id": format!("msg-{n}"), "from": CONSUMER, "text": text, "name": "Ada" });
    Bytes::from(body.to_string())
}

struct Conformance {
    receiver: WebhookReceiver,
}

#[async_trait]
impl Harness for Conformance {
    fn config(&self) -> ChannelConfig {
        config(&self.receiver)
    }
    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into()]
    }
    fn genuine(&self, n: u32, text: &str) -> HttpRequest {
        signed(message(n, text), SECRET)
    }
    fn genuine_with_body(&self, body: Bytes) -> Option<HttpRequest> {
        Some(signed(body, SECRET))
    }
    fn forged(&self, n: u32, text: &str) -> Option<HttpRequest> {
        Some(signed(message(n, text), "not-the-secret"))
    }
    fn consumer(&self, instance: &str) -> ConsumerAddress {
        ConsumerAddress::new(instance, CONSUMER)
    }
    async fn fail_next_delivery(&self, failure: PlatformFailure) -> bool {
        match failure {
            PlatformFailure::Outage => self.receiver.fail_next(503, None),
            PlatformFailure::Refusal => self.receiver.fail_next(400, None),
        }
        true
    }
}

#[tokio::test]
async fn the_webhook_channel_passes_the_conformance_suite() {
    let receiver = WebhookReceiver::start().await;
    conformance::run(&Conformance { receiver }).await;
}

fn build(receiver: &WebhookReceiver) -> std::sync::Arc<dyn Channel> {
    (find_registration("webhook").expect("linked").build)(&config(receiver)).unwrap()
}

#[tokio::test]
async fn a_signed_message_becomes_an_event_with_its_id_and_profile() {
    let receiver = WebhookReceiver::start().await;
    let channel = build(&receiver);
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context("hooks");
    let resp = channel
        .handle_http(signed(message(7, "Hello"), SECRET), &ctx)
        .await;
    assert_eq!(resp.status(), 204);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].consumer, ConsumerAddress::new("hooks", CONSUMER));
    assert_eq!(events[0].platform_id.as_deref(), Some("msg-7"));
    assert_eq!(events[0].body, Inbound::text("Hello"));
    let profile = events[0].profile.as_ref().unwrap();
    assert_eq!(profile.display_name.as_deref(), Some("Ada"));
}

#[tokio::test]
async fn agent_events_are_posted_signed_and_failures_are_classified() {
    let receiver = WebhookReceiver::start().await;
    let channel = build(&receiver);
    let to = ConsumerAddress::new("hooks", CONSUMER);
    let event = OutboundEvent::new("out-1", Outbound::text("Hi, how can I help?"));
    channel.deliver(&to, &event).await.unwrap();
    let got = receiver.received_at("/events");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json(),
        json!({ "id": "out-1", "to": CONSUMER, "type": "text", "text": "Hi, how can I help?" })
    );
    assert_eq!(
        got[0].header(SIGNATURE_HEADER),
        Some(sign(&Secret::new(SECRET), &got[0].body).as_str())
    );

    receiver.fail_next(429, Some(7));
    let err = channel.deliver(&to, &event).await.unwrap_err();
    assert_eq!(
        err,
        DeliveryError::retry_after(
            "the endpoint answered 429 Too Many Requests",
            Duration::from_secs(7)
        )
    );
    receiver.fail_next(404, None);
    assert!(matches!(
        channel.deliver(&to, &event).await.unwrap_err(),
        DeliveryError::Permanent { .. }
    ));
}

#[test]
fn configs_are_checked_offline() {
    let build = find_registration("webhook").unwrap().build;
    let bad_url = ChannelConfig::new(
        "hooks",
        "webhook",
        json!({ "secret": SECRET, "outbound_url": "ftp://x" }),
    );
    assert_eq!(
        build(&bad_url).unwrap_err().key,
        "channels.hooks.outbound_url"
    );
    let no_secret = ChannelConfig::new(
        "hooks",
        "webhook",
        json!({ "secret": "", "outbound_url": "https://x.example" }),
    );
    assert_eq!(build(&no_secret).unwrap_err().key, "channels.hooks.secret");
}
