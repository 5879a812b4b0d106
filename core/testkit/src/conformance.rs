//! The channel conformance suite: `docs/channel-spec.md`, checked.
//!
//! A channel's test implements [`Harness`] (how to build the channel against its platform
//! fake, what a genuine and a forged platform request look like, how to make the fake fail)
//! and calls [`run`] from a plain `#[tokio::test]` (current-thread runtime, so that the log
//! capture sees every task). The suite checks, rule by rule:
//!
//! | rule | check |
//! |---|---|
//! | 1.1 | an unknown key is a config error naming `channels.<instance>.<key>` |
//! | 1.3 | no secret in `Debug` output, responses, delivery errors or logs (TRACE) |
//! | 2.1 | a forged request is answered 401 with a JSON error and submits nothing |
//! | 2.3 | a genuine request is answered only after `submit` returned; a failed submit is never acknowledged |
//! | 2.4 | a platform retry of the same event carries the same `platform_id` |
//! | 2.5 | malformed bodies (bad JSON, invalid UTF-8, empty, huge) never panic nor get a 5xx |
//! | 3.1 | every `Outbound` kind is delivered, degraded or deliberately dropped, without error |
//! | 3.2 | a platform outage is `Retryable`, a platform refusal is `Permanent` |
//!
//! [`run`] panics with every broken rule listed, so one run shows all of them.

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::rich::{Button, ButtonAction, Card, RichContent};
use switchboard_core::{
    Attachment, AttachmentBody, Bytes, Channel, ChannelConfig, ChannelContext, ChatState, ClosedBy,
    ConfigError, ConsumerAddress, DeliveryError, HttpRequest, HttpResponse, Outbound,
    OutboundEvent, ReceiptStatus, async_trait, find_registration,
};

use crate::{LogCapture, RecordingSink};

/// How the platform fake should fail the next delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformFailure {
    /// The platform is down or overloaded (5xx, 429, connection refused): must be `Retryable`.
    Outage,
    /// The platform refuses the message for good (bad request, unknown chat, blocked): must be
    /// `Permanent`.
    Refusal,
}

/// What a channel's test tells the suite about the channel and its platform fake.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The channel config of the instance under test, pointing at the platform fake. Its kind
    /// must be registered (the channel crate linked into the test).
    fn config(&self) -> ChannelConfig;

    /// Every secret in that config (tokens, passwords, signing secrets).
    fn secrets(&self) -> Vec<String>;

    /// A genuine platform request carrying consumer message number `n` with `text`. Called
    /// twice with the same `n`, it is the platform's retry of the same event.
    fn genuine(&self, n: u32, text: &str) -> HttpRequest;

    /// A genuine, authenticated request whose payload is `body` as is, for the malformed-input
    /// checks; `None` when the platform's payload is not a body the suite can replace (a GET
    /// with query parameters).
    fn genuine_with_body(&self, body: Bytes) -> Option<HttpRequest>;

    /// `genuine(n, text)` with its authentication broken (a wrong signature, token or secret);
    /// `None` only for a channel whose platform does not authenticate (the demo web chat).
    fn forged(&self, n: u32, text: &str) -> Option<HttpRequest>;

    /// The consumer to deliver to: an address the platform fake accepts.
    fn consumer(&self, instance: &str) -> ConsumerAddress;

    /// Makes the platform fake fail the next delivery (all its calls until the next delivery
    /// attempt ends) as `failure` says. Returns `false` only for a channel with no remote
    /// platform that could fail (the demo web chat).
    async fn fail_next_delivery(&self, failure: PlatformFailure) -> bool;

    /// Builds the channel from a config (the harness's own, or one with an unknown key).
    /// The default uses the kind's registration, which the test must link; a dynamic plugin's
    /// harness builds through the plugin loader instead.
    fn build(&self, config: &ChannelConfig) -> Result<Arc<dyn Channel>, ConfigError> {
        let Some(registration) = find_registration(&config.kind) else {
            panic!(
                "kind `{}` is not registered: link the channel crate",
                config.kind
            );
        };
        (registration.build)(config)
    }
}

/// Builds the channel, starts it on a recording sink, and checks every rule. Panics listing
/// every rule broken.
pub async fn run<H: Harness>(harness: &H) {
    let logs = LogCapture::start();
    let mut failures: Vec<String> = Vec::new();
    let config = harness.config();
    let secrets = harness.secrets();
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let instance = config.instance.clone();

    // 1.1 Unknown keys are errors naming the key.
    let mut bad = config.clone();
    if let Some(map) = bad.settings.as_object_mut() {
        map.insert("definitely_not_a_key".into(), serde_json::json!(1));
    }
    match harness.build(&bad) {
        Ok(_) => failures.push("1.1: an unknown key was accepted".into()),
        Err(e) if !e.key.ends_with("definitely_not_a_key") => failures.push(format!(
            "1.1: the error for an unknown key names `{}`, not the key",
            e.key
        )),
        Err(_) => {}
    }

    let channel = match harness.build(&config) {
        Ok(channel) => channel,
        Err(e) => panic!("the harness config is invalid: {e}"),
    };
    // 1.3 Debug output.
    let debug = format!("{channel:?}");
    for s in secret_refs.iter().filter(|s| debug.contains(**s)) {
        failures.push(format!(
            "1.3: Debug output shows a secret ({} chars)",
            s.len()
        ));
    }

    let sink = RecordingSink::new();
    let (ctx, shutdown) = sink.context(&instance);
    let started = {
        let channel = channel.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move { channel.start(ctx).await })
    };
    // Give a channel's start (webhook registration, first poll) a moment on this thread.
    tokio::time::sleep(Duration::from_millis(50)).await;

    check_inbound(harness, &channel, &ctx, &sink, &secret_refs, &mut failures).await;
    check_outbound(harness, &channel, &instance, &secret_refs, &mut failures).await;

    let _ = shutdown.send(true);
    channel.shutdown().await;
    match tokio::time::timeout(Duration::from_secs(10), started).await {
        Ok(Ok(Err(e))) => failures.push(format!("5.1: start failed: {e}")),
        Ok(Err(e)) => failures.push(format!("5.3: start panicked: {e}")),
        Err(_) => failures.push("5.1: start did not return after shutdown".into()),
        Ok(Ok(Ok(()))) => {}
    }

    // 1.3 Logs, last, so every path above has logged.
    for s in logs.leaked(&secret_refs) {
        failures.push(format!(
            "1.3: a secret ({} chars) appears in the logs",
            s.len()
        ));
    }
    drop(logs);
    assert!(
        failures.is_empty(),
        "channel kind `{}` breaks docs/channel-spec.md:\n  {}",
        config.kind,
        failures.join("\n  ")
    );
}

async fn call(
    channel: &Arc<dyn Channel>,
    ctx: &ChannelContext,
    req: HttpRequest,
) -> Result<HttpResponse, String> {
    let channel = channel.clone();
    let ctx = ctx.clone();
    // On its own task so that a panic is reported as a broken rule, not a crashed suite.
    tokio::spawn(async move { channel.handle_http(req, &ctx).await })
        .await
        .map_err(|e| format!("panicked: {e}"))
}

fn is_json_error(resp: &HttpResponse) -> bool {
    serde_json::from_slice::<serde_json::Value>(resp.body())
        .ok()
        .and_then(|v| v.get("error").cloned())
        .is_some_and(|e| e.get("code").is_some() && e.get("message").is_some())
}

fn shows_secret(resp: &HttpResponse, secrets: &[&str]) -> bool {
    let body = String::from_utf8_lossy(resp.body());
    let headers = format!("{:?}", resp.headers());
    secrets
        .iter()
        .any(|s| body.contains(s) || headers.contains(s))
}

async fn check_inbound<H: Harness>(
    harness: &H,
    channel: &Arc<dyn Channel>,
    ctx: &ChannelContext,
    sink: &Arc<RecordingSink>,
    secrets: &[&str],
    failures: &mut Vec<String>,
) {
    // 2.1 Forged requests.
    match harness.forged(1, "forged hello") {
        None => {}
        Some(forged) => match call(channel, ctx, forged).await {
            Err(e) => failures.push(format!("2.1: a forged request {e}")),
            Ok(resp) => {
                if resp.status() != 401 {
                    failures.push(format!("2.1: a forged request got {}", resp.status()));
                } else if !is_json_error(&resp) {
                    failures.push("2.1: the 401 has no JSON error body".into());
                }
                if shows_secret(&resp, secrets) {
                    failures.push("1.3: the 401 response shows a secret".into());
                }
            }
        },
    }
    if !sink.events().is_empty() {
        failures.push("2.1: a forged request submitted events".into());
    }

    // 2.3 Acknowledge only after submit: hold the submit, the answer must wait for it.
    sink.set_holding(true);
    let pending = {
        let channel = channel.clone();
        let ctx = ctx.clone();
        let req = harness.genuine(2, "Hello, Grüße 👋");
        tokio::spawn(async move { channel.handle_http(req, &ctx).await })
    };
    let entered = tokio::time::timeout(Duration::from_secs(10), sink.submit_started()).await;
    if entered.is_err() {
        failures.push("2.3: a genuine request never reached submit".into());
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if pending.is_finished() {
            failures.push("2.3: the platform was answered before submit returned".into());
        }
    }
    sink.release();
    match pending.await {
        Err(e) => failures.push(format!("2.3: a genuine request panicked: {e}")),
        Ok(resp) if !resp.status().is_success() => failures.push(format!(
            "2.3: a genuine request got {} after a successful submit",
            resp.status()
        )),
        Ok(_) => {}
    }
    let first = sink.events();
    if first.is_empty() {
        failures.push("2.3: a genuine request submitted nothing".into());
    }

    // 2.4 A retry carries the same platform id.
    match call(channel, ctx, harness.genuine(2, "Hello, Grüße 👋")).await {
        Err(e) => failures.push(format!("2.4: a retried request {e}")),
        Ok(resp) if !resp.status().is_success() => {
            failures.push(format!("2.4: a retried request got {}", resp.status()))
        }
        Ok(_) => {
            let all = sink.events();
            let ids: Vec<_> = all.iter().map(|e| e.platform_id.clone()).collect();
            let (a, b) = ids.split_at(first.len());
            if a.iter().any(Option::is_none) {
                failures.push("2.4: an event has no platform_id".into());
            } else if a != b {
                failures.push(format!(
                    "2.4: a retry has other platform ids: {a:?} then {b:?}"
                ));
            }
        }
    }

    // 2.3 A failed submit is never acknowledged.
    sink.set_failing(true);
    match call(channel, ctx, harness.genuine(3, "while the store is down")).await {
        Err(e) => failures.push(format!("2.3: a request during a store failure {e}")),
        Ok(resp) if resp.status().is_success() => {
            failures.push("2.3: a failed submit was acknowledged with success".into())
        }
        Ok(_) => {}
    }
    sink.set_failing(false);

    // 2.5 Malformed bodies.
    let huge = Bytes::from(vec![b'{'; 2 << 20]);
    let bodies: [(&str, Bytes); 7] = [
        ("empty", Bytes::new()),
        ("not JSON", Bytes::from_static(b"this is not json")),
        (
            "invalid UTF-8",
            Bytes::from_static(&[0x7b, 0xff, 0xfe, 0x7d]),
        ),
        ("JSON null", Bytes::from_static(b"null")),
        (
            "wrong types",
            Bytes::from_static(b"{\"type\":42,\"event\":[1,2]}"),
        ),
        (
            "unknown type",
            Bytes::from_static(b"{\"type\":\"from_the_future\"}"),
        ),
        ("2 MiB", huge),
    ];
    for (what, body) in bodies {
        let Some(req) = harness.genuine_with_body(body) else {
            break;
        };
        match call(channel, ctx, req).await {
            Err(e) => failures.push(format!("2.5: a {what} body {e}")),
            Ok(resp) if resp.status().is_server_error() => {
                failures.push(format!("2.5: a {what} body got {}", resp.status()))
            }
            Ok(resp) if shows_secret(&resp, secrets) => {
                failures.push(format!("1.3: the answer to a {what} body shows a secret"))
            }
            Ok(_) => {}
        }
    }
}

/// One event of every outbound kind.
pub fn every_outbound_kind() -> Vec<OutboundEvent> {
    let reply = |id: &str, title: &str| Button {
        id: id.into(),
        title: title.into(),
        action: ButtonAction::Reply,
    };
    let link = Button {
        id: "site".into(),
        title: "Open the site".into(),
        action: ButtonAction::Link {
            url: "https://example.com/order/1".into(),
        },
    };
    let card = Card {
        title: Some("Order #1".into()),
        lines: vec!["Two items".into(), "Arrives Tuesday".into()],
        image_url: Some("https://example.com/box.png".into()),
        buttons: vec![reply("track", "Track"), link],
    };
    let png = Bytes::from_static(&[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0, 0, 0]);
    let bodies = vec![
        Outbound::text("Hello from the agent, Grüße 👋"),
        Outbound::Rich {
            content: RichContent::with_quick_replies(
                "Did that help?",
                vec![reply("yes", "Yes"), reply("no", "No")],
            ),
        },
        Outbound::Rich {
            content: RichContent {
                text: "Your order".into(),
                cards: vec![card],
                quick_replies: Vec::new(),
            },
        },
        Outbound::File {
            file: Attachment {
                name: Some("box.png".into()),
                mime: "image/png".into(),
                caption: Some("The box".into()),
                body: AttachmentBody::Url {
                    url: "https://example.com/box.png".into(),
                },
            },
        },
        Outbound::File {
            file: Attachment {
                name: Some("tiny.png".into()),
                mime: "image/png".into(),
                caption: None,
                body: AttachmentBody::Inline { data: png },
            },
        },
        Outbound::ChatState {
            state: ChatState::Composing,
        },
        Outbound::ChatState {
            state: ChatState::Paused,
        },
        Outbound::Receipt {
            status: ReceiptStatus::Read,
            messages: vec!["m-1".into()],
        },
        Outbound::Transferred {
            skill: Some("billing".into()),
        },
        Outbound::SurveyQuestion {
            question: RichContent::with_quick_replies(
                "How satisfied were you?",
                (1..=5)
                    .map(|n| reply(&n.to_string(), &n.to_string()))
                    .collect(),
            ),
        },
        Outbound::Closed {
            by: ClosedBy::Agent,
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| OutboundEvent::new(format!("conf-{i}"), body))
        .collect()
}

async fn deliver(
    channel: &Arc<dyn Channel>,
    to: &ConsumerAddress,
    event: &OutboundEvent,
) -> Result<Result<(), DeliveryError>, String> {
    let channel = channel.clone();
    let to = to.clone();
    let event = event.clone();
    tokio::spawn(async move { channel.deliver(&to, &event).await.map(|_| ()) })
        .await
        .map_err(|e| format!("panicked: {e}"))
}

async fn check_outbound<H: Harness>(
    harness: &H,
    channel: &Arc<dyn Channel>,
    instance: &str,
    secrets: &[&str],
    failures: &mut Vec<String>,
) {
    let to = harness.consumer(instance);
    // 3.1 Every kind.
    for event in every_outbound_kind() {
        match deliver(channel, &to, &event).await {
            Err(e) => failures.push(format!("3.1: delivering {} {e}", event.body.kind())),
            Ok(Err(e)) => {
                failures.push(format!("3.1: delivering {} failed: {e}", event.body.kind()))
            }
            Ok(Ok(())) => {}
        }
    }
    // 3.2 Classification.
    for (failure, n) in [
        (PlatformFailure::Outage, 90),
        (PlatformFailure::Refusal, 91),
    ] {
        if !harness.fail_next_delivery(failure).await {
            break;
        }
        let event =
            OutboundEvent::new(format!("conf-{n}"), Outbound::text("to a failing platform"));
        match deliver(channel, &to, &event).await {
            Err(e) => failures.push(format!("3.2: delivering during {failure:?} {e}")),
            Ok(Ok(())) => failures.push(format!("3.3: delivery during {failure:?} returned Ok")),
            Ok(Err(e)) => {
                let right = match failure {
                    PlatformFailure::Outage => matches!(e, DeliveryError::Retryable { .. }),
                    PlatformFailure::Refusal => matches!(e, DeliveryError::Permanent { .. }),
                };
                if !right {
                    failures.push(format!("3.2: {failure:?} was classified as {e}"));
                }
                let text = format!("{e} {e:?}");
                if secrets.iter().any(|s| text.contains(s)) {
                    failures.push("1.3: a delivery error shows a secret".into());
                }
            }
        }
    }
}
