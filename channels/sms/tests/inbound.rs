//! MO and DLR callbacks through `handle_http`: token first, charsets, errors, dedup.

use proptest::prelude::*;
use switchboard_channel_sms::inbound::{parse_dlr, parse_mo};
use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{HttpResponse, Inbound, MessageRef, ReceiptStatus, http};

use crate::support::{Setup, TOKEN, get, pct, settings, setup};

async fn channel() -> Setup {
    setup(&settings(
        "http://127.0.0.1:9/cgi-bin/sendsms",
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "dlr_mask": 0 }),
    ))
    .await
}

async fn call(s: &Setup, uri: &str) -> HttpResponse {
    s.channel.handle_http(get(uri), &s.ctx).await
}

fn error_code(r: &HttpResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(r.body()).expect("JSON error body");
    v["error"]["code"].as_str().unwrap().to_owned()
}

const MO: &str = "from=%2B15551234567&to=1000&text=Hi+there+%26+welcome%3D1&ts=1795384794\
&id=a76999cf-a713-411f-9efb-6033962471d3&smsc=fake1&coding=0&charset=UTF-8&udh=";

#[tokio::test]
async fn utf8_mo_is_submitted_with_kannels_id() {
    let s = channel().await;
    let r = call(&s, &format!("/mo?token={TOKEN}&{MO}")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.body().is_empty(),
        "an empty 200: Kannel must not send a reply SMS"
    );
    let events = s.sink.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.body, Inbound::text("Hi there & welcome=1"));
    assert_eq!(e.consumer.instance, "sms-main");
    assert_eq!(e.consumer.id, "+15551234567");
    assert_eq!(
        e.platform_id.as_deref(),
        Some("a76999cf-a713-411f-9efb-6033962471d3")
    );
    assert_eq!(e.occurred_at_ms, Some(1_795_384_794_000));
    assert_eq!(
        e.profile.as_ref().unwrap().phone.as_deref(),
        Some("+15551234567")
    );
    // Unicode in UTF-8.
    let text = "héllo ✓";
    let r = call(
        &s,
        &format!(
            "/mo?token={TOKEN}&from=123&id=x2&text={}&charset=UTF-8",
            pct(text.as_bytes())
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.sink.events()[1].body, Inbound::text(text));
}

/// With `mo-recode = true` smsbox recodes UCS-2 messages it can to `WINDOWS-1252` (user guide,
/// `%C`): they are read as such, curly quotes and the euro sign included; the user guide's
/// `GSM` for 7-bit messages is read as the UTF-8 smsbox sends.
#[tokio::test]
async fn recoded_and_gsm_charsets_are_decoded() {
    let s = channel().await;
    let r = call(
        &s,
        &format!("/mo?token={TOKEN}&from=%2B4912&id=w1&text=%93caf%E9%94+%80%35&coding=0&charset=WINDOWS-1252"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.sink.events()[0].body, Inbound::text("“café” €5"));
    let r = call(
        &s,
        &format!("/mo?token={TOKEN}&from=%2B4912&id=w2&text=caf%C3%A9&coding=0&charset=GSM"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.sink.events()[1].body, Inbound::text("café"));
    // 0x81 has no character in Windows-1252.
    let r = call(
        &s,
        &format!("/mo?token={TOKEN}&from=%2B4912&id=w3&text=%81&charset=WINDOWS-1252"),
    )
    .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn utf16be_mo_is_decoded_by_charset() {
    let s = channel().await;
    let text = "Привет 👋\nline two";
    let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let r = call(
        &s,
        &format!(
            "/mo?token={TOKEN}&from=%2B4912&id=u1&text={}&coding=2&charset=UTF-16BE",
            pct(&bytes)
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.sink.events()[0].body, Inbound::text(text));
    // Odd byte count and a lone surrogate are refused.
    for bad in ["%04", "%D8%3D%00%41"] {
        let r = call(
            &s,
            &format!("/mo?token={TOKEN}&from=1&id=u2&text={bad}&coding=2&charset=UTF-16BE"),
        )
        .await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(error_code(&r), "bad_request");
    }
}

#[tokio::test]
async fn a_bad_or_missing_token_is_401_before_anything_is_parsed() {
    let s = channel().await;
    for uri in [
        format!("/mo?{MO}"),
        format!("/mo?token=wrong&{MO}"),
        format!("/mo?token={}&{MO}", &TOKEN[..TOKEN.len() - 1]),
        format!("/mo?token={TOKEN}x&{MO}"),
        "/mo?token=&text=%FF".to_owned(),
        "/dlr?id=x&status=1".to_owned(),
        "/mo".to_owned(),
    ] {
        let r = call(&s, &uri).await;
        assert_eq!(r.status(), 401, "{uri}");
        assert_eq!(error_code(&r), "unauthorized");
    }
    assert!(s.sink.events().is_empty());
}

#[tokio::test]
async fn malformed_callbacks_are_400_json() {
    let s = channel().await;
    for q in [
        "from=1&text=hi",                     // no id
        "id=1&text=hi",                       // no from
        "from=1&id=1",                        // no text
        "from=1&id=1&text=%FF%FE",            // not UTF-8
        "from=%FF&id=1&text=hi",              // sender not UTF-8
        "from=1&id=1&text=hi&charset=EBCDIC", // unknown charset
        "from=1&id=1&text=hi&coding=7",       // unknown coding
        "from=a%0Ab&id=1&text=hi",            // control character
    ] {
        let r = call(&s, &format!("/mo?token={TOKEN}&{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
        assert_eq!(error_code(&r), "bad_request");
    }
    for q in [
        "status=1&c=1",
        "id=x&c=1",
        "id=x&c=1&status=one",
        "id=%25x&c=1&status=1",
        "id=x&status=1",
    ] {
        let r = call(&s, &format!("/dlr?token={TOKEN}&{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
    }
    assert!(s.sink.events().is_empty());
    assert_eq!(
        call(&s, &format!("/other?token={TOKEN}")).await.status(),
        404
    );
    let post = http::Request::builder()
        .method("POST")
        .uri(format!("/mo?token={TOKEN}&{MO}"))
        .body(Default::default())
        .unwrap();
    assert_eq!(s.channel.handle_http(post, &s.ctx).await.status(), 405);
}

#[tokio::test]
async fn empty_and_binary_mo_are_acknowledged_and_dropped() {
    let s = channel().await;
    for q in [
        "from=1&id=1&text=",
        "from=1&id=2&text=+++",
        "from=1&id=3&text=%00%FF&coding=1&udh=%05%04",
    ] {
        assert_eq!(
            call(&s, &format!("/mo?token={TOKEN}&{q}")).await.status(),
            200,
            "{q}"
        );
    }
    assert!(s.sink.events().is_empty());
}

#[tokio::test]
async fn a_failed_submit_is_503_with_retry_after_and_no_ack() {
    let s = channel().await;
    s.sink.set_failing(true);
    let r = call(&s, &format!("/mo?token={TOKEN}&{MO}")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    let r = call(&s, &format!("/dlr?token={TOKEN}&id=o1&c=~2b31&status=1")).await;
    assert_eq!(r.status(), 503);
    // Nothing was recorded as seen: the retry goes through.
    s.sink.set_failing(false);
    let r = call(&s, &format!("/dlr?token={TOKEN}&id=o1&c=~2b31&status=1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.sink.events().len(), 1);
}

/// Reports for messages an earlier release sent (`id` and `c` in the dlr-url) still reach the
/// agent.
#[tokio::test]
async fn delivered_dlrs_become_receipts_once() {
    let s = channel().await;
    for status in [8, 4, 1, 1, 2, 16, 99] {
        let r = call(
            &s,
            &format!("/dlr?token={TOKEN}&id=lp:c:3&c=~2b31353535&status={status}&answer=&fid="),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(r.body().is_empty());
    }
    let events = s.sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].body,
        Inbound::Receipt {
            status: ReceiptStatus::Delivered,
            messages: vec![MessageRef::new("lp:c:3")],
        }
    );
    assert_eq!(events[0].consumer.id, "+1555");
    assert_eq!(events[0].platform_id.as_deref(), Some("dlr:lp:c:3:1"));
}

/// A report whose reference the channel keeps no record of (another system's, or forged with
/// the token) is acknowledged and submits nothing; a malformed one is a 400.
#[tokio::test]
async fn reports_for_unknown_or_malformed_references_submit_nothing() {
    let s = channel().await;
    let unknown = format!("{}.0", switchboard_channel_sms::tracking::reference("nope"));
    let r = call(&s, &format!("/dlr?token={TOKEN}&ref={unknown}&status=1")).await;
    assert_eq!(r.status(), 200);
    let r = call(&s, &format!("/dlr?token={TOKEN}&ref=zz.0&status=1")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r), "bad_request");
    assert!(s.sink.events().is_empty());
}

#[tokio::test]
async fn a_number_answering_the_last_menu_is_a_choice() {
    let s = channel().await;
    // The menu as a successful `deliver` of rich content stores it.
    let reply = |id: &str, title: &str| Button {
        id: id.into(),
        title: title.into(),
        action: ButtonAction::Reply,
    };
    let menu = serde_json::json!({
        "message": "out-9",
        "content": RichContent::with_quick_replies("Pick", vec![reply("a", "Yes"), reply("b", "No")]),
    });
    s.sink
        .state
        .lock()
        .unwrap()
        .insert("menu:+15551234567".into(), menu.to_string());
    let mo =
        |id: &str, text: &str| format!("/mo?token={TOKEN}&from=%2B15551234567&id={id}&text={text}");
    assert_eq!(call(&s, &mo("m1", "+2.+")).await.status(), 200);
    assert_eq!(call(&s, &mo("m2", "3")).await.status(), 200);
    assert_eq!(call(&s, &mo("m3", "2+please")).await.status(), 200);
    let bodies: Vec<Inbound> = s.sink.events().into_iter().map(|e| e.body).collect();
    assert_eq!(
        bodies,
        [
            Inbound::Choice {
                message: MessageRef::new("out-9"),
                choice: "b".into()
            },
            Inbound::text("3"),
            Inbound::text("2 please"),
        ]
    );
}

fn query_of(pairs: &[(Vec<u8>, Vec<u8>)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn keys() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"from".to_vec()),
        Just(b"to".to_vec()),
        Just(b"text".to_vec()),
        Just(b"id".to_vec()),
        Just(b"ts".to_vec()),
        Just(b"coding".to_vec()),
        Just(b"charset".to_vec()),
        Just(b"udh".to_vec()),
        Just(b"status".to_vec()),
        Just(b"c".to_vec()),
        Just(b"fid".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

fn values() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        Just(b"UTF-16BE".to_vec()),
        Just(b"2".to_vec()),
        Just(b"1".to_vec()),
        Just(b"~2b31".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(
        pairs in proptest::collection::vec((keys(), values()), 0..12)
    ) {
        let _ = parse_mo(&pairs);
        let _ = parse_dlr(&pairs);
    }

    #[test]
    fn callbacks_never_panic_and_answer_200_400_or_401(
        pairs in proptest::collection::vec((keys(), values()), 0..12),
        with_token in any::<bool>(),
        dlr in any::<bool>(),
        raw_tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let s = channel().await;
            let mut q = query_of(&pairs);
            if with_token {
                q = format!("token={TOKEN}&{q}");
            }
            // Raw, possibly invalid, escapes at the end of the query.
            let tail: String = raw_tail
                .iter()
                .map(|b| if b.is_ascii_alphanumeric() || *b == b'%' || *b == b'&' || *b == b'=' {
                    *b as char
                } else {
                    'x'
                })
                .collect();
            let uri = format!("/{}?{q}&{tail}", if dlr { "dlr" } else { "mo" });
            let r = s.channel.handle_http(get(&uri), &s.ctx).await;
            let status = r.status().as_u16();
            prop_assert!([200, 400, 401].contains(&status), "{status} for {uri}");
            if !with_token {
                prop_assert_eq!(status, 401);
            }
            if status != 200 {
                prop_assert!(serde_json::from_slice::<serde_json::Value>(r.body()).is_ok());
            }
            Ok(())
        })?;
    }
}

/// Issue #22 item 5: with the kannel.conf groups the channel generates, a consumer message
/// sent during a 12-minute store outage (Kannel's delays scaled down a thousand times) is
/// retried by Kannel until the store is back, and reaches the agent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannels_retries_outlast_a_store_outage_of_several_minutes() {
    let sendsms = crate::support::free_port();
    let callbacks = crate::support::CallbackServer::start().await;
    let config = crate::support::settings(
        &format!("http://127.0.0.1:{sendsms}/cgi-bin/sendsms"),
        &callbacks.base,
        serde_json::json!({}),
    );
    let snippet = switchboard_channel_sms::kannel_config_snippet(&config).unwrap();
    let kannel =
        switchboard_testkit::fake_kannel::FakeKannel::with_time_scale(&snippet, sendsms, 0.001)
            .await
            .unwrap();
    let s = crate::support::setup(&config).await;
    callbacks.attach(&s);
    s.sink.set_failing(true);
    let mo = {
        let kannel = kannel.clone();
        tokio::spawn(async move { kannel.send_mo("+15551234567", "1000", "hello").await })
    };
    // Twelve minutes of Kannel's 10-second retries.
    assert!(
        crate::support::eventually(60, || callbacks.log().len() >= 72).await,
        "Kannel gave up after {} calls",
        callbacks.log().len()
    );
    s.sink.set_failing(false);
    mo.await
        .unwrap()
        .expect("Kannel delivered the message once the store was back");
    assert_eq!(s.sink.events().len(), 1);
    assert_eq!(s.sink.events()[0].body, Inbound::text("hello"));
}
