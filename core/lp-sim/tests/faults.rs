//! Fault injection.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_lp_sim::PathClass;

use crate::common::{Client, Receiver, kind, start_default, text};

#[tokio::test]
async fn scripted_429_with_retry_after() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("ivy").await;
    sim.fail_next(PathClass::Send, 2, 429, Some(1));
    for _ in 0..2 {
        let r = c.send(&app, &jws, text("1", &conv, "hi")).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.headers["retry-after"], "1");
        assert!(r.body.is_object());
    }
    assert_eq!(c.send(&app, &jws, text("1", &conv, "hi")).await.status, 200);

    // Via the HTTP control API: 503 on CONVERSATION.
    let r = c
        .http
        .post(format!("{}/sim/faults", sim.base_url()))
        .json(&json!({"fail_next": {"class": "conversation", "count": 1, "status": 503}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.create(&app, &jws).await.status, 503);
}

#[tokio::test]
async fn outage_window_and_error_rate() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("jack").await;
    sim.outage(Duration::from_millis(300));
    let r = c
        .get(&format!(
            "{}/api/account/{}/service/baseURI.json?version=1.0",
            c.domain, c.acc
        ))
        .await;
    assert_eq!(r.status, 503);
    // The control API keeps working during an outage.
    let r = c.get(&format!("{}/sim/faults", sim.base_url())).await;
    assert_eq!(r.status, 200);
    assert!(r.body["outage_until_ms"].is_u64());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        c.send(&app, &jws, text("1", &conv, "back")).await.status,
        200
    );

    sim.set_error_rate(1.0);
    let r = c.send(&app, &jws, text("2", &conv, "x")).await;
    assert!(r.status >= 500);
    sim.clear_faults();
    assert_eq!(c.send(&app, &jws, text("3", &conv, "y")).await.status, 200);
}

#[tokio::test]
async fn token_revocation_and_jws_invalidation() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("kate").await;
    sim.revoke_tokens();
    let r = c.send(&app, &jws, text("1", &conv, "hi")).await;
    assert_eq!(
        (r.status, r.body["body"]["errorCode"].clone()),
        (401, json!(40102))
    );
    let fresh = c.app_jwt().await;
    assert_ne!(fresh, app);
    assert_eq!(
        c.send(&fresh, &jws, text("2", &conv, "hi")).await.status,
        200
    );

    sim.invalidate_consumer_jws(1);
    let r = c.send(&fresh, &jws, text("3", &conv, "hi")).await;
    assert_eq!(r.body["body"]["errorCode"], 40103);
    assert_eq!(
        c.send(&fresh, &jws, text("4", &conv, "hi")).await.status,
        200
    );
}

#[tokio::test]
async fn duplicate_webhooks() {
    let rx = Receiver::start().await;
    let sim = start_default().await;
    sim.set_webhook_endpoint(&rx.url);
    sim.set_duplicate_webhooks(true);
    let c = Client::new(&sim);
    c.open("liam").await;
    let got = rx.wait(|a| a.len() >= 2).await;
    assert_eq!(kind(&got[0]), "ExConversation");
    assert_eq!(got[0].body, got[1].body);
    let d = sim.webhook_deliveries();
    assert!(d[1].duplicate);
    let log: Value = c
        .get(&format!("{}/sim/webhooks", sim.base_url()))
        .await
        .body;
    assert_eq!(log.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn commit_then_timeout_and_bad_signatures() {
    let rx = Receiver::start().await;
    let sim = start_default().await;
    sim.set_webhook_endpoint(&rx.url);
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("sam").await;
    sim.apply_faults(switchboard_lp_sim::FaultRequest {
        response_delay_ms: Some(600),
        bad_signature_webhooks: Some(1),
        ..Default::default()
    });
    let base = c.host("asyncMessagingEnt").await;
    let r = c
        .http
        .post(format!(
            "{base}/api/account/{}/messaging/consumer/conversation/send?v=3",
            c.acc
        ))
        .timeout(Duration::from_millis(150))
        .header("authorization", &app)
        .header("x-lp-on-behalf", &jws)
        .json(&text("1", &conv, "did it land?"))
        .send()
        .await;
    assert!(r.is_err(), "client timed out");
    assert!(
        sim.wait_for_consumer_message("did it land?", Duration::from_secs(1))
            .await
            .is_some()
    );
    sim.clear_faults();

    let got = rx.wait(|a| a.len() >= 2).await;
    let first_ok = switchboard_lp_sim::signature_header(
        &c.secret,
        &got[0].body,
        switchboard_lp_sim::SignatureAlgorithm::Sha1,
    );
    // The ExConversation was dispatched before the fault: valid. The echo was tampered.
    assert_eq!(
        got[0].headers["x-liveperson-signature"].to_str().unwrap(),
        first_ok
    );
    let second_ok = switchboard_lp_sim::signature_header(
        &c.secret,
        &got[1].body,
        switchboard_lp_sim::SignatureAlgorithm::Sha1,
    );
    assert_ne!(
        got[1].headers["x-liveperson-signature"].to_str().unwrap(),
        second_ok
    );
}
