//! E.164 normalisation: the rules, idempotence, and one consumer whatever form the gateway
//! used.

use proptest::prelude::*;
use switchboard_channel_sms::number::{is_e164, is_short_code, normalize};
use switchboard_core::{Outbound, OutboundEvent};

use crate::support::{TOKEN, fake_kannel, get, settings, setup, vonage_settings};
use switchboard_testkit::fake_vonage::{
    FakeVonage, Format, SIG_SECRET, inbound_params, signed, webhook_request,
};

#[test]
fn numbers_become_e164() {
    let cases: [(&str, Option<&str>, &str); 18] = [
        ("+15551234567", None, "+15551234567"),
        ("+1 (555) 123-4567", None, "+15551234567"),
        ("0015551234567", None, "+15551234567"),
        ("00 44 7700 900001", None, "+447700900001"),
        ("15551234567", None, "+15551234567"),
        ("447700900001", None, "+447700900001"),
        (" +49 30 1234567 ", None, "+49301234567"),
        ("1234567", None, "+1234567"),
        // Short codes are left alone.
        ("1000", None, "1000"),
        ("123456", None, "123456"),
        ("12 34", None, "1234"),
        // National numbers need a default country code.
        ("020 7946 0018", Some("44"), "+442079460018"),
        ("020 7946 0018", None, "02079460018"),
        ("07700 900001", Some("44"), "+447700900001"),
        ("(555) 123-4567", Some("1"), "+15551234567"),
        ("555.123.4567", Some("1"), "+15551234567"),
        // Alphanumeric senders and junk: unchanged (trimmed).
        ("MyBrand", None, "MyBrand"),
        (" +1 555 CALL ", None, "+1 555 CALL"),
    ];
    for (raw, cc, expected) in cases {
        assert_eq!(normalize(raw, cc), expected, "{raw:?} with {cc:?}");
    }
    assert!(is_e164("+15551234567"));
    assert!(!is_e164("15551234567"));
    assert!(!is_e164("+1000"));
    assert!(!is_e164("+0123456789"));
    assert!(is_short_code("1000"));
    assert!(!is_short_code("1234567"));
}

#[tokio::test]
async fn one_person_is_one_consumer_whatever_form_the_gateway_used() {
    // Kannel: `%p` as the SMSC gives it.
    let s = setup(&settings(
        "http://127.0.0.1:9/cgi-bin/sendsms",
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "dlr_mask": 0, "default_country_code": "44" }),
    ))
    .await;
    for (i, from) in [
        "%2B447700900001",
        "00447700900001",
        "447700900001",
        "07700900001",
        "%2B44+7700+900+001",
    ]
    .iter()
    .enumerate()
    {
        let r = s
            .channel
            .handle_http(
                get(&format!("/mo?token={TOKEN}&from={from}&id=k{i}&text=hi")),
                &s.ctx,
            )
            .await;
        assert_eq!(r.status(), 200, "{from}");
    }
    let ids: Vec<String> = s.sink.events().into_iter().map(|e| e.consumer.id).collect();
    assert_eq!(ids, vec!["+447700900001"; 5]);
    // Vonage: `msisdn` without `+`.
    let v = setup(&vonage_settings(
        "http://127.0.0.1:9",
        "https://cx.example/channels/sms-main",
        serde_json::json!({}),
    ))
    .await;
    let params = signed(
        "md5hash",
        SIG_SECRET,
        inbound_params("447700900001", "v1", "hi"),
    );
    let r = v
        .channel
        .handle_http(webhook_request(Format::Get, "/inbound", &params), &v.ctx)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(v.sink.events()[0].consumer.id, "+447700900001");
}

#[tokio::test]
async fn outbound_numbers_are_normalised_for_each_gateway() {
    let kannel = fake_kannel(6).await;
    let s = setup(&settings(
        &kannel.sendsms_url(),
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "dlr_mask": 0 }),
    ))
    .await;
    let event = OutboundEvent::new("o1", Outbound::text("hi"));
    s.channel
        .deliver(&s.ctx.consumer("00 44 7700 900001"), &event)
        .await
        .unwrap();
    assert_eq!(kannel.accepted()[0].headers["x-kannel-to"], "+447700900001");
    let vonage = FakeVonage::start("md5hash", Format::Get).await;
    vonage.set_dlr_statuses(&[]);
    let v = setup(&vonage_settings(
        &vonage.url,
        "https://cx.example/channels/sms-main",
        serde_json::json!({}),
    ))
    .await;
    v.channel
        .deliver(&v.ctx.consumer("+44 7700 900001"), &event)
        .await
        .unwrap();
    assert_eq!(vonage.sent()[0].params["to"], "447700900001");
}

fn cc() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("1")),
        Just(Some("44")),
        Just(Some("358"))
    ]
}

proptest! {
    #[test]
    fn normalisation_is_idempotent(raw in "[ +0-9()\\-.]{0,24}", cc in cc()) {
        let once = normalize(&raw, cc);
        prop_assert_eq!(normalize(&once, cc), once.clone());
    }

    #[test]
    fn normalisation_is_idempotent_on_any_text(raw in "\\PC{0,24}", cc in cc()) {
        let once = normalize(&raw, cc);
        prop_assert_eq!(normalize(&once, cc), once.clone());
    }

    #[test]
    fn formatting_never_changes_the_number(digits in "[1-9][0-9]{6,13}", seps in proptest::collection::vec(prop_oneof![Just(" "), Just("-"), Just("."), Just("")], 16)) {
        // The same number, with separators sprinkled in, with `+`, `00` or nothing in front.
        let mut spaced = String::new();
        for (i, c) in digits.chars().enumerate() {
            spaced.push(c);
            spaced.push_str(seps[i % seps.len()]);
        }
        let expected = format!("+{digits}");
        prop_assert_eq!(normalize(&format!("+{spaced}"), None), expected.clone());
        prop_assert_eq!(normalize(&format!("00{spaced}"), None), expected.clone());
        prop_assert_eq!(normalize(&format!("({}) {}", &spaced[..1], &spaced[1..]), None), expected.clone());
        prop_assert!(is_e164(&expected) || digits.len() > 15);
    }
}
