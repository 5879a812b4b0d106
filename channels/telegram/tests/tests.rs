//! Tests of the Telegram channel against a hand-written fake Bot API (`fake_telegram.rs`).

mod media_in;
mod sends;
mod shapes;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_channel_telegram::inbound::parse_update;
use switchboard_channel_telegram::outbound::{MAX_TEXT, split_text};
use switchboard_core::rich::{Button, ButtonAction, Card, RichContent};
use switchboard_core::{
    Attachment, AttachmentBody, Bytes, Channel, ChannelConfig, ChatState, ConsumerAddress,
    DeliveryError, HttpRequest, Inbound, MessageRef, Outbound, OutboundEvent, async_trait,
    find_registration, http,
};
use switchboard_testkit::conformance::{self, Harness, PlatformFailure};
use switchboard_testkit::{RecordingSink, eventually};

use switchboard_testkit::fake_telegram::{FAKE_TOKEN as TOKEN, Failure, FakeTelegram};

pub(crate) const SECRET: &str = "webhook-Secret_0123456789";
/// A real 1×1 PNG, which Telegram takes as a photo.
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];
pub(crate) const INSTANCE: &str = "tg";
pub(crate) const CHAT: i64 = 111_222_333;

/// The fake Bot API, with the consumer's private chat open (as their first message to the bot
/// opens it: Telegram refuses to send anywhere else).
pub(crate) async fn fake_with_chat() -> FakeTelegram {
    let fake = FakeTelegram::start().await;
    fake.open_chat(CHAT);
    fake
}

pub(crate) fn webhook_config(fake: &FakeTelegram) -> ChannelConfig {
    ChannelConfig::new(
        INSTANCE,
        "telegram",
        json!({ "bot_token": TOKEN, "secret_token": SECRET, "api_base_url": fake.base }),
    )
    .with_public_url("https://cx.example.com")
}

pub(crate) fn polling_config(fake: &FakeTelegram) -> ChannelConfig {
    ChannelConfig::new(
        INSTANCE,
        "telegram",
        json!({ "bot_token": TOKEN, "mode": "polling", "api_base_url": fake.base, "poll_timeout_secs": 1 }),
    )
}

pub(crate) fn build(config: &ChannelConfig) -> Arc<dyn Channel> {
    (find_registration("telegram").expect("registered").build)(config).expect("valid config")
}

pub(crate) fn text_update(id: i64, text: &str) -> Value {
    json!({ "update_id": id, "message": {
        "message_id": id, "date": 1795384800,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ada", "last_name": "Lovelace", "username": "ada", "language_code": "en"},
        "chat": {"id": CHAT, "type": "private", "first_name": "Ada"},
        "text": text }})
}

pub(crate) fn webhook_request(body: &Value, secret: Option<&str>) -> HttpRequest {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri("/webhook")
        .header("content-type", "application/json");
    if let Some(s) = secret {
        builder = builder.header("x-telegram-bot-api-secret-token", s);
    }
    builder.body(Bytes::from(body.to_string())).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The conformance suite.

struct Conformance {
    fake: FakeTelegram,
}

#[async_trait]
impl Harness for Conformance {
    fn config(&self) -> ChannelConfig {
        webhook_config(&self.fake)
    }
    fn secrets(&self) -> Vec<String> {
        vec![TOKEN.into(), SECRET.into()]
    }
    fn genuine(&self, n: u32, text: &str) -> HttpRequest {
        webhook_request(&text_update(i64::from(n) + 1000, text), Some(SECRET))
    }
    fn genuine_with_body(&self, body: Bytes) -> Option<HttpRequest> {
        Some(
            http::Request::builder()
                .method("POST")
                .uri("/webhook")
                .header("x-telegram-bot-api-secret-token", SECRET)
                .body(body)
                .unwrap(),
        )
    }
    fn forged(&self, n: u32, text: &str) -> Option<HttpRequest> {
        Some(webhook_request(
            &text_update(i64::from(n) + 1000, text),
            Some("not-the-secret"),
        ))
    }
    fn consumer(&self, instance: &str) -> ConsumerAddress {
        ConsumerAddress::new(instance, CHAT.to_string())
    }
    async fn fail_next_delivery(&self, failure: PlatformFailure) -> bool {
        self.fake.fail_next(&[match failure {
            PlatformFailure::Outage => Failure::BadGateway,
            PlatformFailure::Refusal => Failure::Blocked,
        }]);
        true
    }
}

#[tokio::test]
async fn the_telegram_channel_passes_the_conformance_suite() {
    let fake = fake_with_chat().await;
    conformance::run(&Conformance { fake }).await;
}

// ---------------------------------------------------------------------------------------------
// Webhook mode.

#[tokio::test]
async fn start_registers_the_webhook_with_the_secret_and_update_kinds() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    assert_eq!(
        fake.webhook(),
        Some((
            "https://cx.example.com/channels/tg/webhook".into(),
            SECRET.into()
        ))
    );
    let call = &fake.calls("setWebhook")[0];
    assert_eq!(
        call.params["allowed_updates"],
        json!(["message", "callback_query"])
    );
}

#[tokio::test]
async fn a_second_set_webhook_within_a_second_waits_as_telegram_asks() {
    // Telegram takes one setWebhook a second and answers a quicker one 429 "retry after 1":
    // a restart right after a start still registers.
    let fake = fake_with_chat().await;
    let sink = RecordingSink::new();
    for _ in 0..2 {
        let (ctx, _stop) = sink.context(INSTANCE);
        build(&webhook_config(&fake)).start(ctx).await.unwrap();
    }
    let calls = fake.calls("setWebhook");
    assert!(calls.len() >= 3, "{calls:?}");
    assert_eq!(
        fake.webhook(),
        Some((
            "https://cx.example.com/channels/tg/webhook".into(),
            SECRET.into()
        ))
    );
}

#[tokio::test]
async fn the_secret_is_checked_before_parsing_and_genuine_updates_are_stored_with_a_profile() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    for secret in [None, Some("wrong"), Some("webhook-Secret_012345678")] {
        let response = channel
            .handle_http(webhook_request(&json!("not even an update"), secret), &ctx)
            .await;
        assert_eq!(response.status(), 401);
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert!(sink.events().is_empty());

    let response = channel
        .handle_http(
            webhook_request(&text_update(5, "Grüße 👋 /start"), Some(SECRET)),
            &ctx,
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].consumer,
        ConsumerAddress::new(INSTANCE, CHAT.to_string())
    );
    assert_eq!(events[0].platform_id.as_deref(), Some("tg:5"));
    assert_eq!(events[0].body, Inbound::text("Grüße 👋 /start"));
    assert_eq!(events[0].occurred_at_ms, Some(1_795_384_800_000));
    let profile = events[0].profile.clone().unwrap();
    assert_eq!(profile.first_name.as_deref(), Some("Ada"));
    assert_eq!(profile.last_name.as_deref(), Some("Lovelace"));
    assert_eq!(profile.username.as_deref(), Some("ada"));
    assert_eq!(profile.language.as_deref(), Some("en"));

    // Authentic but not JSON: 400; group messages, bots and edits: acknowledged, ignored.
    let bad = http::Request::builder()
        .method("POST")
        .uri("/webhook")
        .header("x-telegram-bot-api-secret-token", SECRET)
        .body(Bytes::from_static(b"{oops"))
        .unwrap();
    assert_eq!(channel.handle_http(bad, &ctx).await.status(), 400);
    let mut group = text_update(6, "hi all");
    group["message"]["chat"] = json!({"id": -100123, "type": "supergroup"});
    let edit = json!({"update_id": 7, "edited_message": {"message_id": 1, "date": 1, "chat": {"id": CHAT, "type": "private"}, "text": "edited"}});
    let mut bot = text_update(8, "from a bot");
    bot["message"]["from"]["is_bot"] = json!(true);
    for update in [group, edit, bot] {
        let response = channel
            .handle_http(webhook_request(&update, Some(SECRET)), &ctx)
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sink.events().len(), 1);
}

#[tokio::test]
async fn an_authentic_update_the_channel_cannot_read_is_acknowledged_so_the_chat_goes_on() {
    // Telegram retries anything but a 2xx for a day and holds the chat's later updates behind
    // it: an update in a shape the channel does not know must not block the consumer.
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let unreadable =
        json!({ "update_id": 40, "message": { "message_id": "forty", "chat": "nope" } });
    let response = channel
        .handle_http(webhook_request(&unreadable, Some(SECRET)), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    assert!(sink.events().is_empty());
    let response = channel
        .handle_http(
            webhook_request(&text_update(41, "still here"), Some(SECRET)),
            &ctx,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(sink.events()[0].body, Inbound::text("still here"));
}

#[tokio::test]
async fn a_store_failure_is_answered_503_so_telegram_retries() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    sink.set_failing(true);
    let response = channel
        .handle_http(
            webhook_request(&text_update(9, "hello"), Some(SECRET)),
            &ctx,
        )
        .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
}

// ---------------------------------------------------------------------------------------------
// Polling mode.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_keeps_its_offset_across_a_restart_neither_repeating_nor_skipping() {
    let fake = fake_with_chat().await;
    let config = polling_config(&fake);
    let sink = RecordingSink::new();
    let first = fake.push_update(text_update(0, "one")).await;
    fake.push_update(text_update(0, "two")).await;

    let channel = build(&config);
    let (ctx, stop) = sink.context(INSTANCE);
    let running = tokio::spawn({
        let channel = channel.clone();
        async move { channel.start(ctx).await }
    });
    assert!(eventually(10, || sink.events().len() >= 2).await);
    assert!(fake.calls("deleteWebhook").len() == 1);
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(
        sink.state(INSTANCE, "offset"),
        Some((first + 2).to_string())
    );

    // A new process: the confirmed updates are not fetched again; a new one arrives once.
    fake.push_update(text_update(0, "three")).await;
    let channel = build(&config);
    let (ctx, stop) = sink.context(INSTANCE);
    let running = tokio::spawn({
        let channel = channel.clone();
        async move { channel.start(ctx).await }
    });
    assert!(eventually(10, || sink.events().len() >= 3).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let texts: Vec<Inbound> = sink.events().into_iter().map(|e| e.body).collect();
    assert_eq!(
        texts,
        vec![
            Inbound::text("one"),
            Inbound::text("two"),
            Inbound::text("three")
        ]
    );
    let offsets: Vec<i64> = fake
        .calls("getUpdates")
        .iter()
        .filter_map(|c| c.params["offset"].as_i64())
        .collect();
    assert!(offsets.contains(&(first + 2)), "{offsets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_does_not_skip_an_update_the_store_could_not_take() {
    let fake = fake_with_chat().await;
    let sink = RecordingSink::new();
    sink.set_failing(true);
    fake.push_update(text_update(0, "kept")).await;
    let channel = build(&polling_config(&fake));
    let (ctx, stop) = sink.context(INSTANCE);
    let running = tokio::spawn({
        let channel = channel.clone();
        async move { channel.start(ctx).await }
    });
    assert!(eventually(10, || !fake.calls("getUpdates").is_empty()).await);
    assert_eq!(sink.state(INSTANCE, "offset"), None);
    sink.set_failing(false);
    assert!(eventually(15, || sink.events().len() == 1).await);
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(sink.events()[0].body, Inbound::text("kept"));
}

// ---------------------------------------------------------------------------------------------
// Media, keyboards and callbacks.

#[tokio::test]
async fn a_photo_is_downloaded_at_its_largest_size_and_handed_on_as_a_file() {
    let fake = fake_with_chat().await;
    fake.add_file("large-id", "photos/file_7.jpg", b"\xff\xd8\xff large jpeg");
    fake.add_file("small-id", "photos/file_6.jpg", b"small");
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let update = json!({"update_id": 20, "message": {"message_id": 43, "date": 1795384810,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ada"},
        "chat": {"id": CHAT, "type": "private"},
        "photo": [{"file_id": "small-id", "file_unique_id": "s", "width": 90, "height": 67},
                  {"file_id": "large-id", "file_unique_id": "l", "width": 1280, "height": 960}],
        "caption": "receipt"}});
    let response = channel
        .handle_http(webhook_request(&update, Some(SECRET)), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    let Inbound::File { file } = &sink.events()[0].body else {
        panic!("{:?}", sink.events());
    };
    assert_eq!(file.mime, "image/jpeg");
    assert_eq!(file.caption.as_deref(), Some("receipt"));
    assert_eq!(
        file.body,
        AttachmentBody::Inline {
            data: Bytes::from_static(b"\xff\xd8\xff large jpeg")
        }
    );
}

#[tokio::test]
async fn quick_replies_become_an_inline_keyboard_and_a_press_becomes_a_choice() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx.clone()).await.unwrap();
    let reply = |id: &str, title: &str| Button {
        id: id.into(),
        title: title.into(),
        action: ButtonAction::Reply,
    };
    let message = "lp:3f0e9c1a-1111-2222-3333-444455556666:3f0e9c1a-1111-2222-3333-444455556666:17";
    let content = RichContent::with_quick_replies(
        "Did that help?",
        vec![reply("yes", "Yes 👍"), reply("no", "No")],
    );
    let to = ConsumerAddress::new(INSTANCE, CHAT.to_string());
    channel
        .deliver(
            &to,
            &OutboundEvent::new(message, Outbound::Rich { content }),
        )
        .await
        .unwrap();
    let sent = &fake.calls("sendMessage")[0].params;
    assert_eq!(sent["text"], "Did that help?");
    let keyboard = sent["reply_markup"]["inline_keyboard"].as_array().unwrap();
    assert_eq!(keyboard.len(), 2);
    assert_eq!(keyboard[0][0]["text"], "Yes 👍");
    let data = keyboard[1][0]["callback_data"].as_str().unwrap().to_owned();
    assert!(data.len() <= 64);

    let press = json!({"update_id": 30, "callback_query": {"id": "cbq-1",
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ada"},
        "message": {"message_id": 44, "date": 1795384820, "chat": {"id": CHAT, "type": "private"}},
        "chat_instance": "-8125312745624570423", "data": data}});
    let response = channel
        .handle_http(webhook_request(&press, Some(SECRET)), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        sink.events()[0].body,
        Inbound::Choice {
            message: MessageRef::new(message),
            choice: "no".into()
        }
    );
    assert_eq!(
        fake.calls("answerCallbackQuery")[0].params["callback_query_id"],
        "cbq-1"
    );
}

#[tokio::test]
async fn every_agent_event_kind_reaches_the_consumer_even_where_telegram_refuses_its_file() {
    // The suite's events point at example.com, which Telegram cannot fetch here, and carry a
    // PNG that is only a signature: Telegram refuses both as photos.
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let to = ConsumerAddress::new(INSTANCE, CHAT.to_string());
    for event in conformance::every_outbound_kind() {
        channel.deliver(&to, &event).await.unwrap();
    }
    let seen = fake.messages(CHAT);
    let texts: Vec<&str> = seen.iter().filter_map(|m| m["text"].as_str()).collect();
    assert!(
        texts.contains(&"Hello from the agent, Grüße 👋"),
        "{texts:?}"
    );
    assert!(texts.contains(&"Your order"), "{texts:?}");
    // The card: its text with the image's link, and its buttons.
    let card = seen
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Order #1"))
        })
        .unwrap_or_else(|| panic!("{seen:#?}"));
    assert_eq!(
        card["text"],
        "Order #1\nTwo items\nArrives Tuesday\nhttps://example.com/box.png"
    );
    assert_eq!(
        card["reply_markup"]["inline_keyboard"][1][0]["url"],
        "https://example.com/order/1"
    );
    // The file by URL: its caption and link; the unreadable PNG: as a document.
    assert!(
        texts.contains(&"The box\nhttps://example.com/box.png"),
        "{texts:?}"
    );
    assert!(
        seen.iter()
            .any(|m| m["document"]["file_name"] == "tiny.png"),
        "{seen:#?}"
    );
    assert!(texts.iter().any(|t| t.contains("transferred")));
    assert!(texts.iter().any(|t| t.contains("ended")));
}

#[tokio::test]
async fn cards_become_photos_with_captions_and_files_are_uploaded_or_linked() {
    let fake = fake_with_chat().await;
    let image = fake.host("box.png", "image/png", PNG);
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let to = ConsumerAddress::new(INSTANCE, CHAT.to_string());
    let card = Card {
        title: Some("Order #1".into()),
        lines: vec!["Two items".into()],
        image_url: Some(image.clone()),
        buttons: vec![Button {
            id: "site".into(),
            title: "Open".into(),
            action: ButtonAction::Link {
                url: "https://example.com/order/1".into(),
            },
        }],
    };
    let content = RichContent {
        text: String::new(),
        cards: vec![card],
        quick_replies: Vec::new(),
    };
    let file = |body| Outbound::File {
        file: Attachment {
            name: Some("label.png".into()),
            mime: "image/png".into(),
            caption: Some("your label".into()),
            body,
        },
    };
    for (id, body) in [
        ("card", Outbound::Rich { content }),
        ("by-url", file(AttachmentBody::Url { url: image.clone() })),
        (
            "inline",
            file(AttachmentBody::Inline {
                data: Bytes::from_static(PNG),
            }),
        ),
    ] {
        channel
            .deliver(&to, &OutboundEvent::new(id, body))
            .await
            .unwrap();
    }
    let seen = fake.messages(CHAT);
    assert_eq!(seen.len(), 3, "{seen:#?}");
    assert!(seen.iter().all(|m| m["photo"].is_array()), "{seen:#?}");
    assert_eq!(seen[0]["caption"], "Order #1\nTwo items");
    assert_eq!(
        seen[0]["reply_markup"]["inline_keyboard"][0][0]["url"],
        "https://example.com/order/1"
    );
    assert_eq!(seen[1]["caption"], "your label");
    assert_eq!(fake.calls("sendPhoto")[2].upload, Some(PNG.len()));
}

#[tokio::test]
async fn long_texts_are_split_at_boundaries_within_4096_utf16_units() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let sentence = "Your parcel 📦 left the depot and will arrive tomorrow. ";
    let text = sentence.repeat(200);
    let to = ConsumerAddress::new(INSTANCE, CHAT.to_string());
    channel
        .deliver(
            &to,
            &OutboundEvent::new("m-long", Outbound::text(text.clone())),
        )
        .await
        .unwrap();
    let pieces: Vec<String> = fake
        .calls("sendMessage")
        .iter()
        .map(|c| c.params["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(pieces.len() >= 3);
    for piece in &pieces {
        assert!(piece.encode_utf16().count() <= MAX_TEXT);
        assert!(
            piece.ends_with('.'),
            "cut inside a sentence: …{}",
            &piece[piece.len() - 20..]
        );
    }
    assert_eq!(pieces.join(" "), text.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_refreshed_while_the_agent_types_and_stops_when_they_stop() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let to = ConsumerAddress::new(INSTANCE, CHAT.to_string());
    let typing = |state| OutboundEvent::new("t", Outbound::ChatState { state });
    channel
        .deliver(&to, &typing(ChatState::Composing))
        .await
        .unwrap();
    assert!(eventually(15, || fake.calls("sendChatAction").len() >= 2).await);
    assert_eq!(fake.calls("sendChatAction")[0].params["action"], "typing");
    channel
        .deliver(&to, &typing(ChatState::Paused))
        .await
        .unwrap();
    let after = fake.calls("sendChatAction").len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.calls("sendChatAction").len(), after);
}

#[tokio::test]
async fn delivery_failures_are_classified_and_never_show_the_token() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let to = ConsumerAddress::new(INSTANCE, CHAT.to_string());
    let event = OutboundEvent::new("m", Outbound::text("hi"));

    fake.fail_next(&[Failure::Flood(7)]);
    match channel.deliver(&to, &event).await {
        Err(DeliveryError::Retryable { after, .. }) => {
            assert_eq!(after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    fake.fail_next(&[Failure::BadGateway]);
    assert!(matches!(
        channel.deliver(&to, &event).await,
        Err(DeliveryError::Retryable { .. })
    ));
    fake.fail_next(&[Failure::Blocked]);
    match channel.deliver(&to, &event).await {
        Err(e @ DeliveryError::Permanent { .. }) => {
            assert!(e.to_string().contains("blocked"));
            assert!(!format!("{e:?}").contains(TOKEN));
        }
        other => panic!("{other:?}"),
    }
    // Nobody listening: a network error, retryable, without the URL (which holds the token).
    let port = switchboard_testkit::free_port();
    let dead = ChannelConfig::new(
        INSTANCE,
        "telegram",
        json!({ "bot_token": TOKEN, "mode": "polling", "api_base_url": format!("http://127.0.0.1:{port}") }),
    );
    let channel = build(&dead);
    let (ctx, _stop) = sink.context(INSTANCE);
    let _ = channel
        .handle_http(webhook_request(&json!({}), None), &ctx)
        .await;
    match channel.deliver(&to, &event).await {
        Err(e @ DeliveryError::Retryable { .. }) => assert!(!format!("{e:?}").contains(TOKEN)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_burst_to_one_chat_is_paced_and_a_migrated_group_is_followed() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let to = ConsumerAddress::new(INSTANCE, CHAT.to_string());
    let started = std::time::Instant::now();
    for i in 0..6 {
        let event = OutboundEvent::new(format!("b{i}"), Outbound::text(format!("burst {i}")));
        channel.deliver(&to, &event).await.unwrap();
    }
    // Three go at once, the next three one second apart (a lower bound: slowness only adds).
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.calls("sendMessage").len(), 6);

    // The group becomes a supergroup: every send to its old id is refused from now on.
    fake.migrate(-4242, -1_001_234_567_890);
    let other = ConsumerAddress::new(INSTANCE, "-4242");
    channel
        .deliver(
            &other,
            &OutboundEvent::new("g", Outbound::text("to the group")),
        )
        .await
        .unwrap();
    let calls = fake.calls("sendMessage");
    assert_eq!(calls[calls.len() - 2].params["chat_id"], -4242);
    assert_eq!(
        calls[calls.len() - 1].params["chat_id"],
        -1_001_234_567_890_i64
    );
    // Later messages go straight to the supergroup, after a restart too (channel state).
    channel
        .deliver(&other, &OutboundEvent::new("g2", Outbound::text("again")))
        .await
        .unwrap();
    let restarted = build(&webhook_config(&fake));
    let (ctx, _stop2) = sink.context(INSTANCE);
    restarted.start(ctx).await.unwrap();
    restarted
        .deliver(
            &other,
            &OutboundEvent::new("g3", Outbound::text("after a restart")),
        )
        .await
        .unwrap();
    let to_old = fake
        .calls("sendMessage")
        .iter()
        .filter(|c| c.params["chat_id"] == -4242)
        .count();
    assert_eq!(to_old, 1, "only the first send met the old chat id");
    assert_eq!(
        fake.calls("sendMessage").last().unwrap().params["text"],
        "after a restart"
    );
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[test]
fn config_errors_name_the_key() {
    let registration = find_registration("telegram").unwrap();
    let error = |settings: Value, public: bool| {
        let mut cfg = ChannelConfig::new("tg", "telegram", settings);
        if public {
            cfg = cfg.with_public_url("https://cx.example.com");
        }
        (registration.build)(&cfg).map(|_| ()).unwrap_err().key
    };
    assert_eq!(
        error(json!({ "bot_token": TOKEN }), true),
        "channels.tg.secret_token"
    );
    for token in ["nope", "0123:ABC-def", "123:", ":abc"] {
        assert_eq!(
            error(json!({ "bot_token": token, "mode": "polling" }), true),
            "channels.tg.bot_token",
            "{token}"
        );
    }
    assert_eq!(
        error(
            json!({ "bot_token": TOKEN, "secret_token": "has space" }),
            true
        ),
        "channels.tg.secret_token"
    );
    assert_eq!(
        error(json!({ "bot_token": TOKEN, "secret_token": SECRET }), false),
        "server.public_url"
    );
    assert_eq!(
        error(
            json!({ "bot_token": TOKEN, "mode": "polling", "poll_timeout_secs": 90 }),
            false
        ),
        "channels.tg.poll_timeout_secs"
    );
    assert_eq!(
        error(json!({ "bot_token": TOKEN, "mode": "sideways" }), false),
        "channels.tg.mode"
    );
    // Polling needs no public URL and no secret.
    let ok = ChannelConfig::new(
        "tg",
        "telegram",
        json!({ "bot_token": TOKEN, "mode": "polling" }),
    );
    assert!((registration.build)(&ok).is_ok());
}

proptest::proptest! {
    #[test]
    fn the_update_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = parse_update(&bytes);
    }

    #[test]
    fn split_pieces_fit_and_lose_nothing(words in proptest::collection::vec("[a-zé👋.!?]{1,12}", 0..600), max in 16usize..200) {
        let text = words.join(" ");
        let pieces = split_text(&text, max);
        for piece in &pieces {
            proptest::prop_assert!(piece.encode_utf16().count() <= max);
        }
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        proptest::prop_assert_eq!(squash(&pieces.concat()), squash(&text));
    }
}

#[tokio::test]
async fn a_webhook_url_telegram_would_refuse_is_refused_before_it_is_registered() {
    let registration = find_registration("telegram").unwrap();
    // Telegram's own Bot API delivers only over HTTPS to ports 443, 80, 88 and 8443: with it,
    // another public URL is a config error naming `server.public_url`.
    for public_url in ["http://cx.example.com", "https://cx.example.com:8080"] {
        let cfg = ChannelConfig::new(
            "tg",
            "telegram",
            json!({ "bot_token": TOKEN, "secret_token": SECRET }),
        )
        .with_public_url(public_url);
        let error = (registration.build)(&cfg).map(|_| ()).unwrap_err();
        assert_eq!(error.key, "server.public_url", "{public_url}");
        assert!(error.message.contains("Telegram webhooks"), "{error}");
    }
    let fine = ChannelConfig::new(
        "tg",
        "telegram",
        json!({ "bot_token": TOKEN, "secret_token": SECRET }),
    )
    .with_public_url("https://cx.example.com:8443");
    assert!((registration.build)(&fine).is_ok());

    // Another Bot API server (self-hosted, perhaps in `--local` mode, which lifts the rule)
    // decides itself; one that keeps the rule refuses at start, in Telegram's words.
    let fake = fake_with_chat().await;
    let cfg = ChannelConfig::new(
        INSTANCE,
        "telegram",
        json!({ "bot_token": TOKEN, "secret_token": SECRET, "api_base_url": fake.base }),
    )
    .with_public_url("http://cx.example.com");
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let refused = build(&cfg).start(ctx).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("Bad Request: bad webhook: An HTTPS URL must be provided for webhook"),
        "{refused}"
    );
}
