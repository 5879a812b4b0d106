//! The Slack channel through the whole product: the released binary, the LivePerson simulator
//! and the testkit's fake Slack. A direct-message conversation goes both ways with texts, a
//! button click and a file each way; Slack's redelivery of an event reaches the agent once;
//! forged and stale requests are refused.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::eventually;
use switchboard_testkit::fake_slack::Posted;
use switchboard_testkit::fake_slack::{FAKE_BOT_TOKEN, FakeSlack};

use crate::support::{RunningBinary, TINY_PNG as PNG, run_binary};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const DM: &str = "D024BE91L";
const USER: &str = "U2147483697";
async fn start(sim: &SimHandle, fake: &FakeSlack) -> RunningBinary {
    let channel = format!(
        "[channels.sl]\nkind = \"slack\"\napi_base_url = \"{}\"\n",
        fake.api_base
    );
    // The secrets come from the environment, as the docs recommend.
    let env = [
        ("SWITCHBOARD_CHANNELS__SL__BOT_TOKEN", FAKE_BOT_TOKEN),
        ("SWITCHBOARD_CHANNELS__SL__SIGNING_SECRET", SIGNING_SECRET),
    ];
    run_binary(sim, &channel, &env).await
}

fn dm(event_id: &str, text: &str, ts: &str) -> Value {
    FakeSlack::envelope(event_id, FakeSlack::dm(USER, DM, text, ts))
}

fn fake_shows(fake: &FakeSlack, pred: impl Fn(&Posted) -> bool) -> bool {
    fake.conversation(DM).iter().any(pred)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_conversation_both_ways_with_a_button_and_files() {
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let fake = FakeSlack::start().await;
    let running = start(&sim, &fake).await;
    let port = running.port;
    let events_url = format!("http://127.0.0.1:{port}/channels/sl/events");
    let interactivity_url = format!("http://127.0.0.1:{port}/channels/sl/interactivity");

    // Slack checks the Request URL first.
    let (status, body) = fake
        .post_signed(
            &events_url,
            SIGNING_SECRET,
            "application/json",
            br#"{"token":"x","challenge":"ch4ll3nge","type":"url_verification"}"#.to_vec(),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["challenge"],
        "ch4ll3nge"
    );

    // Consumer → agent: a text with a mention, then a file.
    let first = dm(
        "Ev0001",
        "Hi from Slack 👋 &amp; <@U2147483697>",
        "1795384800.000100",
    );
    assert_eq!(
        fake.send_event(&events_url, SIGNING_SECRET, &first).await,
        200
    );
    let entry = sim
        .wait_for_consumer_message("Hi from Slack", Duration::from_secs(30))
        .await
        .expect("the consumer's text reached LivePerson");
    assert_eq!(entry.event["message"], "Hi from Slack 👋 & @ada.l");
    let conversation = sim
        .conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .unwrap();
    // The users.info profile became SDEs.
    assert!(
        conversation.sdes.to_string().contains("ada@example.com"),
        "{}",
        conversation.sdes
    );
    let conversation = conversation.conversation_id;

    // Slack redelivers the same event (as after a slow answer): the agent sees it once.
    assert_eq!(
        fake.send_event(&events_url, SIGNING_SECRET, &first).await,
        200
    );

    let url = fake.add_file("F0SHOT", PNG);
    let mut shared = FakeSlack::dm(USER, DM, "", "1795384800.000200");
    shared["subtype"] = json!("file_share");
    shared["files"] = json!([{ "id": "F0SHOT", "name": "receipt.png", "mimetype": "image/png",
        "url_private": url, "url_private_download": url, "size": PNG.len() }]);
    let envelope = FakeSlack::envelope("Ev0002", shared);
    assert_eq!(
        fake.send_event(&events_url, SIGNING_SECRET, &envelope)
            .await,
        200
    );
    let file_arrived = sim
        .wait_for_conversation(&conversation, Duration::from_secs(30), |c| {
            c.transcript
                .iter()
                .any(|t| t.role == "CONSUMER" && t.event["contentType"] == "hosted/file")
        })
        .await;
    assert!(
        file_arrived.is_some(),
        "the consumer's file did not reach LivePerson"
    );
    let texts = sim
        .conversation(&conversation)
        .unwrap()
        .consumer_messages()
        .filter(|t| {
            t.event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Hi from Slack"))
        })
        .count();
    assert_eq!(texts, 1, "a redelivered event reached the agent twice");

    // Agent → consumer: a text, quick replies, a file, then close.
    sim.agent_accept(&conversation).unwrap();
    sim.agent_send_text(&conversation, "Hello Ada, let me look.")
        .unwrap();
    assert!(
        eventually(30, || fake_shows(&fake, |p| p.text
            == "Hello Ada, let me look."))
        .await
    );
    let replies = json!({ "type": "quickReplies", "itemsPerRow": 8, "replies": [
        { "type": "button", "title": "Yes", "click": { "actions": [ { "type": "publishText", "text": "Yes please" } ] } },
        { "type": "button", "title": "No", "click": { "actions": [ { "type": "publishText", "text": "No thanks" } ] } } ] });
    let sequence = sim
        .agent_send_quick_replies(&conversation, "Shall I refund it?", replies)
        .unwrap();
    assert!(eventually(30, || fake_shows(&fake, |p| p.blocks.is_array())).await);
    let posted = fake
        .conversation(DM)
        .into_iter()
        .find(|p| p.blocks.is_array())
        .unwrap();
    assert!(
        posted.text.contains("Shall I refund it?"),
        "{}",
        posted.text
    );
    let buttons = posted
        .blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("an actions block")["elements"]
        .clone();
    assert_eq!(buttons[0]["text"]["text"], "Yes");
    let value = buttons[0]["value"].as_str().unwrap().to_owned();
    assert_eq!(
        fake.press(&interactivity_url, SIGNING_SECRET, USER, DM, &value)
            .await,
        200
    );
    sim.wait_for_consumer_message("Yes please", Duration::from_secs(30))
        .await
        .expect("the button's text reached LivePerson");
    let action = sim
        .wait_for_conversation(&conversation, Duration::from_secs(30), |c| {
            c.transcript.iter().any(|t| {
                t.event["type"] == "AcceptStatusEvent"
                    && t.event["status"] == "ACTION"
                    && t.event["sequenceList"] == json!([sequence])
            })
        })
        .await;
    assert!(action.is_some(), "no ACTION status for the clicked message");

    sim.agent_send_file(&conversation, "your label", "PNG", PNG.to_vec())
        .unwrap();
    assert!(
        eventually(30, || fake_shows(&fake, |p| !p.file_ids.is_empty()
            && p.text == "your label"))
        .await,
        "the agent's file was not shared"
    );
    assert!(fake.uploads().values().any(|n| *n == PNG.len()));

    sim.agent_close(&conversation, false).unwrap();
    assert!(
        eventually(30, || fake_shows(&fake, |p| p
            .text
            .contains("conversation has ended")))
        .await
    );

    // Nobody without the signing secret can inject a message, nor replay an old one.
    let body = serde_json::to_vec(&dm("Ev0099", "forged", "1795384800.000900")).unwrap();
    let client = reqwest::Client::new();
    for (secret, age) in [("not-the-secret-at-all", 0), (SIGNING_SECRET, 301)] {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - age;
        let (ts, signature) = FakeSlack::signature(secret, ts, &body);
        let refused = client
            .post(&events_url)
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        let error: Value = refused.json().await.unwrap();
        assert_eq!(error["error"]["code"], "unauthorized");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sim.conversations().iter().all(|c| c
            .consumer_messages()
            .all(|t| t.event["message"] != "forged")),
        "a forged message reached LivePerson"
    );
}
