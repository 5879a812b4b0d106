//! The Bot API methods the fake answers, each refusing what the real server refuses.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::media::{self, Kind};
use super::params::Received;
use super::{
    BOT_ID, Failure, FakeState, Webhook, check_chat, envelope_error, ok, ok_described, pending,
    unix_now,
};

/// The longest text of a message and of a caption, in UTF-16 code units (Bot API
/// `sendMessage.text`, `sendPhoto.caption`; Telegram counts entity offsets in UTF-16 units).
const MAX_TEXT: usize = 4096;
const MAX_CAPTION: usize = 1024;
/// The server refuses longer raw texts before parsing them (Client.cpp, "Text is too long").
const MAX_RAW_TEXT: usize = 1 << 15;
/// `getUpdates` holds a long poll at most this long (Client.h, `LONG_POLL_MAX_TIMEOUT`).
const LONG_POLL_MAX: u64 = 50;
/// How long a callback query can be answered (Bot API FAQ; TDLib's query lifetime).
const CALLBACK_LIFETIME: Duration = Duration::from_secs(150);
/// Bots download at most 20 MB (Client.h, `MAX_DOWNLOAD_FILE_SIZE`).
const MAX_DOWNLOAD: u64 = 20 << 20;
/// `sendChatAction.action` (Bot API).
const CHAT_ACTIONS: [&str; 11] = [
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

fn bad_request(description: &str) -> Response {
    envelope_error(400, &format!("Bad Request: {description}"), None)
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Answers one call of `method`.
pub(super) async fn handle(st: &Arc<FakeState>, method: &str, call: Received) -> Response {
    match method {
        "getme" => ok(
            json!({"id": BOT_ID, "is_bot": true, "first_name": "Switchboard", "username": "switchboard_bot"}),
        ),
        "setwebhook" => set_webhook(st, &call),
        "deletewebhook" => delete_webhook(st, &call),
        "getwebhookinfo" => webhook_info(st),
        "getupdates" => get_updates(st, &call).await,
        "getfile" => get_file(st, &call),
        "sendmessage" => send(st, Content::Text, &call).await,
        "sendphoto" => send(st, Content::Media(Kind::Photo), &call).await,
        "senddocument" => send(st, Content::Media(Kind::Document), &call).await,
        "sendchataction" => send_chat_action(st, &call),
        "answercallbackquery" => answer_callback_query(st, &call),
        _ => envelope_error(404, "Not Found: method not found", None),
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook and polling.

/// The update kinds of an `allowed_updates` array.
fn update_kinds(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `setWebhook` (Client.cpp `process_set_webhook_query`, `do_set_webhook`; WebhookActor.cpp
/// for the scheme and port rules).
fn set_webhook(st: &FakeState, call: &Received) -> Response {
    let url = call.arg("url").unwrap_or_default();
    if url.is_empty() {
        return delete_webhook(st, call);
    }
    let now = Instant::now();
    let mut inner = st.lock();
    if inner.next_set_webhook.is_some_and(|at| now < at) {
        return envelope_error(429, "Too Many Requests: retry after 1", Some(1));
    }
    inner.next_set_webhook = Some(now + Duration::from_secs(1));
    let Ok(parsed) = reqwest::Url::parse(&url) else {
        return bad_request("invalid webhook URL specified");
    };
    let secret = call.arg("secret_token").unwrap_or_default();
    if secret.len() > 256 {
        return bad_request("secret token is too long");
    }
    if !secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad_request("secret token contains unallowed characters");
    }
    // A loopback URL stands for the HTTPS endpoint of the operator's TLS proxy in tests; any
    // other URL must be what Telegram delivers to.
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1") | Some("localhost"));
    if !loopback {
        if parsed.scheme() != "https" {
            return bad_request("bad webhook: An HTTPS URL must be provided for webhook");
        }
        if !matches!(parsed.port_or_known_default(), Some(443 | 80 | 88 | 8443)) {
            return bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
            );
        }
    }
    let allowed = match call.json_arg("allowed_updates") {
        Ok(v) => v,
        Err(()) => return bad_request("can't parse allowed updates JSON array"),
    };
    if let Some(list) = allowed {
        inner.allowed_updates = Some(update_kinds(&list));
    }
    if call.flag("drop_pending_updates") {
        inner.updates.clear();
    }
    let max_connections = call.int("max_connections").unwrap_or(40).clamp(1, 100) as u32;
    let webhook = Webhook {
        url,
        secret,
        max_connections,
    };
    let same = inner
        .webhook
        .as_ref()
        .is_some_and(|w| w.url == webhook.url && w.secret == webhook.secret);
    inner.webhook = Some(webhook);
    // A webhook ends any long poll (Client.cpp `abort_long_poll`).
    inner.poll_generation += 1;
    drop(inner);
    st.arrived.notify_waiters();
    ok_described(
        json!(true),
        if same {
            "Webhook is already set"
        } else {
            "Webhook was set"
        },
    )
}

fn delete_webhook(st: &FakeState, call: &Received) -> Response {
    let mut inner = st.lock();
    if call.flag("drop_pending_updates") {
        inner.updates.clear();
    }
    let was = inner.webhook.take().is_some();
    ok_described(
        json!(true),
        if was {
            "Webhook was deleted"
        } else {
            "Webhook is already deleted"
        },
    )
}

fn webhook_info(st: &FakeState) -> Response {
    let inner = st.lock();
    let mut info = json!({
        "url": inner.webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default(),
        "has_custom_certificate": false,
        "pending_update_count": if inner.webhook.is_some() { 0 } else { inner.updates.len() },
    });
    if let Some(w) = &inner.webhook {
        info["max_connections"] = json!(w.max_connections);
    }
    if let Some(list) = &inner.allowed_updates {
        info["allowed_updates"] = json!(list);
    }
    if let Some((date, message)) = &inner.last_webhook_error {
        info["last_error_date"] = json!(date);
        info["last_error_message"] = json!(message);
    }
    ok(info)
}

/// `getUpdates` (Client.cpp `process_get_updates_query`; offsets as the Bot API page says).
async fn get_updates(st: &FakeState, call: &Received) -> Response {
    let offset = call.int("offset").unwrap_or(0);
    let limit = call.int("limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = call
        .int("timeout")
        .unwrap_or(0)
        .clamp(0, LONG_POLL_MAX as i64) as u64;
    let generation = {
        let mut inner = st.lock();
        if inner.webhook.is_some() {
            return envelope_error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                None,
            );
        }
        match call.json_arg("allowed_updates") {
            Ok(Some(list)) => inner.allowed_updates = Some(update_kinds(&list)),
            Ok(None) => {}
            Err(()) => return bad_request("can't parse allowed updates JSON array"),
        }
        // Confirms every update below a positive offset; a negative one keeps only the last
        // -offset updates and forgets the others.
        if offset > 0 {
            inner
                .updates
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        } else if offset < 0 {
            let keep = offset.unsigned_abs() as usize;
            let drop = inner.updates.len().saturating_sub(keep);
            inner.updates.drain(..drop);
        }
        inner.poll_generation += 1;
        inner.poll_generation
    };
    // A second poller ends the first one's wait with a conflict.
    st.arrived.notify_waiters();
    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let arrived = st.arrived.notified();
        {
            let inner = st.lock();
            if inner.poll_generation != generation {
                return envelope_error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                    None,
                );
            }
            let updates = pending(&inner, limit);
            if !updates.is_empty() || Instant::now() >= deadline {
                return ok(json!(updates));
            }
        }
        let _ = tokio::time::timeout_at(deadline, arrived).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Files and callbacks.

fn get_file(st: &FakeState, call: &Received) -> Response {
    let id = call.arg("file_id").unwrap_or_default();
    if id.is_empty() {
        return bad_request("file_id not specified");
    }
    match st.lock().files.get(&id) {
        None => bad_request("invalid file_id"),
        Some(f) if f.size > MAX_DOWNLOAD => bad_request("file is too big"),
        Some(f) => ok(json!({"file_id": id, "file_unique_id": format!("u-{id}"),
            "file_size": f.size, "file_path": f.path})),
    }
}

fn answer_callback_query(st: &FakeState, call: &Received) -> Response {
    let id = call.arg("callback_query_id").unwrap_or_default();
    let mut inner = st.lock();
    match inner.callbacks.get_mut(&id) {
        Some((at, answered)) if !*answered && at.elapsed() < CALLBACK_LIFETIME => {
            *answered = true;
            ok(json!(true))
        }
        _ => bad_request("query is too old and response timeout expired or query ID is invalid"),
    }
}

fn send_chat_action(st: &FakeState, call: &Received) -> Response {
    let action = call.arg("action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return bad_request("wrong parameter action in request");
    }
    match check_chat(&st.lock(), call.int("chat_id")) {
        Ok(_) => ok(json!(true)),
        Err(refused) => refused,
    }
}

// ---------------------------------------------------------------------------------------------
// Sending messages.

/// What a send carries.
#[derive(Debug, Clone, Copy)]
enum Content {
    Text,
    Media(Kind),
}

/// Checks `parse_mode`, and the text under it where the fake can (MarkdownV2's reserved
/// characters, which agents' plain texts are full of).
fn check_parse_mode(call: &Received, text: &str) -> Result<(), Response> {
    let mode = call
        .arg("parse_mode")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match mode.as_str() {
        "" | "none" | "markdown" | "html" => Ok(()),
        "markdownv2" => {
            let mut escaped = false;
            for c in text.chars() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if "_*[]()~`>#+-=|{}.!".contains(c) {
                    return Err(bad_request(&format!(
                        "can't parse entities: Character '{c}' is reserved and must be escaped with the preceding '\\'"
                    )));
                }
            }
            Ok(())
        }
        _ => Err(bad_request("unsupported parse_mode")),
    }
}

/// Checks `reply_markup` (an inline keyboard is all the channel sends); `Ok` holds it.
fn check_markup(call: &Received) -> Result<Option<Value>, Response> {
    let markup = call
        .json_arg("reply_markup")
        .map_err(|()| bad_request("can't parse reply keyboard markup JSON object"))?;
    let Some(markup) = markup else {
        return Ok(None);
    };
    let Some(rows) = markup.get("inline_keyboard") else {
        return Ok(Some(markup));
    };
    let Some(rows) = rows.as_array() else {
        return Err(bad_request(
            "can't parse inline keyboard button: Expected an Array of Arrays of InlineKeyboardButton",
        ));
    };
    for row in rows {
        let Some(buttons) = row.as_array() else {
            return Err(bad_request(
                "can't parse inline keyboard button: Expected an Array of InlineKeyboardButton",
            ));
        };
        for button in buttons {
            if button["text"].as_str().is_none() {
                return Err(bad_request(
                    "can't parse inline keyboard button: Field \"text\" must be of type String",
                ));
            }
            let data = button["callback_data"].as_str().filter(|d| !d.is_empty());
            let url = button["url"].as_str().filter(|u| !u.is_empty());
            match (data, url) {
                (Some(d), _) if d.len() > 64 => return Err(bad_request("BUTTON_DATA_INVALID")),
                (None, Some(u)) => {
                    let scheme_ok = reqwest::Url::parse(u)
                        .is_ok_and(|p| matches!(p.scheme(), "http" | "https" | "tg"));
                    if !scheme_ok {
                        return Err(bad_request("BUTTON_URL_INVALID"));
                    }
                }
                (None, None) => {
                    return Err(bad_request(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(Some(markup))
}

/// The parameters' own rules, checked before anything touches the chat (Client.cpp reads
/// and checks the text, caption and markup first).
fn check_params(content: Content, call: &Received) -> Result<Option<Value>, Response> {
    match content {
        Content::Text => {
            let text = call.arg("text").unwrap_or_default();
            if text.len() > MAX_RAW_TEXT {
                return Err(bad_request("text is too long"));
            }
            if text.trim().is_empty() {
                return Err(bad_request("message text is empty"));
            }
            check_parse_mode(call, &text)?;
            if utf16_len(text.trim()) > MAX_TEXT {
                return Err(bad_request("message is too long"));
            }
        }
        Content::Media(_) => {
            let caption = call.arg("caption").unwrap_or_default();
            check_parse_mode(call, &caption)?;
            if utf16_len(caption.trim()) > MAX_CAPTION {
                return Err(bad_request("message caption is too long"));
            }
        }
    }
    check_markup(call)
}

/// An injected failure, as Telegram (or the proxy in front of it) would answer it.
fn injected(failure: Failure) -> Option<Response> {
    Some(match failure {
        Failure::Flood(n) => {
            envelope_error(429, &format!("Too Many Requests: retry after {n}"), Some(n))
        }
        Failure::BadGateway => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Failure::Blocked => envelope_error(403, "Forbidden: bot was blocked by the user", None),
        Failure::Migrated(to) => {
            let body = json!({ "ok": false, "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": { "migrate_to_chat_id": to } });
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
        Failure::LostAnswer(_) | Failure::Nothing => return None,
    })
}

/// `sendMessage`, `sendPhoto`, `sendDocument`: checked, sent into the chat, answered with the
/// `Message`.
async fn send(st: &FakeState, content: Content, call: &Received) -> Response {
    let markup = match check_params(content, call) {
        Ok(markup) => markup,
        Err(refused) => return refused,
    };
    let failure = st.lock().failures.pop_front();
    if let Some(refused) = failure.and_then(injected) {
        return refused;
    }
    let chat = match check_chat(&st.lock(), call.int("chat_id")) {
        Ok(chat) => chat,
        Err(refused) => return refused,
    };
    let mut message = json!({
        "message_id": 0,
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Switchboard", "username": "switchboard_bot"},
        "date": unix_now(),
    });
    match content {
        Content::Text => message["text"] = json!(call.arg("text").unwrap_or_default()),
        Content::Media(kind) => {
            let file = match media::resolve(st, kind, call).await {
                Ok(file) => file,
                Err(refused) => return refused,
            };
            let field = match kind {
                Kind::Photo => "photo",
                Kind::Document => "document",
            };
            message[field] = file;
            if let Some(caption) = call.arg("caption").filter(|c| !c.is_empty()) {
                message["caption"] = json!(caption);
            }
        }
    }
    if let Some(markup) = markup.filter(|m| m.get("inline_keyboard").is_some()) {
        message["reply_markup"] = markup;
    }
    {
        let mut inner = st.lock();
        inner.next_message += 1;
        message["message_id"] = json!(inner.next_message);
        let Some(c) = inner.chats.get_mut(&chat) else {
            return bad_request("chat not found");
        };
        message["chat"] = json!({ "id": chat, "type": c.kind });
        c.messages.push(message.clone());
    }
    if let Some(Failure::LostAnswer(after)) = failure {
        tokio::time::sleep(after).await;
    }
    ok(message)
}
