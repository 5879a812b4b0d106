//! Webhook injections: notifications LivePerson may send that the simulator's normal flow never
//! produces (docs/protocol/liveperson.md §14 "Webhooks" error-injection points), so that a connector's handling of them can
//! be tested. Simulator-only; each is documented with the spec passage it exercises.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::NOTIFICATION_TYPES;
use crate::error::SimError;
use crate::notifications::Outgoing;
use crate::state::{Inner, SimState, exconversation_result};

const CONTENT_KEY: &str = "ms.MessagingEventNotification.ContentEvent";
const MESSAGING_PREFIX: &str = "ms.MessagingEventNotification.";
const CONVERSATION_KEY: &str = "cqm.ExConversationChangeNotification";

/// What to inject (the `kind` of `POST /sim/webhooks/inject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectKind {
    /// Agent texts (`texts`, default one), each in its own notification, as usual. With
    /// `account_id`/`client_id` this is the wrong-header case.
    #[default]
    AgentText,
    /// Agent texts (`texts`, default two) published in order but delivered as the `changes`
    /// of one notification (docs/protocol/liveperson.md §7.4: "assume more than one is possible").
    MultipleChanges,
    /// A messaging notification whose `changes` is `[]` (docs/protocol/liveperson.md §7.4: "and zero").
    EmptyChanges,
    /// The conversation's current state as a `DELETE` change (docs/protocol/liveperson.md §7.4.2: the schema allows it;
    /// SDK samples read it as "left the subscription").
    Delete,
    /// An agent text whose change has no `conversationId`, only `dialogId` (older shape,
    /// docs/protocol/liveperson.md §7.4.1).
    MissingConversationId,
    /// A `RichContentEvent` (`content`, default a small card) whose `content` is a JSON string,
    /// as the Messaging History API documents it (docs/protocol/liveperson.md §7.4.1).
    RichContentString,
    /// Events a connector cannot know: a sequenced event of an unknown type, a `ContentEvent`
    /// of an unknown `contentType`, and a `ChatStateEvent` `BACKGROUND` (docs/protocol/liveperson.md §7.4.1: tolerate).
    UnknownEvents,
    /// An agent text with unknown fields added at every level (docs/protocol/liveperson.md §7.4: ignore them).
    ExtraFields,
    /// An ExConversation `UPSERT` showing the conversation as it was when it opened (state and
    /// stage `OPEN`, its start time as `metaDataLastUpdateTs`): older than anything sent
    /// since, to be ignored (docs/protocol/liveperson.md §7.5). The simulator's own state does not change.
    StaleConversation,
    /// `body` exactly as given, signed, to the endpoint of `subscription` (default: derived
    /// from the body's `type` and first event).
    Raw,
}

/// Body of `POST /sim/webhooks/inject` (and [`SimState::inject_webhook`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookInjection {
    /// What to inject.
    pub kind: InjectKind,
    /// The conversation (required except for `raw` and `empty_changes`).
    pub conversation_id: Option<String>,
    /// Texts of the agent messages, where the kind publishes some.
    pub texts: Vec<String>,
    /// The structured content of `rich_content_string`.
    pub content: Option<Value>,
    /// The notification of `raw`.
    pub body: Option<Value>,
    /// The subscription key whose endpoint gets a `raw` notification.
    pub subscription: Option<String>,
    /// Sent as `x-liveperson-account-id` instead of the account (a connector must refuse it).
    pub account_id: Option<String>,
    /// Sent as `x-liveperson-client-id` instead of the app's (a connector must refuse it).
    pub client_id: Option<String>,
}

/// What an injection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    /// Notifications queued for delivery.
    pub notifications: usize,
    /// Sequences of the events it published into the MAIN dialog, in order.
    pub sequences: Vec<u64>,
}

fn text_event(text: &str) -> Value {
    json!({"type": "ContentEvent", "contentType": "text/plain", "message": text})
}

fn default_card() -> Value {
    json!({"type": "vertical", "elements": [
        {"type": "text", "text": "Injected card", "tooltip": "Injected card"},
        {"type": "button", "title": "Open", "tooltip": "Open",
         "click": {"actions": [{"type": "link", "name": "Open", "uri": "https://example.com"}]}}
    ]})
}

/// The changes of every messaging notification in `outgoing`.
fn changes_mut(outgoing: &mut [Outgoing]) -> impl Iterator<Item = &mut Value> {
    outgoing
        .iter_mut()
        .filter(|o| o.key.starts_with(MESSAGING_PREFIX))
        .filter_map(|o| o.body.pointer_mut("/body/changes"))
        .filter_map(Value::as_array_mut)
        .flatten()
}

impl SimState {
    /// Injects webhook notifications (see [`InjectKind`]); they are signed and delivered like
    /// any other, after the notifications already queued for the conversation.
    pub fn inject_webhook(&self, injection: WebhookInjection) -> Result<Injected, SimError> {
        self.with(|g, sub| {
            let conversation = injection.conversation_id.as_deref();
            let needs_conversation =
                !matches!(injection.kind, InjectKind::Raw | InjectKind::EmptyChanges);
            let ci = match conversation {
                Some(id) => Some(g.conv_idx_or_err(id)?),
                None if needs_conversation => {
                    return Err(SimError::InvalidState(
                        "conversation_id is required for this kind".into(),
                    ));
                }
                None => None,
            };
            // An agent joins first if the kind publishes as one: that notification is not
            // part of the injection.
            let publishes = matches!(
                injection.kind,
                InjectKind::AgentText
                    | InjectKind::MultipleChanges
                    | InjectKind::MissingConversationId
                    | InjectKind::RichContentString
                    | InjectKind::UnknownEvents
                    | InjectKind::ExtraFields
            );
            let agent = match ci {
                Some(ci) if publishes => {
                    if !g.convs[ci].is_open() || g.convs[ci].state != "OPEN" {
                        return Err(SimError::InvalidState(format!(
                            "conversation {} is closed",
                            g.convs[ci].conversation_id
                        )));
                    }
                    Some(g.agent_join(ci, None, sub))
                }
                _ => None,
            };
            let start = g.outbox.len();
            let mut sequences = Vec::new();
            let texts = |n: usize| -> Vec<String> {
                if injection.texts.is_empty() {
                    (1..=n).map(|i| format!("injected message {i}")).collect()
                } else {
                    injection.texts.clone()
                }
            };
            let mut publish = |g: &mut Inner, event: Value| {
                if let (Some(ci), Some(agent)) = (ci, agent.as_deref()) {
                    let mi = g.main_dialog_idx(ci);
                    if let Some(seq) =
                        g.publish(ci, mi, agent, "ASSIGNED_AGENT", event, None, "ALL")
                    {
                        sequences.push(seq);
                    }
                }
            };
            match injection.kind {
                InjectKind::AgentText => {
                    for t in texts(1) {
                        publish(g, text_event(&t));
                    }
                }
                InjectKind::MultipleChanges => {
                    for t in texts(2) {
                        publish(g, text_event(&t));
                    }
                    let mut changes = Vec::new();
                    let published: Vec<Outgoing> = g.outbox.drain(start..).collect();
                    let mut rest = Vec::new();
                    for o in published {
                        if o.key.starts_with(MESSAGING_PREFIX) {
                            if let Some(Value::Array(c)) = o.body.pointer("/body/changes") {
                                changes.extend(c.iter().cloned());
                            }
                        } else {
                            rest.push(o);
                        }
                    }
                    g.outbox.extend(rest);
                    g.outbox.push(Outgoing::new(
                        conversation.map(str::to_string),
                        CONTENT_KEY,
                        json!({"kind": "notification", "body": {"changes": changes},
                               "type": "ms.MessagingEventNotification"}),
                    ));
                }
                InjectKind::EmptyChanges => g.outbox.push(Outgoing::new(
                    conversation.map(str::to_string),
                    CONTENT_KEY,
                    json!({"kind": "notification", "body": {"changes": []},
                           "type": "ms.MessagingEventNotification"}),
                )),
                InjectKind::Delete | InjectKind::StaleConversation => {
                    let Some(ci) = ci else {
                        return Err(SimError::InvalidState("conversation_id is required".into()));
                    };
                    let conv = &g.convs[ci];
                    let mut result = exconversation_result(conv, &g.config.account_id);
                    let change_type = if injection.kind == InjectKind::Delete {
                        "DELETE"
                    } else {
                        make_stale(&mut result, conv.start_ts);
                        "UPSERT"
                    };
                    let id = conv.conversation_id.clone();
                    g.outbox.push(Outgoing::new(
                        Some(id),
                        CONVERSATION_KEY,
                        json!({"kind": "notification",
                               "body": {"subscriptionId": sub,
                                        "changes": [{"type": change_type, "result": result}]},
                               "type": CONVERSATION_KEY}),
                    ));
                }
                InjectKind::MissingConversationId => {
                    for t in texts(1) {
                        publish(g, text_event(&t));
                    }
                    for change in changes_mut(&mut g.outbox[start..]) {
                        if let Some(o) = change.as_object_mut() {
                            o.remove("conversationId");
                        }
                    }
                }
                InjectKind::RichContentString => {
                    let content = injection.content.clone().unwrap_or_else(default_card);
                    publish(g, json!({"type": "RichContentEvent", "content": content}));
                    for change in changes_mut(&mut g.outbox[start..]) {
                        if let Some(content) = change.pointer_mut("/event/content") {
                            *content = Value::String(content.to_string());
                        }
                    }
                }
                InjectKind::UnknownEvents => {
                    publish(
                        g,
                        json!({"type": "FutureEvent", "payload": {"what": "a later API version"}}),
                    );
                    publish(
                        g,
                        json!({"type": "ContentEvent", "contentType": "application/x-future",
                               "message": {"parts": ["not", "text"]}}),
                    );
                    publish(
                        g,
                        json!({"type": "ChatStateEvent", "chatState": "BACKGROUND"}),
                    );
                    // Unknown event types have no subscription key of their own: LivePerson's
                    // choice is undocumented; they go where ContentEvents go.
                    for o in &mut g.outbox[start..] {
                        if o.key.starts_with(MESSAGING_PREFIX)
                            && !NOTIFICATION_TYPES.contains(&o.key.as_str())
                        {
                            o.key = CONTENT_KEY.into();
                        }
                    }
                }
                InjectKind::ExtraFields => {
                    for t in texts(1) {
                        publish(g, text_event(&t));
                    }
                    let extra = json!({"nested": [1, "two", {"three": null}], "flag": true});
                    for o in &mut g.outbox[start..] {
                        if let Some(root) = o.body.as_object_mut() {
                            root.insert("futureRootField".into(), extra.clone());
                        }
                        if let Some(body) = o.body.get_mut("body").and_then(Value::as_object_mut) {
                            body.insert("futureBodyField".into(), extra.clone());
                        }
                    }
                    for change in changes_mut(&mut g.outbox[start..]) {
                        for (path, key) in [
                            ("", "futureChangeField"),
                            ("/event", "futureEventField"),
                            ("/originatorMetadata", "futureMetadataField"),
                        ] {
                            if let Some(o) = change.pointer_mut(path).and_then(Value::as_object_mut)
                            {
                                o.insert(key.into(), extra.clone());
                            }
                        }
                    }
                }
                InjectKind::Raw => {
                    let Some(body) = injection.body.clone() else {
                        return Err(SimError::InvalidState("raw needs a body".into()));
                    };
                    let key = injection
                        .subscription
                        .clone()
                        .unwrap_or_else(|| subscription_of(&body));
                    g.outbox
                        .push(Outgoing::new(conversation.map(str::to_string), key, body));
                }
            }
            for o in &mut g.outbox[start..] {
                o.account_id.clone_from(&injection.account_id);
                o.client_id.clone_from(&injection.client_id);
            }
            Ok(Injected {
                notifications: g.outbox.len() - start,
                sequences,
            })
        })
    }
}

/// Rewrites an ExConversation `result` into the conversation's state when it opened.
fn make_stale(result: &mut Value, start_ts: u64) {
    let Some(details) = result
        .get_mut("conversationDetails")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    details.insert("state".into(), json!("OPEN"));
    details.insert("stage".into(), json!("OPEN"));
    details.insert("metaDataLastUpdateTs".into(), json!(start_ts));
    details.remove("closeReason");
    details.remove("endTs");
    details.remove("csat");
    if let Some(Value::Array(dialogs)) = details.get_mut("dialogs") {
        dialogs.retain(|d| d["dialogType"] == "MAIN");
        for d in dialogs.iter_mut().filter_map(Value::as_object_mut) {
            d.insert("state".into(), json!("OPEN"));
            d.insert("metaDataLastUpdateTs".into(), json!(start_ts));
            for k in ["endTs", "closedBy", "closedCause"] {
                d.remove(k);
            }
        }
    }
}

/// The subscription key a notification body would be delivered under.
fn subscription_of(body: &Value) -> String {
    if body["type"] == CONVERSATION_KEY {
        return CONVERSATION_KEY.into();
    }
    let key = body
        .pointer("/body/changes/0/event/type")
        .and_then(Value::as_str)
        .map(|t| format!("{MESSAGING_PREFIX}{t}"))
        .unwrap_or_else(|| CONTENT_KEY.into());
    if NOTIFICATION_TYPES.contains(&key.as_str()) {
        key
    } else {
        CONTENT_KEY.into()
    }
}
