//! The Telegram channel through the whole product: the released binary, the LivePerson
//! simulator and the testkit's fake Bot API, in webhook mode and in polling mode. A conversation
//! goes both ways with a text, a photo each way, typing and a keyboard button; in webhook mode a
//! wrong secret token is refused.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::fake_telegram::{FAKE_TOKEN, FakeTelegram};
use switchboard_testkit::{eventually, free_port};

const CHAT: i64 = 555_000_111;
const SECRET: &str = "tg-webhook-secret_42";
/// A tiny valid PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

struct Running {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(sim: &SimHandle, fake: &FakeTelegram, polling: bool) -> (u16, Running) {
    let port = free_port();
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
    let dir = tempfile::tempdir().unwrap();
    let mode = if polling {
        "mode = \"polling\"\npoll_timeout_secs = 1".to_owned()
    } else {
        format!("mode = \"webhook\"\nsecret_token = \"{SECRET}\"")
    };
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[store]
url = "sqlite://{db}"
[liveperson]
mode = "live"
account_id = "{account}"
client_id = "{client}"
client_secret = "{secret}"
domain_api = "{domain}"
retry_scale = 0.001
[channels.tg]
kind = "telegram"
bot_token = "{FAKE_TOKEN}"
api_base_url = "{base}"
{mode}
"#,
        db = dir.path().join("sb.db").display(),
        account = sim.account_id(),
        client = sim.client_id(),
        secret = sim.client_secret(),
        domain = sim.domain_api(),
        base = fake.base,
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, toml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running { child, _dir: dir };
    assert!(
        eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "switchboard did not start"
    );
    if polling {
        assert!(eventually(30, || !fake.calls("getUpdates").is_empty()).await);
    } else {
        assert!(
            eventually(30, || fake.webhook().is_some()).await,
            "no setWebhook"
        );
    }
    (port, running)
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
    let (port, _running) = start(&sim, &fake, polling).await;

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
