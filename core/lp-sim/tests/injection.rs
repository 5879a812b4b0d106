//! The injection points of docs/protocol/liveperson.md §14 that the normal flow never produces: odd webhook shapes,
//! malformed Send API answers, commit-then-timeout per endpoint, Domain API, Sentinel and IdP
//! misbehaviour.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};
use switchboard_lp_sim::{
    FaultRequest, InjectKind, MalformedReply, PathClass, ScriptedFault, SignatureAlgorithm,
    WebhookInjection, signature_header,
};
use time::PrimitiveDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::common::{Client, Receiver, start_default, text};

fn injection(kind: InjectKind, conversation: &str) -> WebhookInjection {
    WebhookInjection {
        kind,
        conversation_id: Some(conversation.to_owned()),
        ..Default::default()
    }
}

fn changes(v: &Value) -> Vec<Value> {
    v["body"]["changes"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn webhook_injections_have_the_documented_shapes_and_are_signed() {
    let rx = Receiver::start().await;
    let sim = start_default().await;
    sim.set_webhook_endpoint(&rx.url);
    let c = Client::new(&sim);
    let (_app, _jws, conv) = c.open("inject").await;
    sim.agent_accept(&conv).unwrap();
    // Created + agent joined.
    let before = rx.wait(|a| a.len() >= 2).await.len();

    let multi = sim
        .inject_webhook(WebhookInjection {
            texts: vec!["one".into(), "two".into(), "three".into()],
            ..injection(InjectKind::MultipleChanges, &conv)
        })
        .unwrap();
    assert_eq!(multi.notifications, 1);
    assert_eq!(multi.sequences, vec![0, 1, 2]);
    // Over HTTP, as the console does.
    let r = c
        .http
        .post(format!("{}/sim/webhooks/inject", sim.base_url()))
        .json(&json!({"kind": "empty_changes", "conversation_id": conv}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for kind in [
        InjectKind::MissingConversationId,
        InjectKind::RichContentString,
        InjectKind::UnknownEvents,
        InjectKind::ExtraFields,
        InjectKind::StaleConversation,
        InjectKind::Delete,
    ] {
        sim.inject_webhook(injection(kind, &conv)).unwrap();
    }
    sim.inject_webhook(WebhookInjection {
        client_id: Some("another-app".into()),
        account_id: Some("another-account".into()),
        texts: vec!["wrong headers".into()],
        ..injection(InjectKind::AgentText, &conv)
    })
    .unwrap();
    // 1 + 1 + 1 + 1 + 3 (unknown events) + 1 + 1 + 1 + 1
    let got = rx.wait(|a| a.len() >= before + 11).await;
    let got = &got[before..];
    let secret = sim.client_secret();
    for r in got {
        assert_eq!(
            r.headers["x-liveperson-signature"].to_str().unwrap(),
            signature_header(&secret, &r.body, SignatureAlgorithm::Sha1),
            "every injection is signed over its exact bytes"
        );
    }
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let texts: Vec<String> = changes(&bodies[0])
        .iter()
        .map(|c| c["event"]["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        ["one", "two", "three"],
        "several changes, one notification"
    );
    assert_eq!(changes(&bodies[1]), Vec::<Value>::new());
    let missing = &changes(&bodies[2])[0];
    assert!(missing.get("conversationId").is_none());
    assert_eq!(missing["dialogId"], conv.as_str());
    let rich = &changes(&bodies[3])[0]["event"];
    assert_eq!(rich["type"], "RichContentEvent");
    let parsed: Value = serde_json::from_str(rich["content"].as_str().unwrap()).unwrap();
    assert_eq!(parsed["type"], "vertical");
    let unknown: Vec<Value> = bodies[4..7].iter().map(|b| changes(b)[0].clone()).collect();
    assert_eq!(unknown[0]["event"]["type"], "FutureEvent");
    assert!(
        unknown[0]["sequence"].is_u64(),
        "unknown events take a sequence"
    );
    assert_eq!(unknown[1]["event"]["contentType"], "application/x-future");
    assert_eq!(unknown[2]["event"]["chatState"], "BACKGROUND");
    let extra = &bodies[7];
    assert!(extra["futureRootField"].is_object());
    assert!(extra["body"]["futureBodyField"].is_object());
    assert!(changes(extra)[0]["futureChangeField"].is_object());
    assert!(changes(extra)[0]["event"]["futureEventField"].is_object());
    let stale = &changes(&bodies[8])[0];
    let current = sim.conversation(&conv).unwrap();
    assert_eq!(stale["type"], "UPSERT");
    assert_eq!(
        stale["result"]["conversationDetails"]["metaDataLastUpdateTs"],
        current.start_ts
    );
    assert!(current.meta_data_last_update_ts > current.start_ts);
    let delete = &changes(&bodies[9])[0];
    assert_eq!(delete["type"], "DELETE");
    assert_eq!(delete["result"]["convId"], conv.as_str());
    let wrong = &got[10];
    assert_eq!(wrong.headers["x-liveperson-client-id"], "another-app");
    assert_eq!(wrong.headers["x-liveperson-account-id"], "another-account");

    // Publishing kinds need an open conversation; unknown ids are 404 over HTTP.
    sim.agent_close(&conv, false).unwrap();
    assert!(
        sim.inject_webhook(injection(InjectKind::AgentText, &conv))
            .is_err()
    );
    let r = c
        .http
        .post(format!("{}/sim/webhooks/inject", sim.base_url()))
        .json(&json!({"kind": "delete", "conversation_id": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Raw: any body, signed, to the endpoint of its type.
    let raw = json!({"kind": "notification", "type": "ms.MessagingEventNotification",
                     "body": {"changes": [{"event": {"type": "ChatStateEvent", "chatState": "GONE"}}]}});
    sim.inject_webhook(WebhookInjection {
        kind: InjectKind::Raw,
        body: Some(raw.clone()),
        ..Default::default()
    })
    .unwrap();
    let got = rx.wait(|a| a.iter().any(|r| r.json() == raw)).await;
    assert!(sim.webhook_deliveries().iter().any(|d| d.notification_type
        == "ms.MessagingEventNotification.ChatStateEvent"
        && d.body == raw));
    assert!(!got.is_empty());
}

#[tokio::test]
async fn malformed_answers_come_after_the_request_was_acted_on() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("malformed").await;
    let cases = [
        (MalformedReply::NonJson, "non json"),
        (MalformedReply::StringBody, "string body"),
        (MalformedReply::NumericCode, "numeric code"),
        (MalformedReply::EmptyArray, "empty array"),
        (MalformedReply::JsonString, "json string"),
    ];
    for (i, (reply, message)) in cases.into_iter().enumerate() {
        sim.malform_next(PathClass::Send, 1, reply);
        let base = c.host("asyncMessagingEnt").await;
        let r = c
            .http
            .post(format!(
                "{base}/api/account/{}/messaging/consumer/conversation/send?v=3",
                c.acc
            ))
            .header("authorization", &app)
            .header("x-lp-on-behalf", &jws)
            .json(&text(&i.to_string(), &conv, message))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{reply:?}");
        let body = r.text().await.unwrap();
        match reply {
            MalformedReply::NonJson => assert!(serde_json::from_str::<Value>(&body).is_err()),
            MalformedReply::StringBody => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["code"], "OK");
                assert!(v["body"].is_string(), "{v}");
            }
            MalformedReply::NumericCode => {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["code"], 200);
                assert!(v["body"]["sequence"].is_u64());
            }
            MalformedReply::EmptyArray => assert_eq!(body, "[]"),
            MalformedReply::JsonString => assert_eq!(body, "\"OK\""),
        }
        assert!(
            sim.wait_for_consumer_message(message, Duration::from_secs(5))
                .await
                .is_some(),
            "{reply:?}: the request was acted on"
        );
    }
    // Errors too: a numeric code on "Conversation is close".
    sim.agent_close(&conv, false).unwrap();
    sim.malform_next(PathClass::Send, 1, MalformedReply::NumericCode);
    let r = c.send(&app, &jws, text("9", &conv, "late")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], 400);
    assert_eq!(r.body["body"]["msg"], "Bad Request, Conversation is close");
    // Consumed: the next answer is normal.
    let r = c.create(&app, &jws).await;
    assert_eq!(r.body[1]["code"], "OK");
    assert!(sim.faults().malformed.is_empty());
}

#[tokio::test]
async fn commit_then_timeout_for_one_endpoint_group_only() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, first) = c.open("delayed").await;
    sim.agent_close(&first, false).unwrap();
    sim.delay_next(PathClass::Conversation, 1, Duration::from_secs(3));
    // Other groups answer as usual meanwhile.
    let base = c.host("asyncMessagingEnt").await;
    let create = c
        .http
        .post(format!(
            "{base}/api/account/{}/messaging/consumer/conversation?v=3",
            c.acc
        ))
        .timeout(Duration::from_millis(200))
        .header("authorization", &app)
        .header("x-lp-on-behalf", &jws)
        .json(&json!([
            {"kind": "req", "id": "1", "type": "userprofile.SetUserProfile", "body": {}},
            {"kind": "req", "id": "2", "type": "cm.ConsumerRequestConversation",
             "body": {"brandId": c.acc, "channelType": "MESSAGING"}}
        ]))
        .send()
        .await;
    assert!(create.is_err(), "the client gave up");
    assert!(sim.faults().delayed.is_empty(), "consumed by that request");
    // Created although the client saw a timeout: a second create is refused.
    let again = c.create(&app, &jws).await;
    assert_eq!(again.status, 400);
    assert!(
        again.body[1]["body"]["msg"]
            .as_str()
            .unwrap()
            .contains("already has open conversation")
    );
    assert_eq!(sim.conversations().len(), 2);
}

#[tokio::test]
async fn retry_after_can_be_an_http_date() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("dated").await;
    sim.apply_faults(FaultRequest {
        fail_next: Some(ScriptedFault {
            class: PathClass::Send,
            count: 1,
            status: 429,
            retry_after: Some(120),
            retry_after_http_date: true,
        }),
        ..Default::default()
    });
    let r = c.send(&app, &jws, text("1", &conv, "x")).await;
    assert_eq!(r.status, 429);
    let value = r.headers["retry-after"].to_str().unwrap();
    let at = httpdate_parse(value);
    let ahead = at
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    assert!((60..=120).contains(&ahead), "{value}: {ahead}s ahead");
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → time. Strictly the IMF-fixdate form, the one a sender
/// must generate (RFC 9110 §5.6.7): it must read back exactly as the simulator wrote it,
/// which also checks the weekday against the date.
fn httpdate_parse(value: &str) -> SystemTime {
    const IMF_FIXDATE: &[BorrowedFormatItem<'static>] = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = PrimitiveDateTime::parse(value, IMF_FIXDATE)
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .assume_utc();
    assert_eq!(at.format(IMF_FIXDATE).unwrap(), value);
    let secs = u64::try_from(at.unix_timestamp()).expect("after 1970");
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test]
async fn domain_api_hosts_can_move_or_vanish() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let all = format!(
        "{}/api/account/{}/service/baseURI.json?version=1.0",
        c.domain, c.acc
    );
    let one = |service: &str| {
        format!(
            "{}/api/account/{}/service/{service}/baseURI.json?version=1.0",
            c.domain, c.acc
        )
    };
    sim.set_domain_host("asyncMessagingEnt", Some("localhost:1"));
    sim.set_domain_missing("swift", true);
    let listed = c.get(&all).await.body;
    let entries = listed["baseURIs"].as_array().unwrap();
    let host = |name: &str| {
        entries
            .iter()
            .find(|e| e["service"] == name)
            .map(|e| e["baseURI"].clone())
    };
    assert_eq!(host("asyncMessagingEnt"), Some(json!("localhost:1")));
    assert_eq!(host("sentinel"), Some(json!(sim.public_host())));
    assert_eq!(host("swift"), None);
    assert_eq!(
        c.get(&one("asyncMessagingEnt")).await.body["baseURI"],
        "localhost:1"
    );
    assert_eq!(c.get(&one("swift")).await.status, 400);
    sim.set_domain_host("asyncMessagingEnt", None);
    sim.set_domain_missing("swift", false);
    assert_eq!(
        c.get(&one("asyncMessagingEnt")).await.body["baseURI"],
        json!(sim.public_host())
    );
    assert_eq!(c.get(&one("swift")).await.status, 200);
    // The Send API logs which host a request was addressed to.
    let (app, jws, conv) = c.open("hosts").await;
    c.send(&app, &jws, text("1", &conv, "hi")).await;
    let logged = sim.received_requests();
    assert_eq!(
        logged.last().unwrap().host.as_deref(),
        Some(sim.public_host().as_str())
    );
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn sentinel_clock_skew_and_idp_200() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let real = c.app_jwt().await;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // LivePerson's clock two hours behind: tokens are issued and checked on it.
    sim.set_clock_skew(-7200);
    let skewed = c.app_jwt().await;
    let iat = claims(&skewed)["iat"].as_i64().unwrap();
    assert!((now - 7200 - 5..=now - 7200 + 5).contains(&iat), "{iat}");
    assert!(
        claims(&skewed)["exp"].as_i64().unwrap() < now,
        "expired by the real clock"
    );
    let jws = c.jws(&skewed, "skewed").await;
    let created = c.create(&skewed, &jws).await;
    assert_eq!(created.status, 200, "valid on LivePerson's clock");
    // Two hours ahead: the token issued on the real clock has expired there.
    sim.set_clock_skew(7200);
    let refused = c.create(&real, &jws).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["body"]["errorCode"], 40102);
    sim.set_clock_skew(0);

    // The IdP answers 200 instead of 201.
    sim.apply_faults(FaultRequest {
        idp_status_200: Some(true),
        ..Default::default()
    });
    let idp = c.host("idp").await;
    let r = c
        .http
        .post(format!("{idp}/api/account/{}/consumer?v=1.0", c.acc))
        .header("authorization", &real)
        .json(&json!({"ext_consumer_id": "two-hundred"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token: Value = r.json().await.unwrap();
    assert!(token["token"].is_string());
}

#[tokio::test]
async fn the_console_scripts_503_bursts_and_webhook_injections() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let page = c
        .http
        .get(format!("{}/console", sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "id=\"do503\"",
        "id=\"burstClass\"",
        "/sim/webhooks/inject",
        "value=\"stale_conversation\"",
    ] {
        assert!(page.contains(needle), "console lacks {needle}");
    }
    // What the console's 503 burst button posts.
    let r = c
        .http
        .post(format!("{}/sim/faults", sim.base_url()))
        .json(&json!({"fail_next": {"class": "idp", "count": 2, "status": 503}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let app = c.app_jwt().await;
    let idp = c.host("idp").await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = c
            .http
            .post(format!("{idp}/api/account/{}/consumer?v=1.0", c.acc))
            .header("authorization", &app)
            .json(&json!({"ext_consumer_id": "burst"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [503, 503, 201]);
}
