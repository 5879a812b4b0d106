//! Socket Mode against the testkit's Socket Mode server (Slack's protocol: single-use URLs
//! from `apps.connections.open`, `hello`, envelopes acknowledged by `envelope_id`, redelivery
//! of what is not acknowledged, `disconnect`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::{Channel, ChannelConfig, Inbound, MessageRef, find_registration};
use switchboard_testkit::RecordingSink;
use switchboard_testkit::eventually;
use switchboard_testkit::fake_slack::{FAKE_APP_TOKEN, FAKE_BOT_TOKEN, FakeSlack};

const INSTANCE: &str = "slack";
const DM: &str = "D024BE91L";
const USER: &str = "U2147483697";

fn socket_channel(fake: &FakeSlack) -> Arc<dyn Channel> {
    let config = ChannelConfig::new(
        INSTANCE,
        "slack",
        json!({ "mode": "socket_mode", "bot_token": FAKE_BOT_TOKEN, "app_token": FAKE_APP_TOKEN,
                "api_base_url": fake.api_base }),
    );
    (find_registration("slack").unwrap().build)(&config).expect("valid config")
}

fn dm(n: u32) -> Value {
    FakeSlack::envelope(
        &format!("EvS{n:04}"),
        FakeSlack::dm(
            USER,
            DM,
            &format!("message {n}"),
            &format!("1795384800.{n:06}"),
        ),
    )
}

fn texts(sink: &RecordingSink) -> Vec<String> {
    sink.events()
        .into_iter()
        .filter_map(|e| match e.body {
            Inbound::Text { text } => Some(text),
            _ => None,
        })
        .collect()
}

/// The channel running as the runtime runs it (its `start` holds the connection), and the
/// sender that shuts it down.
fn run(
    channel: &Arc<dyn Channel>,
    sink: &Arc<RecordingSink>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let (ctx, stop) = sink.context(INSTANCE);
    let channel = channel.clone();
    let task = tokio::spawn(async move {
        channel.start(ctx).await.unwrap();
    });
    (task, stop)
}

#[tokio::test]
async fn socket_mode_acknowledges_each_envelope_only_after_it_is_stored() {
    let fake = FakeSlack::start().await;
    let channel = socket_channel(&fake);
    let sink = RecordingSink::new();
    let (task, stop) = run(&channel, &sink);
    let socket = fake.socket().clone();
    assert!(eventually(30, || socket.live_connections() == 1).await);
    // The URL came from apps.connections.open with the app-level token in the header.
    assert_eq!(fake.calls("apps.connections.open").len(), 1);
    // Socket Mode takes no HTTP requests.
    let (ctx, _s) = sink.context(INSTANCE);
    let response = channel
        .handle_http(
            switchboard_core::http::Request::post("/events")
                .body(switchboard_core::Bytes::from_static(b"{}"))
                .unwrap(),
            &ctx,
        )
        .await;
    assert_eq!(response.status(), 404);

    // The store is down: the envelope is not acknowledged, Slack sends it again.
    sink.set_failing(true);
    let id = socket.send_envelope("events_api", dm(1));
    assert!(
        eventually(30, || socket
            .deliveries()
            .iter()
            .filter(|(e, _)| *e == id)
            .count()
            >= 2)
        .await,
        "Slack did not resend an envelope that was never acknowledged"
    );
    assert!(!socket.is_acked(&id));
    assert!(sink.events().is_empty());
    // The store is back: the next delivery is stored, then acknowledged.
    sink.set_failing(false);
    assert!(eventually(30, || socket.is_acked(&id)).await);
    assert_eq!(texts(&sink), ["message 1"]);
    assert!(
        socket
            .deliveries()
            .iter()
            .any(|(e, attempt)| *e == id && *attempt >= 1),
        "the redelivery carries its retry_attempt"
    );

    // A button press arrives as an `interactive` envelope with the payload as JSON.
    let press = FakeSlack::block_actions(USER, DM, "lp:c1:d1:7|yes");
    let pressed = socket.send_envelope("interactive", press);
    assert!(eventually(30, || socket.is_acked(&pressed)).await);
    let choice = sink.events().last().cloned().unwrap();
    assert_eq!(
        choice.body,
        Inbound::Choice {
            message: MessageRef::new("lp:c1:d1:7"),
            choice: "yes".into()
        }
    );
    // Slash commands are not offered: acknowledged, nothing stored.
    let before = sink.events().len();
    let command = socket.send_envelope(
        "slash_commands",
        json!({ "command": "/help", "text": "", "user_id": USER, "channel_id": DM, "team_id": "T0FAKE" }),
    );
    assert!(eventually(30, || socket.is_acked(&command)).await);
    assert_eq!(sink.events().len(), before);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("Socket Mode stops at shutdown")
        .unwrap();
}

#[tokio::test]
async fn a_disconnect_mid_stream_loses_nothing_and_a_cut_socket_is_reopened() {
    let fake = FakeSlack::start().await;
    let channel = socket_channel(&fake);
    let sink = RecordingSink::new();
    let (_task, _stop) = run(&channel, &sink);
    let socket = fake.socket().clone();
    assert!(eventually(30, || socket.live_connections() == 1).await);

    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(socket.send_envelope("events_api", dm(n)));
    }
    assert!(eventually(30, || ids.iter().all(|id| socket.is_acked(id))).await);
    // One envelope is being stored when Slack asks for a new connection and closes the old
    // one: its acknowledgement cannot reach Slack, which sends it again on the new connection.
    sink.set_holding(true);
    let started = sink.submit_started();
    ids.push(socket.send_envelope("events_api", dm(5)));
    started.await;
    socket.disconnect("refresh_requested", Duration::from_millis(200));
    assert!(eventually(30, || socket.connections_opened() == 2).await);
    for n in 6..=8 {
        ids.push(socket.send_envelope("events_api", dm(n)));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    sink.release();
    assert!(
        eventually(60, || ids.iter().all(|id| socket.is_acked(id))).await,
        "not every envelope was acknowledged: {:?}",
        socket.acked()
    );
    // Each message stored (the store drops the copy of the one Slack sent twice).
    let stored: HashSet<String> = texts(&sink).into_iter().collect();
    let expected: HashSet<String> = (1..=8).map(|n| format!("message {n}")).collect();
    assert_eq!(stored, expected);
    assert_eq!(
        fake.calls("apps.connections.open").len(),
        2,
        "one URL per connection"
    );

    // The network drops the sockets without a word (the replaced one may still be open): the
    // channel opens a new one.
    socket.disconnect("warning", Duration::from_secs(10));
    assert!(eventually(30, || socket.connections_opened() == 3).await);
    socket.cut_connections();
    let after = socket.send_envelope("events_api", dm(9));
    let after2 = socket.send_envelope("events_api", dm(10));
    assert!(eventually(60, || socket.is_acked(&after) && socket.is_acked(&after2)).await);
    assert_eq!(socket.connections_opened(), 4);
    assert!(texts(&sink).contains(&"message 9".to_owned()));
    assert!(texts(&sink).contains(&"message 10".to_owned()));
}
