//! A hand-written fake of the Telegram Bot API (spec/channels.md §2.7): `/bot<token>/<method>`
//! with JSON, form or multipart bodies and the `{"ok":…}` envelopes, `getUpdates` long polling
//! with offset confirmation (409 while a webhook is set), `setWebhook`/`deleteWebhook` and a
//! webhook pusher (POST with the secret header, retried until a 2xx, one update at a time),
//! `getFile` and `/file/bot<token>/<path>`, the send methods with Telegram's validation, and
//! failure injection (429 with `retry_after` and `Retry-After`, a proxy's HTML 502, 403 for a
//! user who blocked the bot).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;

const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";

/// The bot token the fake accepts.
pub const FAKE_TOKEN: &str = TOKEN;

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method, lower-case.
    pub method: String,
    /// Its parameters (JSON, form or multipart text fields).
    pub params: Value,
    /// Bytes of an uploaded file, if any.
    pub upload: Option<usize>,
}

/// A failure to inject into the next send call.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// 429 `Too Many Requests: retry after N`.
    Flood(u64),
    /// A proxy in front of the API answers 502 with HTML.
    BadGateway,
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// 400 `Bad Request: group chat was upgraded to a supergroup chat` with
    /// `parameters.migrate_to_chat_id`.
    Migrated(i64),
}

/// What the fake holds.
#[derive(Debug, Default)]
pub struct FakeState {
    calls: Mutex<Vec<Call>>,
    http: reqwest::Client,
    updates: Mutex<Vec<Value>>,
    next_update: Mutex<i64>,
    webhook: Mutex<Option<(String, String)>>,
    files: Mutex<HashMap<String, (String, Vec<u8>)>>,
    failures: Mutex<Vec<Failure>>,
    /// Group chats upgraded to supergroups: old id → new id (every send to the old id fails).
    migrated: Mutex<HashMap<i64, i64>>,
    next_message: Mutex<i64>,
    arrived: Notify,
}

/// A running fake Bot API.
#[derive(Debug, Clone)]
pub struct FakeTelegram {
    /// Its base URL (the channel's `api_base_url`).
    pub base: String,
    state: Arc<FakeState>,
}

fn envelope_error(code: u16, description: &str, retry_after: Option<u64>) -> Response {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(n) = retry_after {
        body["parameters"] = json!({ "retry_after": n });
    }
    let mut response = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response();
    if let Some(n) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, n.to_string().parse().unwrap());
    }
    response
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

impl FakeTelegram {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(FakeState {
            next_update: Mutex::new(700_000_001),
            next_message: Mutex::new(100),
            ..FakeState::default()
        });
        let app = axum::Router::new()
            .route("/{bot}/{method}", axum::routing::any(method))
            .route("/file/{bot}/{*path}", axum::routing::get(file))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// The calls of `method` (any case) so far.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// Hands an update to the bot, with the next `update_id` (returned): POSTed to the webhook
    /// when one is set (retried until answered 2xx, as Telegram does), else queued for
    /// `getUpdates`.
    pub async fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut next = self.state.next_update.lock().unwrap();
            *next += 1;
            *next
        };
        update["update_id"] = json!(id);
        let webhook = self.state.webhook.lock().unwrap().clone();
        match webhook {
            Some((url, secret)) => {
                for attempt in 0..50u64 {
                    let sent = self
                        .state
                        .http
                        .post(&url)
                        .header("x-telegram-bot-api-secret-token", &secret)
                        .json(&update)
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status().is_success()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                }
            }
            None => {
                self.state.updates.lock().unwrap().push(update);
                self.state.arrived.notify_waiters();
            }
        }
        id
    }

    /// A private-chat text message update from user `chat`.
    pub fn text_update(chat: i64, text: &str) -> Value {
        json!({ "message": {
            "message_id": 1, "date": 1795384800,
            "from": {"id": chat, "is_bot": false, "first_name": "Ada", "last_name": "Lovelace", "username": "ada", "language_code": "en"},
            "chat": {"id": chat, "type": "private", "first_name": "Ada"},
            "text": text }})
    }

    /// Stores a file `getFile` and the download route serve.
    pub fn add_file(&self, file_id: &str, path: &str, bytes: &[u8]) {
        self.state
            .files
            .lock()
            .unwrap()
            .insert(file_id.into(), (path.into(), bytes.to_vec()));
    }

    /// Upgrades the group `from` to the supergroup `to`: from now on, as on Telegram, every
    /// send to `from` is refused with 400 and `parameters.migrate_to_chat_id`.
    pub fn migrate(&self, from: i64, to: i64) {
        self.state.migrated.lock().unwrap().insert(from, to);
    }

    /// The next send calls (`send*`) fail as given, one failure per call.
    pub fn fail_next(&self, failures: &[Failure]) {
        self.state
            .failures
            .lock()
            .unwrap()
            .extend_from_slice(failures);
    }

    /// The webhook URL and secret set, if any.
    pub fn webhook(&self) -> Option<(String, String)> {
        self.state.webhook.lock().unwrap().clone()
    }
}

async fn params_of(req: Request) -> (Value, Option<usize>) {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if content_type.starts_with("multipart/form-data") {
        let mut params = json!({});
        let mut upload = None;
        if let Ok(mut form) = Multipart::from_request(req, &()).await {
            while let Ok(Some(field)) = form.next_field().await {
                let name = field.name().unwrap_or("").to_owned();
                let is_file = field.file_name().is_some();
                let bytes = field.bytes().await.unwrap_or_default();
                if is_file {
                    upload = Some(bytes.len());
                } else {
                    params[name] = json!(String::from_utf8_lossy(&bytes));
                }
            }
        }
        return (params, upload);
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    if content_type.starts_with("application/json") {
        return (serde_json::from_slice(&bytes).unwrap_or(json!({})), None);
    }
    let text = if bytes.is_empty() {
        query
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let pairs: Vec<(String, String)> = serde_urlencoded_lite(&text);
    let mut params = json!({});
    for (k, v) in pairs {
        params[k] = serde_json::from_str(&v).unwrap_or(json!(v));
    }
    (params, None)
}

fn serde_urlencoded_lite(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.replace('+', " "))
        })
        .collect()
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

async fn method(
    State(st): State<Arc<FakeState>>,
    Path((bot, method)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return envelope_error(404, "Not Found", None);
    };
    if !token.contains(':') {
        return envelope_error(401, "Unauthorized: invalid token specified", None);
    }
    if token != TOKEN {
        return envelope_error(401, "Unauthorized", None);
    }
    let (params, upload) = params_of(req).await;
    let method = method.to_ascii_lowercase();
    st.calls.lock().unwrap().push(Call {
        method: method.clone(),
        params: params.clone(),
        upload,
    });
    if method.starts_with("send") && method != "sendchataction" {
        let chat = params["chat_id"]
            .as_i64()
            .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()));
        let moved = chat.and_then(|c| st.migrated.lock().unwrap().get(&c).copied());
        let failure = match moved {
            Some(to) => Some(Failure::Migrated(to)),
            None => {
                let mut failures = st.failures.lock().unwrap();
                (!failures.is_empty()).then(|| failures.remove(0))
            }
        };
        match failure {
            Some(Failure::Flood(n)) => {
                return envelope_error(
                    429,
                    &format!("Too Many Requests: retry after {n}"),
                    Some(n),
                );
            }
            Some(Failure::BadGateway) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                )
                    .into_response();
            }
            Some(Failure::Blocked) => {
                return envelope_error(403, "Forbidden: bot was blocked by the user", None);
            }
            Some(Failure::Migrated(to)) => {
                let body = json!({ "ok": false, "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": { "migrate_to_chat_id": to } });
                return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
            }
            None => {}
        }
    }
    match method.as_str() {
        "getme" => ok(
            json!({"id": 123456, "is_bot": true, "first_name": "Switchboard", "username": "switchboard_bot"}),
        ),
        "setwebhook" => {
            let url = params["url"].as_str().unwrap_or("").to_owned();
            let secret = params["secret_token"].as_str().unwrap_or("").to_owned();
            if !secret.is_empty()
                && (secret.len() > 256
                    || !secret
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            {
                return envelope_error(
                    400,
                    "Bad Request: secret token contains unallowed characters",
                    None,
                );
            }
            *st.webhook.lock().unwrap() = (!url.is_empty()).then_some((url, secret));
            ok(json!(true))
        }
        "deletewebhook" => {
            *st.webhook.lock().unwrap() = None;
            ok(json!(true))
        }
        "getupdates" => {
            if st.webhook.lock().unwrap().is_some() {
                return envelope_error(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                    None,
                );
            }
            let offset = params["offset"].as_i64().unwrap_or(0);
            let timeout = params["timeout"].as_u64().unwrap_or(0).min(50);
            // Confirm everything below the offset.
            st.updates
                .lock()
                .unwrap()
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let arrived = st.arrived.notified();
                let pending: Vec<Value> = st.updates.lock().unwrap().clone();
                if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
                    return ok(json!(pending));
                }
                let _ = tokio::time::timeout_at(deadline, arrived).await;
            }
        }
        "getfile" => {
            let id = params["file_id"].as_str().unwrap_or("");
            match st.files.lock().unwrap().get(id) {
                Some((path, _)) => {
                    ok(json!({"file_id": id, "file_unique_id": "u", "file_path": path}))
                }
                None => envelope_error(400, "Bad Request: invalid file_id", None),
            }
        }
        "sendmessage" => {
            let text = params["text"].as_str().unwrap_or("");
            if text.trim().is_empty() {
                return envelope_error(400, "Bad Request: message text is empty", None);
            }
            if utf16_len(text) > 4096 {
                return envelope_error(400, "Bad Request: message is too long", None);
            }
            if let Some(rows) = params["reply_markup"]["inline_keyboard"].as_array() {
                for b in rows
                    .iter()
                    .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                {
                    if b["callback_data"]
                        .as_str()
                        .is_some_and(|d| d.is_empty() || d.len() > 64)
                    {
                        return envelope_error(400, "Bad Request: BUTTON_DATA_INVALID", None);
                    }
                }
            }
            sent(&st, &params)
        }
        "sendphoto" | "senddocument" => {
            let field = if method == "sendphoto" {
                "photo"
            } else {
                "document"
            };
            if upload.is_none() && params[field].as_str().is_none_or(str::is_empty) {
                return envelope_error(
                    400,
                    &format!("Bad Request: there is no {field} in the request"),
                    None,
                );
            }
            if params["caption"]
                .as_str()
                .is_some_and(|c| utf16_len(c) > 1024)
            {
                return envelope_error(400, "Bad Request: message caption is too long", None);
            }
            sent(&st, &params)
        }
        "sendchataction" | "answercallbackquery" => ok(json!(true)),
        _ => envelope_error(404, "Not Found: method not found", None),
    }
}

fn sent(st: &FakeState, params: &Value) -> Response {
    let id = {
        let mut next = st.next_message.lock().unwrap();
        *next += 1;
        *next
    };
    let chat = params["chat_id"]
        .as_i64()
        .or_else(|| params["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    ok(json!({"message_id": id, "date": 1795384800, "chat": {"id": chat, "type": "private"}}))
}

async fn file(
    State(st): State<Arc<FakeState>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let files = st.files.lock().unwrap();
    match files.values().find(|(p, _)| *p == path) {
        Some((_, bytes)) => Response::builder()
            .status(200)
            .body(Body::from(bytes.clone()))
            .unwrap(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
