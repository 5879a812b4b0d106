//! The Telegram channel through the whole product: the released binary, the LivePerson
//! simulator and the testkit's fake Bot API (which refuses what Telegram refuses), in webhook
//! mode and in polling mode. A conversation goes both ways with a text, a photo each way,
//! typing and a keyboard button; in webhook mode a wrong secret token is refused. What
//! consumers send besides texts and photos reaches the agent (or is described, and the
//! consumer told); a card whose image Telegram cannot fetch reaches the consumer as its text
//! with the link; a long answer cut by a gateway error reaches the consumer once per part.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator, TranscriptEntry};
use switchboard_testkit::eventually;
use switchboard_testkit::fake_telegram::{FAKE_TOKEN, Failure, FakeTelegram};

use crate::support::{RunningBinary, TINY_PNG as PNG, run_binary};

const CHAT: i64 = 555_000_111;
const SECRET: &str = "tg-webhook-secret_42";

async fn start(sim: &SimHandle, fake: &FakeTelegram, polling: bool) -> RunningBinary {
    let mode = if polling {
        "mode = \"polling\"\npoll_timeout_secs = 1".to_owned()
    } else {
        format!("mode = \"webhook\"\nsecret_token = \"{SECRET}\"")
    };
    let channel = format!(
        "[channels.tg]\nkind = \"telegram\"\nbot_token = \"{FAKE_TOKEN}\"\napi_base_url = \"{}\"\n{mode}\n",
        fake.base
    );
    let running = run_binary(sim, &channel, &[]).await;
    if polling {
        assert!(eventually(30, || !fake.calls("getUpdates").is_empty()).await);
    } else {
        assert!(
            eventually(30, || fake.webhook().is_some()).await,
            "no setWebhook"
        );
    }
    running
}

fn photo_update(file_id: &str) -> Value {
    json!({ "message": { "message_id": 2, "date": 1795384801,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ada"},
        "chat": {"id": CHAT, "type": "private"},
        "photo": [{"file_id": file_id, "file_unique_id": "u1", "width": 1, "height": 1}],
        "caption": "my receipt" }})
}

/// The conversation in which the consumer's message containing `text` reached LivePerson,
/// and that transcript entry.
async fn conversation_of(sim: &SimHandle, text: &str) -> (String, TranscriptEntry) {
    let entry = sim
        .wait_for_consumer_message(text, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("`{text}` never reached LivePerson"));
    let conversation = sim
        .conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .unwrap()
        .conversation_id;
    (conversation, entry)
}

fn consumer_events(sim: &SimHandle, conversation: &str) -> Vec<Value> {
    sim.conversation(conversation)
        .map(|c| {
            c.transcript
                .iter()
                .filter(|t| t.role == "CONSUMER")
                .map(|t| t.event.clone())
                .collect()
        })
        .unwrap_or_default()
}

async fn conversation_both_ways(polling: bool) {
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let fake = FakeTelegram::start().await;
    let running = start(&sim, &fake, polling).await;
    let port = running.port;

    // Consumer → agent: a text (with the profile), then a photo.
    fake.push_update(FakeTelegram::text_update(
        CHAT,
        "/start Hi from Telegram 👋",
    ))
    .await;
    let (conversation, entry) = conversation_of(&sim, "Hi from Telegram").await;
    assert_eq!(entry.event["message"], "/start Hi from Telegram 👋");
    fake.add_file("photo-1", "photos/file_1.png", PNG);
    fake.push_update(photo_update("photo-1")).await;
    let photo_arrived = sim
        .wait_for_conversation(&conversation, Duration::from_secs(30), |c| {
            c.transcript
                .iter()
                .any(|t| t.role == "CONSUMER" && t.event["contentType"] == "hosted/file")
        })
        .await;
    assert!(
        photo_arrived.is_some(),
        "{:?}",
        consumer_events(&sim, &conversation)
    );

    // Agent → consumer: typing, a text, quick replies, a photo.
    sim.agent_accept(&conversation).unwrap();
    sim.agent_typing(&conversation, "COMPOSING").unwrap();
    assert!(eventually(30, || !fake.calls("sendChatAction").is_empty()).await);
    sim.agent_send_text(&conversation, "Hello Ada, let me look.")
        .unwrap();
    assert!(
        eventually(30, || fake
            .calls("sendMessage")
            .iter()
            .any(|c| c.params["text"] == "Hello Ada, let me look."))
        .await
    );
    let replies = json!({ "type": "quickReplies", "itemsPerRow": 8, "replies": [
        { "type": "button", "title": "Yes", "click": { "actions": [ { "type": "publishText", "text": "Yes please" } ] } },
        { "type": "button", "title": "No", "click": { "actions": [ { "type": "publishText", "text": "No thanks" } ] } } ] });
    let sequence = sim
        .agent_send_quick_replies(&conversation, "Shall I refund it?", replies)
        .unwrap();
    assert!(
        eventually(30, || fake
            .calls("sendMessage")
            .iter()
            .any(|c| c.params["text"] == "Shall I refund it?"))
        .await
    );
    let keyboard = fake
        .calls("sendMessage")
        .into_iter()
        .find(|c| c.params["text"] == "Shall I refund it?")
        .unwrap()
        .params["reply_markup"]["inline_keyboard"]
        .clone();
    let data = keyboard[0][0]["callback_data"].as_str().unwrap().to_owned();
    fake.push_update(json!({ "callback_query": { "id": "cbq-77",
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ada"},
        "message": {"message_id": 9, "date": 1795384820, "chat": {"id": CHAT, "type": "private"}},
        "chat_instance": "1", "data": data }}))
        .await;
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
    assert!(action.is_some());
    assert!(eventually(30, || !fake.calls("answerCallbackQuery").is_empty()).await);

    sim.agent_send_file(&conversation, "your label", "PNG", PNG.to_vec())
        .unwrap();
    assert!(
        eventually(30, || fake.calls("sendPhoto").iter().any(|c| c.upload
            == Some(PNG.len())
            && c.params["caption"] == "your label"))
        .await,
        "{:?}",
        fake.calls("sendPhoto")
    );

    if !polling {
        // Someone who does not know the secret cannot inject a message.
        let forged = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/channels/tg/webhook"))
            .header("x-telegram-bot-api-secret-token", "guess")
            .json(&FakeTelegram::text_update(CHAT, "forged"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401);
        let body: Value = forged.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_both_ways_in_webhook_mode() {
    conversation_both_ways(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_both_ways_in_polling_mode() {
    conversation_both_ways(true).await;
}

/// A simulator, the fake, and the binary in webhook mode with a conversation opened by the
/// consumer's `hello`; returns the conversation id too.
async fn opened(fake: &FakeTelegram) -> (SimHandle, RunningBinary, String) {
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let running = start(&sim, fake, false).await;
    fake.push_update(FakeTelegram::text_update(CHAT, "hello there"))
        .await;
    let (conversation, _) = conversation_of(&sim, "hello there").await;
    sim.agent_accept(&conversation).unwrap();
    (sim, running, conversation)
}

fn message(id: i64, content: Value) -> Value {
    let mut message = json!({ "message_id": id, "date": 1795384801,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ada"},
        "chat": {"id": CHAT, "type": "private"} });
    for (k, v) in content.as_object().unwrap() {
        message[k] = v.clone();
    }
    json!({ "message": message })
}

fn texts_seen_by_consumer(fake: &FakeTelegram) -> Vec<String> {
    fake.messages(CHAT)
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_video_locations_contacts_and_stickers_reach_the_agent_or_are_described() {
    let fake = FakeTelegram::start().await;
    let (sim, _running, _conversation) = opened(&fake).await;
    for (n, content) in [
        json!({ "voice": {"file_id": "v1", "file_unique_id": "u", "duration": 7} }),
        json!({ "location": {"latitude": 48.85837, "longitude": 2.294481} }),
        json!({ "contact": {"phone_number": "+44 20 7946 0000", "first_name": "Charles"} }),
        json!({ "sticker": {"file_id": "s1", "file_unique_id": "u", "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false, "emoji": "🙏"} }),
        json!({ "video": {"file_id": "m1", "file_unique_id": "u", "width": 640, "height": 360, "duration": 12} }),
    ]
    .into_iter()
    .enumerate()
    {
        fake.push_update(message(10 + n as i64, content)).await;
    }
    for expected in [
        "[The consumer sent a voice message (0:07), which cannot reach you here",
        "📍 Location: https://maps.google.com/?q=48.858370,2.294481",
        "👤 Contact: Charles: +44 20 7946 0000",
        "[Sticker: 🙏]",
        "[The consumer sent a video (0:12), which cannot reach you here",
    ] {
        sim.wait_for_consumer_message(expected, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("the agent never read {expected:?}"));
    }
    // The consumer learnt, twice, that the voice message and the video did not get through.
    assert!(
        eventually(30, || texts_seen_by_consumer(&fake)
            .iter()
            .filter(|t| t.starts_with("Sorry, the agent cannot receive this here."))
            .count()
            == 2)
        .await,
        "{:?}",
        texts_seen_by_consumer(&fake)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_whose_image_telegram_cannot_fetch_reaches_the_consumer_as_its_text_and_link() {
    let fake = FakeTelegram::start().await;
    let (sim, running, conversation) = opened(&fake).await;
    let card = json!({ "type": "vertical", "elements": [
        { "type": "image", "url": "https://img.unreachable.example/parcel.png" },
        { "type": "text", "text": "Parcel 42" },
        { "type": "button", "title": "Track", "click": { "actions": [ { "type": "link", "uri": "https://track.example/42" } ] } } ] });
    sim.agent_send_rich(&conversation, card, None).unwrap();
    let expected = "Parcel 42\nhttps://img.unreachable.example/parcel.png";
    assert!(
        eventually(30, || texts_seen_by_consumer(&fake)
            .iter()
            .any(|t| t == expected))
        .await,
        "{:#?}",
        fake.messages(CHAT)
    );
    // Telegram was asked for the photo first, and the event was delivered, not dead-lettered.
    assert!(!fake.calls("sendPhoto").is_empty());
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", running.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("outcome=\"dead_letter\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_cut_by_a_gateway_error_reaches_the_consumer_once_per_part() {
    let fake = FakeTelegram::start().await;
    let (sim, _running, conversation) = opened(&fake).await;
    let part = |n: usize| format!("Part {n}. ") + &"All is well here. ".repeat(200);
    let text = (1..=3).map(part).collect::<Vec<_>>().join("\n");
    // The first part goes; the second meets a proxy's 502, and the runtime retries the event.
    fake.fail_next(&[Failure::Nothing, Failure::BadGateway]);
    sim.agent_send_text(&conversation, &text).unwrap();
    assert!(
        eventually(60, || texts_seen_by_consumer(&fake)
            .iter()
            .any(|t| t.starts_with("Part 3.")))
        .await,
        "{:?}",
        texts_seen_by_consumer(&fake)
    );
    let parts: Vec<String> = texts_seen_by_consumer(&fake)
        .iter()
        .filter(|t| t.starts_with("Part "))
        .map(|t| t[..7].to_owned())
        .collect();
    assert_eq!(parts, ["Part 1.", "Part 2.", "Part 3."]);
}
