//! The conversation model and every state transition (consumer side and agent side).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::Keys;
use crate::clock::epoch_ms;
use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::FaultState;
use crate::notifications::{Job, Outgoing, WebhookDelivery};

/// A participant of a conversation (`{id, role}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Participant {
    /// Participant id (the `lp_consumer_id` for the consumer, a UUID for agents).
    pub id: String,
    /// `CONSUMER`, `ASSIGNED_AGENT`, `AGENT`, `READER`, `MANAGER` or `CONTROLLER`.
    pub role: String,
}

/// A participant of one dialog, with its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DialogParticipant {
    /// Participant id.
    pub id: String,
    /// Role in the dialog.
    pub role: String,
    /// `ACTIVE` (or `LEFT`).
    pub state: String,
}

/// A dialog of a conversation (`MAIN` or `POST_SURVEY`).
#[derive(Debug, Clone, Serialize)]
pub struct Dialog {
    /// Dialog id; the MAIN dialog's id equals the conversation id.
    pub dialog_id: String,
    /// `MAIN` or `POST_SURVEY`.
    pub dialog_type: String,
    /// `OPEN` or `CLOSE`.
    pub state: String,
    /// Participants of this dialog.
    pub participants: Vec<DialogParticipant>,
    /// Creation time (epoch ms).
    pub creation_ts: u64,
    /// Close time (epoch ms).
    pub end_ts: Option<u64>,
    /// Role that closed the dialog.
    pub closed_by: Option<String>,
    /// Free-text close cause (`Closed by consumer`, `Completed`, …).
    pub closed_cause: Option<String>,
    /// Last metadata change (epoch ms).
    pub meta_data_last_update_ts: u64,
    /// The next sequence number of this dialog (shared by all participants).
    pub next_sequence: u64,
}

/// One event published into a dialog, by anyone.
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptEntry {
    /// Sequence (absent for chat states).
    pub sequence: Option<u64>,
    /// Dialog id.
    pub dialog_id: String,
    /// Participant id of the sender.
    pub originator_id: String,
    /// Role of the sender.
    pub role: String,
    /// Server timestamp (epoch ms).
    pub server_timestamp: u64,
    /// The event object as published (`ContentEvent`, `RichContentEvent`, …).
    pub event: Value,
    /// Conversation metadata attached to the event.
    pub metadata: Option<Value>,
    /// `ALL` or `AGENTS_AND_MANAGERS`.
    pub message_audience: String,
}

/// A conversation and its full state, as the simulator keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    /// Conversation id (UUID).
    pub conversation_id: String,
    /// The consumer's participant id (`lp_consumer_id`).
    pub consumer_id: String,
    /// The connector's external consumer id, if the consumer came through the IdP.
    pub ext_consumer_id: Option<String>,
    /// Current skill.
    pub skill_id: String,
    /// MAIN dialog state: `OPEN` / `CLOSE`.
    pub state: String,
    /// Whole-conversation stage: `OPEN` / `CLOSE`.
    pub stage: String,
    /// `AGENT`, `CONSUMER` or `SYSTEM` once closed.
    pub close_reason: Option<String>,
    /// Start (epoch ms).
    pub start_ts: u64,
    /// End (epoch ms) once the stage is closed.
    pub end_ts: Option<u64>,
    /// Strictly increasing on every change.
    pub meta_data_last_update_ts: u64,
    /// Conversation-level participants.
    pub participants: Vec<Participant>,
    /// Dialogs (MAIN first).
    pub dialogs: Vec<Dialog>,
    /// CSAT (`csatRate`, `csatResolutionConfirmation`, `status`) once submitted.
    pub csat: Option<Value>,
    /// The last `userprofile.SetUserProfile` body (SDEs).
    pub sdes: Value,
    /// `campaignInfo` of the request.
    pub campaign: Option<Value>,
    /// `conversationContext` of the request.
    pub context: Option<Value>,
    /// `ttrDefName` of the request.
    pub ttr_def_name: Option<String>,
    /// Parsed `Client-Properties` header of the consumer's latest CONVERSATION or SEND request
    /// on this conversation (`None`: the last one had none).
    pub client_properties: Option<Value>,
    /// Created by the control API for a consumer of another channel.
    pub foreign: bool,
    /// Every event of every dialog, in order.
    pub transcript: Vec<TranscriptEntry>,
    #[serde(skip)]
    pub(crate) created_at: Option<Instant>,
    #[serde(skip)]
    pub(crate) auto_messages_pending: bool,
}

impl Conversation {
    /// Whether the conversation (stage) is still open.
    pub fn is_open(&self) -> bool {
        self.stage == "OPEN"
    }

    /// The currently assigned agent, if any.
    pub fn assigned_agent(&self) -> Option<&str> {
        self.participants
            .iter()
            .find(|p| p.role == "ASSIGNED_AGENT")
            .map(|p| p.id.as_str())
    }

    /// Whether the consumer's client announced `feature` in the `Client-Properties` of its
    /// latest CONVERSATION or SEND request.
    ///
    /// LivePerson leaves capabilities off unless the client names them: "Some of the client
    /// capablities are not supported by default. In order to enable them, the client should
    /// include the feature name in this field." (developer-center
    /// `assets/schema/infra/clientPropertiesHeader.json`, `features`).
    pub fn announces(&self, feature: &str) -> bool {
        self.client_properties
            .as_ref()
            .and_then(|p| p.get("features"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|f| f.as_str() == Some(feature)))
    }

    /// The open POST_SURVEY dialog id, if any.
    pub fn survey_dialog(&self) -> Option<&str> {
        self.dialogs
            .iter()
            .find(|d| d.dialog_type == "POST_SURVEY" && d.state == "OPEN")
            .map(|d| d.dialog_id.as_str())
    }

    /// Sequenced events published by the consumer.
    pub fn consumer_messages(&self) -> impl Iterator<Item = &TranscriptEntry> {
        self.transcript
            .iter()
            .filter(|t| t.role == "CONSUMER" && t.event["type"] == "ContentEvent")
    }
}

/// A consumer event as it reached a conversation, reported to [`SimState::tap_consumer_messages`].
#[derive(Debug, Clone)]
pub struct ConsumerMessage {
    /// The conversation.
    pub conversation_id: String,
    /// The event as published (`ContentEvent`, `AcceptStatusEvent`, …).
    pub event: Value,
    /// When the simulator accepted it.
    pub at: Instant,
}

/// A request received on the CONVERSATION or SEND endpoint (the inspection log).
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedRequest {
    /// Receive time (epoch ms).
    pub at: u64,
    /// `conversation` or `send`.
    pub endpoint: String,
    /// Consumer id from the ConsumerJWS, when it was valid.
    pub consumer_id: Option<String>,
    /// The `Host` header: which base URI the client resolved (it changes with the Domain API).
    pub host: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// The raw request body (parsed JSON, or a string when it was not JSON).
    pub body: Value,
    /// The `Client-Properties` header, parsed (`None`: absent or not JSON).
    pub client_properties: Option<Value>,
    /// The response body.
    pub response: Value,
}

#[derive(Debug)]
pub(crate) struct StoredFile {
    pub(crate) bytes: bytes::Bytes,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: SimConfig,
    pub(crate) host: String,
    pub(crate) convs: Vec<Conversation>,
    /// Conversation id → index in `convs` (conversations are never removed).
    pub(crate) conv_index: HashMap<String, usize>,
    /// Consumer id → indexes of that consumer's conversations, oldest first.
    pub(crate) consumer_convs: HashMap<String, Vec<usize>>,
    /// Dialog id → (conversation index, dialog index).
    pub(crate) dialog_index: HashMap<String, (usize, usize)>,
    /// Where consumer messages are reported as they arrive (load tools measure latency).
    pub(crate) taps: Vec<tokio::sync::mpsc::UnboundedSender<ConsumerMessage>>,
    pub(crate) consumers: HashMap<String, String>,
    pub(crate) files: HashMap<String, StoredFile>,
    pub(crate) pending_uploads: HashSet<String>,
    pub(crate) events: Vec<ReceivedRequest>,
    pub(crate) deliveries: Vec<WebhookDelivery>,
    pub(crate) faults: FaultState,
    pub(crate) issued_tokens: HashSet<String>,
    pub(crate) revoked_tokens: HashSet<String>,
    pub(crate) last_ts: u64,
    pub(crate) outbox: Vec<Outgoing>,
    pub(crate) queues: HashMap<String, tokio::sync::mpsc::UnboundedSender<Job>>,
    pub(crate) survey_bot_id: String,
}

/// The outcome of a consumer-side operation that the Send API turns into a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpError {
    /// 400 `BAD_REQUEST` with this `msg`.
    Bad(String),
    /// 401 errorCode 40103 (someone else's conversation).
    Forbidden,
}

pub(crate) fn bad(msg: impl Into<String>) -> OpError {
    OpError::Bad(msg.into())
}

pub(crate) const CLOSED_MSG: &str = "Bad Request, Conversation is close";

impl Inner {
    /// Strictly increasing epoch-ms clock.
    pub(crate) fn now(&mut self) -> u64 {
        let t = epoch_ms().max(self.last_ts + 1);
        self.last_ts = t;
        t
    }

    pub(crate) fn conv_idx(&self, id: &str) -> Option<usize> {
        self.conv_index.get(id).copied()
    }

    pub(crate) fn conv_idx_or_err(&self, id: &str) -> Result<usize, SimError> {
        self.conv_idx(id)
            .ok_or_else(|| SimError::UnknownConversation(id.to_string()))
    }

    pub(crate) fn open_conv_of(&self, consumer: &str) -> Option<usize> {
        self.consumer_convs
            .get(consumer)?
            .iter()
            .copied()
            .find(|&ci| self.convs[ci].is_open())
    }

    pub(crate) fn find_dialog(&self, dialog_id: &str) -> Option<(usize, usize)> {
        self.dialog_index.get(dialog_id).copied()
    }

    /// Appends a dialog to a conversation and indexes it; returns its index.
    fn push_dialog(&mut self, ci: usize, dialog: Dialog) -> usize {
        let dialogs = &mut self.convs[ci].dialogs;
        self.dialog_index
            .insert(dialog.dialog_id.clone(), (ci, dialogs.len()));
        dialogs.push(dialog);
        dialogs.len() - 1
    }

    /// Creates a new open conversation (no checks) and emits the "created" notification.
    pub(crate) fn create_conversation(
        &mut self,
        consumer_id: &str,
        ext_consumer_id: Option<String>,
        skill_id: Option<String>,
        foreign: bool,
    ) -> usize {
        let ts = self.now();
        let id = uuid::Uuid::new_v4().to_string();
        let skill = skill_id
            .filter(|s| !s.is_empty() && s != "-1")
            .unwrap_or_else(|| self.config.default_skill_id.clone());
        let conv = Conversation {
            conversation_id: id.clone(),
            consumer_id: consumer_id.to_string(),
            ext_consumer_id,
            skill_id: skill,
            state: "OPEN".into(),
            stage: "OPEN".into(),
            close_reason: None,
            start_ts: ts,
            end_ts: None,
            meta_data_last_update_ts: ts,
            participants: vec![Participant {
                id: consumer_id.to_string(),
                role: "CONSUMER".into(),
            }],
            dialogs: vec![Dialog {
                dialog_id: id,
                dialog_type: "MAIN".into(),
                state: "OPEN".into(),
                participants: vec![DialogParticipant {
                    id: consumer_id.to_string(),
                    role: "CONSUMER".into(),
                    state: "ACTIVE".into(),
                }],
                creation_ts: ts,
                end_ts: None,
                closed_by: None,
                closed_cause: None,
                meta_data_last_update_ts: ts,
                next_sequence: 0,
            }],
            csat: None,
            sdes: json!({}),
            campaign: None,
            context: None,
            ttr_def_name: None,
            client_properties: None,
            foreign,
            transcript: Vec::new(),
            created_at: Some(Instant::now()),
            auto_messages_pending: false,
        };
        let ci = self.convs.len();
        self.conv_index.insert(conv.conversation_id.clone(), ci);
        for (di, d) in conv.dialogs.iter().enumerate() {
            self.dialog_index.insert(d.dialog_id.clone(), (ci, di));
        }
        self.consumer_convs
            .entry(conv.consumer_id.clone())
            .or_default()
            .push(ci);
        self.convs.push(conv);
        ci
    }

    /// Publishes an event into a dialog; returns its sequence (chat states: `None`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn publish(
        &mut self,
        ci: usize,
        di: usize,
        originator_id: &str,
        role: &str,
        event: Value,
        metadata: Option<Value>,
        audience: &str,
    ) -> Option<u64> {
        let ts = self.now();
        let event_type = event["type"].as_str().unwrap_or("ContentEvent").to_string();
        let sequenced = event_type != "ChatStateEvent";
        let conv = &mut self.convs[ci];
        let dialog = &mut conv.dialogs[di];
        let seq = if sequenced {
            let s = dialog.next_sequence;
            dialog.next_sequence += 1;
            Some(s)
        } else {
            None
        };
        let entry = TranscriptEntry {
            sequence: seq,
            dialog_id: dialog.dialog_id.clone(),
            originator_id: originator_id.to_string(),
            role: role.to_string(),
            server_timestamp: ts,
            event: event.clone(),
            metadata: metadata.clone(),
            message_audience: audience.to_string(),
        };
        let mut change = serde_json::Map::new();
        if let Some(s) = seq {
            change.insert("sequence".into(), json!(s));
        }
        change.insert("originatorId".into(), json!(originator_id));
        change.insert(
            "originatorMetadata".into(),
            json!({"id": originator_id, "role": role}),
        );
        if sequenced {
            change.insert("serverTimestamp".into(), json!(ts));
        }
        change.insert("event".into(), event);
        // The post-conversation-survey tutorial's survey events name only their `dialogId`
        // (developer-center `.../MessagingWindowAPI/Tutorials/post-conversation-survey-pcs.md`,
        // step 10): a receiver learns the dialog's conversation from the ExConversation
        // notification that announced it.
        if dialog.dialog_type != "POST_SURVEY" {
            change.insert("conversationId".into(), json!(conv.conversation_id));
        }
        change.insert("dialogId".into(), json!(entry.dialog_id));
        change.insert("messageAudience".into(), json!(audience));
        if let Some(m) = metadata {
            change.insert("metadata".into(), m);
        }
        let body = json!({
            "kind": "notification",
            "body": {"changes": [Value::Object(change)]},
            "type": "ms.MessagingEventNotification",
        });
        let conv_id = conv.conversation_id.clone();
        if role == "CONSUMER" && !self.taps.is_empty() {
            let tapped = ConsumerMessage {
                conversation_id: conv_id.clone(),
                event: entry.event.clone(),
                at: Instant::now(),
            };
            self.taps.retain(|tap| tap.send(tapped.clone()).is_ok());
        }
        conv.transcript.push(entry);
        self.outbox.push(Outgoing::new(
            Some(conv_id),
            format!("ms.MessagingEventNotification.{event_type}"),
            body,
        ));
        seq
    }

    /// Bumps `metaDataLastUpdateTs` and emits the ExConversation UPSERT with the full state.
    pub(crate) fn conv_changed(&mut self, ci: usize, subscription_id: &str) {
        let ts = self.now();
        self.convs[ci].meta_data_last_update_ts = ts;
        let body = json!({
            "kind": "notification",
            "body": {
                "subscriptionId": subscription_id,
                "changes": [{
                    "type": "UPSERT",
                    "result": exconversation_result(&self.convs[ci], &self.config.account_id),
                }],
            },
            "type": "cqm.ExConversationChangeNotification",
        });
        self.outbox.push(Outgoing::new(
            Some(self.convs[ci].conversation_id.clone()),
            "cqm.ExConversationChangeNotification",
            body,
        ));
    }

    fn main_idx(&self, ci: usize) -> usize {
        self.convs[ci]
            .dialogs
            .iter()
            .position(|d| d.dialog_type == "MAIN")
            .unwrap_or(0)
    }

    /// Closes the MAIN dialog; opens a survey if `survey`, else closes the stage.
    pub(crate) fn close_main(
        &mut self,
        ci: usize,
        closed_by: &str,
        cause: &str,
        survey: bool,
        sub: &str,
    ) {
        let ts = self.now();
        let mi = self.main_idx(ci);
        {
            let conv = &mut self.convs[ci];
            let d = &mut conv.dialogs[mi];
            d.state = "CLOSE".into();
            d.end_ts = Some(ts);
            d.closed_by = Some(closed_by.to_string());
            d.closed_cause = Some(cause.to_string());
            d.meta_data_last_update_ts = ts;
            conv.state = "CLOSE".into();
            conv.close_reason = Some(closed_by.to_string());
        }
        // A post-conversation survey is a second dialog: LivePerson opens it only for a client
        // that announced MULTI_DIALOG ("In order to indicate to Conversational Cloud that your
        // custom window supports multi-dialogs you must provide the MULTI_DIALOG feature in the
        // client properties": post-conversation-survey-pcs.md, step 1; the how-to guide: "If
        // your connector should work with post conversation surveys, it must support the
        // multi-dialog client feature"). [INFERRED] Without it the conversation simply closes.
        if survey && self.convs[ci].announces("MULTI_DIALOG") {
            self.open_survey(ci, ts, sub);
        } else {
            self.close_stage(ci, ts);
            self.conv_changed(ci, sub);
        }
    }

    fn close_stage(&mut self, ci: usize, ts: u64) {
        let conv = &mut self.convs[ci];
        conv.stage = "CLOSE".into();
        conv.end_ts = Some(ts);
        for d in conv.dialogs.iter_mut() {
            if d.state == "OPEN" {
                d.state = "CLOSE".into();
                d.end_ts = Some(ts);
                d.meta_data_last_update_ts = ts;
            }
        }
    }

    /// Closes everything, skipping any survey (`Stage` CLOSE).
    pub(crate) fn close_everything(&mut self, ci: usize, closed_by: &str, cause: &str, sub: &str) {
        let ts = self.now();
        {
            let conv = &mut self.convs[ci];
            for d in conv.dialogs.iter_mut().filter(|d| d.state == "OPEN") {
                d.closed_by = Some(closed_by.to_string());
                d.closed_cause = Some(cause.to_string());
            }
            if conv.state == "OPEN" {
                conv.state = "CLOSE".into();
                conv.close_reason = Some(closed_by.to_string());
            }
        }
        self.close_stage(ci, ts);
        self.conv_changed(ci, sub);
    }

    fn open_survey(&mut self, ci: usize, ts: u64, sub: &str) {
        let bot = self.survey_bot_id.clone();
        let survey_id = uuid::Uuid::new_v4().to_string();
        {
            let conv = &mut self.convs[ci];
            for p in conv.participants.iter_mut() {
                if p.role == "ASSIGNED_AGENT" {
                    p.role = "READER".into();
                }
            }
            conv.participants.push(Participant {
                id: bot.clone(),
                role: "AGENT".into(),
            });
            let consumer = conv.consumer_id.clone();
            let dialog = Dialog {
                dialog_id: survey_id,
                dialog_type: "POST_SURVEY".into(),
                state: "OPEN".into(),
                participants: vec![
                    DialogParticipant {
                        id: consumer,
                        role: "CONSUMER".into(),
                        state: "ACTIVE".into(),
                    },
                    DialogParticipant {
                        id: bot.clone(),
                        role: "AGENT".into(),
                        state: "ACTIVE".into(),
                    },
                ],
                creation_ts: ts,
                end_ts: None,
                closed_by: None,
                closed_cause: None,
                meta_data_last_update_ts: ts,
                next_sequence: 0,
            };
            self.push_dialog(ci, dialog);
        }
        self.conv_changed(ci, sub);
        let di = self.convs[ci].dialogs.len() - 1;
        let replies: Vec<Value> = (1..=5)
            .map(|n| {
                json!({
                    "type": "button", "title": n.to_string(), "tooltip": n.to_string(),
                    "click": {
                        "actions": [{"type": "publishText", "text": n.to_string()}],
                        "metadata": [{"type": "Answer", "id": format!("csat-answer-{n}"), "questionId": "csat-q1"}]
                    }
                })
            })
            .collect();
        let mut event = json!({
            "type": "ContentEvent",
            "contentType": "text/plain",
            "message": "How would you rate your experience with us today? (1 = poor, 5 = excellent)",
        });
        // The question's answer buttons are quick replies: only for a client that takes them.
        if self.convs[ci].announces("QUICK_REPLIES") {
            event["quickReplies"] =
                json!({"type": "quickReplies", "itemsPerRow": 5, "replies": replies});
        }
        let meta = json!([{"type": "Question", "id": "csat-q1", "questionType": "CSAT"}]);
        self.publish(ci, di, &bot, "AGENT", event, Some(meta), "ALL");
    }

    /// The consumer answered in the survey dialog: record CSAT, thank, complete the survey.
    pub(crate) fn survey_answer(&mut self, ci: usize, di: usize, answer: &str, sub: &str) {
        if let Ok(n) = answer.trim().parse::<u8>()
            && (1..=5).contains(&n)
        {
            self.convs[ci].csat = Some(json!({
                "csatRate": n, "csatResolutionConfirmation": n >= 3, "status": "FILLED"
            }));
        }
        let bot = self.survey_bot_id.clone();
        self.publish(
            ci,
            di,
            &bot,
            "AGENT",
            json!({"type": "ContentEvent", "contentType": "text/plain", "message": "Thank you for your feedback!"}),
            None,
            "ALL",
        );
        self.close_dialog(ci, di, "AGENT", "Completed", sub);
    }

    /// Closes one dialog (DialogChange): MAIN behaves like a close, POST_SURVEY closes the stage.
    pub(crate) fn close_dialog(
        &mut self,
        ci: usize,
        di: usize,
        closed_by: &str,
        cause: &str,
        sub: &str,
    ) {
        if self.convs[ci].dialogs[di].dialog_type == "MAIN" {
            let survey = self.survey_for(ci);
            self.close_main(ci, closed_by, cause, survey, sub);
            return;
        }
        let ts = self.now();
        {
            let d = &mut self.convs[ci].dialogs[di];
            d.state = "CLOSE".into();
            d.end_ts = Some(ts);
            d.closed_by = Some(closed_by.to_string());
            d.closed_cause = Some(cause.to_string());
            d.meta_data_last_update_ts = ts;
        }
        if !self.convs[ci].dialogs.iter().any(|d| d.state == "OPEN") {
            self.close_stage(ci, ts);
        }
        self.conv_changed(ci, sub);
    }

    pub(crate) fn survey_for(&self, ci: usize) -> bool {
        self.config.survey_enabled_for(&self.convs[ci].skill_id)
    }

    /// An agent joins the MAIN dialog; returns the agent id.
    pub(crate) fn agent_join(&mut self, ci: usize, agent_id: Option<String>, sub: &str) -> String {
        if let Some(a) = self.convs[ci].assigned_agent() {
            return a.to_string();
        }
        let agent = agent_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mi = self.main_idx(ci);
        let conv = &mut self.convs[ci];
        conv.participants.push(Participant {
            id: agent.clone(),
            role: "ASSIGNED_AGENT".into(),
        });
        conv.dialogs[mi].participants.push(DialogParticipant {
            id: agent.clone(),
            role: "ASSIGNED_AGENT".into(),
            state: "ACTIVE".into(),
        });
        self.conv_changed(ci, sub);
        agent
    }

    /// Removes the assigned agent (transfer or back-to-queue), optionally changing the skill.
    pub(crate) fn agent_leave(&mut self, ci: usize, new_skill: Option<String>, sub: &str) {
        let conv = &mut self.convs[ci];
        conv.participants.retain(|p| p.role != "ASSIGNED_AGENT");
        for d in conv.dialogs.iter_mut() {
            d.participants.retain(|p| p.role != "ASSIGNED_AGENT");
        }
        if let Some(s) = new_skill {
            conv.skill_id = s;
        }
        self.conv_changed(ci, sub);
    }

    pub(crate) fn main_dialog_idx(&self, ci: usize) -> usize {
        self.main_idx(ci)
    }
}

fn ttr_secs(name: Option<&str>) -> (&'static str, u64) {
    match name {
        Some("URGENT") => ("URGENT", 300),
        Some("PRIORITIZED") => ("PRIORITIZED", 600),
        _ => ("NORMAL", 3600),
    }
}

/// The `result` object of an ExConversation UPSERT change.
pub(crate) fn exconversation_result(c: &Conversation, account_id: &str) -> Value {
    let (ttr_type, ttr_value) = ttr_secs(c.ttr_def_name.as_deref());
    let dialogs: Vec<Value> = c
        .dialogs
        .iter()
        .map(|d| {
            let mut o = json!({
                "dialogId": d.dialog_id,
                "participantsDetails": d.participants,
                "dialogType": d.dialog_type,
                "channelType": "MESSAGING",
                "state": d.state,
                "creationTs": d.creation_ts,
                "metaDataLastUpdateTs": d.meta_data_last_update_ts,
            });
            if let Some(e) = d.end_ts {
                o["endTs"] = json!(e);
            }
            if let Some(b) = &d.closed_by {
                o["closedBy"] = json!(b);
            }
            if let Some(cause) = &d.closed_cause {
                o["closedCause"] = json!(cause);
            }
            o
        })
        .collect();
    let mut details = json!({
        "skillId": c.skill_id,
        "participants": c.participants,
        "dialogs": dialogs,
        "brandId": account_id,
        "state": c.state,
        "stage": c.stage,
        "startTs": c.start_ts,
        "metaDataLastUpdateTs": c.meta_data_last_update_ts,
        "ttr": {"ttrType": ttr_type, "value": ttr_value},
        "conversationHandlerDetails": {"accountId": account_id, "skillId": c.skill_id},
    });
    if let Some(r) = &c.close_reason {
        details["closeReason"] = json!(r);
    }
    if let Some(e) = c.end_ts {
        details["endTs"] = json!(e);
    }
    if let Some(csat) = &c.csat {
        details["csat"] = csat.clone();
    }
    if let Some(ctx) = &c.client_properties {
        details["context"] = ctx.clone();
    }
    let effective = if c.is_open() {
        json!(c.start_ts + ttr_value * 1000)
    } else {
        json!(-1)
    };
    json!({"convId": c.conversation_id, "effectiveTTR": effective, "conversationDetails": details})
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) changed: tokio::sync::Notify,
    /// Counts state changes, for `GET /sim/events` (server-sent events).
    pub(crate) version: tokio::sync::watch::Sender<u64>,
    /// Set when the server stops, to end the event streams.
    pub(crate) stopping: tokio::sync::watch::Sender<bool>,
    pub(crate) keys: Keys,
    pub(crate) http: reqwest::Client,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) subscription_id: String,
    pub(crate) swift_key: Vec<u8>,
}

/// The simulator's shared state: cheap to clone, `Send + Sync`. Serve it with [`crate::router`];
/// all control and inspection methods live here (and are reachable from a [`crate::SimHandle`]).
#[derive(Debug, Clone)]
pub struct SimState {
    pub(crate) shared: Arc<Shared>,
}

impl SimState {
    /// Creates the state for `config`. Must be called inside a Tokio runtime (webhook delivery
    /// tasks are spawned on it). Call [`SimState::set_public_host`] when serving it yourself.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| SimError::NoRuntime)?;
        if !(config.time_scale >= 0.0 && config.time_scale.is_finite()) {
            return Err(SimError::Config(
                "time_scale must be a finite number >= 0".into(),
            ));
        }
        let timeout = Duration::from_millis(config.webhook_timeout_ms.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| SimError::Config(format!("http client: {e}")))?;
        let host = config.public_host.clone().unwrap_or_default();
        let inner = Inner {
            config,
            host,
            convs: Vec::new(),
            conv_index: HashMap::new(),
            consumer_convs: HashMap::new(),
            dialog_index: HashMap::new(),
            taps: Vec::new(),
            consumers: HashMap::new(),
            files: HashMap::new(),
            pending_uploads: HashSet::new(),
            events: Vec::new(),
            deliveries: Vec::new(),
            faults: FaultState::default(),
            issued_tokens: HashSet::new(),
            revoked_tokens: HashSet::new(),
            last_ts: 0,
            outbox: Vec::new(),
            queues: HashMap::new(),
            survey_bot_id: uuid::Uuid::new_v4().to_string(),
        };
        let swift_key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        Ok(Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                changed: tokio::sync::Notify::new(),
                version: tokio::sync::watch::Sender::new(0),
                stopping: tokio::sync::watch::Sender::new(false),
                keys: Keys::load()?,
                http,
                rt,
                subscription_id: uuid::Uuid::new_v4().to_string(),
                swift_key,
            }),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reports every consumer event from now on, as the Send API accepts it, with the instant it
    /// was accepted: how a load tool measures end-to-end latency without polling transcripts.
    pub fn tap_consumer_messages(&self) -> tokio::sync::mpsc::UnboundedReceiver<ConsumerMessage> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock().taps.push(tx);
        rx
    }

    /// Wakes [`SimState::wait_until`] waiters and the `GET /sim/events` streams.
    pub(crate) fn notify_changed(&self) {
        self.shared.changed.notify_waiters();
        self.shared.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Ends every open `GET /sim/events` stream (and refuses new ones), so that a graceful
    /// shutdown of a server serving [`crate::router`] does not wait for agent consoles.
    pub fn close_event_streams(&self) {
        self.shared.stopping.send_replace(true);
    }

    /// Sets the `host:port` (no scheme) the Domain API hands out.
    pub fn set_public_host(&self, host: &str) {
        self.lock().host = host.to_string();
    }

    /// The `host:port` the Domain API hands out.
    pub fn public_host(&self) -> String {
        self.lock().host.clone()
    }

    /// The account id.
    pub fn account_id(&self) -> String {
        self.lock().config.account_id.clone()
    }

    /// The app installation's `client_id`.
    pub fn client_id(&self) -> String {
        self.lock().config.client_id.clone()
    }

    /// The app installation's `client_secret` (also the webhook HMAC key).
    pub fn client_secret(&self) -> String {
        self.lock().config.client_secret.clone()
    }

    /// A copy of the current configuration (with any runtime webhook changes).
    pub fn config(&self) -> SimConfig {
        self.lock().config.clone()
    }

    /// Waits until `check` returns `Some` (re-checked after every state change) or `timeout`.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&SimState) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = check(self) {
                return Some(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(self);
            }
        }
    }
}
