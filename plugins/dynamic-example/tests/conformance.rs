//! The relay plugin under the conformance suite, loaded through the real loader and called
//! through the C boundary.

use std::sync::Arc;

use serde_json::json;
use switchboard::plugins::{self, CallOptions, DynamicPlugin};
use switchboard_core::{
    Bytes, Channel, ChannelConfig, ConfigError, ConsumerAddress, HttpRequest, async_trait, http,
};
use switchboard_testkit::conformance::{self, Harness, PlatformFailure};
use switchboard_testkit::plugin_library;
use switchboard_testkit::webhook_receiver::WebhookReceiver;

/// The bearer token the tests configure, and the platform presents.
pub(crate) const TOKEN: &str = "relay-bearer-token-0123456789";

/// The plugin, loaded once per process: this crate's own cdylib, which cargo builds before
/// the tests run (the crate's `rlib` crate type is what makes it do so).
pub(crate) fn relay() -> &'static DynamicPlugin {
    let library = plugin_library("switchboard-plugin-dynamic-example");
    plugins::load(&library, None).expect("the relay plugin loads")
}

/// The plugin's platform is any HTTP endpoint: the testkit's webhook receiver plays it.
pub(crate) struct RelayHarness {
    pub(crate) receiver: WebhookReceiver,
}

fn request(n: u32, text: &str, token: &str) -> HttpRequest {
    let body = json!({ "id": format!("m-{n}"), "from": "c-1", "text": text });
    with_body(Bytes::from(body.to_string()), token)
}

fn with_body(body: Bytes, token: &str) -> HttpRequest {
    http::Request::post("/messages")
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .unwrap()
}

#[async_trait]
impl Harness for RelayHarness {
    fn config(&self) -> ChannelConfig {
        let deliver_url = self.receiver.url("/deliver");
        let settings = json!({ "token": TOKEN, "deliver_url": deliver_url });
        ChannelConfig::new("relay-1", "relay", settings)
    }
    fn secrets(&self) -> Vec<String> {
        vec![TOKEN.into()]
    }
    fn genuine(&self, n: u32, text: &str) -> HttpRequest {
        request(n, text, TOKEN)
    }
    fn genuine_with_body(&self, body: Bytes) -> Option<HttpRequest> {
        Some(with_body(body, TOKEN))
    }
    fn forged(&self, n: u32, text: &str) -> Option<HttpRequest> {
        Some(request(n, text, "not-the-token"))
    }
    fn consumer(&self, instance: &str) -> ConsumerAddress {
        ConsumerAddress::new(instance, "c-1")
    }
    async fn fail_next_delivery(&self, failure: PlatformFailure) -> bool {
        match failure {
            PlatformFailure::Outage => self.receiver.fail_next(502, None),
            PlatformFailure::Refusal => self.receiver.fail_next(403, None),
        }
        true
    }
    /// Through the loader, not a linked registration: the channel lives in the library.
    fn build(&self, config: &ChannelConfig) -> Result<Arc<dyn Channel>, ConfigError> {
        Ok(Arc::new(relay().build(config, CallOptions::default())?))
    }
}

#[tokio::test]
async fn the_relay_plugin_passes_the_conformance_suite_through_the_loader() {
    let receiver = WebhookReceiver::start().await;
    conformance::run(&RelayHarness { receiver }).await;
}
