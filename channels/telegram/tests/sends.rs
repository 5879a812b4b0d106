//! Agent events against a Bot API that refuses what Telegram refuses: fallbacks for files
//! Telegram cannot send, the progress that keeps a retried event from repeating what went,
//! and Telegram's own words for a chat that cannot be reached.

use std::time::Duration;

use serde_json::json;
use switchboard_core::rich::{Button, ButtonAction, Card, RichContent};
use switchboard_core::{
    Attachment, AttachmentBody, Bytes, ChannelConfig, ConsumerAddress, DeliveryError, Outbound,
    OutboundEvent,
};
use switchboard_testkit::RecordingSink;
use switchboard_testkit::fake_telegram::{FAKE_TOKEN, Failure, FakeTelegram};

use crate::{CHAT, INSTANCE, SECRET, build, fake_with_chat, webhook_config};

fn to() -> ConsumerAddress {
    ConsumerAddress::new(INSTANCE, CHAT.to_string())
}

fn card_event(id: &str, image_url: &str) -> OutboundEvent {
    let card = Card {
        title: Some("Parcel 42".into()),
        lines: vec!["Arrives Tuesday".into()],
        image_url: Some(image_url.into()),
        buttons: vec![Button {
            id: "track".into(),
            title: "Track".into(),
            action: ButtonAction::Reply,
        }],
    };
    OutboundEvent::new(
        id,
        Outbound::Rich {
            content: RichContent {
                text: "Here it is".into(),
                cards: vec![card],
                quick_replies: Vec::new(),
            },
        },
    )
}

fn texts(fake: &FakeTelegram) -> Vec<String> {
    fake.messages(CHAT)
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_card_whose_image_telegram_cannot_fetch_falls_back_to_its_text_with_the_link() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    // One URL Telegram cannot reach ("failed to get HTTP URL content"), one that answers a
    // web page instead of an image ("wrong type of the web page content").
    let page = fake.host("parcel.html", "text/html", b"<html>not an image</html>");
    for (id, url) in [
        (
            "lp:conv:dialog:7",
            "https://images.unreachable.example/parcel.png",
        ),
        ("lp:conv:dialog:8", page.as_str()),
    ] {
        channel.deliver(&to(), &card_event(id, url)).await.unwrap();
        let seen = fake.messages(CHAT);
        let last = seen.last().unwrap();
        assert_eq!(
            last["text"],
            format!("Parcel 42\nArrives Tuesday\n{url}"),
            "{seen:#?}"
        );
        let data = last["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            .as_str()
            .unwrap();
        assert!(data.ends_with(":track"), "{data}");
    }
    // The text before each card went once: the fallback did not repeat it.
    assert_eq!(
        texts(&fake).iter().filter(|t| *t == "Here it is").count(),
        2
    );
    let refusals: Vec<String> = fake
        .calls("sendPhoto")
        .iter()
        .map(|c| c.params["photo"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
}

#[tokio::test]
async fn files_telegram_cannot_send_as_they_are_still_reach_the_consumer() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let file = |name: &str, mime: &str, body| {
        OutboundEvent::new(
            format!("f-{name}"),
            Outbound::File {
                file: Attachment {
                    name: Some(name.into()),
                    mime: mime.into(),
                    caption: Some(format!("about {name}")),
                    body,
                },
            },
        )
    };
    // By URL: a PDF Telegram sends as a document; a Word file it does not send by URL
    // (Bot API, "Sending files": only GIF, PDF and ZIP), which becomes a link.
    let pdf = fake.host("invoice.pdf", "application/pdf", b"%PDF-1.4 invoice");
    let docx_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    let docx = fake.host("terms.docx", docx_type, b"PK\x03\x04 terms");
    // Uploaded: an image Telegram cannot read as a photo goes as a document; an image over
    // the 10 MB photo limit goes straight as a document.
    let unreadable = Bytes::from_static(b"\x89PNG\r\n\x1a\n truncated");
    let huge = Bytes::from(vec![0u8; 10 * 1024 * 1024 + 1]);
    let events = [
        file(
            "invoice.pdf",
            "application/pdf",
            AttachmentBody::Url { url: pdf },
        ),
        file(
            "terms.docx",
            docx_type,
            AttachmentBody::Url { url: docx.clone() },
        ),
        file(
            "scan.png",
            "image/png",
            AttachmentBody::Inline { data: unreadable },
        ),
        file(
            "poster.png",
            "image/png",
            AttachmentBody::Inline { data: huge },
        ),
    ];
    for event in &events {
        channel.deliver(&to(), event).await.unwrap();
    }
    let seen = fake.messages(CHAT);
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert_eq!(seen[0]["document"]["file_name"], "invoice.pdf");
    assert_eq!(seen[1]["text"], format!("about terms.docx\n{docx}"));
    assert_eq!(seen[2]["document"]["file_name"], "scan.png");
    assert_eq!(seen[2]["caption"], "about scan.png");
    assert_eq!(seen[3]["document"]["file_name"], "poster.png");
    // The poster was never offered as a photo: Telegram would refuse it.
    assert_eq!(fake.calls("sendPhoto").len(), 1);

    // Over the 50 MB upload limit: a permanent failure saying why, and nothing sent.
    let too_big = Bytes::from(vec![0u8; 50 * 1024 * 1024 + 1]);
    let refused = channel
        .deliver(
            &to(),
            &file(
                "backup.zip",
                "application/zip",
                AttachmentBody::Inline { data: too_big },
            ),
        )
        .await;
    match refused {
        Err(e @ DeliveryError::Permanent { .. }) => assert!(e.to_string().contains("50")),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.messages(CHAT).len(), 4);
}

/// A text Telegram takes in three messages.
fn three_part_text() -> String {
    let part = |n: usize| format!("Part {n}. ") + &"All is well. ".repeat(300);
    (1..=3).map(part).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn a_retried_event_resumes_after_the_messages_that_went_also_after_a_restart() {
    let fake = fake_with_chat().await;
    let config = webhook_config(&fake);
    let channel = build(&config);
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let event = OutboundEvent::new("lp:conv:dialog:9", Outbound::text(three_part_text()));

    // The second message meets a proxy's 502: the first one went.
    fake.fail_next(&[Failure::Nothing, Failure::BadGateway]);
    assert!(matches!(
        channel.deliver(&to(), &event).await,
        Err(DeliveryError::Retryable { .. })
    ));
    assert_eq!(texts(&fake).len(), 1);
    // The runtime retries the event: the rest goes, the first message is not repeated.
    channel.deliver(&to(), &event).await.unwrap();
    let sent = texts(&fake);
    assert_eq!(sent.len(), 3, "{sent:?}");
    for (n, text) in sent.iter().enumerate() {
        assert!(text.starts_with(&format!("Part {}.", n + 1)), "{text:.20}");
    }
    // A process that crashed after Telegram took the messages but before the runtime
    // recorded the delivery repeats the event after its restart: nothing goes again.
    let restarted = build(&config);
    let (ctx, _stop2) = sink.context(INSTANCE);
    restarted.start(ctx).await.unwrap();
    let delivered = restarted.deliver(&to(), &event).await.unwrap();
    assert_eq!(texts(&fake).len(), 3);
    let last_id = fake.messages(CHAT).last().unwrap()["message_id"].to_string();
    assert_eq!(delivered.platform_id.as_deref(), Some(last_id.as_str()));
    // The next event of the chat starts afresh.
    restarted
        .deliver(
            &to(),
            &OutboundEvent::new("lp:conv:dialog:10", Outbound::text("And done.")),
        )
        .await
        .unwrap();
    assert_eq!(texts(&fake).last().unwrap(), "And done.");
}

#[tokio::test]
async fn a_lost_answer_repeats_that_one_message_and_no_other() {
    // The remaining at-least-once window, documented in the README: Telegram sent the
    // message, its answer never came, so the channel cannot know and sends it again.
    let fake = fake_with_chat().await;
    let config = ChannelConfig::new(
        INSTANCE,
        "telegram",
        json!({ "bot_token": FAKE_TOKEN, "secret_token": SECRET, "api_base_url": fake.base, "timeout_secs": 1 }),
    )
    .with_public_url("https://cx.example.com");
    let channel = build(&config);
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let event = OutboundEvent::new("lp:conv:dialog:11", Outbound::text(three_part_text()));
    fake.fail_next(&[
        Failure::Nothing,
        Failure::LostAnswer(Duration::from_secs(3)),
    ]);
    match channel.deliver(&to(), &event).await {
        Err(DeliveryError::Retryable { reason, .. }) => {
            assert!(reason.contains("may have carried"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    channel.deliver(&to(), &event).await.unwrap();
    let firsts: Vec<String> = texts(&fake).iter().map(|t| t[..7].to_owned()).collect();
    assert_eq!(firsts, ["Part 1.", "Part 2.", "Part 2.", "Part 3."]);
}

#[tokio::test]
async fn an_unknown_chat_and_a_blocked_user_are_permanent_in_telegrams_words() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let event = OutboundEvent::new("m", Outbound::text("hello"));
    let stranger = ConsumerAddress::new(INSTANCE, "987654321");
    match channel.deliver(&stranger, &event).await {
        Err(e @ DeliveryError::Permanent { .. }) => {
            assert!(e.to_string().contains("Bad Request: chat not found"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    fake.block(CHAT);
    match channel.deliver(&to(), &event).await {
        Err(e @ DeliveryError::Permanent { .. }) => {
            assert!(
                e.to_string()
                    .contains("Forbidden: bot was blocked by the user"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.messages(CHAT).is_empty());
}

#[tokio::test]
async fn a_link_button_telegram_cannot_open_is_left_out_and_the_message_goes() {
    let fake = fake_with_chat().await;
    let channel = build(&webhook_config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    channel.start(ctx).await.unwrap();
    let button = |id: &str, title: &str, action| Button {
        id: id.into(),
        title: title.into(),
        action,
    };
    let content = RichContent::with_quick_replies(
        "Anything else?",
        vec![
            button("b0", "No, thanks", ButtonAction::Reply),
            button(
                "b1",
                "Our terms",
                ButtonAction::Link {
                    url: "javascript:alert(1)".into(),
                },
            ),
            button(
                "b2",
                "Help centre",
                ButtonAction::Link {
                    url: "https://help.example.com/".into(),
                },
            ),
        ],
    );
    channel
        .deliver(
            &to(),
            &OutboundEvent::new("lp:conv:dialog:12", Outbound::Rich { content }),
        )
        .await
        .unwrap();
    let seen = fake.messages(CHAT);
    assert_eq!(seen[0]["text"], "Anything else?");
    let rows = seen[0]["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap();
    let titles: Vec<&str> = rows
        .iter()
        .map(|r| r[0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["No, thanks", "Help centre"]);
}
