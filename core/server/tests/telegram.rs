//! The Telegram channel through the whole product: the released binary, the LivePerson
//! simulator and the testkit's fake Bot API, in webhook mode and in polling mode. A conversation
//! goes both ways with a text, a photo each way, typing and a keyboard button; in webhook mode a
//! wrong secret token is refused.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::eventually;
use switchboard_testkit::fake_telegram::{FAKE_TOKEN, FakeTelegram};

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
    let entry = sim
        .wait_for_consumer_message("Hi from Telegram", Duration::from_secs(30))
        .await
        .expect("the consumer's text reached LivePerson");
    assert_eq!(entry.event["message"], "/start Hi from Telegram 👋");
    let conversation = sim
        .conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .unwrap()
        .conversation_id;
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
