//! Agent-side control and inspection: Rust methods on [`SimState`] and the `/sim/...` JSON API.
//! Simulator-only; not LivePerson behaviour.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::SimError;
use crate::faults::FaultRequest;
use crate::respond::json_resp;
use crate::state::{Conversation, ReceivedRequest, SimState, TranscriptEntry};

/// A message sent by the agent side (body of `POST /sim/conversations/{id}/messages`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentMessage {
    /// Plain text (a `ContentEvent`), unless `content` is set.
    pub text: Option<String>,
    /// Structured content: sends a `RichContentEvent` with this `content`.
    pub content: Option<Value>,
    /// Quick replies: a full `{"type":"quickReplies",...}` object, an array of buttons, or an
    /// array of strings (turned into `publishText` buttons with `ExternalId` metadata).
    pub quick_replies: Option<Value>,
    /// Adds `[{"type":"ExternalId","id":...}]` metadata.
    pub external_id: Option<String>,
    /// Extra metadata objects (appended).
    pub metadata: Option<Vec<Value>>,
    /// `ALL` (default) or `AGENTS_AND_MANAGERS`.
    pub audience: Option<String>,
    /// `ASSIGNED_AGENT` (default), `CONTROLLER` or `MANAGER`.
    pub role: Option<String>,
}

fn normalize_quick_replies(q: &Value) -> Value {
    match q {
        Value::Array(items) => {
            let replies: Vec<Value> = items
                .iter()
                .map(|it| match it {
                    Value::String(s) => json!({
                        "type": "button", "title": s, "tooltip": s,
                        "click": {
                            "actions": [{"type": "publishText", "text": s}],
                            "metadata": [{"type": "ExternalId", "id": format!("qr-{}", s.chars().take(40).collect::<String>())}]
                        }
                    }),
                    other => other.clone(),
                })
                .collect();
            json!({"type": "quickReplies", "itemsPerRow": replies.len().clamp(1, 8), "replies": replies})
        }
        other => other.clone(),
    }
}

fn not_open(id: &str) -> SimError {
    SimError::InvalidState(format!("conversation {id} is closed"))
}

impl SimState {
    /// All conversations (with transcripts), oldest first.
    pub fn conversations(&self) -> Vec<Conversation> {
        self.lock().convs.clone()
    }

    /// One conversation.
    pub fn conversation(&self, id: &str) -> Option<Conversation> {
        self.lock()
            .convs
            .iter()
            .find(|c| c.conversation_id == id)
            .cloned()
    }

    /// The newest conversation of a consumer (by `lp_consumer_id`).
    pub fn consumer_conversation(&self, consumer_id: &str) -> Option<Conversation> {
        self.lock()
            .convs
            .iter()
            .rev()
            .find(|c| c.consumer_id == consumer_id)
            .cloned()
    }

    /// Every request received on CONVERSATION and SEND, in order.
    pub fn received_requests(&self) -> Vec<ReceivedRequest> {
        self.lock().events.clone()
    }

    /// Waits for a consumer `ContentEvent` whose text contains `text` (any conversation).
    pub async fn wait_for_consumer_message(
        &self,
        text: &str,
        timeout: Duration,
    ) -> Option<TranscriptEntry> {
        self.wait_until(timeout, |s| {
            let g = s.lock();
            g.convs.iter().find_map(|c| {
                c.consumer_messages()
                    .find(|t| {
                        t.event["message"]
                            .as_str()
                            .is_some_and(|m| m.contains(text))
                    })
                    .cloned()
            })
        })
        .await
    }

    /// Waits until the conversation satisfies `pred`.
    pub async fn wait_for_conversation(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Conversation) -> bool,
    ) -> Option<Conversation> {
        self.wait_until(timeout, |s| s.conversation(id).filter(|c| pred(c)))
            .await
    }

    fn open_idx(&self, g: &crate::state::Inner, id: &str) -> Result<usize, SimError> {
        let ci = g.conv_idx_or_err(id)?;
        if !g.convs[ci].is_open() || g.convs[ci].state != "OPEN" {
            return Err(not_open(id));
        }
        Ok(ci)
    }

    /// An agent accepts the conversation (joins as `ASSIGNED_AGENT`); returns the agent id.
    pub fn agent_accept(&self, id: &str) -> Result<String, SimError> {
        self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            Ok(g.agent_join(ci, None, sub))
        })
    }

    /// Sends an agent-side message into the MAIN dialog; returns its sequence. An
    /// `ASSIGNED_AGENT` message first accepts the conversation if nobody has.
    pub fn agent_send(&self, id: &str, msg: AgentMessage) -> Result<u64, SimError> {
        self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            // Structured content and quick replies reach only a client that announced them
            // (`Conversation::announces`). [INFERRED] What LivePerson does otherwise is not
            // documented (docs/simulator.md): the simulator takes the strict reading and refuses
            // the agent's send, so nothing reaches a client that never asked for it. A
            // conversation of another channel is not the connector's client and is left alone.
            let conv = &g.convs[ci];
            if !conv.foreign {
                if msg.content.is_some() && !conv.announces("RICH_CONTENT") {
                    return Err(SimError::NotAnnounced("RICH_CONTENT"));
                }
                if msg.quick_replies.is_some() && !conv.announces("QUICK_REPLIES") {
                    return Err(SimError::NotAnnounced("QUICK_REPLIES"));
                }
            }
            let role = msg.role.clone().unwrap_or_else(|| "ASSIGNED_AGENT".into());
            let originator = match role.as_str() {
                "ASSIGNED_AGENT" => g.agent_join(ci, None, sub),
                "CONTROLLER" => format!("{}.controller", g.config.account_id),
                "MANAGER" => format!("{}.manager", g.config.account_id),
                other => {
                    return Err(SimError::InvalidState(format!("unsupported role {other}")));
                }
            };
            let mut event = match &msg.content {
                Some(content) => json!({"type": "RichContentEvent", "content": content}),
                None => json!({
                    "type": "ContentEvent",
                    "contentType": "text/plain",
                    "message": msg.text.clone().unwrap_or_default(),
                }),
            };
            if let Some(q) = &msg.quick_replies {
                event["quickReplies"] = normalize_quick_replies(q);
            }
            let mut meta: Vec<Value> = Vec::new();
            if let Some(e) = &msg.external_id {
                meta.push(json!({"type": "ExternalId", "id": e}));
            }
            meta.extend(msg.metadata.clone().unwrap_or_default());
            let audience = msg.audience.clone().unwrap_or_else(|| "ALL".into());
            let mi = g.main_dialog_idx(ci);
            let seq = g.publish(
                ci,
                mi,
                &originator,
                &role,
                event,
                (!meta.is_empty()).then_some(Value::Array(meta)),
                &audience,
            );
            Ok(seq.unwrap_or(0))
        })
    }

    /// The agent sends plain text.
    pub fn agent_send_text(&self, id: &str, text: &str) -> Result<u64, SimError> {
        self.agent_send(
            id,
            AgentMessage {
                text: Some(text.into()),
                ..Default::default()
            },
        )
    }

    /// The agent sends text with quick replies (see [`AgentMessage::quick_replies`]).
    pub fn agent_send_quick_replies(
        &self,
        id: &str,
        text: &str,
        quick_replies: Value,
    ) -> Result<u64, SimError> {
        self.agent_send(
            id,
            AgentMessage {
                text: Some(text.into()),
                quick_replies: Some(quick_replies),
                ..Default::default()
            },
        )
    }

    /// The agent sends a `RichContentEvent` with optional `ExternalId` metadata.
    pub fn agent_send_rich(
        &self,
        id: &str,
        content: Value,
        external_id: Option<&str>,
    ) -> Result<u64, SimError> {
        self.agent_send(
            id,
            AgentMessage {
                content: Some(content),
                external_id: external_id.map(str::to_string),
                ..Default::default()
            },
        )
    }

    /// An agent-only (`AGENTS_AND_MANAGERS`) message.
    pub fn agent_only_message(&self, id: &str, text: &str) -> Result<u64, SimError> {
        self.agent_send(
            id,
            AgentMessage {
                text: Some(text.into()),
                audience: Some("AGENTS_AND_MANAGERS".into()),
                ..Default::default()
            },
        )
    }

    /// A system (`CONTROLLER`) message.
    pub fn controller_message(&self, id: &str, text: &str) -> Result<u64, SimError> {
        self.agent_send(
            id,
            AgentMessage {
                text: Some(text.into()),
                role: Some("CONTROLLER".into()),
                ..Default::default()
            },
        )
    }

    /// The agent shares a file (stored in swift); returns `(sequence, relativePath)`.
    pub fn agent_send_file(
        &self,
        id: &str,
        caption: &str,
        file_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(u64, String), SimError> {
        if self.conversation(id).is_none() {
            return Err(SimError::UnknownConversation(id.into()));
        }
        let ft = file_type.to_ascii_uppercase();
        let preview = (bytes.len() < 20 * 1024).then(|| {
            let mime = match ft.as_str() {
                "PNG" => "image/png",
                "GIF" => "image/gif",
                _ => "image/jpeg",
            };
            format!(
                "data:{mime};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            )
        });
        let path = self.store_file(&ft, bytes);
        let mut message = json!({"caption": caption, "relativePath": path, "fileType": ft});
        if let Some(p) = preview {
            message["preview"] = json!(p);
        }
        let seq = self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            let agent = g.agent_join(ci, None, sub);
            let mi = g.main_dialog_idx(ci);
            Ok::<_, SimError>(g.publish(
                ci,
                mi,
                &agent,
                "ASSIGNED_AGENT",
                json!({"type": "ContentEvent", "contentType": "hosted/file", "message": message}),
                None,
                "ALL",
            ))
        })?;
        Ok((seq.unwrap_or(0), path))
    }

    /// The agent's typing state (`COMPOSING`, `ACTIVE`, …).
    pub fn agent_typing(&self, id: &str, chat_state: &str) -> Result<(), SimError> {
        self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            let agent = g.agent_join(ci, None, sub);
            let mi = g.main_dialog_idx(ci);
            g.publish(
                ci,
                mi,
                &agent,
                "ASSIGNED_AGENT",
                json!({"type": "ChatStateEvent", "chatState": chat_state}),
                None,
                "ALL",
            );
            Ok(())
        })
    }

    /// The agent acknowledges consumer sequences (`ACCEPT` or `READ`); returns its sequence.
    pub fn agent_receipt(
        &self,
        id: &str,
        status: &str,
        sequences: &[u64],
    ) -> Result<u64, SimError> {
        self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            let agent = g.agent_join(ci, None, sub);
            let mi = g.main_dialog_idx(ci);
            Ok(g.publish(
                ci,
                mi,
                &agent,
                "ASSIGNED_AGENT",
                json!({"type": "AcceptStatusEvent", "status": status, "sequenceList": sequences}),
                None,
                "ALL",
            )
            .unwrap_or(0))
        })
    }

    /// Transfers to another skill: the agent is removed and the skill changes.
    pub fn transfer(&self, id: &str, skill_id: &str) -> Result<(), SimError> {
        self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            g.agent_leave(ci, Some(skill_id.to_string()), sub);
            Ok(())
        })
    }

    /// Back to the queue: the agent is removed, the skill stays.
    pub fn back_to_queue(&self, id: &str) -> Result<(), SimError> {
        self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            g.agent_leave(ci, None, sub);
            Ok(())
        })
    }

    /// The agent closes the conversation; with `survey`, a POST_SURVEY dialog with a CSAT
    /// question opens instead of closing the stage.
    pub fn agent_close(&self, id: &str, survey: bool) -> Result<(), SimError> {
        self.with(|g, sub| {
            let ci = self.open_idx(g, id)?;
            g.close_main(ci, "AGENT", "Closed by agent", survey, sub);
            Ok(())
        })
    }

    /// The system auto-closes the conversation (`closeReason: SYSTEM`, no survey).
    pub fn system_close(&self, id: &str) -> Result<(), SimError> {
        self.with(|g, sub| {
            let ci = g.conv_idx_or_err(id)?;
            if !g.convs[ci].is_open() {
                return Err(not_open(id));
            }
            g.close_everything(ci, "SYSTEM", "Auto close", sub);
            Ok(())
        })
    }

    /// An agent starts ("resumes") a new conversation for an existing consumer; returns its id.
    pub fn start_conversation_for_consumer(
        &self,
        consumer_id: &str,
        skill_id: Option<&str>,
    ) -> Result<String, SimError> {
        self.with(|g, sub| {
            if g.open_conv_of(consumer_id).is_some() {
                return Err(SimError::InvalidState(format!(
                    "consumer {consumer_id} already has an open conversation"
                )));
            }
            let ext = g.consumers.get(consumer_id).cloned();
            // [INFERRED] LivePerson knows the consumer's client from its last conversation.
            let properties = g
                .consumer_convs
                .get(consumer_id)
                .and_then(|list| list.last())
                .and_then(|&last| g.convs[last].client_properties.clone());
            let ci = g.create_conversation(consumer_id, ext, skill_id.map(str::to_string), false);
            g.convs[ci].client_properties = properties;
            g.conv_changed(ci, sub);
            g.agent_join(ci, None, sub);
            Ok(g.convs[ci].conversation_id.clone())
        })
    }

    /// A conversation of a consumer from another channel (unknown to the connector).
    pub fn start_foreign_conversation(&self, skill_id: Option<&str>) -> Result<String, SimError> {
        let consumer = crate::auth::lp_consumer_id("foreign", &uuid::Uuid::new_v4().to_string());
        self.with(|g, sub| {
            let ci = g.create_conversation(&consumer, None, skill_id.map(str::to_string), true);
            g.conv_changed(ci, sub);
            Ok(g.convs[ci].conversation_id.clone())
        })
    }
}

// ---- HTTP ----

#[allow(clippy::result_large_err)] // an axum Response is the natural error here
fn parse<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        json_resp(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "message": e.to_string()}),
        )
    })
}

fn result<T: Serialize>(r: Result<T, SimError>) -> Response {
    match r {
        Ok(v) => json_resp(StatusCode::OK, json!({"ok": true, "result": v})),
        Err(e @ SimError::UnknownConversation(_)) => json_resp(
            StatusCode::NOT_FOUND,
            json!({"ok": false, "error": e.to_string()}),
        ),
        Err(e) => json_resp(
            StatusCode::BAD_REQUEST,
            json!({"ok": false, "error": e.to_string()}),
        ),
    }
}

macro_rules! try_parse {
    ($body:expr) => {
        match parse(&$body) {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

pub(crate) async fn info(State(sim): State<SimState>) -> Response {
    let c = sim.config();
    json_resp(
        StatusCode::OK,
        json!({
            "account_id": c.account_id, "client_id": c.client_id, "client_secret": c.client_secret,
            "public_host": sim.public_host(), "webhooks": c.webhooks, "signature": c.signature,
            "time_scale": c.time_scale, "survey_skills": c.survey_skills,
        }),
    )
}

pub(crate) async fn list(State(sim): State<SimState>) -> Response {
    json_resp(StatusCode::OK, json!(sim.conversations()))
}

pub(crate) async fn get_one(State(sim): State<SimState>, Path(id): Path<String>) -> Response {
    match sim.conversation(&id) {
        Some(c) => json_resp(StatusCode::OK, json!(c)),
        None => result::<()>(Err(SimError::UnknownConversation(id))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StartReq {
    consumer_id: Option<String>,
    skill_id: Option<String>,
}

pub(crate) async fn start(State(sim): State<SimState>, body: Bytes) -> Response {
    let r: StartReq = try_parse!(body);
    result(match r.consumer_id {
        Some(c) => sim.start_conversation_for_consumer(&c, r.skill_id.as_deref()),
        None => sim.start_foreign_conversation(r.skill_id.as_deref()),
    })
}

pub(crate) async fn accept(State(sim): State<SimState>, Path(id): Path<String>) -> Response {
    result(sim.agent_accept(&id))
}

pub(crate) async fn message(
    State(sim): State<SimState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let m: AgentMessage = try_parse!(body);
    result(sim.agent_send(&id, m).map(|s| json!({"sequence": s})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FileReq {
    caption: String,
    file_type: String,
    data_base64: String,
}

pub(crate) async fn file(
    State(sim): State<SimState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let f: FileReq = try_parse!(body);
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(f.data_base64.trim()) else {
        return result::<()>(Err(SimError::InvalidState(
            "data_base64 is not valid base64".into(),
        )));
    };
    let ft = if f.file_type.is_empty() {
        "PNG".to_string()
    } else {
        f.file_type
    };
    result(
        sim.agent_send_file(&id, &f.caption, &ft, bytes)
            .map(|(s, p)| json!({"sequence": s, "relativePath": p})),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TypingReq {
    chat_state: Option<String>,
}

pub(crate) async fn typing(
    State(sim): State<SimState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let t: TypingReq = try_parse!(body);
    result(sim.agent_typing(&id, t.chat_state.as_deref().unwrap_or("COMPOSING")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ReceiptReq {
    status: Option<String>,
    sequences: Vec<u64>,
}

pub(crate) async fn receipt(
    State(sim): State<SimState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r: ReceiptReq = try_parse!(body);
    result(
        sim.agent_receipt(&id, r.status.as_deref().unwrap_or("READ"), &r.sequences)
            .map(|s| json!({"sequence": s})),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TransferReq {
    skill_id: String,
}

pub(crate) async fn transfer(
    State(sim): State<SimState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let t: TransferReq = try_parse!(body);
    if t.skill_id.is_empty() {
        return result::<()>(Err(SimError::InvalidState("skill_id is required".into())));
    }
    result(sim.transfer(&id, &t.skill_id))
}

pub(crate) async fn back_to_queue(State(sim): State<SimState>, Path(id): Path<String>) -> Response {
    result(sim.back_to_queue(&id))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CloseReq {
    survey: bool,
}

pub(crate) async fn close(
    State(sim): State<SimState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let c: CloseReq = try_parse!(body);
    result(sim.agent_close(&id, c.survey))
}

pub(crate) async fn auto_close(State(sim): State<SimState>, Path(id): Path<String>) -> Response {
    result(sim.system_close(&id))
}

pub(crate) async fn requests(State(sim): State<SimState>) -> Response {
    json_resp(StatusCode::OK, json!(sim.received_requests()))
}

pub(crate) async fn webhooks(State(sim): State<SimState>) -> Response {
    json_resp(StatusCode::OK, json!(sim.webhook_deliveries()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointReq {
    url: String,
}

pub(crate) async fn webhook_endpoint(State(sim): State<SimState>, body: Bytes) -> Response {
    let e: EndpointReq = try_parse!(body);
    sim.set_webhook_endpoint(&e.url);
    result(Ok::<_, SimError>(e.url))
}

pub(crate) async fn get_faults(State(sim): State<SimState>) -> Response {
    json_resp(StatusCode::OK, json!(sim.faults()))
}

pub(crate) async fn post_faults(State(sim): State<SimState>, body: Bytes) -> Response {
    let f: FaultRequest = try_parse!(body);
    json_resp(StatusCode::OK, json!(sim.apply_faults(f)))
}

pub(crate) async fn inject_webhook(State(sim): State<SimState>, body: Bytes) -> Response {
    let injection: crate::inject::WebhookInjection = try_parse!(body);
    result(sim.inject_webhook(injection))
}
