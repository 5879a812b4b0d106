//! Webhook delivery: signatures, payloads, echoes, retries.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use switchboard_lp_sim::{
    DeliveryOutcome, SignatureAlgorithm, SimConfig, WebhooksConfig, signature_header,
};

use crate::common::{Client, Receiver, kind, start, text};

fn manifest(url: &str, retry: &str) -> String {
    format!(
        r#"{{"client_name": "Test app", "grant_types": ["client_credentials"], "scope": "msg.consumer",
           "capabilities": {{"webhooks": {{
             "ms.MessagingEventNotification.ContentEvent": {{"endpoint": "{url}", "max_retries": 2,
                "headers": [{{"header_name": "x-static", "header_value": "s1"}}]}},
             "ms.MessagingEventNotification.RichContentEvent": {{"endpoint": "{url}", "max_retries": 2}},
             "ms.MessagingEventNotification.AcceptStatusEvent": {{"endpoint": "{url}", "max_retries": 2}},
             "ms.MessagingEventNotification.ChatStateEvent": {{"endpoint": "{url}"}},
             "cqm.ExConversationChangeNotification": {{"endpoint": "{url}", "max_retries": 2}}
             {retry} }} }} }}"#
    )
}

#[tokio::test]
async fn signed_notifications_with_echoes() {
    let rx = Receiver::start().await;
    let config = SimConfig::default()
        .with_manifest(&manifest(&rx.url, ""))
        .unwrap();
    let sim = start(config).await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("erin").await;
    let lp = switchboard_lp_sim::lp_consumer_id(&c.acc, "erin");
    c.send(&app, &jws, text("1", &conv, "héllo 👋")).await;
    sim.agent_send_text(&conv, "Hi there").unwrap();

    let got = rx.wait(|a| a.len() >= 4).await;
    let kinds: Vec<String> = got.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "ExConversation",
            "ContentEvent",
            "ExConversation",
            "ContentEvent"
        ]
    );
    for r in &got {
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["x-liveperson-account-id"], c.acc.as_str());
        assert_eq!(r.headers["x-liveperson-client-id"], c.client_id.as_str());
        let sig = r.headers["x-liveperson-signature"].to_str().unwrap();
        assert!(sig.starts_with("sha1="));
        assert_eq!(
            sig,
            signature_header(&c.secret, &r.body, SignatureAlgorithm::Sha1)
        );
    }
    assert_eq!(got[1].headers["x-static"], "s1");

    let created = got[0].json();
    assert_eq!(created["kind"], "notification");
    let res = &created["body"]["changes"][0]["result"];
    assert_eq!(created["body"]["changes"][0]["type"], "UPSERT");
    assert!(created["body"]["subscriptionId"].is_string());
    assert_eq!(res["convId"], conv.as_str());
    assert_eq!(res["conversationDetails"]["state"], "OPEN");
    assert_eq!(
        res["conversationDetails"]["participants"],
        json!([{"id": lp, "role": "CONSUMER"}])
    );
    assert_eq!(
        res["conversationDetails"]["dialogs"][0]["dialogId"],
        conv.as_str()
    );

    let echo = got[1].json();
    let ch = &echo["body"]["changes"][0];
    assert_eq!(echo["type"], "ms.MessagingEventNotification");
    assert_eq!(
        ch["originatorMetadata"],
        json!({"id": lp, "role": "CONSUMER"})
    );
    assert_eq!(ch["originatorId"], lp.as_str());
    assert_eq!(ch["sequence"], 0);
    assert_eq!(ch["event"]["message"], "héllo 👋");
    assert_eq!(ch["conversationId"], conv.as_str());
    assert_eq!(ch["dialogId"], conv.as_str());
    assert_eq!(ch["messageAudience"], "ALL");

    let joined = got[2].json();
    let ts1 = res["conversationDetails"]["metaDataLastUpdateTs"]
        .as_u64()
        .unwrap();
    let d2 = &joined["body"]["changes"][0]["result"]["conversationDetails"];
    assert!(d2["metaDataLastUpdateTs"].as_u64().unwrap() > ts1);
    assert_eq!(d2["participants"][1]["role"], "ASSIGNED_AGENT");
    let agent = got[3].json();
    assert_eq!(
        agent["body"]["changes"][0]["originatorMetadata"]["role"],
        "ASSIGNED_AGENT"
    );
    assert_eq!(agent["body"]["changes"][0]["sequence"], 1);

    // Typing: no sequence, no serverTimestamp.
    sim.agent_typing(&conv, "COMPOSING").unwrap();
    let got = rx.wait(|a| a.len() >= 5).await;
    let ch = &got[4].json()["body"]["changes"][0];
    assert_eq!(
        ch["event"],
        json!({"type": "ChatStateEvent", "chatState": "COMPOSING"})
    );
    assert!(ch.get("sequence").is_none() && ch.get("serverTimestamp").is_none());
}

#[tokio::test]
async fn sha256_signatures() {
    let rx = Receiver::start().await;
    let sim = start(SimConfig {
        signature: SignatureAlgorithm::Sha256,
        webhooks: WebhooksConfig::all(&rx.url, None),
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    c.open("frank").await;
    let got = rx.wait(|a| !a.is_empty()).await;
    let sig = got[0].headers["x-liveperson-signature"].to_str().unwrap();
    assert_eq!(
        sig,
        signature_header(&c.secret, &got[0].body, SignatureAlgorithm::Sha256)
    );
    assert!(sig.starts_with("sha256="));
}

#[tokio::test]
async fn retry_by_count_then_drop() {
    let rx = Receiver::start().await;
    let sim = start(SimConfig {
        time_scale: 0.001,
        webhooks: WebhooksConfig::all(&rx.url, Some(2)),
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    rx.fail_next.store(2, Ordering::SeqCst);
    let (_app, _jws, conv) = c.open("gina").await;
    let d = sim.wait_for_deliveries(1, Duration::from_secs(5)).await;
    assert_eq!(d[0].outcome, DeliveryOutcome::Delivered);
    assert_eq!(d[0].attempts, 3);
    assert_eq!(d[0].statuses, vec![Some(500), Some(500), Some(200)]);

    rx.fail_next.store(100, Ordering::SeqCst);
    sim.agent_send_text(&conv, "lost").unwrap();
    let d = sim.wait_for_deliveries(3, Duration::from_secs(5)).await;
    let dropped: Vec<_> = d
        .iter()
        .filter(|d| d.outcome == DeliveryOutcome::Dropped)
        .collect();
    assert_eq!(dropped.len(), 2, "{d:#?}");
    assert!(dropped.iter().all(|d| d.attempts == 3));
}

#[tokio::test]
async fn retry_by_ttl_keeps_conversation_order() {
    let rx = Receiver::start().await;
    let config = SimConfig {
        time_scale: 0.01,
        ..Default::default()
    }
    .with_manifest(&manifest(&rx.url, r#", "retry": {"retention_time": 600}"#))
    .unwrap();
    let sim = start(config).await;
    let c = Client::new(&sim);
    rx.fail_next.store(3, Ordering::SeqCst);
    let (app, jws, conv) = c.open("hank").await;
    c.send(&app, &jws, text("1", &conv, "one")).await;
    c.send(&app, &jws, text("2", &conv, "two")).await;
    let got = rx.wait(|a| a.len() >= 3).await;
    let kinds: Vec<String> = got.iter().map(kind).collect();
    assert_eq!(kinds, ["ExConversation", "ContentEvent", "ContentEvent"]);
    let msgs: Vec<_> = got[1..]
        .iter()
        .map(|r| r.json()["body"]["changes"][0]["event"]["message"].clone())
        .collect();
    assert_eq!(msgs, [json!("one"), json!("two")]);
    let d = sim.webhook_deliveries();
    assert_eq!(d[0].attempts, 4);
    assert_eq!(rx.attempts.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn transfer_and_close_notifications() {
    let rx = Receiver::start().await;
    let sim = start(SimConfig {
        webhooks: WebhooksConfig::all(&rx.url, None),
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    let (_app, _jws, conv) = c.open("tina").await;
    sim.agent_accept(&conv).unwrap();
    sim.transfer(&conv, "777").unwrap();
    sim.agent_accept(&conv).unwrap();
    sim.agent_close(&conv, false).unwrap();
    let got = rx.wait(|a| a.len() >= 5).await;
    let details: Vec<serde_json::Value> = got
        .iter()
        .map(|r| r.json()["body"]["changes"][0]["result"]["conversationDetails"].clone())
        .collect();
    let transferred = &details[2];
    assert_eq!(transferred["skillId"], "777");
    assert_eq!(transferred["conversationHandlerDetails"]["skillId"], "777");
    assert!(
        transferred["participants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["role"] != "ASSIGNED_AGENT")
    );
    let closed = &details[4];
    assert_eq!(
        (
            closed["state"].as_str(),
            closed["stage"].as_str(),
            closed["closeReason"].as_str()
        ),
        (Some("CLOSE"), Some("CLOSE"), Some("AGENT"))
    );
    assert_eq!(closed["dialogs"][0]["closedBy"], "AGENT");
    assert!(closed["endTs"].is_u64());
    assert_eq!(
        got[4].json()["body"]["changes"][0]["result"]["effectiveTTR"],
        -1
    );
    let ts: Vec<u64> = details
        .iter()
        .map(|d| d["metaDataLastUpdateTs"].as_u64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
}
