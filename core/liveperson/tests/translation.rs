//! Agent events and structured content to canonical outbound events.

use serde_json::json;
use switchboard_core::{ButtonAction, ChatState, Outbound, ReceiptStatus};
use switchboard_liveperson::webhook::{NotificationChange, parse};
use switchboard_liveperson::{AgentEvent, agent_event, structured};

fn change(event: serde_json::Value, dialog: &str, metadata: serde_json::Value) -> AgentEvent {
    let v = json!({ "kind": "notification", "type": "ms.MessagingEventNotification",
        "body": { "changes": [ { "sequence": 3, "conversationId": "c1", "dialogId": dialog,
            "originatorMetadata": { "role": "ASSIGNED_AGENT", "id": "agent" }, "originatorId": "agent",
            "metadata": metadata, "event": event } ] } });
    let n = parse(v.to_string().as_bytes()).unwrap();
    let NotificationChange::Message(m) = &n.changes[0] else {
        panic!()
    };
    agent_event(m).expect("something to deliver")
}

fn quick_replies() -> serde_json::Value {
    json!({ "type": "quickReplies", "itemsPerRow": 8, "replies": [
        { "type": "button", "title": "yes", "click": { "actions": [ { "type": "publishText", "text": "yep" } ],
          "metadata": [ { "type": "ExternalId", "id": "Yes-1234" } ] } },
        { "type": "button", "title": "No!", "click": { "actions": [ { "type": "publishText", "text": "No!" } ] } } ] })
}

#[test]
fn text_loses_its_trailing_newline() {
    let e = change(
        json!({ "type": "ContentEvent", "contentType": "text/plain", "message": "Hello\n" }),
        "c1",
        json!(null),
    );
    assert_eq!(
        e,
        AgentEvent::Deliver {
            outbound: Outbound::text("Hello"),
            clicks: vec![]
        }
    );
}

#[test]
fn text_with_quick_replies_becomes_rich_content_with_a_click_table() {
    let e = change(
        json!({ "type": "ContentEvent", "contentType": "text/plain", "message": "Happy?", "quickReplies": quick_replies() }),
        "c1",
        json!(null),
    );
    let AgentEvent::Deliver {
        outbound: Outbound::Rich { content },
        clicks,
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(content.text, "Happy?");
    assert_eq!(content.quick_replies.len(), 2);
    assert_eq!(content.quick_replies[0].title, "yes");
    assert_eq!(clicks.len(), 2);
    assert_eq!(clicks[0].button_id, content.quick_replies[0].id);
    assert_eq!(clicks[0].text.as_deref(), Some("yep"));
    assert_eq!(
        clicks[0].metadata,
        Some(json!([ { "type": "ExternalId", "id": "Yes-1234" } ]))
    );
    assert_eq!(content.to_numbered_text(), "Happy?\n1. yes\n2. No!");
}

#[test]
fn questions_in_the_survey_dialog_are_survey_questions() {
    let e = change(
        json!({ "type": "ContentEvent", "contentType": "text/plain", "message": "Rate us", "quickReplies": quick_replies() }),
        "survey-dialog",
        json!([ { "type": "Question", "id": "q1" } ]),
    );
    assert!(matches!(
        e,
        AgentEvent::Deliver {
            outbound: Outbound::SurveyQuestion { .. },
            ..
        }
    ));
}

#[test]
fn carousel_becomes_cards_with_links_and_replies() {
    let card = |name: &str| {
        json!({ "type": "vertical", "elements": [
        { "type": "image", "url": format!("https://img.example/{name}.png") },
        { "type": "text", "text": name, "style": { "bold": true } },
        { "type": "text", "text": "In stock" },
        { "type": "button", "title": "Details", "click": { "actions": [ { "type": "link", "name": "Details", "uri": format!("https://shop.example/{name}") } ] } },
        { "type": "button", "title": "Buy", "click": { "actions": [ { "type": "publishText", "text": format!("buy {name}") } ], "metadata": [ { "type": "ExternalId", "id": name } ] } },
        { "type": "map", "la": 48.85, "lo": 2.35, "tooltip": "Shop" },
        { "type": "datepicker", "title": "Pick a day" } ] })
    };
    let t = structured::translate_rich(
        &json!({ "type": "carousel", "elements": [card("shoe"), card("hat")] }),
        None,
    );
    assert_eq!(t.content.cards.len(), 2);
    let shoe = &t.content.cards[0];
    assert_eq!(shoe.title.as_deref(), Some("shoe"));
    assert_eq!(shoe.lines, vec!["In stock", "Pick a day"]);
    assert_eq!(
        shoe.image_url.as_deref(),
        Some("https://img.example/shoe.png")
    );
    assert!(
        matches!(&shoe.buttons[0].action, ButtonAction::Link { url } if url == "https://shop.example/shoe")
    );
    assert!(matches!(shoe.buttons[1].action, ButtonAction::Reply));
    assert!(matches!(
        shoe.buttons[2].action,
        ButtonAction::Location { .. }
    ));
    // Reply buttons have distinct ids across cards, each in the click table.
    assert_eq!(t.clicks.len(), 2);
    assert_ne!(t.clicks[0].button_id, t.clicks[1].button_id);
    assert_eq!(t.clicks[1].text.as_deref(), Some("buy hat"));
    assert_eq!(t.content.text, "shoe\nIn stock\nhat\nIn stock");
}

#[test]
fn receipts_and_chat_states_translate() {
    let e = change(
        json!({ "type": "AcceptStatusEvent", "status": "READ", "sequenceList": [0, 1] }),
        "c1",
        json!(null),
    );
    assert_eq!(
        e,
        AgentEvent::Receipt {
            status: ReceiptStatus::Read,
            sequences: vec![0, 1]
        }
    );
    let e = change(
        json!({ "type": "ChatStateEvent", "chatState": "COMPOSING" }),
        "c1",
        json!(null),
    );
    assert_eq!(
        e,
        AgentEvent::Deliver {
            outbound: Outbound::ChatState {
                state: ChatState::Composing
            },
            clicks: vec![]
        }
    );
    let e = change(
        json!({ "type": "ContentEvent", "contentType": "hosted/file", "message": { "relativePath": "/v1/x.png", "fileType": "PNG", "caption": "logo" } }),
        "c1",
        json!(null),
    );
    assert_eq!(
        e,
        AgentEvent::HostedFile {
            relative_path: "/v1/x.png".into(),
            file_type: "PNG".into(),
            caption: Some("logo".into())
        }
    );
}

/// What each channel would show for `outbound`: Slack's Block Kit text, SMS's text, and for
/// Telegram the message text or the photo of each card (what its channel sends).
fn renderings(outbound: &Outbound) -> (String, String, Vec<String>) {
    let Outbound::Rich { content } = outbound else {
        let text = match outbound {
            Outbound::Text { text } => text.clone(),
            other => panic!("{other:?}"),
        };
        return (text.clone(), text.clone(), vec![text]);
    };
    let slack = switchboard_channel_slack::outbound::blocks("m1", content)
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let sms = switchboard_channel_sms::render(outbound).unwrap_or_default();
    let telegram = std::iter::once(content.text.clone())
        .chain(content.cards.iter().flat_map(|c| {
            c.image_url
                .iter()
                .cloned()
                .chain(c.title.iter().cloned())
                .chain(c.lines.iter().cloned())
                .chain(
                    c.buttons
                        .iter()
                        .flat_map(|b| std::iter::once(b.title.clone()).chain(b.url())),
                )
        }))
        .chain(content.quick_replies.iter().map(|b| b.title.clone()))
        .filter(|s| !s.trim().is_empty())
        .collect();
    (slack, sms, telegram)
}

fn rich(content: serde_json::Value) -> Outbound {
    match change(
        json!({ "type": "RichContentEvent", "content": content }),
        "c1",
        json!(null),
    ) {
        AgentEvent::Deliver { outbound, .. } => outbound,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_single_element_root_reaches_slack_telegram_and_sms_as_something() {
    let roots = [
        (
            json!({ "type": "image", "url": "https://img.example/receipt.png", "caption": "Your receipt" }),
            "https://img.example/receipt.png",
        ),
        (
            json!({ "type": "text", "text": "Your order shipped" }),
            "Your order shipped",
        ),
        (
            json!({ "type": "button", "title": "Track it",
                    "click": { "actions": [ { "type": "link", "name": "Track", "uri": "https://track.example/1" } ] } }),
            "https://track.example/1",
        ),
        (
            json!({ "type": "button", "title": "Call me back",
                    "click": { "actions": [ { "type": "publishText", "text": "call me" } ] } }),
            "Call me back",
        ),
        (
            json!({ "type": "map", "la": 48.85, "lo": 2.35, "tooltip": "Our shop" }),
            "Our shop",
        ),
    ];
    for (root, expected) in roots {
        let outbound = rich(root.clone());
        let (slack, sms, telegram) = renderings(&outbound);
        assert!(slack.contains(expected), "Slack for {root}: {slack}");
        assert!(sms.contains(expected), "SMS for {root}: {sms}");
        assert!(
            telegram.iter().any(|t| t.contains(expected)),
            "Telegram for {root}: {telegram:?}"
        );
    }
}

#[test]
fn a_clickable_single_button_keeps_its_click() {
    let t = structured::translate_rich(
        &json!({ "type": "button", "title": "Yes",
                 "click": { "actions": [ { "type": "publishText", "text": "yes please" } ],
                            "metadata": [ { "type": "ExternalId", "id": "YES" } ] } }),
        None,
    );
    assert_eq!(t.content.cards.len(), 1);
    assert_eq!(t.clicks.len(), 1);
    assert_eq!(t.clicks[0].text.as_deref(), Some("yes please"));
    assert_eq!(
        t.content.choice_by_number(1).unwrap().id,
        t.clicks[0].button_id
    );
}

#[test]
fn content_no_card_can_show_falls_back_to_its_text_and_never_to_nothing() {
    // An unknown template without elements a card can take: its text is what is left.
    let outbound = rich(json!({ "type": "horizontal", "elements": [
        { "type": "checklist", "checklist": [ { "type": "checkbox", "text": "Red" } ] } ] }));
    let (slack, sms, _) = renderings(&outbound);
    assert!(
        !sms.trim().is_empty() && !slack.trim().is_empty(),
        "{outbound:?}"
    );
    let outbound = rich(json!({ "type": "vertical", "elements": [
        { "type": "datepicker", "class": "range" , "items": [ { "type": "slot", "caption": "Monday" } ] } ] }));
    assert_eq!(outbound, Outbound::text("Monday"));
    // Nothing at all to show: nothing is sent, rather than an empty message.
    let v = json!({ "kind": "notification", "type": "ms.MessagingEventNotification",
        "body": { "changes": [ { "sequence": 3, "conversationId": "c1", "dialogId": "c1",
            "originatorMetadata": { "role": "ASSIGNED_AGENT", "id": "agent" },
            "event": { "type": "RichContentEvent", "content": { "type": "vertical", "elements": [ { "type": "spacer" } ] } } } ] } });
    let n = parse(v.to_string().as_bytes()).unwrap();
    let NotificationChange::Message(m) = &n.changes[0] else {
        panic!()
    };
    assert_eq!(agent_event(m), None);
    // Quick replies without a usable button leave the plain text.
    let e = change(
        json!({ "type": "ContentEvent", "contentType": "text/plain", "message": "Anything else?",
                "quickReplies": { "type": "quickReplies", "replies": [ { "type": "button" } ] } }),
        "c1",
        json!(null),
    );
    assert_eq!(
        e,
        AgentEvent::Deliver {
            outbound: Outbound::text("Anything else?"),
            clicks: vec![]
        }
    );
}
