//! The Telegram update parser on valid shapes, property-based: generated updates (messages with
//! text, photos or documents, button presses), with fields Telegram may add one day everywhere,
//! come out as generated, and a private text message reaches the sink as sent through the
//! webhook. (Random bytes: `the_update_parser_never_panics`.)

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard_channel_telegram::inbound::{parse_callback_data, parse_update, profile};
use switchboard_core::{Bytes, Channel, ConsumerProfile, Inbound, find_registration, http};
use switchboard_testkit::RecordingSink;
use switchboard_testkit::fake_telegram::{FAKE_TOKEN, FakeTelegram};
use switchboard_testkit::json_shapes::{unknown_fields, with_fields};

/// A Telegram user (not a bot) and the profile LivePerson must get for it.
fn user() -> impl Strategy<Value = (Value, ConsumerProfile)> {
    (
        1i64..10_000_000_000,
        "\\PC{1,20}",
        prop::option::of("\\PC{1,20}"),
        prop::option::of("[a-zA-Z0-9_]{5,32}"),
        prop::option::of(prop::sample::select(vec!["en", "de", "pt-br", "uk"])),
        unknown_fields(),
    )
        .prop_map(|(id, first, last, username, language, extra)| {
            let mut value = json!({ "id": id, "is_bot": false, "first_name": first });
            if let Some(last) = &last {
                value["last_name"] = json!(last);
            }
            if let Some(username) = &username {
                value["username"] = json!(username);
            }
            if let Some(language) = language {
                value["language_code"] = json!(language);
            }
            let expected = ConsumerProfile {
                first_name: Some(first),
                last_name: last,
                username,
                language: language.map(str::to_owned),
                platform_user_id: Some(id.to_string()),
                ..ConsumerProfile::default()
            };
            (with_fields(value, extra), expected)
        })
}

/// What a generated message carries besides its sender.
#[derive(Debug, Clone)]
enum Content {
    Text(String),
    Photo {
        sizes: Vec<(String, i64, i64)>,
        caption: Option<String>,
    },
    Document {
        file_id: String,
        name: Option<String>,
        mime: Option<String>,
    },
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        any::<String>().prop_map(Content::Text),
        (
            prop::collection::vec(("[A-Za-z0-9_-]{10,40}", 1i64..4000, 1i64..4000), 1..4),
            prop::option::of(any::<String>()),
        )
            .prop_map(|(sizes, caption)| Content::Photo { sizes, caption }),
        (
            "[A-Za-z0-9_-]{10,40}",
            prop::option::of("[a-zA-Z0-9 ._-]{1,30}"),
            prop::option::of(prop::sample::select(vec![
                "application/pdf".to_owned(),
                "image/png".to_owned(),
            ])),
        )
            .prop_map(|(file_id, name, mime)| Content::Document {
                file_id,
                name,
                mime
            }),
    ]
}

/// A message update: its JSON and the parts to compare.
#[derive(Debug, Clone)]
struct Generated {
    update: Value,
    update_id: i64,
    chat: i64,
    date: i64,
    profile: ConsumerProfile,
    content: Content,
}

fn message_update() -> impl Strategy<Value = Generated> {
    (
        1i64..i64::from(i32::MAX),
        1i64..i64::from(i32::MAX),
        1_500_000_000i64..2_000_000_000,
        user(),
        content(),
        unknown_fields(),
        unknown_fields(),
        unknown_fields(),
    )
        .prop_map(
            |(update_id, message_id, date, (from, profile), content, m_extra, c_extra, u_extra)| {
                let chat = from["id"].as_i64().unwrap();
                let mut message = json!({
                    "message_id": message_id, "date": date, "from": from,
                    "chat": with_fields(json!({ "id": chat, "type": "private", "first_name": "x" }), c_extra),
                });
                match &content {
                    Content::Text(text) => message["text"] = json!(text),
                    Content::Photo { sizes, caption } => {
                        message["photo"] = sizes
                            .iter()
                            .map(|(id, w, h)| json!({ "file_id": id, "file_unique_id": "u", "width": w, "height": h, "file_size": 1 }))
                            .collect();
                        if let Some(caption) = caption {
                            message["caption"] = json!(caption);
                        }
                    }
                    Content::Document { file_id, name, mime } => {
                        let mut document = json!({ "file_id": file_id, "file_unique_id": "u" });
                        if let Some(name) = name {
                            document["file_name"] = json!(name);
                        }
                        if let Some(mime) = mime {
                            document["mime_type"] = json!(mime);
                        }
                        message["document"] = document;
                    }
                }
                let update = with_fields(
                    json!({ "update_id": update_id, "message": with_fields(message, m_extra) }),
                    u_extra,
                );
                Generated { update, update_id, chat, date, profile, content }
            },
        )
}

proptest! {
    #[test]
    fn a_message_update_comes_out_as_sent(g in message_update()) {
        let update = parse_update(g.update.to_string().as_bytes()).map_err(TestCaseError::fail)?;
        prop_assert_eq!(update.update_id, g.update_id);
        let message = update.message.expect("a message");
        prop_assert_eq!(message.chat.id, g.chat);
        prop_assert_eq!(message.chat.kind.as_str(), "private");
        prop_assert_eq!(message.date, g.date);
        let from = message.from.expect("a sender");
        prop_assert!(!from.is_bot);
        prop_assert_eq!(profile(&from), g.profile);
        match g.content {
            Content::Text(text) => prop_assert_eq!(message.text, Some(text)),
            Content::Photo { sizes, caption } => {
                let photo = message.photo.expect("photo sizes");
                let got: Vec<(String, i64, i64)> =
                    photo.into_iter().map(|p| (p.file_id, p.width, p.height)).collect();
                prop_assert_eq!(got, sizes);
                prop_assert_eq!(message.caption, caption);
            }
            Content::Document { file_id, name, mime } => {
                let document = message.document.expect("a document");
                prop_assert_eq!(document.file_id, file_id);
                prop_assert_eq!(document.file_name, name);
                prop_assert_eq!(document.mime_type, mime);
            }
        }
    }

    #[test]
    fn a_button_press_comes_out_as_pressed(
        update_id in 1i64..i64::from(i32::MAX),
        query_id in "[0-9]{10,19}",
        (from, expected) in user(),
        key in "[A-Za-z0-9_-]{1,20}",
        button in "[A-Za-z0-9_-]{1,20}",
        with_message in any::<bool>(),
        extra in unknown_fields(),
    ) {
        let data = format!("c:{key}:{button}");
        let chat = from["id"].clone();
        let mut query = json!({ "id": query_id, "from": from, "chat_instance": "-1", "data": data });
        if with_message {
            query["message"] = json!({ "message_id": 7, "date": 1795384800, "chat": { "id": chat, "type": "private" }, "text": "Pick one" });
        }
        let body = json!({ "update_id": update_id, "callback_query": with_fields(query, extra) });
        let update = parse_update(body.to_string().as_bytes()).map_err(TestCaseError::fail)?;
        prop_assert_eq!(update.update_id, update_id);
        let query = update.callback_query.expect("a callback query");
        prop_assert_eq!(&query.id, &query_id);
        prop_assert_eq!(profile(&query.from), expected);
        prop_assert_eq!(query.message.is_some(), with_message);
        let data = query.data.expect("data");
        prop_assert_eq!(parse_callback_data(&data), Some((key.as_str(), button.as_str())));
    }
}

/// Through the webhook of a real channel instance: a private text message is submitted with
/// the chat as consumer, the update as platform id, the text and the sender's profile as sent.
#[test]
fn a_private_text_reaches_the_sink_as_sent() {
    const SECRET: &str = "shapes-Secret_0123456789";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = runtime.block_on(FakeTelegram::start());
    let config = switchboard_core::ChannelConfig::new(
        "tg",
        "telegram",
        json!({ "bot_token": FAKE_TOKEN, "secret_token": SECRET, "api_base_url": fake.base }),
    )
    .with_public_url("https://cx.example.com");
    let channel: Arc<dyn Channel> =
        (find_registration("telegram").expect("registered").build)(&config).expect("valid config");
    let strategy =
        message_update().prop_filter("text messages", |g| matches!(g.content, Content::Text(_)));
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 64,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&strategy, |g| {
            let sink = RecordingSink::new();
            let (ctx, _stop) = sink.context("tg");
            let request = http::Request::builder()
                .method("POST")
                .uri("/webhook")
                .header("content-type", "application/json")
                .header("x-telegram-bot-api-secret-token", SECRET)
                .body(Bytes::from(g.update.to_string()))
                .unwrap();
            let response = runtime.block_on(channel.handle_http(request, &ctx));
            prop_assert_eq!(response.status(), 200);
            let events = sink.events();
            prop_assert_eq!(events.len(), 1);
            let event = &events[0];
            prop_assert_eq!(event.consumer.id.clone(), g.chat.to_string());
            prop_assert_eq!(
                event.platform_id.clone(),
                Some(format!("tg:{}", g.update_id))
            );
            let Content::Text(text) = &g.content else {
                unreachable!("filtered")
            };
            prop_assert_eq!(&event.body, &Inbound::text(text.clone()));
            prop_assert_eq!(event.profile.clone(), Some(g.profile));
            Ok(())
        })
        .unwrap();
}
