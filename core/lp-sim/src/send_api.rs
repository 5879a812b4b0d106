//! CONVERSATION and SEND endpoints (docs/protocol/liveperson.md §4–§5).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::clock::epoch_ms;
use crate::domain::check_app_jwt;
use crate::respond::{auth_error, bad_request_elem, header_str, json_resp, req_id};
use crate::state::{CLOSED_MSG, Inner, OpError, ReceivedRequest, SimState, bad};
use crate::swift::{self, MAX_FILE_BYTES};

/// Max characters of a SEND request ("The size of the JSON request object cannot exceed 5000
/// characters": the how-to guide, LivePersonInc/lp-devassist-connectors `gh-pages`
/// `index.html`). [INFERRED] Counted as the Java service counts a string's length: UTF-16 code
/// units, so an emoji outside the Basic Multilingual Plane counts two.
pub(crate) const MAX_SEND_CHARS: usize = 5000;
const MAX_PREVIEW_CHARS: usize = 30 * 1024;

struct Consumer {
    id: String,
    ext: String,
}

/// Auth for CONVERSATION and SEND: AppJWT, then ConsumerJWS.
#[allow(clippy::result_large_err)] // an axum Response is the natural error here
fn authorize(sim: &SimState, headers: &HeaderMap, acc: &str) -> Result<Consumer, Response> {
    check_app_jwt(sim, headers, acc)?;
    let Some(jws) = header_str(headers, "x-lp-on-behalf") else {
        return Err(auth_error(40104));
    };
    let Some(claims) = sim.shared.keys.verify_consumer_jws(jws) else {
        return Err(auth_error(40103));
    };
    if claims.account_id != acc {
        return Err(auth_error(40103));
    }
    {
        let mut g = sim.lock();
        if g.faults.invalidate_jws > 0 {
            g.faults.invalidate_jws -= 1;
            return Err(auth_error(40103));
        }
        g.consumers
            .entry(claims.lp_consumer_id.clone())
            .or_insert_with(|| claims.ext_consumer_id.clone());
    }
    Ok(Consumer {
        id: claims.lp_consumer_id,
        ext: claims.ext_consumer_id,
    })
}

fn check_v(q: &HashMap<String, String>) -> Option<Response> {
    (q.get("v").map(String::as_str) != Some("3")).then(|| {
        json_resp(
            StatusCode::BAD_REQUEST,
            bad_request_elem(None, "Bad Request, missing or unsupported v (expected v=3)"),
        )
    })
}

fn client_properties(headers: &HeaderMap) -> Option<Value> {
    header_str(headers, "client-properties").and_then(|s| serde_json::from_str(s).ok())
}

fn has_feature(props: Option<&Value>, feature: &str) -> bool {
    props
        .and_then(|p| p.get("features"))
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|f| f.as_str() == Some(feature)))
}

fn log(
    sim: &SimState,
    endpoint: &str,
    consumer: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    resp: &Response,
    rbody: &Value,
) {
    let body = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    sim.lock().events.push(ReceivedRequest {
        at: epoch_ms(),
        endpoint: endpoint.to_string(),
        consumer_id: consumer.map(str::to_string),
        host: header_str(headers, "host").map(str::to_string),
        status: resp.status().as_u16(),
        body,
        client_properties: client_properties(headers),
        response: rbody.clone(),
    });
    sim.notify_changed();
}

fn finish(
    sim: &SimState,
    endpoint: &str,
    consumer: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
    status: StatusCode,
    v: Value,
) -> Response {
    let resp = json_resp(status, v.clone());
    log(sim, endpoint, consumer, headers, body, &resp, &v);
    resp
}

/// `POST /api/account/{acc}/messaging/consumer/conversation?v=3`
pub(crate) async fn conversation(
    State(sim): State<SimState>,
    Path(acc): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = check_v(&q) {
        return r;
    }
    let consumer = match authorize(&sim, &headers, &acc) {
        Ok(c) => c,
        Err(r) => {
            log(
                &sim,
                "conversation",
                None,
                &headers,
                &body,
                &r,
                &Value::Null,
            );
            return r;
        }
    };
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return finish(
                &sim,
                "conversation",
                Some(&consumer.id),
                &headers,
                &body,
                StatusCode::BAD_REQUEST,
                bad_request_elem(
                    None,
                    "Bad Request, body must be a non-empty JSON array of requests",
                ),
            );
        }
    };
    let props = client_properties(&headers);
    let (results, failed) = sim.with(|g, sub| {
        let mut profile: Option<Value> = None;
        let mut created = false;
        let mut failed = false;
        let mut results = Vec::new();
        for item in &items {
            let id = req_id(item);
            let r = match item.get("type").and_then(Value::as_str) {
                Some("userprofile.SetUserProfile") => {
                    profile = Some(item.get("body").cloned().unwrap_or(json!({})));
                    Ok(json!({"msg": "OK User Profile set successfully"}))
                }
                Some("cm.ConsumerRequestConversation") => {
                    let r = request_conversation(
                        g,
                        sub,
                        &acc,
                        &consumer,
                        item,
                        profile.as_ref(),
                        created,
                        props.as_ref(),
                    );
                    created |= r.is_ok();
                    r
                }
                other => Err(format!(
                    "Bad Request, unsupported request type {}",
                    other.unwrap_or("(missing)")
                )),
            };
            match r {
                Ok(b) => {
                    let mut e = json!({"code": "OK", "body": b});
                    if let Some(id) = id {
                        e["reqId"] = id;
                    }
                    results.push(e);
                }
                Err(msg) => {
                    failed = true;
                    results.push(bad_request_elem(id.as_ref(), &msg));
                }
            }
        }
        (results, failed)
    });
    let status = if failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    finish(
        &sim,
        "conversation",
        Some(&consumer.id),
        &headers,
        &body,
        status,
        Value::Array(results),
    )
}

#[allow(clippy::too_many_arguments)]
fn request_conversation(
    g: &mut Inner,
    sub: &str,
    acc: &str,
    consumer: &Consumer,
    item: &Value,
    profile: Option<&Value>,
    already_created: bool,
    props: Option<&Value>,
) -> Result<Value, String> {
    const PREFIX: &str = "Consumer request conversation failed: ";
    let Some(profile) = profile else {
        return Err(format!(
            "{PREFIX}userprofile.SetUserProfile must precede cm.ConsumerRequestConversation"
        ));
    };
    let body = item.get("body").cloned().unwrap_or(json!({}));
    if body.get("brandId").and_then(Value::as_str) != Some(acc) {
        return Err(format!(
            "{PREFIX}brandId is missing or does not match the account"
        ));
    }
    if let Some(ct) = body.get("channelType")
        && ct.as_str() != Some("MESSAGING")
    {
        return Err(format!("{PREFIX}unsupported channelType"));
    }
    check_campaign(body.get("campaignInfo")).map_err(|m| format!("{PREFIX}{m}"))?;
    check_context(body.get("conversationContext")).map_err(|m| format!("{PREFIX}{m}"))?;
    if already_created || g.open_conv_of(&consumer.id).is_some() {
        return Err(format!(
            "{PREFIX}User {} already has open conversation. Can't open another one.",
            consumer.id
        ));
    }
    let skill = match body.get("skillId") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let ci = g.create_conversation(&consumer.id, Some(consumer.ext.clone()), skill, false);
    let auto = has_feature(props, "AUTO_MESSAGES") && g.config.auto_message.is_some();
    let c = &mut g.convs[ci];
    c.sdes = profile.clone();
    c.campaign = body.get("campaignInfo").cloned();
    c.context = body.get("conversationContext").cloned();
    c.ttr_def_name = body
        .get("ttrDefName")
        .and_then(Value::as_str)
        .map(str::to_string);
    c.client_properties = props.cloned();
    c.auto_messages_pending = auto;
    let id = c.conversation_id.clone();
    let any_skill = c.skill_id == "-1";
    g.conv_changed(ci, sub);
    // LivePerson's routing then assigns a real skill, before any agent accepts: the next
    // ExConversation shows it (a skill change that is not a transfer).
    if any_skill && let Some(routed) = g.config.routed_skill_id.clone() {
        g.convs[ci].skill_id = routed;
        g.conv_changed(ci, sub);
    }
    Ok(json!({"conversationId": id}))
}

/// `campaignInfo` names a campaign and its engagement together: every documented example
/// carries both (developer-center `pages/Documents/MessagingChannels/ConnectorAPI/SendAPI/
/// conversation.md`: "Contains the campaignId and engagementId"). [INFERRED] LivePerson
/// documents no answer for one alone; routing cannot use it, so it is refused.
fn check_campaign(info: Option<&Value>) -> Result<(), String> {
    let Some(info) = info.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let present = |key: &str| match info.get(key) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    };
    match (present("campaignId"), present("engagementId")) {
        (true, true) => Ok(()),
        _ => Err("campaignInfo needs both campaignId and engagementId".into()),
    }
}

/// `conversationContext` "is of type SharkContext" (conversation.md, cm.ConsumerRequestConversation
/// properties) and every documented example names that `type`. [INFERRED] LivePerson reads the
/// object by its `type` (a Java service's polymorphic field), so a context without it is
/// refused.
fn check_context(context: Option<&Value>) -> Result<(), String> {
    let Some(context) = context.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    match context.get("type").and_then(Value::as_str) {
        Some("SharkContext") => Ok(()),
        Some(other) => Err(format!("unsupported conversationContext type {other}")),
        None => Err("conversationContext type is missing (expected SharkContext)".into()),
    }
}

/// `POST /api/account/{acc}/messaging/consumer/conversation/send?v=3`
pub(crate) async fn send(
    State(sim): State<SimState>,
    Path(acc): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = check_v(&q) {
        return r;
    }
    let consumer = match authorize(&sim, &headers, &acc) {
        Ok(c) => c,
        Err(r) => {
            log(&sim, "send", None, &headers, &body, &r, &Value::Null);
            return r;
        }
    };
    let cid = Some(consumer.id.as_str());
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => {
            return finish(
                &sim,
                "send",
                cid,
                &headers,
                &body,
                StatusCode::BAD_REQUEST,
                bad_request_elem(None, "Bad Request"),
            );
        }
    };
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let id = parsed.as_ref().and_then(req_id);
    if text.encode_utf16().count() > MAX_SEND_CHARS {
        return finish(
            &sim,
            "send",
            cid,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            bad_request_elem(id.as_ref(), "Bad Request"),
        );
    }
    let Some(req) = parsed.filter(Value::is_object) else {
        return finish(
            &sim,
            "send",
            cid,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            bad_request_elem(
                id.as_ref(),
                "Bad Request, body must be one JSON request object",
            ),
        );
    };
    let props = client_properties(&headers);
    let b = req.get("body").cloned().unwrap_or(Value::Null);
    let result = match req.get("type").and_then(Value::as_str) {
        Some("ms.PublishEvent") => publish_event(&sim, &consumer, &req, &b, props.as_ref()),
        Some("cm.UpdateConversationField") => update_field(&sim, &consumer, &b, props.as_ref()),
        Some("ms.GenerateURLForUploadFile") => upload_url(&sim, &acc, &b),
        Some("ms.GenerateURLForDownloadFile") => download_url(&sim, &b),
        Some("userprofile.SetUserProfile") => sim.with(|g, _| {
            if let Some(ci) = g.open_conv_of(&consumer.id) {
                g.convs[ci].sdes = b.clone();
            }
            Ok(json!({"msg": "OK User Profile set successfully"}))
        }),
        other => Err(bad(format!(
            "Bad Request, unsupported request type {}",
            other.unwrap_or("(missing)")
        ))),
    };
    match result {
        Ok(rb) => {
            let mut v = json!({"code": "OK", "body": rb});
            if let Some(id) = id {
                v["reqId"] = id;
            }
            finish(&sim, "send", cid, &headers, &body, StatusCode::OK, v)
        }
        Err(OpError::Bad(msg)) => finish(
            &sim,
            "send",
            cid,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            bad_request_elem(id.as_ref(), &msg),
        ),
        Err(OpError::Forbidden) => {
            let r = auth_error(40103);
            log(&sim, "send", cid, &headers, &body, &r, &Value::Null);
            r.into_response()
        }
    }
}

const CHAT_STATES: [&str; 5] = ["ACTIVE", "INACTIVE", "GONE", "COMPOSING", "PAUSE"];
const ACCEPT_STATUSES: [&str; 5] = ["ACCEPT", "READ", "ACCESS", "NACK", "ACTION"];

fn validate_metadata(m: Option<&Value>) -> Result<Option<Value>, OpError> {
    match m {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            for it in items {
                if !it.is_object() {
                    return Err(bad("Bad Request, metadata items must be objects"));
                }
                if it["type"] == "ExternalId"
                    && it["id"]
                        .as_str()
                        .is_none_or(|s| s.is_empty() || s.chars().count() > 64)
                {
                    return Err(bad("Bad Request, ExternalId id must be 1-64 characters"));
                }
            }
            Ok(Some(Value::Array(items.clone())))
        }
        Some(_) => Err(bad("Bad Request, metadata must be an array")),
    }
}

fn publish_event(
    sim: &SimState,
    consumer: &Consumer,
    req: &Value,
    b: &Value,
    props: Option<&Value>,
) -> Result<Value, OpError> {
    let dialog_id = b
        .get("dialogId")
        .and_then(Value::as_str)
        .or_else(|| b.get("conversationId").and_then(Value::as_str))
        .ok_or_else(|| bad("Bad Request, dialogId is missing"))?
        .to_string();
    let event = b
        .get("event")
        .filter(|e| e.is_object())
        .cloned()
        .ok_or_else(|| bad("Bad Request, event is missing"))?;
    let metadata = validate_metadata(req.get("metadata"))?;
    sim.with(|g, sub| {
        let (ci, di) = g
            .find_dialog(&dialog_id)
            .ok_or_else(|| bad("Bad Request, dialog not found"))?;
        if g.convs[ci].consumer_id != consumer.id {
            return Err(OpError::Forbidden);
        }
        remember_properties(g, ci, props);
        let conv = &g.convs[ci];
        if let Some(cid) = b.get("conversationId").and_then(Value::as_str)
            && cid != conv.conversation_id
        {
            return Err(bad("Bad Request, dialogId does not belong to conversationId"));
        }
        let dialog = &conv.dialogs[di];
        if !conv.is_open() || dialog.state != "OPEN" {
            return Err(bad(CLOSED_MSG));
        }
        let is_survey = dialog.dialog_type == "POST_SURVEY";
        let mut survey_text = None;
        match event.get("type").and_then(Value::as_str) {
            Some("ContentEvent") => match event.get("contentType").and_then(Value::as_str) {
                Some("text/plain") => {
                    let Some(t) = event.get("message").and_then(Value::as_str) else {
                        return Err(bad("Bad Request, message must be a string"));
                    };
                    survey_text = Some(t.to_string());
                }
                Some("hosted/file") => {
                    let m = event.get("message");
                    let path = m.and_then(|m| m.get("relativePath")).and_then(Value::as_str);
                    let ft = m.and_then(|m| m.get("fileType")).and_then(Value::as_str);
                    let (Some(path), Some(_)) = (path, ft) else {
                        return Err(bad("Bad Request, hosted/file needs message.relativePath and message.fileType"));
                    };
                    if !g.files.contains_key(path) {
                        return Err(bad("Bad Request, file not found or not uploaded"));
                    }
                    if m.and_then(|m| m.get("preview"))
                        .and_then(Value::as_str)
                        .is_some_and(|p| p.len() > MAX_PREVIEW_CHARS)
                    {
                        return Err(bad("Bad Request, preview exceeds 30 KB"));
                    }
                }
                _ => return Err(bad("Bad Request, unsupported contentType")),
            },
            Some("ChatStateEvent") => {
                if !event
                    .get("chatState")
                    .and_then(Value::as_str)
                    .is_some_and(|s| CHAT_STATES.contains(&s))
                {
                    return Err(bad("Bad Request, invalid chatState"));
                }
                if is_survey {
                    return Err(bad("Bad Request, chat state is not allowed in this dialog"));
                }
            }
            Some("AcceptStatusEvent") => {
                if !event
                    .get("status")
                    .and_then(Value::as_str)
                    .is_some_and(|s| ACCEPT_STATUSES.contains(&s))
                {
                    return Err(bad("Bad Request, invalid status"));
                }
                let ok = event
                    .get("sequenceList")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().all(|x| x.as_u64().is_some()));
                if !ok {
                    return Err(bad("Bad Request, sequenceList must be an array of integers"));
                }
            }
            _ => return Err(bad("Bad Request, unsupported event type")),
        }
        let consumer_id = consumer.id.clone();
        let seq = g.publish(ci, di, &consumer_id, "CONSUMER", event, metadata, "ALL");
        // AUTO_MESSAGES: welcome message on the first SEND within 10 s of creation.
        if g.convs[ci].auto_messages_pending {
            g.convs[ci].auto_messages_pending = false;
            let in_time = g.convs[ci]
                .created_at
                .is_some_and(|t| t.elapsed() <= Duration::from_secs(10));
            if in_time
                && has_feature(props, "AUTO_MESSAGES")
                && let Some(msg) = g.config.auto_message.clone()
            {
                let mi = g.main_dialog_idx(ci);
                let ctl = format!("{}.controller", g.config.account_id);
                g.publish(
                    ci,
                    mi,
                    &ctl,
                    "CONTROLLER",
                    json!({"type": "ContentEvent", "contentType": "text/plain", "message": msg}),
                    None,
                    "ALL",
                );
            }
        }
        if is_survey && let Some(t) = survey_text {
            g.survey_answer(ci, di, &t, sub);
        }
        Ok(json!({"sequence": seq.unwrap_or(0)}))
    })
}

/// Keeps the `Client-Properties` of the consumer's latest request on the conversation: the
/// Connector API sends them "on the CONVERSATION call and every SEND call when used" (spec
/// docs/protocol/liveperson.md §5.8), so what the last request announced is what the client takes. [INFERRED] A SEND
/// without the header announces nothing.
fn remember_properties(g: &mut Inner, ci: usize, props: Option<&Value>) {
    g.convs[ci].client_properties = props.cloned();
}

fn update_field(
    sim: &SimState,
    consumer: &Consumer,
    b: &Value,
    props: Option<&Value>,
) -> Result<Value, OpError> {
    let conv_id = b
        .get("conversationId")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Bad Request, conversationId is missing"))?
        .to_string();
    let fields: Vec<Value> = match b.get("conversationField") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err(bad("Bad Request, conversationField is missing")),
    };
    sim.with(|g, sub| {
        let ci = g
            .conv_idx(&conv_id)
            .ok_or_else(|| bad("Bad Request, conversation not found"))?;
        if g.convs[ci].consumer_id != consumer.id {
            return Err(OpError::Forbidden);
        }
        remember_properties(g, ci, props);
        let mut msg = "OK Conversation updated successfully";
        for f in &fields {
            match f.get("field").and_then(Value::as_str) {
                Some("ConversationStateField") => {
                    if f.get("conversationState").and_then(Value::as_str) != Some("CLOSE") {
                        return Err(bad("Bad Request, unsupported conversationState"));
                    }
                    if g.convs[ci].state != "OPEN" || !g.convs[ci].is_open() {
                        return Err(bad(CLOSED_MSG));
                    }
                    let survey = g.survey_for(ci);
                    g.close_main(ci, "CONSUMER", "Closed by consumer", survey, sub);
                    msg = "OK Conversation resolved successfully";
                }
                Some("Stage") => {
                    if f.get("conversationState").and_then(Value::as_str) != Some("CLOSE") {
                        return Err(bad("Bad Request, unsupported conversationState"));
                    }
                    if !g.convs[ci].is_open() {
                        return Err(bad(CLOSED_MSG));
                    }
                    g.close_everything(ci, "CONSUMER", "Closed by consumer", sub);
                    msg = "OK Conversation resolved successfully";
                }
                Some("DialogChange") => {
                    let d = f.get("dialog");
                    let did = d.and_then(|d| d.get("dialogId")).and_then(Value::as_str);
                    let state = d.and_then(|d| d.get("state")).and_then(Value::as_str);
                    let (Some(did), Some("CLOSE")) = (did, state) else {
                        return Err(bad("Bad Request, DialogChange needs dialog.dialogId and dialog.state CLOSE"));
                    };
                    let Some(di) = g.convs[ci].dialogs.iter().position(|x| x.dialog_id == did) else {
                        return Err(bad("Bad Request, dialog not found"));
                    };
                    if g.convs[ci].dialogs[di].state != "OPEN" {
                        return Err(bad(CLOSED_MSG));
                    }
                    let cause = d
                        .and_then(|d| d.get("closedCause"))
                        .and_then(Value::as_str)
                        .unwrap_or("Closed by consumer")
                        .to_string();
                    g.close_dialog(ci, di, "CONSUMER", &cause, sub);
                    msg = "OK Conversation resolved successfully";
                }
                Some("CSATRate") => {
                    let rate = f.get("csatRate").and_then(Value::as_u64);
                    let fcr = f.get("csatResolutionConfirmation").and_then(Value::as_bool);
                    let status = f.get("status").and_then(Value::as_str);
                    let valid = rate.is_some_and(|r| (1..=5).contains(&r))
                        && fcr.is_some()
                        && status.is_some_and(|s| ["FILLED", "PARTIALLY_FILLED", "SKIPPED"].contains(&s));
                    if !valid {
                        return Err(bad("Bad Request, CSATRate needs csatRate 1-5, csatResolutionConfirmation and status FILLED|PARTIALLY_FILLED|SKIPPED"));
                    }
                    g.convs[ci].csat = Some(json!({
                        "csatRate": rate, "csatResolutionConfirmation": fcr, "status": status
                    }));
                    g.conv_changed(ci, sub);
                }
                _ => return Err(bad("Bad Request, unsupported conversationField")),
            }
        }
        Ok(json!({"msg": msg}))
    })
}

const FILE_TYPES: [&str; 4] = ["JPG", "JPEG", "PNG", "GIF"];

fn upload_url(sim: &SimState, acc: &str, b: &Value) -> Result<Value, OpError> {
    let size = match b.get("fileSize") {
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| bad("Bad Request, fileSize is missing or invalid"))?;
    let ft = b
        .get("fileType")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .filter(|t| FILE_TYPES.contains(&t.as_str()))
        .ok_or_else(|| bad("Bad Request, fileType must be one of JPG, JPEG, PNG, GIF"))?;
    let mut g = sim.lock();
    if !g.config.file_sharing_enabled {
        return Err(bad(
            "Bad Request, file sharing is disabled for this account",
        ));
    }
    if size == 0 || size > MAX_FILE_BYTES {
        return Err(bad("Bad Request, file size exceeds the limit"));
    }
    let path = format!(
        "/v1/AUTH_async-images/{acc}/{}_{}.{ft}",
        uuid::Uuid::new_v4(),
        epoch_ms()
    );
    g.pending_uploads.insert(path.clone());
    let ttl = g.config.swift_url_ttl_secs;
    drop(g);
    Ok(swift::url_body(sim, "PUT", &path, ttl))
}

fn download_url(sim: &SimState, b: &Value) -> Result<Value, OpError> {
    let path = b
        .get("relativePath")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Bad Request, relativePath is missing"))?;
    let g = sim.lock();
    if !g.files.contains_key(path) {
        return Err(bad("Bad Request, file not found"));
    }
    let ttl = g.config.swift_url_ttl_secs;
    drop(g);
    Ok(swift::url_body(sim, "GET", path, ttl))
}
