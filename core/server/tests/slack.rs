//! The Slack channel through the whole product: the released binary, the LivePerson simulator
//! and the testkit's fake Slack. A direct-message conversation goes both ways with texts, a
//! button click and a file each way; Slack's redelivery of an event reaches the agent once;
//! forged and stale requests are refused.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::eventually;
use switchboard_testkit::fake_slack::Posted;
use switchboard_testkit::fake_slack::{FAKE_BOT_TOKEN, FakeSlack, SlackFailure};

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

/// The consumer messages LivePerson holds whose text is `text`.
fn at_liveperson(sim: &SimHandle, text: &str) -> usize {
    sim.conversations()
        .iter()
        .map(|c| {
            c.consumer_messages()
                .filter(|t| t.event["message"] == text)
                .count()
        })
        .sum()
}

/// Sends a last message and waits for it at LivePerson: a consumer's events reach LivePerson
/// in order, so whatever came before it has arrived too, duplicates included.
async fn settle(sim: &SimHandle, fake: &FakeSlack, events_url: &str, n: u32) {
    let marker = format!("marker {n}");
    let envelope = dm(
        &format!("EvMark{n}"),
        &marker,
        &format!("1795384899.{n:06}"),
    );
    assert_eq!(
        fake.send_event(events_url, SIGNING_SECRET, &envelope).await,
        200
    );
    sim.wait_for_consumer_message(&marker, Duration::from_secs(60))
        .await
        .expect("the marker reached LivePerson");
}

/// The conversation at LivePerson that holds a consumer message `text`.
fn conversation_with(sim: &SimHandle, text: &str) -> switchboard_lp_sim::Conversation {
    sim.conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event["message"] == text))
        .expect("a conversation with that message")
}

/// A consumer writes `text` over the Events API; once it reached LivePerson, an agent
/// accepts the conversation. Returns its id.
async fn accepted_conversation(
    sim: &SimHandle,
    fake: &FakeSlack,
    events_url: &str,
    event_id: &str,
    text: &str,
) -> String {
    let envelope = dm(
        event_id,
        text,
        &format!("1795384800.{:06}", event_id.len() * 97),
    );
    assert_eq!(
        fake.send_event(events_url, SIGNING_SECRET, &envelope).await,
        200
    );
    sim.wait_for_consumer_message(text, Duration::from_secs(60))
        .await
        .expect("the consumer's message reached LivePerson");
    let conversation = conversation_with(sim, text).conversation_id;
    sim.agent_accept(&conversation).unwrap();
    conversation
}

fn fast_sim() -> SimConfig {
    SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    }
}

/// #18: an event Slack repeats with `X-Slack-Retry-Num` is the same event: it reaches
/// LivePerson once, also when the retry arrives while the first delivery is still being
/// taken. And the first delivery is answered within Slack's three seconds even though
/// Slack's `users.info` takes longer than that: the look-up happens after the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_reaches_liveperson_once_even_while_the_first_is_being_stored() {
    let sim = Simulator::start(fast_sim()).await.unwrap();
    let fake = FakeSlack::start().await;
    fake.slow_users_info(Duration::from_secs(4));
    let running = start(&sim, &fake).await;
    let events_url = format!("http://127.0.0.1:{}/channels/sl/events", running.port);

    let first = dm("EvR001", "Where is my parcel?", "1795384800.000300");
    // Slack's first delivery and, at the same moment, its retry of it (Slack retries
    // "nearly immediately" when it deems the first lost, without waiting for its answer).
    let (statuses, retried) = tokio::join!(
        fake.send_event_traced(&events_url, SIGNING_SECRET, &first),
        fake.send_retry(&events_url, SIGNING_SECRET, &first, 1, "http_timeout"),
    );
    assert_eq!(
        statuses,
        [200],
        "the first delivery was not answered within 3 s"
    );
    assert_eq!(retried, 200);
    // Two more retries, as Slack may send them minutes later.
    for num in 2..=3 {
        assert_eq!(
            fake.send_retry(&events_url, SIGNING_SECRET, &first, num, "http_error")
                .await,
            200
        );
    }
    sim.wait_for_consumer_message("Where is my parcel?", Duration::from_secs(60))
        .await
        .expect("the message reached LivePerson");
    settle(&sim, &fake, &events_url, 1).await;
    assert_eq!(at_liveperson(&sim, "Where is my parcel?"), 1);
    // The profile was looked up after the answer and still became SDEs.
    let conversation = conversation_with(&sim, "Where is my parcel?");
    assert!(
        conversation.sdes.to_string().contains("Lovelace"),
        "{}",
        conversation.sdes
    );
}

/// #18: a bot's message never reaches LivePerson: any `bot_id`, a `bot_profile`, the legacy
/// `bot_message` subtype, our own bot user, and Slack's echo of our own posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_message_never_reaches_liveperson() {
    let sim = Simulator::start(fast_sim()).await.unwrap();
    let fake = FakeSlack::start().await;
    let running = start(&sim, &fake).await;
    let events_url = format!("http://127.0.0.1:{}/channels/sl/events", running.port);
    fake.echo_to_events(&events_url, SIGNING_SECRET);

    // A consumer opens the conversation; the agent answers (Slack echoes the post to us).
    let conversation = accepted_conversation(&sim, &fake, &events_url, "EvB000", "hello").await;
    sim.agent_send_text(&conversation, "Agent here, how can I help?")
        .unwrap();
    assert!(
        eventually(30, || fake_shows(&fake, |p| p.text
            == "Agent here, how can I help?"))
        .await
    );

    let bot = |n: u32, patch: &dyn Fn(&mut Value)| {
        let mut event = FakeSlack::dm(
            "U0OTHERBOT",
            DM,
            &format!("bot says {n}"),
            &format!("1795384801.{n:06}"),
        );
        patch(&mut event);
        FakeSlack::envelope(&format!("EvB{n:03}"), event)
    };
    let bots = [
        bot(1, &|e| e["bot_id"] = json!("B0OTHER")),
        bot(2, &|e| {
            e["bot_id"] = json!("B0OTHER");
            e["subtype"] = json!("bot_message");
        }),
        bot(3, &|e| {
            e["subtype"] = json!("bot_message");
            e.as_object_mut().unwrap().remove("user");
            e["username"] = json!("legacy-integration");
        }),
        bot(4, &|e| {
            e["bot_profile"] = json!({ "id": "B0OTHER", "name": "other" })
        }),
        bot(5, &|e| {
            e["user"] = json!(switchboard_testkit::fake_slack::BOT_USER)
        }),
        bot(6, &|e| {
            e["app_id"] = json!(switchboard_testkit::fake_slack::APP_ID);
            e["bot_id"] = json!(switchboard_testkit::fake_slack::BOT_ID);
        }),
    ];
    for envelope in &bots {
        assert_eq!(
            fake.send_event(&events_url, SIGNING_SECRET, envelope).await,
            200
        );
    }
    settle(&sim, &fake, &events_url, 2).await;
    for n in 1..=6 {
        assert_eq!(
            at_liveperson(&sim, &format!("bot says {n}")),
            0,
            "bot message {n}"
        );
    }
    assert_eq!(at_liveperson(&sim, "Agent here, how can I help?"), 0);
    assert_eq!(at_liveperson(&sim, "hello"), 1);
}

/// An agent message whose `chat.postMessage` answer was lost (Slack posted it, answered
/// 503) appears once: the retry learns from Slack's echo, kept in the store, that it landed,
/// without reading the conversation's history (one request a minute for most apps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_message_whose_answer_was_lost_appears_once() {
    let sim = Simulator::start(fast_sim()).await.unwrap();
    let fake = FakeSlack::start().await;
    let running = start(&sim, &fake).await;
    let events_url = format!("http://127.0.0.1:{}/channels/sl/events", running.port);
    fake.echo_to_events(&events_url, SIGNING_SECRET);
    let conversation = accepted_conversation(&sim, &fake, &events_url, "EvU000", "hi").await;
    fake.fail_next(&[SlackFailure::UnavailableAfterApplying]);
    sim.agent_send_text(&conversation, "Your refund was sent.")
        .unwrap();
    sim.agent_send_text(&conversation, "Anything else?")
        .unwrap();
    assert!(eventually(60, || fake_shows(&fake, |p| p.text == "Anything else?")).await);
    let shown = fake.conversation(DM);
    assert_eq!(
        shown
            .iter()
            .filter(|p| p.text == "Your refund was sent.")
            .count(),
        1,
        "{shown:?}"
    );
    assert!(fake.calls("conversations.history").is_empty());
}

/// #18 Socket Mode end to end: no public endpoint; the binary connects with the app-level
/// token, consumers' messages reach LivePerson once each across a Slack-initiated reconnect
/// in the middle of the stream and a dropped socket, and the agent's answer reaches Slack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_runs_end_to_end_across_reconnects() {
    let sim = Simulator::start(fast_sim()).await.unwrap();
    let fake = FakeSlack::start().await;
    fake.echo_to_socket();
    let channel = format!(
        "[channels.sl]\nkind = \"slack\"\nmode = \"socket_mode\"\napi_base_url = \"{}\"\n",
        fake.api_base
    );
    let env = [
        ("SWITCHBOARD_CHANNELS__SL__BOT_TOKEN", FAKE_BOT_TOKEN),
        (
            "SWITCHBOARD_CHANNELS__SL__APP_TOKEN",
            switchboard_testkit::fake_slack::FAKE_APP_TOKEN,
        ),
    ];
    let _running = run_binary(&sim, &channel, &env).await;
    let socket = fake.socket().clone();
    assert!(
        eventually(60, || socket.live_connections() == 1).await,
        "no Socket Mode connection"
    );

    let send = |n: u32| {
        socket.send_envelope(
            "events_api",
            dm(
                &format!("EvSock{n}"),
                &format!("over the socket {n}"),
                &format!("1795384802.{n:06}"),
            ),
        )
    };
    let mut ids: Vec<String> = (1..=5).map(send).collect();
    // Slack rotates the connection mid-stream; events keep coming.
    socket.disconnect("refresh_requested", Duration::from_millis(300));
    ids.extend((6..=10).map(send));
    assert!(eventually(60, || socket.connections_opened() >= 2).await);
    // Then the network drops the socket without a word.
    assert!(eventually(60, || ids.iter().all(|id| socket.is_acked(id))).await);
    socket.cut_connections();
    ids.extend((11..=12).map(send));
    assert!(
        eventually(90, || ids.iter().all(|id| socket.is_acked(id))).await,
        "unacknowledged: {:?}",
        ids.iter()
            .filter(|id| !socket.is_acked(id))
            .collect::<Vec<_>>()
    );
    for n in 1..=12 {
        sim.wait_for_consumer_message(&format!("over the socket {n}"), Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("message {n} did not reach LivePerson"));
    }
    let conversation = conversation_with(&sim, "over the socket 12").conversation_id;
    sim.agent_accept(&conversation).unwrap();
    sim.agent_send_text(&conversation, "Answered over Socket Mode")
        .unwrap();
    assert!(
        eventually(60, || fake_shows(&fake, |p| p.text
            == "Answered over Socket Mode"))
        .await
    );
    // The last message settles the order; nothing arrived twice.
    let marker = socket.send_envelope(
        "events_api",
        dm("EvSockEnd", "socket marker", "1795384803.000001"),
    );
    assert!(eventually(60, || socket.is_acked(&marker)).await);
    sim.wait_for_consumer_message("socket marker", Duration::from_secs(60))
        .await
        .unwrap();
    for n in 1..=12 {
        assert_eq!(
            at_liveperson(&sim, &format!("over the socket {n}")),
            1,
            "message {n}"
        );
    }
    assert_eq!(at_liveperson(&sim, "Answered over Socket Mode"), 0);
}

/// `switchboard check` refuses a Socket Mode config whose app-level token has the wrong
/// shape, and Events API keys the mode would ignore, naming the key.
#[test]
fn check_validates_the_app_level_token_and_mode_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, table: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[liveperson]\nmode = \"simulator\"\n[channels.sl]\nkind = \"slack\"\nbot_token = \"{FAKE_BOT_TOKEN}\"\n{table}"
            ),
        )
        .unwrap();
        path
    };
    let check = |path: &std::path::Path| {
        crate::support::switchboard_command()
            .args(["check", "--config"])
            .arg(path)
            .output()
            .unwrap()
    };
    for (name, table, key) in [
        (
            "bot-as-app.toml",
            "mode = \"socket_mode\"\napp_token = \"xoxb-1-2-3\"\n",
            "channels.sl.app_token",
        ),
        (
            "no-app.toml",
            "mode = \"socket_mode\"\n",
            "channels.sl.app_token",
        ),
        (
            "ignored-secret.toml",
            &format!(
                "mode = \"socket_mode\"\napp_token = \"{}\"\nsigning_secret = \"{SIGNING_SECRET}\"\n",
                switchboard_testkit::fake_slack::FAKE_APP_TOKEN
            ),
            "channels.sl.signing_secret",
        ),
        (
            "ignored-app.toml",
            &format!(
                "signing_secret = \"{SIGNING_SECRET}\"\napp_token = \"{}\"\n",
                switchboard_testkit::fake_slack::FAKE_APP_TOKEN
            ),
            "channels.sl.app_token",
        ),
    ] {
        let path = config(name, table);
        let out = check(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(err.contains(key), "{name}: {err}");
    }
    let good = config(
        "good.toml",
        &format!(
            "mode = \"socket_mode\"\napp_token = \"{}\"\n",
            switchboard_testkit::fake_slack::FAKE_APP_TOKEN
        ),
    );
    let out = check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
