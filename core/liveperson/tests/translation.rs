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
