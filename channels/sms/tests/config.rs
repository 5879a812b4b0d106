//! Config keys, defaults, errors naming keys, capabilities, and the kannel.conf snippet.

use switchboard_channel_sms::{
    GatewaySettings, Keywords, SignatureMethod, SmsChannel, SmsConfig, kannel_config_snippet,
};
use switchboard_core::{Channel, ChannelConfig, Support};

use crate::support::{TOKEN, settings, vonage_settings};

const SENDSMS: &str = "http://127.0.0.1:13013/cgi-bin/sendsms";

fn err_key(extra: serde_json::Value) -> String {
    let c = settings(SENDSMS, "https://cx.example/channels/sms-main", extra);
    SmsConfig::from_channel_config(&c).unwrap_err().key
}

#[test]
fn an_example_config_parses_with_defaults() {
    let toml_like = serde_json::json!({
        "gateway": "kannel",
        "from": "+15550001111",
        "callback_token": TOKEN,
        "sendsms_url": SENDSMS,
        "username": "switchboard",
        "password": "pw",
    });
    let c = ChannelConfig::new("sms-main", "sms", toml_like).with_public_url("https://cx.example/");
    let s = SmsConfig::from_channel_config(&c).unwrap();
    assert_eq!(s.callback_base_url, "https://cx.example/channels/sms-main");
    assert_eq!(s.max_parts, 6);
    assert_eq!(s.from, "+15550001111");
    let GatewaySettings::Kannel(k) = &s.gateway else {
        unreachable!()
    };
    assert_eq!(k.dlr_mask, 31);
    assert_eq!(k.sendsms_url.as_str(), SENDSMS);
    let debug = format!("{s:?}");
    assert!(
        !debug.contains(TOKEN) && !debug.contains("\"pw\""),
        "{debug}"
    );
    // Without server.public_url and callback_base_url, the error names server.public_url.
    let c = ChannelConfig::new("sms-main", "sms", c.settings.clone());
    assert_eq!(
        SmsConfig::from_channel_config(&c).unwrap_err().key,
        "server.public_url"
    );
}

#[test]
fn errors_name_the_full_key() {
    assert_eq!(
        err_key(serde_json::json!({ "sendsms_ur": "x" })),
        "channels.sms-main.sendsms_ur"
    );
    assert_eq!(
        err_key(serde_json::json!({ "gateway": "nexmo" })),
        "channels.sms-main.gateway"
    );
    assert_eq!(
        err_key(serde_json::json!({ "dlr_mask": 32 })),
        "channels.sms-main.dlr_mask"
    );
    assert_eq!(
        err_key(serde_json::json!({ "dlr_mask": "x" })),
        "channels.sms-main.dlr_mask"
    );
    assert_eq!(
        err_key(serde_json::json!({ "max_parts": 0 })),
        "channels.sms-main.max_parts"
    );
    assert_eq!(
        err_key(serde_json::json!({ "max_parts": 256 })),
        "channels.sms-main.max_parts"
    );
    assert_eq!(
        err_key(serde_json::json!({ "callback_token": "short" })),
        "channels.sms-main.callback_token"
    );
    assert_eq!(
        err_key(serde_json::json!({ "callback_token": "has%percent-0123456789" })),
        "channels.sms-main.callback_token"
    );
    assert_eq!(
        err_key(serde_json::json!({ "sendsms_url": "http://u:p@h/cgi-bin/sendsms" })),
        "channels.sms-main.sendsms_url"
    );
    assert_eq!(
        err_key(serde_json::json!({ "sendsms_url": "http://h/cgi-bin/sendsms?password=x" })),
        "channels.sms-main.sendsms_url"
    );
    assert_eq!(
        err_key(serde_json::json!({ "sendsms_url": null })),
        "channels.sms-main.sendsms_url"
    );
    assert_eq!(
        err_key(serde_json::json!({ "password": null })),
        "channels.sms-main.password"
    );
    assert_eq!(
        err_key(serde_json::json!({ "from": "" })),
        "channels.sms-main.from"
    );
    assert_eq!(
        err_key(serde_json::json!({ "callback_base_url": "ftp://x" })),
        "channels.sms-main.callback_base_url"
    );
}

#[test]
fn capabilities_declare_an_sms_channel() {
    let c = settings(
        SENDSMS,
        "https://cx.example/channels/sms-main",
        serde_json::json!({}),
    );
    let ch = SmsChannel::from_config(&c).unwrap();
    let caps = ch.capabilities();
    assert_eq!(caps.text, Support::Full);
    assert_eq!(caps.rich_content, Support::Fallback);
    assert_eq!(caps.images, Support::Unsupported);
    assert_eq!(caps.files, Support::Unsupported);
    assert_eq!(caps.typing, Support::Unsupported);
    assert!(caps.delivery_receipts);
    assert!(!caps.read_receipts);
    assert_eq!(caps.max_text_chars, Some(6 * 153));
    assert!(!format!("{ch:?}").contains("s3cret-pass"));
    assert!(
        !format!("{ch:?}").contains(TOKEN),
        "the dlr-url's token stays hidden"
    );
    // Without final reports (bit 1), the runtime acknowledges when Kannel takes the message.
    let c = settings(
        SENDSMS,
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "dlr_mask": 8 }),
    );
    assert!(
        !SmsChannel::from_config(&c)
            .unwrap()
            .capabilities()
            .delivery_receipts
    );
}

#[test]
fn the_kannel_snippet_has_the_get_url_and_safe_settings() {
    let c = settings(
        "http://10.0.0.5:14013/cgi-bin/sendsms",
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "max_parts": 4 }),
    );
    let s = kannel_config_snippet(&c).unwrap();
    assert!(s.contains(&format!(
        "get-url = \"https://cx.example/channels/sms-main/mo?token={TOKEN}&from=%p&to=%P&text=%b&ts=%T&id=%I&smsc=%i&coding=%c&charset=%C&udh=%u\""
    )), "{s}");
    for line in [
        "group = smsbox",
        "sendsms-port = 14013",
        "http-request-retry = 90",
        "http-queue-delay = 10",
        "group = sendsms-user",
        "username = \"sb\"",
        "max-messages = 4",
        "concatenation = true",
        "group = sms-service",
        "keyword = default",
        "catch-all = true",
        "max-messages = 0",
    ] {
        assert!(s.lines().any(|l| l == line), "missing `{line}` in\n{s}");
    }
    let bad = settings(
        SENDSMS,
        "https://x",
        serde_json::json!({ "username": null }),
    );
    assert_eq!(
        kannel_config_snippet(&bad).unwrap_err().key,
        "channels.sms-main.username"
    );
}

/// Issue #22 item 5: Kannel retries a failed MO or DLR callback `http-request-retry` times,
/// every `http-queue-delay` seconds (a fixed delay), then drops it: the generated groups must
/// outlast a store outage of several minutes (at least ten).
#[test]
fn the_kannel_snippet_retries_callbacks_through_a_ten_minute_outage() {
    let c = settings(
        SENDSMS,
        "https://cx.example/channels/sms-main",
        serde_json::json!({}),
    );
    let s = kannel_config_snippet(&c).unwrap();
    let value = |key: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{s}"))
            .trim()
            .parse()
            .unwrap()
    };
    let covered = value("http-request-retry") * value("http-queue-delay");
    assert!(covered >= 600, "{covered} s of retries:\n{s}");
}

const VONAGE_BASE: &str = "https://cx.example/channels/sms-main";

fn vonage_err_key(extra: serde_json::Value) -> String {
    let c = vonage_settings("http://127.0.0.1:9", VONAGE_BASE, extra);
    SmsConfig::from_channel_config(&c).unwrap_err().key
}

#[test]
fn a_vonage_config_parses_with_defaults() {
    let c = ChannelConfig::new(
        "sms-main",
        "sms",
        serde_json::json!({
            "gateway": "vonage",
            "from": "+447700900000",
            "api_key": "abcd1234",
            "api_secret": "api-s3cret-XYZ",
            "signature_secret": "sig-s3cret-0123456789abcdef",
        }),
    )
    .with_public_url("https://cx.example");
    let s = SmsConfig::from_channel_config(&c).unwrap();
    assert_eq!(s.callback_base_url, "https://cx.example/channels/sms-main");
    assert_eq!(s.default_country_code, None);
    assert_eq!(s.keywords, Keywords::default());
    assert_eq!(
        s.keywords.opt_out,
        [
            "stop",
            "stopall",
            "stop all",
            "unsubscribe",
            "cancel",
            "end",
            "quit",
            "revoke",
            "opt out",
            "opt-out",
            "optout"
        ]
    );
    assert_eq!(s.keywords.opt_in, ["start", "yes", "unstop"]);
    assert_eq!(s.keywords.help, ["help", "info"]);
    let GatewaySettings::Vonage(v) = &s.gateway else {
        unreachable!()
    };
    assert_eq!(
        v.signature_method,
        SignatureMethod::Md5Hash,
        "Vonage's default"
    );
    assert_eq!(v.api_base_url.as_str(), "https://rest.nexmo.com/");
    assert_eq!(v.api_key, "abcd1234");
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("api-s3cret-XYZ") && !debug.contains("sig-s3cret-0123456789abcdef"),
        "{debug}"
    );
    for (name, method) in [
        ("md5hash", SignatureMethod::Md5Hash),
        ("md5", SignatureMethod::Md5),
        ("sha1", SignatureMethod::Sha1),
        ("sha256", SignatureMethod::Sha256),
        ("sha512", SignatureMethod::Sha512),
    ] {
        let c = vonage_settings(
            "http://127.0.0.1:9",
            VONAGE_BASE,
            serde_json::json!({ "signature_method": name, "default_country_code": "+44" }),
        );
        let s = SmsConfig::from_channel_config(&c).unwrap();
        let GatewaySettings::Vonage(v) = &s.gateway else {
            unreachable!()
        };
        assert_eq!(v.signature_method, method);
        assert_eq!(s.default_country_code.as_deref(), Some("44"));
    }
    // Capabilities are those of any SMS channel; no secret in Debug.
    let ch = SmsChannel::from_config(&c).unwrap();
    assert_eq!(ch.capabilities().images, Support::Unsupported);
    assert!(ch.capabilities().delivery_receipts);
    assert!(!format!("{ch:?}").contains("api-s3cret-XYZ"));
}

#[test]
fn every_new_key_is_named_in_its_errors() {
    let k = |key: &str| format!("channels.sms-main.{key}");
    for (extra, key) in [
        (serde_json::json!({ "api_key": null }), "api_key"),
        (serde_json::json!({ "api_key": "has space" }), "api_key"),
        (serde_json::json!({ "api_key": "abcd123" }), "api_key"),
        (serde_json::json!({ "api_key": "abcd12345" }), "api_key"),
        (serde_json::json!({ "api_secret": "short" }), "api_secret"),
        (
            serde_json::json!({ "api_secret": "x".repeat(33) }),
            "api_secret",
        ),
        (serde_json::json!({ "api_secret": null }), "api_secret"),
        (serde_json::json!({ "api_secret": "" }), "api_secret"),
        (
            serde_json::json!({ "signature_secret": null }),
            "signature_secret",
        ),
        (
            serde_json::json!({ "signature_method": "sha384" }),
            "signature_method",
        ),
        (
            serde_json::json!({ "signature_method": 256 }),
            "signature_method",
        ),
        (
            serde_json::json!({ "api_base_url": "ftp://rest.nexmo.com" }),
            "api_base_url",
        ),
        (
            serde_json::json!({ "api_base_url": "https://k:s@rest.nexmo.com" }),
            "api_base_url",
        ),
        (
            serde_json::json!({ "api_base_url": "https://rest.nexmo.com?api_key=x" }),
            "api_base_url",
        ),
        (
            serde_json::json!({ "api_base_url": "not a url" }),
            "api_base_url",
        ),
        (serde_json::json!({ "from": "Too Long Sender" }), "from"),
        (serde_json::json!({ "from": "+1234567890123456" }), "from"),
        (
            serde_json::json!({ "default_country_code": "abc" }),
            "default_country_code",
        ),
        (
            serde_json::json!({ "default_country_code": "0" }),
            "default_country_code",
        ),
        (
            serde_json::json!({ "default_country_code": "1234" }),
            "default_country_code",
        ),
        (
            serde_json::json!({ "default_country_code": 44 }),
            "default_country_code",
        ),
        (
            serde_json::json!({ "keywords": { "opt_out": [""] } }),
            "keywords.opt_out",
        ),
        (
            serde_json::json!({ "keywords": { "opt_in": ["x".repeat(33)] } }),
            "keywords.opt_in",
        ),
        (
            serde_json::json!({ "keywords": { "help": ["STOP"] } }),
            "keywords.help",
        ),
        (
            serde_json::json!({ "keywords": { "opt_in": ["stop"] } }),
            "keywords.opt_in",
        ),
        (
            serde_json::json!({ "keywords": { "opt_out_reply": " " } }),
            "keywords.opt_out_reply",
        ),
        (
            serde_json::json!({ "keywords": { "opt_in_reply": "x".repeat(641) } }),
            "keywords.opt_in_reply",
        ),
        (
            serde_json::json!({ "keywords": { "help_reply": "" } }),
            "keywords.help_reply",
        ),
        (
            serde_json::json!({ "keywords": { "forward": "yes" } }),
            "keywords.forward",
        ),
        (
            serde_json::json!({ "keywords": { "enabled": 1 } }),
            "keywords.enabled",
        ),
        (
            serde_json::json!({ "keywords": { "stop": ["x"] } }),
            "keywords.stop",
        ),
        (serde_json::json!({ "keywords": "on" }), "keywords"),
        // Kannel's keys are not Vonage's.
        (
            serde_json::json!({ "callback_token": TOKEN }),
            "callback_token",
        ),
        (serde_json::json!({ "sendsms_url": SENDSMS }), "sendsms_url"),
        (serde_json::json!({ "username": "u" }), "username"),
        (serde_json::json!({ "password": "p" }), "password"),
        (serde_json::json!({ "dlr_mask": 1 }), "dlr_mask"),
    ] {
        assert_eq!(vonage_err_key(extra.clone()), k(key), "{extra}");
    }
    // And Vonage's are not Kannel's.
    for (extra, key) in [
        (serde_json::json!({ "api_key": "abcd1234" }), "api_key"),
        (serde_json::json!({ "api_secret": "s" }), "api_secret"),
        (
            serde_json::json!({ "signature_secret": "s" }),
            "signature_secret",
        ),
        (
            serde_json::json!({ "signature_method": "sha256" }),
            "signature_method",
        ),
        (
            serde_json::json!({ "api_base_url": "https://rest.nexmo.com" }),
            "api_base_url",
        ),
        (
            serde_json::json!({ "callback_token": null }),
            "callback_token",
        ),
        (
            serde_json::json!({ "default_country_code": "" }),
            "default_country_code",
        ),
    ] {
        assert_eq!(err_key(extra.clone()), k(key), "{extra}");
    }
    // Vonage takes alphanumeric senders and numbers with or without `+`.
    for from in ["MyBrand", "447700900000", "+447700900000", "Shop 24"] {
        let c = vonage_settings(
            "http://127.0.0.1:9",
            VONAGE_BASE,
            serde_json::json!({ "from": from }),
        );
        assert!(SmsConfig::from_channel_config(&c).is_ok(), "{from}");
    }
}

#[test]
fn the_kannel_snippet_is_for_kannel_only() {
    let c = vonage_settings("http://127.0.0.1:9", VONAGE_BASE, serde_json::json!({}));
    assert_eq!(
        kannel_config_snippet(&c).unwrap_err().key,
        "channels.sms-main.gateway"
    );
}

/// Kannel's SQL DLR storages keep a message's dlr-url in 255 characters (its example tables'
/// `url varchar(255)`): a callback URL and token that make a longer one are refused, naming
/// the key, instead of losing every delivery report.
#[test]
fn a_dlr_url_longer_than_kannel_stores_is_a_config_error() {
    let long_base = format!("https://cx.example/{}/channels/sms-main", "p".repeat(120));
    let token = "t".repeat(64);
    let config = settings(
        "http://127.0.0.1:13013/cgi-bin/sendsms",
        &long_base,
        serde_json::json!({ "callback_token": token }),
    );
    let e = SmsConfig::from_channel_config(&config).unwrap_err();
    assert_eq!(e.key, "channels.sms-main.callback_base_url");
    assert!(e.message.contains("255"), "{}", e.message);
    // A realistic URL with a 64-character token fits.
    let config = settings(
        "http://127.0.0.1:13013/cgi-bin/sendsms",
        "https://connector.example.com/channels/sms-main",
        serde_json::json!({ "callback_token": token }),
    );
    let s = SmsConfig::from_channel_config(&config).unwrap();
    assert!(
        switchboard_channel_sms::dlr_url_len(&s.callback_base_url, &token)
            <= switchboard_channel_sms::DLR_URL_MAX
    );
}

/// `concat_wait_secs`: Vonage only (Kannel puts long messages together itself), 5 to 86400.
#[test]
fn the_wait_for_missing_parts_is_a_vonage_setting_within_bounds() {
    assert_eq!(
        err_key(serde_json::json!({ "concat_wait_secs": 60 })),
        "channels.sms-main.concat_wait_secs",
        "not used with Kannel"
    );
    for bad in [0, 4, 86_401] {
        assert_eq!(
            vonage_err_key(serde_json::json!({ "concat_wait_secs": bad })),
            "channels.sms-main.concat_wait_secs"
        );
    }
    let c = vonage_settings(
        "https://rest.nexmo.com",
        VONAGE_BASE,
        serde_json::json!({ "concat_wait_secs": 120 }),
    );
    let GatewaySettings::Vonage(v) = SmsConfig::from_channel_config(&c).unwrap().gateway else {
        unreachable!()
    };
    assert_eq!(v.concat_wait.as_secs(), 120);
}

/// `report_wait_secs`: how long an uncertain call waits for the gateway's report, 5 to 3600,
/// 120 by default; with Kannel only where the DLR mask asks for the SMSC's answer (8 or 16):
/// without it no report can come, and the key would be silently ignored.
#[test]
fn the_wait_for_an_uncertain_calls_report_is_bounded_and_needs_a_report() {
    let c = settings(
        "http://127.0.0.1:13013/cgi-bin/sendsms",
        "https://cx.example/channels/sms-main",
        serde_json::json!({}),
    );
    let s = SmsConfig::from_channel_config(&c).unwrap();
    assert_eq!(
        s.report_wait.as_secs(),
        switchboard_channel_sms::DEFAULT_REPORT_WAIT_SECS
    );
    for bad in [0, 4, 3601] {
        assert_eq!(
            err_key(serde_json::json!({ "report_wait_secs": bad })),
            "channels.sms-main.report_wait_secs"
        );
        assert_eq!(
            vonage_err_key(serde_json::json!({ "report_wait_secs": bad })),
            "channels.sms-main.report_wait_secs"
        );
    }
    let c = settings(
        "http://127.0.0.1:13013/cgi-bin/sendsms",
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "report_wait_secs": 15 }),
    );
    assert_eq!(
        SmsConfig::from_channel_config(&c)
            .unwrap()
            .report_wait
            .as_secs(),
        15
    );
    // Kannel asked only for handset reports (1, 2): the SMSC's answer never comes.
    assert_eq!(
        err_key(serde_json::json!({ "dlr_mask": 3, "report_wait_secs": 15 })),
        "channels.sms-main.report_wait_secs"
    );
    let c = vonage_settings(
        "https://rest.nexmo.com",
        VONAGE_BASE,
        serde_json::json!({ "report_wait_secs": 30 }),
    );
    assert_eq!(
        SmsConfig::from_channel_config(&c)
            .unwrap()
            .report_wait
            .as_secs(),
        30
    );
}
