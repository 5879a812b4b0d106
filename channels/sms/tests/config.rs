//! Config keys, defaults, errors naming keys, capabilities, and the kannel.conf snippet.

use switchboard_channel_sms::{GatewaySettings, SmsChannel, SmsConfig, kannel_config_snippet};
use switchboard_core::{Channel, ChannelConfig, Support};

use crate::support::{TOKEN, settings};

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
        "http-request-retry = 5",
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
