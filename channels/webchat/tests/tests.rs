//! The webchat channel through its HTTP surface, with a recording sink.

mod shapes;

// Linked for its `inventory` registration, found by kind below.
extern crate switchboard_channel_webchat;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::{
    Bytes, ChannelConfig, ChannelContext, EventSink, Inbound, InboundEvent, Outbound,
    OutboundEvent, SubmitError, async_trait, find_registration, http,
};

#[derive(Debug, Default)]
struct Sink(Mutex<Vec<InboundEvent>>);

#[async_trait]
impl EventSink for Sink {
    async fn submit(&self, _instance: &str, events: Vec<InboundEvent>) -> Result<(), SubmitError> {
        self.0.lock().unwrap().extend(events);
        Ok(())
    }
    async fn load_state(&self, _: &str, _: &str) -> Result<Option<String>, SubmitError> {
        Ok(None)
    }
    async fn save_state(&self, _: &str, _: &str, _: &str) -> Result<(), SubmitError> {
        Ok(())
    }
}

fn request(method: &str, uri: &str, body: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

fn setup() -> (
    Arc<dyn switchboard_core::Channel>,
    ChannelContext,
    Arc<Sink>,
) {
    let reg = find_registration("webchat").expect("registered");
    let channel = (reg.build)(&ChannelConfig::new(
        "web",
        "webchat",
        serde_json::json!({ "poll_secs": 1 }),
    ))
    .unwrap();
    let sink = Arc::new(Sink::default());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(_tx);
    let ctx = ChannelContext::new("web", sink.clone(), rx);
    (channel, ctx, sink)
}

const SESSION: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

#[tokio::test]
async fn messages_are_submitted_and_bad_input_is_refused_with_json() {
    let (channel, ctx, sink) = setup();
    let body = format!(r#"{{"session":"{SESSION}","id":"msg-00000001","text":" hi there "}}"#);
    let response = channel
        .handle_http(request("POST", "/messages", &body), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    let events = sink.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].consumer.id, SESSION);
    assert_eq!(events[0].platform_id.as_deref(), Some("msg-00000001"));
    assert_eq!(events[0].body, Inbound::text("hi there"));
    for bad in [
        "not json".to_owned(),
        r#"{"session":"short","id":"msg-00000001","text":"x"}"#.to_owned(),
        format!(r#"{{"session":"{SESSION}","id":"msg-00000001","text":"   "}}"#),
        format!(
            r#"{{"session":"{SESSION}","id":"msg-00000001","text":"{}"}}"#,
            "x".repeat(4001)
        ),
    ] {
        let response = channel
            .handle_http(request("POST", "/messages", &bad), &ctx)
            .await;
        assert_eq!(response.status(), 400, "{bad}");
        let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(json["error"]["code"], "bad_request");
    }
    assert_eq!(sink.0.lock().unwrap().len(), 1, "nothing half-applied");
    let response = channel
        .handle_http(request("DELETE", "/messages", ""), &ctx)
        .await;
    assert_eq!(response.status(), 405);
    let response = channel.handle_http(request("GET", "/", ""), &ctx).await;
    assert_eq!(response.status(), 200);
    assert!(
        String::from_utf8_lossy(response.body()).contains("<title>Switchboard web chat</title>")
    );
}

#[tokio::test]
async fn delivered_events_reach_a_waiting_browser() {
    let (channel, ctx, _sink) = setup();
    let poll = {
        let channel = channel.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            channel
                .handle_http(
                    request("GET", &format!("/events?session={SESSION}&after=0"), ""),
                    &ctx,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let to = ctx.consumer(SESSION);
    channel
        .deliver(
            &to,
            &OutboundEvent::new("lp:c:c:3", Outbound::text("hello from the agent")),
        )
        .await
        .unwrap();
    let response = poll.await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(json["events"][0]["n"], 1);
    assert_eq!(
        json["events"][0]["event"]["body"]["text"],
        "hello from the agent"
    );
    assert_eq!(json["events"][0]["event"]["id"], "lp:c:c:3");
    // Nothing newer: an empty answer after the poll time.
    let response = channel
        .handle_http(
            request("GET", &format!("/events?session={SESSION}&after=1"), ""),
            &ctx,
        )
        .await;
    let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(json["events"], serde_json::json!([]));
}

#[tokio::test]
async fn choices_and_typing_become_events() {
    let (channel, ctx, sink) = setup();
    let body = format!(
        r#"{{"session":"{SESSION}","id":"choice-0001","message":"lp:c:c:3","choice":"b0"}}"#
    );
    assert_eq!(
        channel
            .handle_http(request("POST", "/choices", &body), &ctx)
            .await
            .status(),
        200
    );
    let body = format!(r#"{{"session":"{SESSION}","typing":true}}"#);
    assert_eq!(
        channel
            .handle_http(request("POST", "/typing", &body), &ctx)
            .await
            .status(),
        200
    );
    let events = sink.0.lock().unwrap().clone();
    assert!(matches!(&events[0].body, Inbound::Choice { choice, .. } if choice == "b0"));
    assert!(matches!(events[1].body, Inbound::ChatState { .. }));
}

async fn events_after(
    channel: &Arc<dyn switchboard_core::Channel>,
    ctx: &ChannelContext,
    after: u64,
) -> serde_json::Value {
    let response = channel
        .handle_http(
            request(
                "GET",
                &format!("/events?session={SESSION}&after={after}"),
                "",
            ),
            ctx,
        )
        .await;
    assert_eq!(response.status(), 200);
    serde_json::from_slice(response.body()).unwrap()
}

/// What a page that reloads asks for (`after=0`) is the whole conversation: the consumer's
/// messages and choices (with the button's title) between the agent's events, in order.
#[tokio::test]
async fn a_reloaded_page_gets_both_sides_of_the_conversation_in_order() {
    use switchboard_core::{Button, ButtonAction, RichContent};
    let (channel, ctx, _sink) = setup();
    let body = format!(r#"{{"session":"{SESSION}","id":"msg-00000001","text":"hello"}}"#);
    let posted = channel
        .handle_http(request("POST", "/messages", &body), &ctx)
        .await;
    assert_eq!(posted.status(), 200);
    // The page sends it again (a lost answer): shown once.
    channel
        .handle_http(request("POST", "/messages", &body), &ctx)
        .await;
    let to = ctx.consumer(SESSION);
    let question = RichContent::with_quick_replies(
        "Did that help?",
        vec![Button {
            id: "b0".into(),
            title: "Yes thanks".into(),
            action: ButtonAction::Reply,
        }],
    );
    channel
        .deliver(
            &to,
            &OutboundEvent::new("lp:c:c:4", Outbound::Rich { content: question }),
        )
        .await
        .unwrap();
    let body = format!(
        r#"{{"session":"{SESSION}","id":"choice-0001","message":"lp:c:c:4","choice":"b0"}}"#
    );
    channel
        .handle_http(request("POST", "/choices", &body), &ctx)
        .await;
    let all = events_after(&channel, &ctx, 0).await;
    let entries = all["events"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{all}");
    assert_eq!(entries[0]["consumer"]["text"], "hello");
    assert_eq!(entries[0]["consumer"]["id"], "msg-00000001");
    assert_eq!(entries[1]["event"]["id"], "lp:c:c:4");
    assert_eq!(entries[2]["consumer"]["text"], "Yes thanks");
    assert_eq!(entries[2]["consumer"]["choice"]["message"], "lp:c:c:4");
    assert_eq!(entries[2]["consumer"]["choice"]["id"], "b0");
    // A message the store refused is not shown as sent.
    let refused = format!(r#"{{"session":"{SESSION}","id":"msg-00000002","text":"   "}}"#);
    channel
        .handle_http(request("POST", "/messages", &refused), &ctx)
        .await;
    assert_eq!(
        events_after(&channel, &ctx, 0).await["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// An agent's `javascript:` (or any other non-web) link never reaches the page; web, phone
/// and mail links do.
#[tokio::test]
async fn agent_links_reach_the_page_only_for_web_phone_and_mail() {
    use switchboard_core::{Button, ButtonAction, Card, RichContent};
    let (channel, ctx, _sink) = setup();
    let link = |id: &str, url: &str| Button {
        id: id.into(),
        title: id.into(),
        action: ButtonAction::Link { url: url.into() },
    };
    let content = RichContent {
        text: "links".into(),
        cards: vec![Card {
            title: Some("card".into()),
            lines: Vec::new(),
            image_url: Some("javascript:alert(1)".into()),
            buttons: vec![
                link("web", "https://example.com/"),
                link("js", "javascript:alert(document.cookie)"),
                link("JS", "JaVaScRiPt:alert(1)"),
                link("data", "data:text/html,<script>alert(1)</script>"),
                link("tel", "tel:+15551234567"),
            ],
        }],
        quick_replies: vec![
            link("mail", "mailto:help@example.com"),
            link("vb", "vbscript:x"),
        ],
    };
    channel
        .deliver(
            &ctx.consumer(SESSION),
            &OutboundEvent::new("lp:c:c:5", Outbound::Rich { content }),
        )
        .await
        .unwrap();
    let all = events_after(&channel, &ctx, 0).await;
    let content = &all["events"][0]["event"]["body"]["content"];
    let ids = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&content["cards"][0]["buttons"]), ["web", "tel"]);
    assert_eq!(ids(&content["quick_replies"]), ["mail"]);
    assert!(content["cards"][0].get("image_url").is_none(), "{content}");
    assert!(!all.to_string().to_lowercase().contains("script:"), "{all}");
}

#[tokio::test]
async fn the_page_has_an_icon() {
    let (channel, ctx, _sink) = setup();
    let page = channel.handle_http(request("GET", "/", ""), &ctx).await;
    assert!(String::from_utf8_lossy(page.body()).contains("favicon.svg"));
    let icon = channel
        .handle_http(request("GET", "/favicon.svg", ""), &ctx)
        .await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(String::from_utf8_lossy(icon.body()).starts_with("<svg"));
}

/// The conformance suite. The web chat has no platform authentication (a session id is the
/// only key, see the crate docs) and no remote platform that could fail, so rules 2.1 and 3.2
/// do not apply; everything else does.
mod conformance {
    use switchboard_core::{Bytes, ChannelConfig, ConsumerAddress, HttpRequest, async_trait};
    use switchboard_testkit::conformance::{self, Harness, PlatformFailure};

    struct Webchat;

    fn post(body: Bytes) -> HttpRequest {
        super::http::Request::builder()
            .method("POST")
            .uri("/messages")
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    }

    #[async_trait]
    impl Harness for Webchat {
        fn config(&self) -> ChannelConfig {
            ChannelConfig::new(
                "web",
                "webchat",
                serde_json::json!({ "title": "Conformance" }),
            )
        }
        fn secrets(&self) -> Vec<String> {
            Vec::new()
        }
        fn genuine(&self, n: u32, text: &str) -> HttpRequest {
            let body = serde_json::json!({
                "session": "session-conformance",
                "id": format!("message-{n:04}"),
                "text": text,
            });
            post(Bytes::from(body.to_string()))
        }
        fn genuine_with_body(&self, body: Bytes) -> Option<HttpRequest> {
            Some(post(body))
        }
        fn forged(&self, _: u32, _: &str) -> Option<HttpRequest> {
            None
        }
        fn consumer(&self, instance: &str) -> ConsumerAddress {
            ConsumerAddress::new(instance, "session-conformance")
        }
        async fn fail_next_delivery(&self, _: PlatformFailure) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn the_webchat_channel_passes_the_conformance_suite() {
        conformance::run(&Webchat).await;
    }
}
