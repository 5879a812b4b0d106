//! Agent-side control over the `/sim` HTTP API, and the console page.

use serde_json::{Value, json};

use crate::common::{Client, Receiver, kind, start_default, text};

async fn post(c: &Client, url: String, body: Value) -> (u16, Value) {
    let r = c.http.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn agent_flow_over_http() {
    let rx = Receiver::start().await;
    let sim = start_default().await;
    let c = Client::new(&sim);
    let base = sim.base_url();
    let (s, _) = post(
        &c,
        format!("{base}/sim/webhooks/endpoint"),
        json!({"url": rx.url}),
    )
    .await;
    assert_eq!(s, 200);
    let (app, jws, conv) = c.open("olga").await;
    c.send(&app, &jws, text("1", &conv, "hello")).await;
    let u = |p: &str| format!("{base}/sim/conversations/{conv}/{p}");

    assert_eq!(post(&c, u("accept"), json!({})).await.0, 200);
    let (s, v) = post(
        &c,
        u("receipts"),
        json!({"status": "READ", "sequences": [0]}),
    )
    .await;
    assert_eq!((s, v["result"]["sequence"].clone()), (200, json!(1)));
    assert_eq!(
        post(&c, u("typing"), json!({"chat_state": "COMPOSING"}))
            .await
            .0,
        200
    );
    let (_, v) = post(
        &c,
        u("messages"),
        json!({"text": "Pick one", "quick_replies": ["Yes", "No"]}),
    )
    .await;
    assert_eq!(v["result"]["sequence"], 2);
    let (_, v) = post(&c, u("messages"), json!({"content": {"type": "vertical", "elements": [{"type": "text", "text": "Card"}]}, "external_id": "CARD-1"})).await;
    assert_eq!(v["result"]["sequence"], 3);
    assert_eq!(
        post(
            &c,
            u("messages"),
            json!({"text": "internal", "audience": "AGENTS_AND_MANAGERS"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(
            &c,
            u("messages"),
            json!({"text": "system", "role": "CONTROLLER"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post(&c, u("transfer"), json!({"skill_id": "42"})).await.0,
        200
    );
    let s = sim.conversation(&conv).unwrap();
    assert_eq!(s.skill_id, "42");
    assert!(s.assigned_agent().is_none());
    assert_eq!(post(&c, u("accept"), json!({})).await.0, 200);
    assert_eq!(post(&c, u("back-to-queue"), json!({})).await.0, 200);
    assert_eq!(post(&c, u("close"), json!({"survey": true})).await.0, 200);
    let s = sim.conversation(&conv).unwrap();
    assert_eq!(
        (
            s.state.as_str(),
            s.stage.as_str(),
            s.close_reason.as_deref()
        ),
        ("CLOSE", "OPEN", Some("AGENT"))
    );
    assert_eq!(post(&c, u("close"), json!({})).await.0, 400);

    let got = rx
        .wait(|a| a.iter().filter(|r| kind(r) == "RichContentEvent").count() == 1 && a.len() >= 14)
        .await;
    let rich = got
        .iter()
        .find(|r| kind(r) == "RichContentEvent")
        .unwrap()
        .json();
    assert_eq!(
        rich["body"]["changes"][0]["metadata"],
        json!([{"type": "ExternalId", "id": "CARD-1"}])
    );
    assert_eq!(
        rich["body"]["changes"][0]["event"]["content"]["type"],
        "vertical"
    );
    let qr = got
        .iter()
        .map(|r| r.json())
        .find(|v| v["body"]["changes"][0]["event"]["quickReplies"].is_object())
        .unwrap();
    assert_eq!(
        qr["body"]["changes"][0]["event"]["quickReplies"]["replies"][0]["click"]["actions"][0]["text"],
        "Yes"
    );
    assert!(
        got.iter()
            .map(|r| r.json())
            .any(|v| v["body"]["changes"][0]["messageAudience"] == "AGENTS_AND_MANAGERS")
    );
    assert!(
        got.iter()
            .map(|r| r.json())
            .any(|v| v["body"]["changes"][0]["originatorMetadata"]["role"] == "CONTROLLER")
    );

    // Listing, foreign and agent-started conversations, auto-close.
    let list: Value = c
        .http
        .get(format!("{base}/sim/conversations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0]["transcript"].as_array().unwrap().len() >= 7);
    let (s, v) = post(&c, format!("{base}/sim/conversations"), json!({})).await;
    assert_eq!(s, 200);
    let foreign = v["result"].as_str().unwrap().to_string();
    assert!(sim.conversation(&foreign).unwrap().foreign);
    assert_eq!(
        post(
            &c,
            format!("{base}/sim/conversations/{foreign}/auto-close"),
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        sim.conversation(&foreign).unwrap().close_reason.as_deref(),
        Some("SYSTEM")
    );
    let unknown = post(
        &c,
        format!("{base}/sim/conversations/nope/accept"),
        json!({}),
    )
    .await;
    assert_eq!(unknown.0, 404);
    let bad = c
        .http
        .post(u("messages"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn agent_started_conversation_and_console() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("pete").await;
    let lp = switchboard_lp_sim::lp_consumer_id(&c.acc, "pete");
    assert!(sim.start_conversation_for_consumer(&lp, None).is_err());
    sim.agent_close(&conv, false).unwrap();
    let new_conv = sim.start_conversation_for_consumer(&lp, Some("7")).unwrap();
    let s = sim.conversation(&new_conv).unwrap();
    assert!(s.assigned_agent().is_some());
    // The consumer can write into the agent-started conversation.
    assert_eq!(
        c.send(&app, &jws, text("1", &new_conv, "hi again"))
            .await
            .status,
        200
    );

    let page = c
        .http
        .get(format!("{}/console", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/sim/conversations"));
    let nf = c
        .http
        .get(format!("{}/nope", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(nf.status(), 404);
    assert!(nf.json::<Value>().await.is_ok());
}

#[tokio::test]
async fn events_stream_a_change_on_every_state_change_and_end_on_shutdown() {
    let sim = start_default().await;
    let base = sim.base_url();
    let http = reqwest::Client::new();
    let mut events = http.get(format!("{base}/sim/events")).send().await.unwrap();
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let next = async |r: &mut reqwest::Response| {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), r.chunk())
            .await
            .expect("no event within 5 s")
            .unwrap();
        chunk.map(|c| String::from_utf8_lossy(&c).into_owned())
    };
    let first = next(&mut events).await.unwrap();
    assert!(first.contains("event: change"), "{first}");
    assert!(first.contains("data: {\"version\":0}"), "{first}");

    let r = http
        .post(format!("{base}/sim/conversations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = next(&mut events).await.unwrap();
    assert!(second.contains("event: change"), "{second}");
    assert!(!second.contains("{\"version\":0}"), "{second}");

    let image = http
        .get(format!("{base}/sim/sample-image.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(image.headers()["content-type"], "image/svg+xml");

    // A graceful shutdown ends the stream instead of waiting for it.
    tokio::time::timeout(std::time::Duration::from_secs(5), sim.shutdown())
        .await
        .expect("shutdown waited for the event stream");
    assert_eq!(next(&mut events).await, None);
}
