//! Notification parsing, on the shapes of docs/protocol/liveperson.md §7.4.

use proptest::prelude::*;
use serde_json::json;
use switchboard_liveperson::webhook::{Audience, MessageEvent, NotificationChange, Role, parse};

fn agent_text() -> serde_json::Value {
    json!({ "kind": "notification",
      "body": { "changes": [ {
        "sequence": 5,
        "originatorId": "e9b2867c-f984-5727-b034-fc9c6800bd9c",
        "originatorMetadata": { "id": "e9b2867c-f984-5727-b034-fc9c6800bd9c", "role": "ASSIGNED_AGENT" },
        "serverTimestamp": 1553593406049i64,
        "event": { "type": "ContentEvent", "message": "This is a reply!\n", "contentType": "text/plain" },
        "conversationId": "f2384f56-57d5-4087-bd47-8df0ec3102f6",
        "dialogId": "f2384f56-57d5-4087-bd47-8df0ec3102f6",
        "messageAudience": "ALL" } ] },
      "type": "ms.MessagingEventNotification" })
}

#[test]
fn agent_text_is_parsed_with_its_coordinates() {
    let n = parse(agent_text().to_string().as_bytes()).unwrap();
    assert_eq!(n.notification_type, "ms.MessagingEventNotification");
    let [NotificationChange::Message(m)] = n.changes.as_slice() else {
        panic!("one message change expected: {n:?}")
    };
    assert_eq!(m.sequence, Some(5));
    assert_eq!(m.role, Some(Role::AssignedAgent));
    assert_eq!(m.audience, Audience::All);
    assert_eq!(m.server_timestamp, Some(1553593406049));
    assert_eq!(
        m.dedup_key().unwrap(),
        "lp:f2384f56-57d5-4087-bd47-8df0ec3102f6:f2384f56-57d5-4087-bd47-8df0ec3102f6:5"
    );
    assert!(
        matches!(&m.event, MessageEvent::Text { text, quick_replies: None } if text == "This is a reply!\n")
    );
}

#[test]
fn older_shape_without_conversation_id_falls_back_to_dialog_id() {
    let mut v = agent_text();
    v["body"]["changes"][0]
        .as_object_mut()
        .unwrap()
        .remove("conversationId");
    let n = parse(v.to_string().as_bytes()).unwrap();
    let NotificationChange::Message(m) = &n.changes[0] else {
        panic!()
    };
    assert_eq!(m.conversation_id, m.dialog_id);
}

#[test]
fn chat_state_without_sequence_and_unknown_states_are_kept() {
    let v = json!({ "kind": "notification", "type": "ms.MessagingEventNotification",
        "body": { "changes": [
          { "originatorId": "a", "originatorMetadata": { "id": "a", "role": "ASSIGNED_AGENT" },
            "event": { "type": "ChatStateEvent", "chatState": "COMPOSING" }, "dialogId": "c1", "conversationId": "c1" },
          { "originatorId": "b", "originatorMetadata": { "id": "b", "role": "CONSUMER" },
            "event": { "type": "ChatStateEvent", "chatState": "BACKGROUND" }, "dialogId": "c1" },
          { "event": { "type": "FancyNewEvent" }, "dialogId": "c1", "extra": [1,2,3] } ] } });
    let n = parse(v.to_string().as_bytes()).unwrap();
    assert_eq!(n.changes.len(), 3);
    let NotificationChange::Message(typing) = &n.changes[0] else {
        panic!()
    };
    assert_eq!(typing.sequence, None);
    assert!(typing.dedup_key().is_none());
    let NotificationChange::Message(echo) = &n.changes[1] else {
        panic!()
    };
    assert!(matches!(&echo.event, MessageEvent::ChatState { state } if state == "BACKGROUND"));
    assert!(
        !echo.is_for_consumer(None),
        "consumer echoes are dropped by role"
    );
    let NotificationChange::Message(other) = &n.changes[2] else {
        panic!()
    };
    assert!(
        matches!(&other.event, MessageEvent::Other { event_type, .. } if event_type == "FancyNewEvent")
    );
}

#[test]
fn rich_content_as_a_json_string_is_accepted() {
    let content = json!({ "type": "vertical", "elements": [ { "type": "text", "text": "Hi" } ] });
    let v = json!({ "kind": "notification", "type": "ms.MessagingEventNotification",
        "body": { "changes": [ { "sequence": 1, "dialogId": "c", "conversationId": "c",
            "originatorMetadata": { "role": "ASSIGNED_AGENT" },
            "event": { "type": "RichContentEvent", "content": content.to_string() } } ] } });
    let n = parse(v.to_string().as_bytes()).unwrap();
    let NotificationChange::Message(m) = &n.changes[0] else {
        panic!()
    };
    assert!(matches!(&m.event, MessageEvent::Rich { content: c, .. } if *c == content));
}

#[test]
fn agent_only_messages_and_own_echoes_are_not_for_the_consumer() {
    let mut v = agent_text();
    v["body"]["changes"][0]["messageAudience"] = json!("AGENTS_AND_MANAGERS");
    let n = parse(v.to_string().as_bytes()).unwrap();
    let NotificationChange::Message(m) = &n.changes[0] else {
        panic!()
    };
    assert!(!m.is_for_consumer(None));

    let mut v = agent_text();
    v["body"]["changes"][0]["originatorMetadata"]["role"] = json!("CONTROLLER");
    v["body"]["changes"][0]["originatorId"] = json!("me");
    let n = parse(v.to_string().as_bytes()).unwrap();
    let NotificationChange::Message(m) = &n.changes[0] else {
        panic!()
    };
    assert!(
        !m.is_for_consumer(Some("me")),
        "originatorId == lp_consumer_id is an echo"
    );
    assert!(m.is_for_consumer(Some("someone-else")));
}

#[test]
fn conversation_change_reads_state_stage_participants_and_dialogs() {
    let v = json!({ "kind": "notification", "type": "cqm.ExConversationChangeNotification",
      "body": { "subscriptionId": "s", "changes": [ { "type": "UPSERT", "result": {
        "convId": "c1", "effectiveTTR": -1,
        "conversationDetails": {
          "skillId": "558327413",
          "participants": [ { "id": "consumer-hex", "role": "CONSUMER" }, { "id": "agent-1", "role": "READER" }, { "id": "bot", "role": "AGENT" } ],
          "dialogs": [
            { "dialogId": "c1", "dialogType": "MAIN", "state": "CLOSE", "closedBy": "AGENT" },
            { "dialogId": "d2", "dialogType": "POST_SURVEY", "state": "OPEN" } ],
          "state": "CLOSE", "stage": "OPEN", "closeReason": "AGENT",
          "metaDataLastUpdateTs": 1553590954025i64 } } } ] } });
    let n = parse(v.to_string().as_bytes()).unwrap();
    let NotificationChange::Conversation(c) = &n.changes[0] else {
        panic!()
    };
    assert_eq!(c.conversation_id, "c1");
    assert_eq!(c.consumer_id.as_deref(), Some("consumer-hex"));
    assert!(c.assigned_agents.is_empty());
    assert!(
        !c.is_closed(),
        "state CLOSE with stage OPEN is a survey, not a close"
    );
    assert_eq!(c.open_survey_dialog().unwrap().dialog_id, "d2");
    assert_eq!(c.last_update_ms, Some(1553590954025));
    assert_eq!(c.skill_id.as_deref(), Some("558327413"));
}

#[test]
fn bodies_that_are_not_notifications_are_errors_and_empty_changes_are_fine() {
    assert!(parse(b"not json").is_err());
    assert!(parse(b"[1,2]").is_err());
    assert!(parse(br#"{"body":{"changes":"x"}}"#).is_err());
    let n = parse(
        br#"{"kind":"notification","type":"ms.MessagingEventNotification","body":{"changes":[]}}"#,
    )
    .unwrap();
    assert!(n.changes.is_empty());
    let n = parse(br#"{"kind":"notification","type":"x.Unknown","body":{"changes":[{"a":1}]}}"#)
        .unwrap();
    assert!(matches!(n.changes[0], NotificationChange::Unknown { .. }));
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_json_shapes(
        seq in proptest::option::of(any::<i64>()),
        role in "[A-Z_]{0,12}",
        event_type in prop_oneof![Just("ContentEvent".to_owned()), Just("RichContentEvent".to_owned()), Just("AcceptStatusEvent".to_owned()), Just("ChatStateEvent".to_owned()), "[a-zA-Z]{0,10}"],
        message in proptest::option::of(".{0,40}"),
        with_ids in any::<bool>(),
    ) {
        let mut change = json!({ "originatorMetadata": { "role": role }, "event": { "type": event_type, "message": message, "content": message, "sequenceList": [seq], "chatState": message } });
        if let Some(s) = seq { change["sequence"] = json!(s); }
        if with_ids { change["dialogId"] = json!("d"); change["conversationId"] = json!(1); }
        let v = json!({ "kind": "notification", "type": "ms.MessagingEventNotification", "body": { "changes": [change] } });
        let parsed = parse(v.to_string().as_bytes());
        prop_assert!(parsed.is_ok());
    }
}
