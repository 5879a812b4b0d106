//! The Vonage gateway: signature vectors, signed webhooks in every method and format, replay
//! protection, `/sms/json` against the fake, status classification, delivery receipts, long
//! inbound messages, and the conformance suite.

use std::time::Duration;

use proptest::prelude::*;
use switchboard_channel_sms::vonage::SignatureMethod;
use switchboard_channel_sms::vonage::client::classify;
use switchboard_channel_sms::vonage::inbound::{form_pairs, json_pairs, parse_dlr, parse_inbound};
use switchboard_channel_sms::vonage::signature::{SignatureError, check_signature, sign, verify};
use switchboard_core::{
    Bytes, ConsumerAddress, DeliveryError, HttpRequest, HttpResponse, Inbound, MessageRef,
    Outbound, OutboundEvent, ReceiptStatus, async_trait,
};
use switchboard_testkit::LogCapture;
use switchboard_testkit::conformance::{self, Harness, PlatformFailure};

use crate::support::{
    CallbackServer, Setup, error_code, eventually, free_port, setup, setup_with_sink,
    vonage_settings,
};
use switchboard_testkit::fake_vonage::{
    API_KEY, API_SECRET, FORMATS, FakeVonage, Format, METHODS, OUR_NUMBER, SIG_SECRET,
    inbound_params, signed, unix_now, webhook_request,
};

const CONSUMER: &str = "+447700900001";
const MSISDN: &str = "447700900001";

fn bytes(p: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    p.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn method(name: &str) -> SignatureMethod {
    serde_json::from_value(serde_json::json!(name)).unwrap()
}

/// The inbound example of docs/protocol/channels.md §3.7.
const INBOUND_EXAMPLE: [(&str, &str); 10] = [
    ("api-key", "abcd1234"),
    ("keyword", "HELLO"),
    ("message-timestamp", "2020-01-01 12:00:00"),
    ("messageId", "0A0000000123ABCD1"),
    ("msisdn", "447700900001"),
    ("nonce", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
    ("text", "Hello world"),
    ("timestamp", "1578787200"),
    ("to", "447700900000"),
    ("type", "text"),
];

#[test]
fn signatures_match_the_published_and_computed_vectors() {
    // Published: Vonage's Python SDK test.
    let p = bytes(&[
        ("param1", "value1"),
        ("param2", "value2"),
        ("timestamp", "1234567890"),
    ]);
    assert_eq!(
        sign(SignatureMethod::Sha256, "signature_secret", &p),
        "280c4320703dbc98bfa22db676655ed2acfbfe8792b062ff7622e67f1183c287"
    );
    // Computed with Python's hashlib/hmac (docs/protocol/channels.md §3.7), every method.
    let example = bytes(&INBOUND_EXAMPLE);
    let ascii = [
        ("md5hash", "ac6af853d3f1c4db41b5118693cc9fe4"),
        ("md5", "bbfd390c2ae5b098fab617e7d5848eab"),
        ("sha1", "3e805aa8984ce9a4bb501a5bfaad7dac839ab33f"),
        (
            "sha256",
            "9a60396760eb477782b50af42cd7b286719fff77a790e562543abc589bd17c29",
        ),
        (
            "sha512",
            "b6e9cc0377957918f53e490fdc5a29566898d055289b260b8af9fd3bc9808c33e7f20878dc9f6b7ce69fa3fb1bcb37c9a6319eeb80a9f91f47f54e697b523142",
        ),
    ];
    // The same with a non-ASCII text holding `&` and `=` (replaced by `_` when signing).
    let mut unicode_example = INBOUND_EXAMPLE;
    unicode_example[6] = ("text", "Grüße & ciao = 👋");
    unicode_example[9] = ("type", "unicode");
    let unicode = bytes(&unicode_example);
    let non_ascii = [
        ("md5hash", "9f2697c86ee6bd1b14c91d5472e52a00"),
        ("md5", "56540a9f0d27029988126c00dae7f848"),
        ("sha1", "6cca1cbd73c9fab8f0089252380d44a93208a9d8"),
        (
            "sha256",
            "bc85a4795647b6423f78152f524aa0b9992da15b642d2e14c4c78619e74e0de8",
        ),
        (
            "sha512",
            "70ee3743071070a68524ded41255dc96ad887e010efe25e38ff84718f5884e74085f74a80c690d16c8a4d4ce8bfaa950ca650223446f29cdede1e3b44a9311fc",
        ),
    ];
    for ((name, expected), params) in ascii
        .iter()
        .map(|v| (v, &example))
        .chain(non_ascii.iter().map(|v| (v, &unicode)))
    {
        let m = method(name);
        assert_eq!(sign(m, "signature_secret", params), *expected, "{name}");
        // The order the parameters come in does not matter.
        let mut reversed = params.clone();
        reversed.reverse();
        assert_eq!(sign(m, "signature_secret", &reversed), *expected, "{name}");
        // Checking: lower or upper case passes; another method or secret does not.
        for sig in [expected.to_string(), expected.to_uppercase()] {
            let mut with_sig = params.clone();
            with_sig.push((b"sig".to_vec(), sig.into_bytes()));
            assert_eq!(check_signature(m, "signature_secret", &with_sig), Ok(()));
            assert_eq!(
                check_signature(m, "another_secret", &with_sig),
                Err(SignatureError::Mismatch)
            );
        }
        // The fake's own, independent signer agrees.
        let strings: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            switchboard_testkit::fake_vonage::sign(name, "signature_secret", &strings),
            *expected
        );
    }
    assert_eq!(SignatureMethod::default(), SignatureMethod::Md5Hash);
}

#[test]
fn verify_checks_the_window_and_returns_the_nonce() {
    let mut p = bytes(&INBOUND_EXAMPLE);
    p.push((
        b"sig".to_vec(),
        b"9a60396760eb477782b50af42cd7b286719fff77a790e562543abc589bd17c29".to_vec(),
    ));
    let ts = 1_578_787_200;
    let m = SignatureMethod::Sha256;
    // Vonage resends with the timestamp of its first push for 24 hours: accepted up to 25
    // hours old, and up to 5 minutes ahead of our clock.
    for now in [ts, ts + 300, ts + 3 * 3600, ts + 25 * 3600, ts - 300] {
        assert_eq!(
            verify(m, "signature_secret", &p, now).as_deref(),
            Ok("aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
            "{}",
            now - ts
        );
    }
    for now in [ts + 25 * 3600 + 1, ts - 301] {
        assert_eq!(
            verify(m, "signature_secret", &p, now),
            Err(SignatureError::Stale),
            "{}",
            now - ts
        );
    }
    // Two `sig`s, or a parameter twice: refused.
    let mut two = p.clone();
    two.push((b"sig".to_vec(), b"00".to_vec()));
    assert_eq!(
        check_signature(m, "signature_secret", &two),
        Err(SignatureError::Missing)
    );
    let mut dup = p.clone();
    dup.push((b"text".to_vec(), b"Hello world".to_vec()));
    assert_eq!(
        check_signature(m, "signature_secret", &dup),
        Err(SignatureError::Duplicate)
    );
}

async fn channel(method: &str) -> Setup {
    setup(&vonage_settings(
        &format!("http://127.0.0.1:{}", free_port()),
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "signature_method": method }),
    ))
    .await
}

async fn call(s: &Setup, req: HttpRequest) -> HttpResponse {
    s.channel.handle_http(req, &s.ctx).await
}

fn dlr_params(client_ref: &str, status: &str) -> Vec<(String, String)> {
    [
        ("msisdn", MSISDN),
        ("to", OUR_NUMBER),
        ("network-code", "12345"),
        ("messageId", "0A00000001"),
        ("price", "0.03330000"),
        ("status", status),
        ("scts", "2001011400"),
        ("err-code", if status == "delivered" { "0" } else { "5" }),
        ("api-key", API_KEY),
        ("client-ref", client_ref),
        ("message-timestamp", "2020-01-01 12:00:00"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

#[tokio::test]
async fn genuine_webhooks_pass_in_every_method_and_format() {
    let text = "Grüße & ciao = 👋\nline two";
    for m in METHODS {
        for format in FORMATS {
            let s = channel(m).await;
            let params = signed(
                m,
                SIG_SECRET,
                inbound_params(MSISDN, "0A0000000123ABCD1", text),
            );
            let r = call(&s, webhook_request(format, "/inbound", &params)).await;
            assert_eq!(r.status(), 200, "{m} {format:?}: {:?}", r.body());
            assert!(r.body().is_empty());
            let events = s.sink.events();
            assert_eq!(events.len(), 1, "{m} {format:?}");
            let e = &events[0];
            assert_eq!(e.body, Inbound::text(text));
            assert_eq!(e.consumer.id, CONSUMER, "msisdn without + becomes E.164");
            assert_eq!(e.platform_id.as_deref(), Some("0A0000000123ABCD1"));
            assert_eq!(e.occurred_at_ms, Some(1_577_880_000_000));
            assert_eq!(
                e.profile.as_ref().and_then(|p| p.phone.as_deref()),
                Some(CONSUMER)
            );
            // A delivery receipt for our message.
            let params = signed(m, SIG_SECRET, dlr_params("out-1", "delivered"));
            let r = call(&s, webhook_request(format, "/dlr", &params)).await;
            assert_eq!(r.status(), 200, "{m} {format:?}");
            let events = s.sink.events();
            assert_eq!(events.len(), 2);
            assert_eq!(
                events[1].body,
                Inbound::Receipt {
                    status: ReceiptStatus::Delivered,
                    messages: vec![MessageRef::new("out-1")],
                }
            );
            assert_eq!(events[1].consumer.id, CONSUMER);
        }
    }
}

/// A request signed over `params` as given (no timestamp or nonce added).
fn signed_as_is(m: &str, secret: &str, mut params: Vec<(String, String)>) -> Vec<(String, String)> {
    let sig = switchboard_testkit::fake_vonage::sign(m, secret, &params);
    params.push(("sig".into(), sig));
    params
}

#[tokio::test]
async fn forged_stale_and_replayed_webhooks_are_401_and_submit_nothing() {
    let m = "sha256";
    let s = channel(m).await;
    let base = || inbound_params(MSISDN, "mo-1", "hello");
    let with = |extra: &[(&str, String)]| {
        let mut p = base();
        p.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        p
    };
    let now = unix_now();
    let tampered = {
        let mut p = signed(m, SIG_SECRET, base());
        p.iter_mut().find(|(k, _)| k == "text").unwrap().1 = "hellO".into();
        p
    };
    let no_sig = {
        let mut p = signed(m, SIG_SECRET, base());
        p.retain(|(k, _)| k != "sig");
        p
    };
    let duplicated = {
        // (In JSON the object keeps one of them, which then does not match the signature.)
        let mut p = signed(m, SIG_SECRET, base());
        p.push(("text".into(), "smuggled".into()));
        p
    };
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("wrong secret", signed(m, "not-the-secret", base())),
        ("another method", signed("md5hash", SIG_SECRET, base())),
        ("tampered text", tampered),
        ("no sig", no_sig),
        ("a parameter twice", duplicated),
        (
            "stale timestamp",
            signed(
                m,
                SIG_SECRET,
                with(&[("timestamp", (now - 25 * 3600 - 60).to_string())]),
            ),
        ),
        (
            "future timestamp",
            signed(
                m,
                SIG_SECRET,
                with(&[("timestamp", (now + 600).to_string())]),
            ),
        ),
        (
            "no timestamp",
            signed_as_is(m, SIG_SECRET, with(&[("nonce", "n-1".to_owned())])),
        ),
        (
            "no nonce",
            signed_as_is(m, SIG_SECRET, with(&[("timestamp", now.to_string())])),
        ),
        (
            "bad timestamp",
            signed_as_is(
                m,
                SIG_SECRET,
                with(&[("timestamp", "soon".into()), ("nonce", "n-2".into())]),
            ),
        ),
    ];
    for format in FORMATS {
        for (what, params) in &cases {
            let r = call(&s, webhook_request(format, "/inbound", params)).await;
            assert_eq!(r.status(), 401, "{what} {format:?}");
            assert_eq!(error_code(&r), "bad_signature", "{what}");
            let r = call(&s, webhook_request(format, "/dlr", params)).await;
            assert_eq!(r.status(), 401, "{what} {format:?} (dlr)");
        }
    }
    // Bodies that cannot carry a signature.
    let odd = |ct: &str, body: &str| {
        switchboard_core::http::Request::builder()
            .method("POST")
            .uri("/inbound")
            .header("content-type", ct)
            .body(Bytes::from(body.to_owned()))
            .unwrap()
    };
    for req in [
        odd("text/plain", "msisdn=1"),
        odd("application/json", "{\"msisdn\":{\"nested\":1}}"),
        odd("application/json", "not json"),
        odd("application/json", "[1,2]"),
    ] {
        let r = call(&s, req).await;
        assert_eq!(r.status(), 401);
    }
    assert!(s.sink.events().is_empty(), "nothing forged was submitted");
    // Replay: the same genuine request twice, in any format.
    let genuine = signed(m, SIG_SECRET, inbound_params(MSISDN, "mo-2", "hi"));
    let r = call(&s, webhook_request(Format::PostForm, "/inbound", &genuine)).await;
    assert_eq!(r.status(), 200);
    for format in FORMATS {
        let r = call(&s, webhook_request(format, "/inbound", &genuine)).await;
        assert_eq!(r.status(), 401, "replayed as {format:?}");
        assert_eq!(error_code(&r), "bad_signature");
    }
    assert_eq!(s.sink.events().len(), 1);
    // Other paths and methods.
    let r = call(&s, webhook_request(Format::Get, "/mo", &genuine)).await;
    assert_eq!(r.status(), 404, "Kannel's path is not Vonage's");
    let put = switchboard_core::http::Request::builder()
        .method("PUT")
        .uri("/inbound")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(call(&s, put).await.status(), 405);
}

#[tokio::test]
async fn a_request_that_fails_releases_its_nonce_for_the_retry() {
    let s = channel("md5hash").await;
    let params = signed("md5hash", SIG_SECRET, inbound_params(MSISDN, "mo-3", "hi"));
    s.sink.set_failing(true);
    let r = call(&s, webhook_request(Format::PostJson, "/inbound", &params)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    s.sink.set_failing(false);
    // Vonage resends the identical request: accepted now, once.
    let r = call(&s, webhook_request(Format::PostJson, "/inbound", &params)).await;
    assert_eq!(r.status(), 200);
    let r = call(&s, webhook_request(Format::PostJson, "/inbound", &params)).await;
    assert_eq!(r.status(), 401, "accepted once, then a replay");
    assert_eq!(s.sink.events().len(), 1);
    // Malformed but genuine: 400 (and the nonce is released too).
    let bad = signed(
        "md5hash",
        SIG_SECRET,
        vec![
            ("msisdn".into(), MSISDN.into()),
            ("text".into(), "no id".into()),
        ],
    );
    let r = call(&s, webhook_request(Format::Get, "/inbound", &bad)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r), "bad_request");
}

#[tokio::test]
async fn a_retried_inbound_message_reaches_the_agent_once() {
    // End to end over HTTP: the fake's webhook engine resends the identical request after a 503.
    let fake = FakeVonage::start("sha1", Format::PostForm).await;
    let callbacks = CallbackServer::start().await;
    let s = setup(&vonage_settings(
        &fake.url,
        &callbacks.base,
        serde_json::json!({ "signature_method": "sha1" }),
    ))
    .await;
    callbacks.attach(&s);
    s.sink.fail_next(1);
    let answers = fake
        .send_mo(&callbacks.base, MSISDN, "mo-retry", "hello", None)
        .await;
    assert_eq!(answers, [200]);
    assert_eq!(fake.answers(), [503, 200]);
    let events = s.sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].platform_id.as_deref(), Some("mo-retry"));
}

/// Issue #22 item 1: Vonage signs the time of its *first* push and resends that same
/// timestamp while it retries, for up to 24 hours. A message whose pushes failed for three
/// hours (a store outage) is accepted when the store is back, once; a replay of it hours
/// later, after a restart (no nonce in memory), is dropped by its message id; a receipt
/// retried as late is accepted too.
#[tokio::test]
async fn vonage_retries_hours_after_the_first_push_are_accepted_once() {
    let fake = FakeVonage::start("sha256", Format::PostJson).await;
    let callbacks = CallbackServer::start().await;
    let config = vonage_settings(
        &fake.url,
        &callbacks.base,
        serde_json::json!({ "signature_method": "sha256" }),
    );
    let s = setup(&config).await;
    callbacks.attach(&s);
    fake.set_push_started_ago(3 * 3600);
    s.sink.fail_next(2);
    let answers = fake
        .send_mo(
            &callbacks.base,
            MSISDN,
            "mo-late",
            "hello after the outage",
            None,
        )
        .await;
    assert_eq!(answers, [200], "{:?}", fake.answers());
    assert_eq!(fake.answers(), [503, 503, 200]);
    assert_eq!(s.sink.events().len(), 1);
    // A capture of the accepted request, replayed to a restarted connector.
    let replay = signed(
        "sha256",
        SIG_SECRET,
        vec![
            ("api-key".into(), API_KEY.into()),
            ("msisdn".into(), MSISDN.into()),
            ("to".into(), OUR_NUMBER.into()),
            ("messageId".into(), "mo-late".into()),
            ("text".into(), "hello after the outage".into()),
            ("type".into(), "text".into()),
            ("keyword".into(), "HELLO".into()),
            ("message-timestamp".into(), "2020-01-01 12:00:00".into()),
            ("timestamp".into(), (unix_now() - 5 * 3600).to_string()),
        ],
    );
    let restarted = setup_with_sink(&config, s.sink.clone()).await;
    let r = call(
        &restarted,
        webhook_request(Format::Get, "/inbound", &replay),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.sink.events().len(), 1, "the replay reached nobody");
    // A delivery receipt retried as late.
    fake.set_dlr_statuses(&["delivered"]);
    send(&s, "out-late", Outbound::text("thanks"))
        .await
        .unwrap();
    assert!(eventually(10, || s.sink.events().len() == 2).await);
    assert!(fake.answers().ends_with(&[200]));
}

async fn with_fake(method: &'static str, format: Format) -> (FakeVonage, CallbackServer, Setup) {
    let fake = FakeVonage::start(method, format).await;
    let callbacks = CallbackServer::start().await;
    let s = setup(&vonage_settings(
        &fake.url,
        &callbacks.base,
        serde_json::json!({ "signature_method": method }),
    ))
    .await;
    callbacks.attach(&s);
    (fake, callbacks, s)
}

async fn send(s: &Setup, id: &str, body: Outbound) -> Result<Option<String>, DeliveryError> {
    s.channel
        .deliver(&s.ctx.consumer(CONSUMER), &OutboundEvent::new(id, body))
        .await
        .map(|d| d.platform_id)
}

#[tokio::test]
async fn agent_messages_go_as_a_form_with_the_credentials_in_the_body() {
    let (fake, callbacks, s) = with_fake("md5hash", Format::Get).await;
    fake.set_dlr_statuses(&[]);
    let id = send(&s, "out-1", Outbound::text("Hello @ £5 {ok}"))
        .await
        .unwrap();
    assert_eq!(
        id.as_deref(),
        Some("0A00000000000001"),
        "Vonage's message-id"
    );
    send(&s, "out-2", Outbound::text("Привет 👋"))
        .await
        .unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    let r = &sent[0];
    assert!(
        r.content_type
            .starts_with("application/x-www-form-urlencoded")
    );
    assert_eq!(r.query, None, "nothing in the URL");
    let p = &r.params;
    assert_eq!(p["api_key"], API_KEY);
    assert_eq!(p["api_secret"], API_SECRET);
    assert_eq!(p["from"], OUR_NUMBER, "E.164 without +");
    assert_eq!(p["to"], MSISDN, "E.164 without +");
    assert_eq!(p["text"], "Hello @ £5 {ok}");
    assert_eq!(p["type"], "text");
    assert_eq!(p["callback"], format!("{}/dlr", callbacks.base));
    assert_eq!(
        p["client-ref"],
        format!(
            "{}.0",
            switchboard_channel_sms::tracking::reference("out-1")
        )
    );
    assert_eq!(p["status-report-req"], "1");
    assert_eq!(sent[1].params["type"], "unicode");
    assert_eq!(sent[1].params["text"], "Привет 👋");
}

/// Vonage takes `to` as 7 to 15 digits (E.164 without `+`, `definitions/sms.yml`); a number
/// that cannot be one fails permanently without a call, and the fake refuses such a request
/// with status 3 as Vonage does.
#[tokio::test]
async fn numbers_vonage_cannot_take_fail_without_a_call() {
    let (fake, _cb, s) = with_fake("md5hash", Format::Get).await;
    for number in ["+123456", "1000", "+1234567890123456"] {
        let e = s
            .channel
            .deliver(
                &s.ctx.consumer(number),
                &OutboundEvent::new("x", Outbound::text("hi")),
            )
            .await
            .unwrap_err();
        assert!(
            !e.is_retryable() && e.to_string().contains("7 to 15 digits"),
            "{e}"
        );
    }
    assert!(fake.sent().is_empty());
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{}/sms/json", fake.url))
        .form(&[
            ("api_key", API_KEY),
            ("api_secret", API_SECRET),
            ("from", OUR_NUMBER),
            ("to", "12345"),
            ("text", "hi"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["messages"][0]["status"], "3");
}

#[tokio::test]
async fn send_statuses_and_http_errors_are_classified() {
    let (fake, _cb, s) = with_fake("md5hash", Format::Get).await;
    fake.set_dlr_statuses(&[]);
    let table: [(u32, bool); 16] = [
        (1, true),
        (5, true),
        (10, true),
        (2, false),
        (3, false),
        (4, false),
        (6, false),
        (7, false),
        (8, false),
        (9, false),
        (12, false),
        (15, false),
        (23, false),
        (29, false),
        (33, false),
        (99, false),
    ];
    for (status, retryable) in table {
        fake.script_status(status);
        let e = send(&s, &format!("st-{status}"), Outbound::text("hi"))
            .await
            .unwrap_err();
        assert_eq!(e.is_retryable(), retryable, "status {status}: {e}");
        assert!(e.to_string().contains(&format!("status {status}")), "{e}");
        match status {
            1 => assert!(
                matches!(e, DeliveryError::Retryable { after: Some(d), .. } if d == Duration::from_secs(1)),
                "throttling waits a second: {e:?}"
            ),
            9 => assert!(
                e.to_string().contains("Partner Quota Violation")
                    && e.to_string().contains("credit"),
                "{e}"
            ),
            _ => {}
        }
    }
    for (http, retryable) in [
        (500, true),
        (503, true),
        (429, true),
        (401, false),
        (400, false),
    ] {
        fake.script_http_error(http);
        let e = send(&s, &format!("http-{http}"), Outbound::text("hi"))
            .await
            .unwrap_err();
        assert_eq!(e.is_retryable(), retryable, "HTTP {http}: {e}");
    }
    // Wrong credentials: Vonage's status 4, permanent, and the secret is nowhere in the error.
    let bad = setup(&vonage_settings(
        &fake.url,
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "api_secret": "wrong-secret-123" }),
    ))
    .await;
    let e = bad
        .channel
        .deliver(
            &bad.ctx.consumer(CONSUMER),
            &OutboundEvent::new("c", Outbound::text("hi")),
        )
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("Invalid Credentials"), "{e}");
    assert!(!format!("{e:?}").contains("wrong-secret-123"));
    // Nobody listening: retryable.
    let down = setup(&vonage_settings(
        &format!("http://127.0.0.1:{}", free_port()),
        "https://cx.example/channels/sms-main",
        serde_json::json!({}),
    ))
    .await;
    let e = down
        .channel
        .deliver(
            &down.ctx.consumer(CONSUMER),
            &OutboundEvent::new("d", Outbound::text("hi")),
        )
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

#[test]
fn answers_that_leave_the_outcome_unknown_are_retried() {
    let part = |status: &str| format!(r#"{{"status":"{status}","message-id":"X{status}"}}"#);
    let body = |parts: &[&str]| {
        format!(
            r#"{{"message-count":"{}","messages":[{}]}}"#,
            parts.len(),
            parts.iter().map(|p| part(p)).collect::<Vec<_>>().join(",")
        )
    };
    assert_eq!(
        classify(200, &body(&["0", "0"]), None),
        Ok(Some("X0".into()))
    );
    // A 200 that cannot be read: retried, and marked uncertain (Vonage may have sent it).
    for unreadable in ["<html>", r#"{"messages":[]}"#] {
        let e = classify(200, unreadable, None).unwrap_err();
        assert!(e.error.is_retryable() && e.uncertain, "{e:?}");
    }
    // Part of a long text refused: the worst outcome wins, and the reason says so.
    let e = classify(200, &body(&["0", "1"]), None).unwrap_err();
    assert!(e.error.is_retryable() && !e.uncertain);
    assert!(e.to_string().contains("1 of 2 parts were accepted"), "{e}");
    assert!(
        !classify(200, &body(&["1", "7"]), None)
            .unwrap_err()
            .error
            .is_retryable()
    );
    // Numbers instead of strings are read too.
    assert_eq!(
        classify(
            200,
            r#"{"message-count":1,"messages":[{"status":0,"message-id":"A"}]}"#,
            None
        ),
        Ok(Some("A".into()))
    );
    assert_eq!(
        classify(503, "", Some(Duration::from_secs(9))).map_err(|e| e.error),
        Err(DeliveryError::retry_after(
            "Vonage answered HTTP 503: ",
            Duration::from_secs(9)
        ))
    );
}

#[tokio::test]
async fn delivery_receipts_become_one_delivered_receipt_per_message() {
    for format in FORMATS {
        let (fake, _cb, s) = with_fake("sha512", format).await;
        fake.set_dlr_statuses(&["accepted", "buffered", "delivered", "delivered"]);
        // 200 GSM characters: two parts, each with its own receipts.
        send(&s, "out-7", Outbound::text("a".repeat(200)))
            .await
            .unwrap();
        assert_eq!(fake.sent()[0].parts, 2);
        assert!(eventually(10, || fake.answers().len() >= 8).await);
        assert!(
            fake.answers().iter().all(|a| *a == 200),
            "{:?}",
            fake.answers()
        );
        let events = s.sink.events();
        assert_eq!(events.len(), 1, "{format:?}: {events:?}");
        assert_eq!(
            events[0].body,
            Inbound::Receipt {
                status: ReceiptStatus::Delivered,
                messages: vec![MessageRef::new("out-7")],
            }
        );
        assert_eq!(events[0].consumer.id, CONSUMER);
        assert_eq!(
            events[0].platform_id.as_deref(),
            Some("dlr:out-7:delivered")
        );
    }
}

#[tokio::test]
async fn client_refs_are_short_references_whatever_the_message_id() {
    let (fake, _cb, s) = with_fake("md5", Format::PostJson).await;
    fake.set_dlr_statuses(&["delivered"]);
    let id = "lp:4c4a5b6e-1f0b-4d8e-9a4e-3a0f1e2d3c4b:4c4a5b6e-1f0b-4d8e-9a4e-3a0f1e2d3c4b:17";
    send(&s, id, Outbound::text("hello")).await.unwrap();
    let sent = fake.sent();
    let reference = switchboard_channel_sms::tracking::reference(id);
    assert_eq!(sent[0].params["client-ref"], format!("{reference}.0"));
    assert!(sent[0].params["client-ref"].len() <= 40);
    assert!(eventually(10, || !s.sink.events().is_empty()).await);
    assert_eq!(
        s.sink.events()[0].body,
        Inbound::Receipt {
            status: ReceiptStatus::Delivered,
            messages: vec![MessageRef::new(id)],
        }
    );
}

/// Receipts for messages an earlier release sent (its client-ref was our id itself, or `~` and
/// a hash mapped in the channel state) still reach the agent.
#[tokio::test]
async fn receipts_with_an_earlier_releases_client_ref_are_still_read() {
    let s = channel("sha256").await;
    let id = "lp:4c4a5b6e-1f0b-4d8e-9a4e-3a0f1e2d3c4b:4c4a5b6e-1f0b-4d8e-9a4e-3a0f1e2d3c4b:17";
    let hashed = format!("~{}", "ab".repeat(19) + "c");
    s.sink
        .state
        .lock()
        .unwrap()
        .insert(format!("vonage-ref:{hashed}"), id.to_owned());
    for (client_ref, message) in [("out-1", "out-1"), (hashed.as_str(), id)] {
        let params = signed("sha256", SIG_SECRET, dlr_params(client_ref, "delivered"));
        let r = call(&s, webhook_request(Format::Get, "/dlr", &params)).await;
        assert_eq!(r.status(), 200);
        assert!(
            s.sink.events().iter().any(|e| e.body
                == Inbound::Receipt {
                    status: ReceiptStatus::Delivered,
                    messages: vec![MessageRef::new(message)],
                }),
            "{client_ref}: {:?}",
            s.sink.events()
        );
    }
}

#[tokio::test]
async fn failed_receipts_are_logged_with_a_stable_field_and_not_retried() {
    let logs = LogCapture::start();
    let fake = FakeVonage::start("sha256", Format::Get).await;
    let s = setup(&vonage_settings(
        &fake.url,
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "signature_method": "sha256" }),
    ))
    .await;
    for status in [
        "failed", "rejected", "expired", "accepted", "buffered", "unknown",
    ] {
        let params = signed("sha256", SIG_SECRET, dlr_params("out-9", status));
        let r = call(&s, webhook_request(Format::Get, "/dlr", &params)).await;
        assert_eq!(
            r.status(),
            200,
            "{status}: acknowledged, so Vonage does not resend"
        );
    }
    // A receipt without client-ref is not ours; one with an unknown reference is dropped.
    let mut no_ref = dlr_params("x", "delivered");
    no_ref.retain(|(k, _)| k != "client-ref");
    let r = call(
        &s,
        webhook_request(Format::Get, "/dlr", &signed("sha256", SIG_SECRET, no_ref)),
    )
    .await;
    assert_eq!(r.status(), 200);
    let unknown = signed(
        "sha256",
        SIG_SECRET,
        dlr_params(
            &format!(
                "{}.0",
                switchboard_channel_sms::tracking::reference("never sent")
            ),
            "delivered",
        ),
    );
    assert_eq!(
        call(&s, webhook_request(Format::Get, "/dlr", &unknown))
            .await
            .status(),
        200
    );
    assert!(s.sink.events().is_empty());
    assert!(fake.sent().is_empty(), "nothing was sent again");
    let text = logs.text();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sms_not_delivered"))
        .collect();
    assert_eq!(failures.len(), 3, "{text}");
    for (line, status) in failures.iter().zip(["failed", "rejected", "expired"]) {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains(status), "{line}");
        assert!(line.contains("out-9"), "{line}");
    }
}

#[tokio::test]
async fn long_inbound_messages_are_reassembled_whatever_the_order() {
    let (fake, callbacks, s) = with_fake("sha256", Format::PostJson).await;
    let gsm = "word ".repeat(90); // 450 characters: 3 parts
    let answers = fake
        .send_mo(&callbacks.base, MSISDN, "mo-long", &gsm, Some(&[2, 3, 1]))
        .await;
    assert_eq!(answers, [200, 200, 200]);
    let ucs = "Привет мир 👋 ".repeat(10); // 2 parts of UCS-2
    let answers = fake
        .send_mo(
            &callbacks.base,
            "15551234567",
            "mo-ucs",
            &ucs,
            Some(&[2, 1]),
        )
        .await;
    assert_eq!(answers, [200, 200]);
    let events = s.sink.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].body, Inbound::text(gsm.trim()));
    assert_eq!(events[0].platform_id.as_deref(), Some("mo-long-1"));
    assert_eq!(events[1].body, Inbound::text(ucs.trim()));
    assert_eq!(events[1].consumer.id, "+15551234567");
    // Vonage's retry of a part after the message went (its answer was lost) adds nothing.
    let again = fake
        .send_mo(&callbacks.base, MSISDN, "mo-long", &gsm, Some(&[3]))
        .await;
    assert_eq!(again, [200]);
    assert_eq!(s.sink.events().len(), 2);
}

/// Issue #21 item 2: a part that never arrives does not hold the message for ever: when
/// `concat_wait_secs` is over, the parts that came reach the agent with a notice naming the
/// missing one (and a WARN with `outcome="sms_parts_missing"`); if the part comes after all,
/// it reaches the agent on its own, marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_missing_a_part_reaches_the_agent_with_a_notice() {
    let fake = FakeVonage::start("sha256", Format::PostForm).await;
    let callbacks = CallbackServer::start().await;
    let s = setup(&vonage_settings(
        &fake.url,
        &callbacks.base,
        serde_json::json!({ "signature_method": "sha256", "concat_wait_secs": 5 }),
    ))
    .await;
    callbacks.attach(&s);
    let text = format!("{}{}{}", "a".repeat(153), "b".repeat(153), "c".repeat(100));
    let answers = fake
        .send_mo(&callbacks.base, MSISDN, "mo-gap", &text, Some(&[1, 3]))
        .await;
    assert_eq!(answers, [200, 200]);
    assert!(s.sink.events().is_empty(), "still waiting for part 2");
    assert!(
        eventually(30, || !s.sink.events().is_empty()).await,
        "the message never reached the agent"
    );
    let events = s.sink.events();
    assert_eq!(
        events[0].body,
        Inbound::text(format!(
            "{} […] {}\n[This SMS came in 3 parts; part 2 never arrived.]",
            "a".repeat(153),
            "c".repeat(100)
        ))
    );
    assert_eq!(events[0].platform_id.as_deref(), Some("mo-gap-1"));
    assert_eq!(events[0].consumer.id, CONSUMER);
    // Part 2 after all.
    let late = fake
        .send_mo(&callbacks.base, MSISDN, "mo-gap", &text, Some(&[2]))
        .await;
    assert_eq!(late, [200]);
    let events = s.sink.events();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].body,
        Inbound::text(format!("[part 2 of 3 of a longer SMS] {}", "b".repeat(153)))
    );
}

/// The conformance suite against the fake Vonage.
struct VonageHarness {
    fake: FakeVonage,
}

fn genuine_params(n: u32, text: &str, secret: &str) -> Vec<(String, String)> {
    signed(
        "md5hash",
        secret,
        inbound_params(MSISDN, &format!("conf-mo-{n}"), text),
    )
}

#[async_trait]
impl Harness for VonageHarness {
    fn config(&self) -> switchboard_core::ChannelConfig {
        vonage_settings(
            &self.fake.url,
            "https://cx.example/channels/sms-main",
            serde_json::json!({}),
        )
    }

    fn secrets(&self) -> Vec<String> {
        vec![API_SECRET.to_owned(), SIG_SECRET.to_owned()]
    }

    fn genuine(&self, n: u32, text: &str) -> HttpRequest {
        webhook_request(
            Format::PostJson,
            "/inbound",
            &genuine_params(n, text, SIG_SECRET),
        )
    }

    fn genuine_with_body(&self, _body: Bytes) -> Option<HttpRequest> {
        // The signature covers the parameters in the body: no other body can be genuine.
        None
    }

    fn forged(&self, n: u32, text: &str) -> Option<HttpRequest> {
        Some(webhook_request(
            Format::PostJson,
            "/inbound",
            &genuine_params(n, text, "forged-secret"),
        ))
    }

    fn consumer(&self, instance: &str) -> ConsumerAddress {
        ConsumerAddress::new(instance, CONSUMER)
    }

    async fn fail_next_delivery(&self, failure: PlatformFailure) -> bool {
        match failure {
            PlatformFailure::Outage => self.fake.script_http_error(503),
            PlatformFailure::Refusal => self.fake.script_status(6),
        }
        true
    }
}

#[tokio::test]
async fn the_vonage_gateway_passes_the_conformance_suite() {
    let fake = FakeVonage::start("md5hash", Format::PostJson).await;
    fake.set_dlr_statuses(&[]);
    conformance::run(&VonageHarness { fake: fake.clone() }).await;
    assert!(fake.sent().iter().any(|r| r.statuses == [0]));
}

fn keys() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"msisdn".to_vec()),
        Just(b"messageId".to_vec()),
        Just(b"text".to_vec()),
        Just(b"type".to_vec()),
        Just(b"status".to_vec()),
        Just(b"client-ref".to_vec()),
        Just(b"concat-ref".to_vec()),
        Just(b"concat-total".to_vec()),
        Just(b"concat-part".to_vec()),
        Just(b"message-timestamp".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

fn values() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b"unicode".to_vec()),
        Just(b"binary".to_vec()),
        Just(b"0".to_vec()),
        Just(b"3".to_vec()),
        Just(b"256".to_vec()),
        Just(b"delivered".to_vec()),
        Just(b"2020-02-30 25:61:61".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn vonage_parsers_never_panic_on_arbitrary_bytes(
        pairs in proptest::collection::vec((keys(), values()), 0..12),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let _ = parse_inbound(&pairs);
        let _ = parse_dlr(&pairs);
        let _ = form_pairs(&body);
        let _ = json_pairs(&body);
    }

    #[test]
    fn any_signed_parameters_verify_and_any_change_breaks_them(
        params in proptest::collection::btree_map("[a-zA-Z-]{1,12}", "\\PC{0,30}", 1..8),
        m in proptest::sample::select(METHODS.to_vec()),
        victim in any::<proptest::sample::Index>(),
    ) {
        let mut p: Vec<(Vec<u8>, Vec<u8>)> = params
            .iter()
            .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
            .filter(|(k, _)| k.as_slice() != b"sig")
            .collect();
        prop_assume!(!p.is_empty());
        let sig = sign(method(m), SIG_SECRET, &p);
        let mut signed_p = p.clone();
        signed_p.push((b"sig".to_vec(), sig.clone().into_bytes()));
        prop_assert_eq!(check_signature(method(m), SIG_SECRET, &signed_p), Ok(()));
        let i = victim.index(p.len());
        p[i].1.push(b'x');
        p.push((b"sig".to_vec(), sig.into_bytes()));
        prop_assert_eq!(check_signature(method(m), SIG_SECRET, &p), Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_text_arrives_intact_in_every_format(
        text in "[\\PC\n]{1,80}",
        format in proptest::sample::select(FORMATS.to_vec()),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = channel("sha1").await;
            let params = signed("sha1", SIG_SECRET, inbound_params(MSISDN, "p-1", &text));
            let r = call(&s, webhook_request(format, "/inbound", &params)).await;
            prop_assert_eq!(r.status(), 200);
            let events = s.sink.events();
            if text.trim().is_empty() {
                prop_assert!(events.is_empty());
            } else {
                prop_assert_eq!(events.len(), 1);
                prop_assert_eq!(&events[0].platform_id, &Some("p-1".to_owned()));
                prop_assert_eq!(&events[0].body, &Inbound::text(text.trim()));
            }
            Ok(())
        })?;
    }
}

/// A failure receipt that comes again for the same message (Vonage's retry after an answer it
/// did not get, a replay within the timestamp window) is logged and counted once.
#[tokio::test]
async fn a_repeated_failure_receipt_is_logged_once() {
    let logs = LogCapture::start();
    let (fake, _cb, s) = with_fake("sha256", Format::Get).await;
    fake.set_dlr_statuses(&["failed", "failed"]);
    send(&s, "out-f", Outbound::text("hi")).await.unwrap();
    assert!(eventually(10, || fake.answers().len() >= 2).await);
    let text = logs.text();
    let failures = text
        .lines()
        .filter(|l| l.contains("sms_not_delivered"))
        .count();
    assert_eq!(failures, 1, "{text}");
}

/// Issue #22 item 6: Vonage took the message but its answer came after our timeout. The retry
/// does not send it again: Vonage's receipt for that `client-ref` proves it went.
#[tokio::test]
async fn a_vonage_send_whose_answer_was_lost_is_not_sent_again_once_a_receipt_came() {
    let fake = FakeVonage::start("sha256", Format::PostJson).await;
    let callbacks = CallbackServer::start().await;
    let s = setup(&vonage_settings(
        &fake.url,
        &callbacks.base,
        serde_json::json!({ "signature_method": "sha256", "timeout_secs": 1 }),
    ))
    .await;
    callbacks.attach(&s);
    fake.set_dlr_statuses(&["accepted"]);
    fake.answer_late(Duration::from_secs(3));
    let e = send(&s, "lp:c:v1", Outbound::text("hello"))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(eventually(10, || fake.answers().contains(&200)).await);
    send(&s, "lp:c:v1", Outbound::text("hello")).await.unwrap();
    assert_eq!(fake.sent().len(), 1, "sent once");
}
