//! `deliver` against the fake Kannel: headers, coding, splitting, answer classification, DLRs.

use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{
    ChatState, DeliveryError, Inbound, MessageRef, Outbound, OutboundEvent, ReceiptStatus,
};

use switchboard_testkit::conformance::{self, Harness, PlatformFailure};

use crate::support::{
    CallbackServer, PASS, Setup, TOKEN, USER, eventually, fake_kannel, free_port, settings, setup,
};
use switchboard_testkit::fake_kannel::FakeKannel;

const CONSUMER: &str = "+15551234567";

async fn with_fake(
    max_messages: u32,
    extra: serde_json::Value,
) -> (FakeKannel, CallbackServer, Setup) {
    let fake = fake_kannel(max_messages).await;
    let callbacks = CallbackServer::start().await;
    let s = setup(&settings(&fake.sendsms_url(), &callbacks.base, extra)).await;
    callbacks.attach(&s);
    (fake, callbacks, s)
}

async fn send(s: &Setup, id: &str, body: Outbound) -> Result<(), DeliveryError> {
    let to = s.ctx.consumer(CONSUMER);
    s.channel
        .deliver(&to, &OutboundEvent::new(id, body))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn gsm_text_goes_as_a_text_plain_body_with_kannel_headers() {
    let (fake, callbacks, s) = with_fake(6, serde_json::json!({})).await;
    send(&s, "lp:conv:1", Outbound::text("Hello @ £5 {ok} ç"))
        .await
        .unwrap();
    let reqs = fake.accepted();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.query, None, "nothing in the URL");
    assert_eq!(r.body, "Hello @ £5 {ok} ç");
    let h = &r.headers;
    assert!(h["content-type"].starts_with("text/plain"));
    assert_eq!(h["x-kannel-username"], USER);
    assert_eq!(h["x-kannel-password"], PASS);
    assert_eq!(h["x-kannel-from"], "1000");
    assert_eq!(h["x-kannel-to"], CONSUMER);
    assert_eq!(h["x-kannel-coding"], "0");
    assert_eq!(h["x-kannel-dlr-mask"], "31");
    let dlr = &h["x-kannel-dlr-url"];
    let reference = switchboard_channel_sms::tracking::reference("lp:conv:1");
    assert_eq!(
        dlr,
        &format!(
            "{}/dlr?token={TOKEN}&ref={reference}.0&status=%d&answer=%A&fid=%F",
            callbacks.base
        ),
        "our short reference and Kannel's escapes only"
    );
}

#[tokio::test]
async fn text_outside_gsm7_goes_as_ucs2() {
    let (fake, _cb, s) = with_fake(6, serde_json::json!({ "dlr_mask": 0 })).await;
    for (i, text) in ["Привет 👋", "smart “quotes”", "a`b", "café €"]
        .iter()
        .enumerate()
    {
        send(&s, &format!("m{i}"), Outbound::text(*text))
            .await
            .unwrap();
    }
    let codings: Vec<String> = fake
        .accepted()
        .iter()
        .map(|r| r.headers["x-kannel-coding"].clone())
        .collect();
    assert_eq!(codings, ["2", "2", "2", "0"]);
    assert!(
        !fake.accepted()[0].headers.contains_key("x-kannel-dlr-url"),
        "dlr_mask 0 asks for no DLRs"
    );
}

#[tokio::test]
async fn long_texts_are_split_into_calls_kannel_never_truncates() {
    // max_parts 2: at most 306 GSM septets or 134 UCS-2 units per call.
    let (fake, _cb, s) = with_fake(2, serde_json::json!({ "max_parts": 2 })).await;
    let words: Vec<String> = (0..140).map(|i| format!("w{i}")).collect();
    let text = words.join(" "); // ~ 530 characters
    send(&s, "long-1", Outbound::text(text.clone()))
        .await
        .unwrap();
    let reqs = fake.accepted();
    assert!(reqs.len() >= 2, "{}", reqs.len());
    assert!(reqs.iter().all(|r| !r.truncated && r.parts <= 2));
    let rejoined: Vec<String> = reqs
        .iter()
        .flat_map(|r| r.body.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(rejoined, words, "split at word boundaries, nothing lost");
    // UCS-2 with an emoji at every position: no call over 2 parts.
    let ucs = "я👋 ".repeat(60);
    send(&s, "long-2", Outbound::text(ucs)).await.unwrap();
    let reqs = fake.accepted();
    assert!(reqs.iter().all(|r| !r.truncated), "{reqs:?}");
    // A text that fits is one call, however close to the cap.
    let before = fake.accepted().len();
    send(&s, "fits", Outbound::text("x".repeat(306)))
        .await
        .unwrap();
    assert_eq!(fake.accepted().len(), before + 1);
}

#[tokio::test]
async fn kannel_answers_are_classified() {
    let (fake, _cb, s) = with_fake(6, serde_json::json!({})).await;
    // 3: Queued is an acceptance.
    fake.set_queued(true);
    send(&s, "q", Outbound::text("hi")).await.unwrap();
    fake.set_queued(false);
    // 503 Temporal failure: retryable.
    let n = fake.requests().len();
    fake.fail_request(n);
    let e = send(&s, "t", Outbound::text("hi")).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("Temporal failure"), "{e}");
    // 400 Empty receiver number: permanent.
    let e = s
        .channel
        .deliver(
            &s.ctx.consumer(" "),
            &OutboundEvent::new("x", Outbound::text("hi")),
        )
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("receiver number"), "{e}");
    // 403 Not routable (bearerbox has no SMSC for it): permanent, and said so.
    let n = fake.requests().len();
    fake.refuse_request(n);
    let e = send(&s, "r", Outbound::text("hi")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("no route"), "{e}");
    // 403 bad credentials: permanent, and the password is not in the error.
    let bad = setup(&settings(
        &fake.sendsms_url(),
        "http://127.0.0.1:1/channels/sms-main",
        serde_json::json!({ "password": "wrong-password-x" }),
    ))
    .await;
    let e = bad
        .channel
        .deliver(
            &bad.ctx.consumer(CONSUMER),
            &OutboundEvent::new("y", Outbound::text("hi")),
        )
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("Authorization failed"), "{e}");
    assert!(!e.to_string().contains("wrong-password-x"));
    // Nobody listening: retryable.
    let down = setup(&settings(
        &format!("http://127.0.0.1:{}/cgi-bin/sendsms", free_port()),
        "http://127.0.0.1:1/channels/sms-main",
        serde_json::json!({}),
    ))
    .await;
    let e = down
        .channel
        .deliver(
            &down.ctx.consumer(CONSUMER),
            &OutboundEvent::new("z", Outbound::text("hi")),
        )
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test]
async fn a_retry_after_a_partial_failure_resumes_after_the_sent_pieces() {
    let (fake, _cb, s) = with_fake(1, serde_json::json!({ "max_parts": 1, "dlr_mask": 0 })).await;
    let text = format!("{} {}", "a".repeat(150), "b".repeat(150));
    fake.fail_request(1);
    let e = send(&s, "split-1", Outbound::text(text.clone()))
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    send(&s, "split-1", Outbound::text(text)).await.unwrap();
    let bodies: Vec<String> = fake.accepted().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        ["a".repeat(150), "b".repeat(150)],
        "no piece sent twice"
    );
}

#[tokio::test]
async fn dlrs_become_one_delivered_receipt_each() {
    let (fake, callbacks, s) = with_fake(6, serde_json::json!({})).await;
    fake.set_dlr_events(&[8, 4, 1, 1, 16]);
    send(&s, "out-7", Outbound::text("hello")).await.unwrap();
    assert!(eventually(5, || callbacks.log().len() >= 5).await);
    let expected = Inbound::Receipt {
        status: ReceiptStatus::Delivered,
        messages: vec![MessageRef::new("out-7")],
    };
    let events = s.sink.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].body, expected);
    assert_eq!(events[0].consumer.id, CONSUMER);
}

#[tokio::test]
async fn rich_content_is_numbered_text_and_typing_sends_nothing() {
    let (fake, _cb, s) = with_fake(6, serde_json::json!({ "dlr_mask": 0 })).await;
    send(
        &s,
        "t",
        Outbound::ChatState {
            state: ChatState::Composing,
        },
    )
    .await
    .unwrap();
    assert!(fake.requests().is_empty());
    let reply = |id: &str, title: &str| Button {
        id: id.into(),
        title: title.into(),
        action: ButtonAction::Reply,
    };
    let content =
        RichContent::with_quick_replies("Pick", vec![reply("a", "Yes"), reply("b", "No")]);
    send(&s, "r", Outbound::Rich { content }).await.unwrap();
    assert_eq!(fake.accepted()[0].body, "Pick\n1. Yes\n2. No");
    assert!(
        s.sink
            .state
            .lock()
            .unwrap()
            .contains_key(&format!("menu:{CONSUMER}"))
    );
}

/// The conformance suite against the fake Kannel.
struct KannelHarness {
    fake: FakeKannel,
}

fn mo_request(n: u32, text: &str, token: &str) -> switchboard_core::HttpRequest {
    let q = serde_urlencoded::to_string([
        ("token", token),
        ("from", CONSUMER),
        ("to", "1000"),
        ("id", &format!("kannel-{n}")),
        ("text", text),
        ("charset", "UTF-8"),
        ("coding", "0"),
    ])
    .unwrap();
    crate::support::get(&format!("/mo?{q}"))
}

#[switchboard_core::async_trait]
impl Harness for KannelHarness {
    fn config(&self) -> switchboard_core::ChannelConfig {
        settings(
            &self.fake.sendsms_url(),
            "https://cx.example/channels/sms-main",
            serde_json::json!({ "dlr_mask": 0 }),
        )
    }

    fn secrets(&self) -> Vec<String> {
        vec![TOKEN.to_owned(), PASS.to_owned()]
    }

    fn genuine(&self, n: u32, text: &str) -> switchboard_core::HttpRequest {
        mo_request(n, text, TOKEN)
    }

    fn genuine_with_body(
        &self,
        _body: switchboard_core::Bytes,
    ) -> Option<switchboard_core::HttpRequest> {
        // Kannel's get-url carries everything in the query.
        None
    }

    fn forged(&self, n: u32, text: &str) -> Option<switchboard_core::HttpRequest> {
        Some(mo_request(n, text, "T0K-0123456789abcdeX"))
    }

    fn consumer(&self, instance: &str) -> switchboard_core::ConsumerAddress {
        switchboard_core::ConsumerAddress::new(instance, CONSUMER)
    }

    async fn fail_next_delivery(&self, failure: PlatformFailure) -> bool {
        let n = self.fake.requests().len();
        match failure {
            PlatformFailure::Outage => self.fake.fail_request(n),
            PlatformFailure::Refusal => self.fake.refuse_request(n),
        }
        true
    }
}

#[tokio::test]
async fn the_kannel_gateway_passes_the_conformance_suite() {
    let fake = fake_kannel(6).await;
    conformance::run(&KannelHarness { fake: fake.clone() }).await;
    assert!(!fake.accepted().is_empty());
}

/// The answer to a send that Kannel took comes after our timeout: the outcome is unknown.
/// The retry does not send it blindly again: Kannel's report of that message (the SMSC's
/// acknowledgement, 8) proves it went, so nothing is sent twice.
#[tokio::test]
async fn an_uncertain_send_is_not_repeated_once_kannel_reported_it() {
    let (fake, callbacks, s) = with_fake(6, serde_json::json!({ "timeout_secs": 1 })).await;
    fake.answer_late(0, std::time::Duration::from_secs(3));
    let e = send(&s, "lp:c:9", Outbound::text("Your parcel ships today"))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        eventually(10, || callbacks
            .log()
            .iter()
            .any(|l| l.contains("status=8")))
        .await
    );
    send(&s, "lp:c:9", Outbound::text("Your parcel ships today"))
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 1, "sent once: {:?}", fake.requests());
}

/// An uncertain send with no report yet: the retry waits for one (a retryable error with a
/// delay, nothing sent) and, once the window is over without a report, sends again — the
/// documented at-least-once window.
#[tokio::test]
async fn an_uncertain_send_without_a_report_waits_then_is_sent_again() {
    let (fake, _cb, s) = with_fake(6, serde_json::json!({ "timeout_secs": 1 })).await;
    fake.set_dlr_events(&[]);
    fake.answer_late(0, std::time::Duration::from_secs(3));
    assert!(send(&s, "lp:c:10", Outbound::text("hi")).await.is_err());
    match send(&s, "lp:c:10", Outbound::text("hi")).await {
        Err(DeliveryError::Retryable {
            after: Some(after), ..
        }) => assert!(after.as_secs() <= 120, "{after:?}"),
        other => panic!("expected a wait for the report: {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1, "nothing sent while waiting");
    // The window is over (the record says the call started long ago).
    let key = format!(
        "sms:{}",
        switchboard_channel_sms::tracking::reference("lp:c:10")
    );
    let mut record: serde_json::Value =
        serde_json::from_str(&s.sink.state.lock().unwrap()[&key]).unwrap();
    record["sending"]["at"] = serde_json::json!(record["sending"]["at"].as_i64().unwrap() - 600);
    s.sink.state.lock().unwrap().insert(key, record.to_string());
    send(&s, "lp:c:10", Outbound::text("hi")).await.unwrap();
    assert_eq!(fake.accepted().len(), 2);
}

/// A send Kannel answered (503, 4xx) is known not to have gone: the retry sends at once.
#[tokio::test]
async fn a_refused_send_is_retried_at_once() {
    let (fake, _cb, s) = with_fake(6, serde_json::json!({})).await;
    fake.fail_request(0);
    assert!(send(&s, "lp:c:11", Outbound::text("hi")).await.is_err());
    send(&s, "lp:c:11", Outbound::text("hi")).await.unwrap();
    assert_eq!(fake.accepted().len(), 1);
}

/// The same event delivered again after it went (the runtime lost its completion in a crash)
/// sends nothing.
#[tokio::test]
async fn an_event_delivered_again_after_it_went_sends_nothing() {
    let (fake, _cb, s) = with_fake(6, serde_json::json!({ "dlr_mask": 0 })).await;
    send(&s, "lp:c:12", Outbound::text("hi")).await.unwrap();
    send(&s, "lp:c:12", Outbound::text("hi")).await.unwrap();
    assert_eq!(fake.accepted().len(), 1);
}

/// Kannel keeps a message's dlr-url in a 255-character column (SQL DLR storage): ours stays
/// short whatever LivePerson's ids look like, so the report comes back.
#[tokio::test]
async fn the_dlr_url_fits_kannels_storage_with_liveperson_ids() {
    // A token as `openssl rand -hex 32` makes.
    let token = "3f9c2a7be41d05c6a8f3e9d2b7c4015e6a9d3f8c2b1e7a4d5c6f9e0a1b2c3d4e";
    let (fake, callbacks, s) = with_fake(6, serde_json::json!({ "callback_token": token })).await;
    let id = "lp:807fc65b-9755-401b-bb6f-ba599883d650:807fc65b-9755-401b-bb6f-ba599883d650:12";
    send(&s, id, Outbound::text("hi")).await.unwrap();
    let dlr = fake.accepted()[0].headers["x-kannel-dlr-url"].clone();
    assert!(dlr.len() <= 255, "{} characters: {dlr}", dlr.len());
    assert!(eventually(5, || callbacks.log().len() >= 2).await);
    assert!(
        s.sink.events().iter().any(|e| e.body
            == Inbound::Receipt {
                status: ReceiptStatus::Delivered,
                messages: vec![MessageRef::new(id)],
            }),
        "{:?}",
        s.sink.events()
    );
}
