//! What consumers send besides texts and photos: what reaches the agent as text, what as a
//! file, and what is described to the agent while the consumer is told it did not get through
//! (LivePerson takes only JPG, PNG or GIF images up to 3 MB from consumers).

use serde_json::{Value, json};
use switchboard_core::{AttachmentBody, Bytes, Channel, Inbound};
use switchboard_testkit::RecordingSink;
use switchboard_testkit::fake_telegram::FakeTelegram;

use crate::{CHAT, INSTANCE, PNG, SECRET, build, fake_with_chat, webhook_config, webhook_request};

/// The default `not_carried_text`.
const TOLD: &str = "Sorry, the agent cannot receive this here. Please write your message as text, or send a photo (JPG, PNG or GIF up to 3 MB).";

fn message(id: i64, content: Value) -> Value {
    let mut message = json!({ "message_id": id, "date": 1795384800,
        "from": {"id": CHAT, "is_bot": false, "first_name": "Ada"},
        "chat": {"id": CHAT, "type": "private"} });
    for (k, v) in content.as_object().unwrap() {
        message[k] = v.clone();
    }
    json!({ "update_id": id, "message": message })
}

/// Hands each update to the channel's webhook (each must be answered 200) and returns the
/// events that reached the sink.
async fn take(channel: &dyn Channel, updates: &[Value]) -> Vec<Inbound> {
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    for update in updates {
        let response = channel
            .handle_http(webhook_request(update, Some(SECRET)), &ctx)
            .await;
        assert_eq!(response.status(), 200, "{update}");
    }
    sink.events().into_iter().map(|e| e.body).collect()
}

fn text_of(body: &Inbound) -> &str {
    match body {
        Inbound::Text { text } => text,
        other => panic!("not a text: {other:?}"),
    }
}

fn told(fake: &FakeTelegram) -> usize {
    fake.messages(CHAT)
        .iter()
        .filter(|m| m["text"] == TOLD)
        .count()
}

#[tokio::test]
async fn voice_audio_video_round_videos_and_animations_are_described_and_the_consumer_is_told() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let updates = [
        message(
            1,
            json!({ "voice": {"file_id": "v1", "file_unique_id": "u", "duration": 7, "mime_type": "audio/ogg", "file_size": 14_000} }),
        ),
        message(
            2,
            json!({ "audio": {"file_id": "a1", "file_unique_id": "u", "duration": 201, "performer": "Queen", "title": "Bicycle", "file_size": 4_404_019},
            "caption": "listen to this" }),
        ),
        message(
            3,
            json!({ "video": {"file_id": "m1", "file_unique_id": "u", "width": 1280, "height": 720, "duration": 12, "mime_type": "video/mp4", "file_size": 3_565_158} }),
        ),
        message(
            4,
            json!({ "video_note": {"file_id": "n1", "file_unique_id": "u", "length": 240, "duration": 5} }),
        ),
        message(
            5,
            json!({ "animation": {"file_id": "g1", "file_unique_id": "u", "width": 320, "height": 240, "duration": 3, "mime_type": "video/mp4"},
            "document": {"file_id": "g1", "file_unique_id": "u", "mime_type": "video/mp4"} }),
        ),
    ];
    let events = take(channel.as_ref(), &updates).await;
    let texts: Vec<&str> = events.iter().map(text_of).collect();
    assert_eq!(
        texts,
        [
            "[The consumer sent a voice message (0:07, 13 KB), which cannot reach you here; they were asked to write instead.]",
            "[The consumer sent an audio file \"Queen – Bicycle\" (3:21, 4.2 MB), which cannot reach you here; they were asked to write instead. Its caption: \"listen to this\".]",
            "[The consumer sent a video (0:12, 3.4 MB), which cannot reach you here; they were asked to write instead.]",
            "[The consumer sent a round video message (0:05), which cannot reach you here; they were asked to write instead.]",
            "[The consumer sent an animation (0:03), which cannot reach you here; they were asked to write instead.]",
        ]
    );
    // Nothing was downloaded, and the consumer heard back each time.
    assert!(fake.calls("getFile").is_empty());
    assert_eq!(told(&fake), 5);
}

#[tokio::test]
async fn locations_venues_contacts_stickers_and_dice_reach_the_agent_as_text() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let updates = [
        message(
            1,
            json!({ "location": {"latitude": 48.858370, "longitude": 2.294481} }),
        ),
        message(
            2,
            json!({ "location": {"latitude": 51.5007, "longitude": -0.1246, "horizontal_accuracy": 25.0, "live_period": 900} }),
        ),
        message(
            3,
            json!({ "venue": {"location": {"latitude": 40.748817, "longitude": -73.985428}, "title": "Empire State Building", "address": "20 W 34th St, New York"},
            "location": {"latitude": 40.748817, "longitude": -73.985428} }),
        ),
        message(
            4,
            json!({ "contact": {"phone_number": "+44 20 7946 0000", "first_name": "Charles", "last_name": "Babbage", "user_id": 42} }),
        ),
        message(
            5,
            json!({ "sticker": {"file_id": "s1", "file_unique_id": "u", "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false, "emoji": "👍", "set_name": "Hands"} }),
        ),
        message(6, json!({ "dice": {"emoji": "🎲", "value": 4} })),
    ];
    let events = take(channel.as_ref(), &updates).await;
    let texts: Vec<&str> = events.iter().map(text_of).collect();
    assert_eq!(
        texts,
        [
            "📍 Location: https://maps.google.com/?q=48.858370,2.294481",
            "📍 Live location, as first shared: https://maps.google.com/?q=51.500700,-0.124600 (±25 m)",
            "📍 Empire State Building, 20 W 34th St, New York: https://maps.google.com/?q=40.748817,-73.985428",
            "👤 Contact: Charles Babbage: +44 20 7946 0000",
            "[Sticker: 👍]",
            "[🎲 4]",
        ]
    );
    // All of it reached the agent: nobody needs telling.
    assert_eq!(told(&fake), 0);
}

#[tokio::test]
async fn images_within_livepersons_limits_are_files_and_other_files_are_described() {
    let fake = fake_with_chat().await;
    fake.add_file("png-doc", "documents/plan.png", PNG);
    fake.add_file("mid-photo", "photos/mid.jpg", b"\xff\xd8\xff mid");
    let channel = build(&webhook_config(&fake));
    let updates = [
        // An image sent as a file: handed on as it is.
        message(
            1,
            json!({ "document": {"file_id": "png-doc", "file_unique_id": "u", "file_name": "plan.png", "mime_type": "image/png", "file_size": PNG.len()} }),
        ),
        // A photo whose largest size is over 3 MB: the largest within it.
        message(
            2,
            json!({ "photo": [
            {"file_id": "small-photo", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 2_000},
            {"file_id": "mid-photo", "file_unique_id": "m", "width": 1280, "height": 1280, "file_size": 900_000},
            {"file_id": "huge-photo", "file_unique_id": "h", "width": 5000, "height": 5000, "file_size": 4_000_000}],
            "caption": "the crack" }),
        ),
        // A PDF, and an image over 3 MB: LivePerson takes neither from a consumer.
        message(
            3,
            json!({ "document": {"file_id": "pdf", "file_unique_id": "u", "file_name": "invoice.pdf", "mime_type": "application/pdf", "file_size": 1_258_291} }),
        ),
        message(
            4,
            json!({ "document": {"file_id": "big-jpg", "file_unique_id": "u", "file_name": "scan.jpg", "mime_type": "image/jpeg", "file_size": 5_242_880} }),
        ),
    ];
    let events = take(channel.as_ref(), &updates).await;
    let Inbound::File { file } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(file.name.as_deref(), Some("plan.png"));
    assert_eq!(file.mime, "image/png");
    assert_eq!(
        file.body,
        AttachmentBody::Inline {
            data: Bytes::from_static(PNG)
        }
    );
    let Inbound::File { file } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(file.caption.as_deref(), Some("the crack"));
    assert_eq!(
        file.body,
        AttachmentBody::Inline {
            data: Bytes::from_static(b"\xff\xd8\xff mid")
        }
    );
    assert_eq!(
        text_of(&events[2]),
        "[The consumer sent the file invoice.pdf (application/pdf, 1.2 MB), which cannot reach you here; they were asked to write instead.]"
    );
    assert_eq!(
        text_of(&events[3]),
        "[The consumer sent the file scan.jpg (image/jpeg, 5.0 MB), which cannot reach you here; they were asked to write instead.]"
    );
    // Only the two images were fetched from Telegram.
    let fetched: Vec<Value> = fake
        .calls("getFile")
        .iter()
        .map(|c| c.params["file_id"].clone())
        .collect();
    assert_eq!(fetched, [json!("png-doc"), json!("mid-photo")]);
    assert_eq!(told(&fake), 2);
}

#[tokio::test]
async fn a_file_telegram_will_not_hand_over_and_an_unreadable_message_are_described_not_lost() {
    let fake = fake_with_chat().await;
    // Telegram knows the file at 25 MB: over a bot's 20 MB, `getFile` says "file is too big".
    fake.add_file_of_size("big", "documents/big.png", 25 * 1024 * 1024);
    let channel = build(&webhook_config(&fake));
    let updates = [
        message(
            1,
            json!({ "document": {"file_id": "big", "file_unique_id": "u", "file_name": "big.png", "mime_type": "image/png"} }),
        ),
        // A location in a shape this channel does not know (a later Bot API, say).
        message(2, json!({ "location": {"lat": "48.8", "lon": "2.29"} })),
        // A poll, and a service message (a pinned message), which carries nothing.
        message(
            3,
            json!({ "poll": {"id": "p", "question": "Which day?", "options": []} }),
        ),
        message(
            4,
            json!({ "pinned_message": {"message_id": 1, "date": 1, "chat": {"id": CHAT, "type": "private"}} }),
        ),
    ];
    let events = take(channel.as_ref(), &updates).await;
    let texts: Vec<&str> = events.iter().map(text_of).collect();
    assert_eq!(
        texts,
        [
            "[The consumer sent an image over Telegram's 20 MB limit for bots, which cannot reach you here; they were asked to write instead.]",
            "[The consumer sent a location, which cannot reach you here; they were asked to write instead.]",
            "[The consumer sent a poll (\"Which day?\"), which cannot reach you here; they were asked to write instead.]",
        ]
    );
    assert_eq!(told(&fake), 3);
}

#[tokio::test]
async fn the_consumers_notice_is_configurable() {
    let fake = fake_with_chat().await;
    let mut settings = json!({ "bot_token": switchboard_testkit::fake_telegram::FAKE_TOKEN,
        "secret_token": SECRET, "api_base_url": fake.base,
        "not_carried_text": "Lo siento, el agente no puede recibir esto. Escriba su mensaje, por favor." });
    settings["mode"] = json!("webhook");
    let config = switchboard_core::ChannelConfig::new(INSTANCE, "telegram", settings)
        .with_public_url("https://cx.example.com");
    let channel = build(&config);
    take(
        channel.as_ref(),
        &[message(
            1,
            json!({ "voice": {"file_id": "v", "file_unique_id": "u", "duration": 2} }),
        )],
    )
    .await;
    assert_eq!(
        fake.messages(CHAT)[0]["text"],
        "Lo siento, el agente no puede recibir esto. Escriba su mensaje, por favor."
    );
}
