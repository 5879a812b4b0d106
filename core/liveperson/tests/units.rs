//! Request shapes, splitting, retry delays, manifest, identities and configuration checks.

use std::time::Duration;

use serde_json::json;
use switchboard_core::{ConsumerProfile, Secret};
use switchboard_liveperson::{
    AcceptStatus, DialogRef, EngineConfig, EngineError, MAX_SEND_CHARS, MAY_HAVE_ARRIVED,
    ManifestOptions, RetryPolicy, SendRequest, ext_consumer_id, manifest, profile_body,
    split_for_send, utf16_len,
};

/// Each piece's SEND request is within LivePerson's limit, counted in UTF-16 code units.
fn assert_each_request_fits(pieces: &[String], to: &DialogRef) {
    for piece in pieces {
        let request = SendRequest::Text {
            to: to.clone(),
            text: piece.clone(),
            metadata: None,
        }
        .to_json("4a1d3d5e-0000-4000-8000-000000000000");
        assert!(utf16_len(&request.to_string()) <= MAX_SEND_CHARS);
    }
}

#[test]
fn long_texts_split_into_requests_under_the_limit() {
    let to = DialogRef::main("8602832d-dce1-446b-8445-0d51f5926a42");
    let word = "naïve \"quoted\" words\n";
    let text = word.repeat(1000);
    let pieces = split_for_send(&text, &to);
    assert!(pieces.len() > 1);
    assert_each_request_fits(&pieces, &to);
    let joined: String = pieces.concat();
    assert_eq!(
        joined.replace(['\n', ' '], ""),
        text.replace(['\n', ' '], "")
    );
    assert_eq!(split_for_send("short", &to), vec!["short".to_owned()]);
}

/// 4,000 emoji are 4,000 characters but 8,000 UTF-16 code units, which is how LivePerson (a
/// Java service) counts its 5,000-character SEND limit: one request would be refused.
#[test]
fn the_send_budget_counts_utf16_code_units() {
    let to = DialogRef::main("8602832d-dce1-446b-8445-0d51f5926a42");
    let text = "👋".repeat(4000);
    let pieces = split_for_send(&text, &to);
    assert!(pieces.len() >= 2, "{} piece(s)", pieces.len());
    assert_each_request_fits(&pieces, &to);
    assert_eq!(pieces.concat(), text, "nothing lost, in order");
}

#[test]
fn publish_requests_carry_dialog_conversation_and_metadata() {
    let to = DialogRef {
        conversation_id: "c".into(),
        dialog_id: "d".into(),
    };
    let r = SendRequest::AcceptStatus {
        to: to.clone(),
        status: AcceptStatus::Action,
        sequences: vec![1],
        metadata: Some(json!([ { "type": "ExternalId", "id": "Yes-1234" } ])),
    }
    .to_json("22");
    assert_eq!(
        r,
        json!({ "kind": "req", "id": "22", "type": "ms.PublishEvent",
          "body": { "dialogId": "d", "conversationId": "c",
                    "event": { "type": "AcceptStatusEvent", "status": "ACTION", "sequenceList": [1] } },
          "metadata": [ { "type": "ExternalId", "id": "Yes-1234" } ] })
    );
    let close = SendRequest::Close {
        conversation_id: "c".into(),
        skip_survey: false,
    }
    .to_json("1");
    assert_eq!(
        close["body"]["conversationField"]["field"],
        "ConversationStateField"
    );
    let csat = SendRequest::Csat {
        conversation_id: "c".into(),
        rate: 5,
        resolved: true,
        status: "FILLED",
    }
    .to_json("5");
    assert_eq!(csat["body"]["conversationField"]["csatRate"], 5);
    assert!(to.is_survey());
}

#[test]
fn whether_a_request_may_have_arrived_is_the_errors_field_not_its_text() {
    let said = EngineError::Retryable {
        reason: format!("a proxy said `{MAY_HAVE_ARRIVED}`"),
        after: None,
        rate_limited: false,
        may_have_arrived: false,
    };
    assert!(!said.may_have_arrived(), "{said}");
    let lost = EngineError::Retryable {
        reason: "Send API answer lost".into(),
        after: None,
        rate_limited: false,
        may_have_arrived: true,
    };
    assert!(lost.may_have_arrived() && lost.is_retryable());
    assert_eq!(
        lost.to_string(),
        format!(
            "LivePerson is unavailable (Send API answer lost ({MAY_HAVE_ARRIVED})); will retry"
        )
    );
    assert!(
        !EngineError::Permanent {
            reason: MAY_HAVE_ARRIVED.into()
        }
        .may_have_arrived()
    );
}

#[test]
fn retry_delays_follow_liveperson_guidance() {
    let policy = RetryPolicy::default();
    let server = EngineError::Retryable {
        reason: "503".into(),
        after: None,
        rate_limited: false,
        may_have_arrived: false,
    };
    let within = |d: Duration, secs: f64| {
        let s = d.as_secs_f64();
        s >= secs * 0.89 && s <= secs * 1.11
    };
    assert!(within(policy.delay(1, &server), 5.0));
    assert!(within(policy.delay(2, &server), 10.0));
    assert!(within(policy.delay(3, &server), 15.0));
    assert!(within(policy.delay(4, &server), 120.0));
    assert!(within(policy.delay(5, &server), 240.0));
    assert!(within(policy.delay(9, &server), 480.0));
    let limited = EngineError::Retryable {
        reason: "429".into(),
        after: None,
        rate_limited: true,
        may_have_arrived: false,
    };
    assert!(within(policy.delay(7, &limited), 1.0));
    let told = EngineError::Retryable {
        reason: "429".into(),
        after: Some(Duration::from_secs(7)),
        rate_limited: true,
        may_have_arrived: false,
    };
    assert!(within(policy.delay(1, &told), 7.0));
    let fast = RetryPolicy {
        scale: 0.001,
        ..RetryPolicy::default()
    };
    assert!(fast.delay(1, &server) < Duration::from_millis(10));
}

#[test]
fn manifest_points_every_webhook_at_the_public_url() {
    let m = manifest("https://sb.example.com/", &ManifestOptions::default());
    let hooks = &m["capabilities"]["webhooks"];
    for kind in switchboard_liveperson::WEBHOOK_TYPES {
        assert_eq!(
            hooks[kind]["endpoint"],
            "https://sb.example.com/webhooks/liveperson"
        );
    }
    assert_eq!(hooks["retry"]["retention_time"], 86400);
    assert_eq!(m["scope"], "msg.consumer");
    assert_eq!(m["grant_types"], json!(["client_credentials"]));
}

/// The getting-started page's template (developer-center
/// `pages/Documents/MessagingChannels/ConnectorAPI/getting-started.md`): `logo_uri` and the
/// full engagement lists; a configured engagement table replaces only the keys it names.
#[test]
fn manifest_carries_the_templates_full_engagement_lists_and_logo() {
    let m = manifest("https://sb.example.com", &ManifestOptions::default());
    assert_eq!(
        m["logo_uri"],
        "/src/modules/campaigns/assets/img/software/Mobile-App.png"
    );
    let engagement = &m["capabilities"]["engagement"];
    let len = |key: &str| engagement[key].as_array().map(Vec::len);
    assert_eq!(len("visitor_behavior"), Some(10));
    assert_eq!(len("target_audience"), Some(16));
    assert_eq!(len("goal"), Some(5));
    assert_eq!(engagement["entry_point"], json!(["section"]));
    assert_eq!(engagement["consumer_identity"], json!(["auth"]));
    assert_eq!(engagement["target_audience"][15], "registration_date");

    let options = ManifestOptions {
        engagement: Some(json!({ "goal": ["lead"], "language_selection": true })),
        ..ManifestOptions::default()
    };
    let engagement = &manifest("https://sb.example.com", &options)["capabilities"]["engagement"];
    assert_eq!(engagement["goal"], json!(["lead"]));
    assert_eq!(engagement["language_selection"], true);
    assert_eq!(
        engagement["visitor_behavior"].as_array().map(Vec::len),
        Some(10),
        "the rest keeps its defaults"
    );
}

#[test]
fn features_default_to_rich_content_quick_replies_and_multi_dialog() {
    let config = EngineConfig::new("123", "client", Secret::new("secret"));
    assert_eq!(
        config.features,
        vec!["RICH_CONTENT", "QUICK_REPLIES", "MULTI_DIALOG"]
    );
    let mut unknown = config.clone();
    unknown.features = vec!["RICH_CONTENT".into(), "TELEPATHY".into()];
    let err = unknown.validate().unwrap_err();
    assert!(err.to_string().contains("liveperson.features"), "{err}");
    assert!(err.to_string().contains("TELEPATHY"), "{err}");
}

#[test]
fn a_campaign_needs_its_engagement_and_the_other_way_round() {
    let base = EngineConfig::new("123", "client", Secret::new("secret"));
    let mut campaign_only = base.clone();
    campaign_only.routing.campaign_id = Some("99999".into());
    let err = campaign_only.validate().unwrap_err();
    assert!(
        err.to_string().contains("liveperson.engagement_id"),
        "{err}"
    );
    let mut engagement_only = base.clone();
    engagement_only.routing.engagement_id = Some("888888".into());
    let err = engagement_only.validate().unwrap_err();
    assert!(err.to_string().contains("liveperson.campaign_id"), "{err}");
    let mut both = campaign_only;
    both.routing.engagement_id = Some("888888".into());
    both.validate().unwrap();
}

#[test]
fn ext_consumer_ids_are_stable_distinct_and_opaque() {
    let a = ext_consumer_id("sms", "+4915112345678");
    assert_eq!(a, ext_consumer_id("sms", "+4915112345678"));
    assert_ne!(a, ext_consumer_id("sms2", "+4915112345678"));
    assert_ne!(a, ext_consumer_id("sms", "+4915112345679"));
    assert!(!a.contains("4915112345678"));
    assert!(a.len() <= 64);
}

#[test]
fn profile_becomes_ctmrinfo_and_personal_sdes() {
    let profile = ConsumerProfile {
        display_name: Some("Ada Lovelace".into()),
        email: Some("ada@example.com".into()),
        username: Some("ada".into()),
        ..Default::default()
    };
    let body = profile_body(Some(&profile), "sb1-x");
    let sdes = &body["authenticatedData"]["lp_sdes"];
    assert_eq!(
        sdes[0],
        json!({ "type": "ctmrinfo", "info": { "customerId": "sb1-x", "userName": "ada" } })
    );
    assert_eq!(sdes[1]["personal"]["firstname"], "Ada");
    assert_eq!(sdes[1]["personal"]["lastname"], "Lovelace");
    assert_eq!(
        sdes[1]["personal"]["contacts"][0]["email"],
        "ada@example.com"
    );
    assert_eq!(profile_body(None, "x"), json!({}));
}

#[test]
fn configuration_refuses_plain_http_beyond_loopback() {
    let base = EngineConfig::new("123", "client", Secret::new("secret"));
    base.validate().unwrap();
    base.clone()
        .with_domain_api("http://127.0.0.1:9000")
        .validate()
        .unwrap();
    base.clone()
        .with_domain_api("http://localhost:9000")
        .validate()
        .unwrap();
    let err = base
        .clone()
        .with_domain_api("http://lp.example.com")
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("liveperson.domain_api"), "{err}");
    let mut allowed = base.clone().with_domain_api("http://lp.example.com");
    allowed.allow_insecure_http = true;
    allowed.validate().unwrap();
    let err = EngineConfig::new("123", "", Secret::new("s"))
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("liveperson.client_id"), "{err}");
    assert!(base.clone().with_domain_api("ftp://x").validate().is_err());
}
