//! A hand-written fake of Slack (spec/channels.md §1.11): the Web API methods a channel needs
//! (`auth.test`, `users.info`, `chat.postMessage`, `conversations.history`,
//! `files.getUploadURLExternal`, the upload URL, `files.completeUploadExternal`) with Slack's
//! envelopes (HTTP 200 with `{"ok":false,…}` for application errors, 429 `ratelimited` with
//! `Retry-After`), `url_private` downloads that need the bot token, and the inbound side:
//! signed Events API and interactivity requests sent to the connector as Slack signs them,
//! redelivered like Slack with `X-Slack-Retry-Num` until acknowledged.
//!
//! Posted messages (with their `metadata`) and shared files are kept per conversation, newest
//! first in `conversations.history` as on Slack, so a test can tell what a consumer really sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The bot token the fake accepts.
pub const FAKE_BOT_TOKEN: &str = "xoxb-1111-2222-fakeSlackBotToken";
/// The bot user the fake's workspace has.
pub const BOT_USER: &str = "UBOTUSER1";

/// One Web API call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method (`chat.postMessage`).
    pub method: String,
    /// Its parameters; `blocks` and `files` parsed from their JSON strings.
    pub params: Value,
}

/// A failure to inject into the next posting call (`chat.postMessage`, `files.*`).
#[derive(Debug, Clone, Copy)]
pub enum SlackFailure {
    /// No failure: the call goes through (to fail a later call of a sequence).
    Pass,
    /// HTTP 429 `ratelimited` with `Retry-After: N`.
    RateLimited(u64),
    /// HTTP 503 with an HTML body (Slack's edge).
    Unavailable,
    /// HTTP 200 `{"ok":false,"error":…}`.
    App(&'static str),
    /// The call takes effect (the message is posted, the file shared) but the answer is a 503:
    /// the ambiguous failure a non-idempotent post must survive without repeating itself.
    UnavailableAfterApplying,
}

/// A message in a conversation, as `conversations.history` returns it.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Its `ts`.
    pub ts: String,
    /// The text (mrkdwn as posted).
    pub text: String,
    /// The blocks, if any.
    pub blocks: Value,
    /// The `metadata` given to `chat.postMessage`.
    pub metadata: Value,
    /// Files shared by it.
    pub file_ids: Vec<String>,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Mutex<Vec<Call>>,
    failures: Mutex<Vec<SlackFailure>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    uploads: Mutex<HashMap<String, usize>>,
    conversations: Mutex<HashMap<String, Vec<Posted>>>,
    next: Mutex<u64>,
    root: Mutex<String>,
}

/// A running fake Slack.
#[derive(Debug, Clone)]
pub struct FakeSlack {
    /// Its Web API base (`api_base_url`).
    pub api_base: String,
    /// Its root URL (files live under it).
    pub root: String,
    state: Arc<FakeState>,
    http: reqwest::Client,
}

/// A 503 as Slack's edge sends it: HTML, not the API's JSON.
fn edge_unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html")],
        "<html><body>Service Unavailable</body></html>",
    )
        .into_response()
}

fn app_error(error: &str) -> Response {
    axum::Json(json!({ "ok": false, "error": error })).into_response()
}

impl FakeSlack {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(FakeState::default());
        let app = axum::Router::new()
            .route("/api/{method}", axum::routing::post(api))
            .route("/upload/{file}", axum::routing::post(upload))
            .route("/files/{file}", axum::routing::get(download))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let root = format!("http://127.0.0.1:{port}");
        *state.root.lock().expect("root") = root.clone();
        Self {
            api_base: format!("{root}/api"),
            root,
            state,
            http: reqwest::Client::new(),
        }
    }

    /// The calls of `method` so far.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state
            .calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// The next posting calls fail as given, one failure per call.
    pub fn fail_next(&self, failures: &[SlackFailure]) {
        self.state
            .failures
            .lock()
            .expect("failures")
            .extend_from_slice(failures);
    }

    /// Stores a file a user shares; returns its `url_private`.
    pub fn add_file(&self, id: &str, bytes: &[u8]) -> String {
        self.state
            .files
            .lock()
            .expect("files")
            .insert(id.into(), bytes.to_vec());
        format!("{}/files/{id}", self.root)
    }

    /// What the conversation `channel` shows, oldest first: every message posted and every
    /// file shared there (each once, however often the connector retried).
    pub fn conversation(&self, channel: &str) -> Vec<Posted> {
        self.state
            .conversations
            .lock()
            .expect("conversations")
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// The `message` event Slack sends back for a message our bot posted (with `bot_id`): the
    /// connector must ignore it.
    pub fn echo_of(posted: &Posted, channel: &str) -> Value {
        json!({ "type": "message", "subtype": "bot_message", "channel": channel, "channel_type": "im",
            "text": posted.text, "ts": posted.ts, "event_ts": posted.ts, "bot_id": "BBOT1",
            "app_id": "A0FAKE", "user": BOT_USER })
    }

    /// Bytes uploaded through the external upload flow, by file id.
    pub fn uploads(&self) -> HashMap<String, usize> {
        self.state.uploads.lock().expect("uploads").clone()
    }

    /// `X-Slack-Request-Timestamp` and `X-Slack-Signature` for `body` at `timestamp`.
    pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> (String, String) {
        let ts = timestamp.to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (ts, format!("v0={hex}"))
    }

    /// An `event_callback` envelope around `event`.
    pub fn envelope(event_id: &str, event: Value) -> Value {
        json!({
            "token": "deprecated-verification-token", "team_id": "T0FAKE", "api_app_id": "A0FAKE",
            "event": event, "type": "event_callback", "event_id": event_id, "event_time": 1795384800,
            "authorizations": [{ "enterprise_id": null, "team_id": "T0FAKE", "user_id": BOT_USER,
                "is_bot": true, "is_enterprise_install": false }]
        })
    }

    /// A direct message from `user` in DM channel `channel`.
    pub fn dm(user: &str, channel: &str, text: &str, ts: &str) -> Value {
        json!({ "type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
            "event_ts": ts, "channel_type": "im", "client_msg_id": "7e3d2f0c-0000-4000-8000-000000000000" })
    }

    /// POSTs `body` to `url` signed with `secret` at `timestamp` (now when `None`), as Slack
    /// does; returns the status and body of the answer.
    pub async fn post_signed(
        &self,
        url: &str,
        secret: &str,
        content_type: &str,
        body: Vec<u8>,
        timestamp: Option<i64>,
    ) -> (u16, String) {
        self.deliver(url, secret, content_type, body, timestamp, None)
            .await
    }

    async fn deliver(
        &self,
        url: &str,
        secret: &str,
        content_type: &str,
        body: Vec<u8>,
        timestamp: Option<i64>,
        retry: Option<(u32, &str)>,
    ) -> (u16, String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let (ts, sig) = Self::signature(secret, timestamp.unwrap_or(now), &body);
        let mut request = self
            .http
            .post(url)
            .timeout(std::time::Duration::from_secs(3))
            .header("content-type", content_type)
            .header("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig);
        if let Some((num, reason)) = retry {
            request = request
                .header("x-slack-retry-num", num.to_string())
                .header("x-slack-retry-reason", reason);
        }
        match request.body(body).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                if r.headers().get("x-slack-no-retry").is_some() {
                    return (status, "no-retry".into());
                }
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// Sends an event callback to the connector's Events URL as Slack does: an answer later
    /// than 3 s or other than 2xx is a failure, redelivered up to three more times with
    /// `X-Slack-Retry-Num` / `X-Slack-Retry-Reason` and a fresh signature (the delays are
    /// shortened from Slack's minutes), unless the answer carried `X-Slack-No-Retry: 1`.
    /// Returns the last status (0 for no answer).
    pub async fn send_event(&self, url: &str, secret: &str, envelope: &Value) -> u16 {
        let body = serde_json::to_vec(envelope).expect("json");
        let mut status = 0;
        let mut retry = None;
        for attempt in 0..4u32 {
            let (got, text) = self
                .deliver(url, secret, "application/json", body.clone(), None, retry)
                .await;
            status = got;
            if (200..300).contains(&status) || text == "no-retry" {
                break;
            }
            let reason = if status == 0 {
                "http_timeout"
            } else {
                "http_error"
            };
            retry = Some((attempt + 1, reason));
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        status
    }

    /// Sends a `block_actions` press of a button with `value` to the Interactivity URL.
    pub async fn press(
        &self,
        url: &str,
        secret: &str,
        user: &str,
        channel: &str,
        value: &str,
    ) -> u16 {
        let payload = json!({
            "type": "block_actions",
            "team": { "id": "T0FAKE", "domain": "fake" },
            "user": { "id": user, "username": "consumer", "team_id": "T0FAKE" },
            "api_app_id": "A0FAKE",
            "container": { "type": "message", "message_ts": "1795384800.000100", "channel_id": channel, "is_ephemeral": false },
            "trigger_id": "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3",
            "channel": { "id": channel, "name": "directmessage" },
            "actions": [{ "action_id": "sb-0", "block_id": "b1", "type": "button", "value": value,
                "text": { "type": "plain_text", "text": "button" }, "action_ts": "1795384801.840180" }]
        });
        let body = serde_urlencoded_pair("payload", &payload.to_string());
        self.post_signed(
            url,
            secret,
            "application/x-www-form-urlencoded",
            body.into_bytes(),
            None,
        )
        .await
        .0
    }
}

fn serde_urlencoded_pair(key: &str, value: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    format!("{}={}", enc(key), enc(value))
}

fn form_params(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut params = json!({});
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            let bytes = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%'
                    && i + 2 < bytes.len()
                    && s.is_char_boundary(i + 3)
                    && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
                {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        };
        let (k, v) = (decode(k), decode(v));
        let parsed = if k == "blocks" || k == "files" || k == "metadata" {
            serde_json::from_str(&v).unwrap_or(Value::String(v))
        } else {
            Value::String(v)
        };
        params[k] = parsed;
    }
    params
}

async fn api(
    State(st): State<Arc<FakeState>>,
    Path(method): Path<String>,
    req: Request,
) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let body = axum::body::to_bytes(req.into_body(), 1 << 22)
        .await
        .unwrap_or_default();
    if auth.is_empty() {
        return app_error("not_authed");
    }
    if auth != format!("Bearer {FAKE_BOT_TOKEN}") {
        return app_error("invalid_auth");
    }
    let params = if is_json {
        serde_json::from_slice(&body).unwrap_or(json!({}))
    } else {
        form_params(&body)
    };
    st.calls.lock().expect("calls").push(Call {
        method: method.clone(),
        params: params.clone(),
    });
    let posting = method == "chat.postMessage" || method.starts_with("files.");
    let next = {
        let mut n = st.next.lock().expect("next");
        *n += 1;
        *n
    };
    let mut fail_after_applying = false;
    if posting {
        let failure = {
            let mut f = st.failures.lock().expect("failures");
            (!f.is_empty()).then(|| f.remove(0))
        };
        match failure {
            Some(SlackFailure::UnavailableAfterApplying) => fail_after_applying = true,
            Some(SlackFailure::RateLimited(n)) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, n.to_string())],
                    axum::Json(json!({ "ok": false, "error": "ratelimited" })),
                )
                    .into_response();
            }
            Some(SlackFailure::Unavailable) => return edge_unavailable(),
            Some(SlackFailure::App(error)) => return app_error(error),
            Some(SlackFailure::Pass) | None => {}
        }
    }
    let answer = answer(&st, &method, &params, next);
    if fail_after_applying && answer.status() == StatusCode::OK {
        return edge_unavailable();
    }
    answer
}

fn post(st: &FakeState, channel: &str, posted: Posted) {
    st.conversations
        .lock()
        .expect("conversations")
        .entry(channel.to_owned())
        .or_default()
        .push(posted);
}

/// Applies a Web API call (already authenticated) and answers it.
fn answer(st: &FakeState, method: &str, params: &Value, next: u64) -> Response {
    let s = |k: &str| params[k].as_str().unwrap_or("").to_owned();
    let ts = format!("1795384800.{next:06}");
    match method {
        "auth.test" => axum::Json(
            json!({ "ok": true, "user_id": BOT_USER, "bot_id": "BBOT1", "team_id": "T0FAKE" }),
        )
        .into_response(),
        "users.info" => {
            let user = s("user");
            if user.starts_with("UNKNOWN") {
                return app_error("user_not_found");
            }
            axum::Json(json!({ "ok": true, "user": { "id": user, "name": "ada", "real_name": "Ada Lovelace",
                "locale": "en-GB", "is_bot": false, "profile": { "display_name": "ada.l", "real_name": "Ada Lovelace",
                "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com" } } })).into_response()
        }
        "chat.postMessage" => {
            let channel = s("channel");
            if channel.is_empty() || channel == "CNOTFOUND" {
                return app_error("channel_not_found");
            }
            let text = s("text");
            if text.is_empty() && params["blocks"].is_null() {
                return app_error("no_text");
            }
            if text.chars().count() > 40_000 {
                return app_error("msg_too_long");
            }
            if params["blocks"].is_string() {
                return app_error("invalid_blocks");
            }
            if !params["metadata"].is_null()
                && (params["metadata"]["event_type"].as_str().is_none()
                    || !params["metadata"]["event_payload"].is_object())
            {
                return app_error("invalid_metadata_format");
            }
            post(
                st,
                &channel,
                Posted {
                    ts: ts.clone(),
                    text: text.clone(),
                    blocks: params["blocks"].clone(),
                    metadata: params["metadata"].clone(),
                    file_ids: Vec::new(),
                },
            );
            axum::Json(json!({ "ok": true, "channel": channel, "ts": ts,
                "message": { "type": "message", "subtype": "bot_message", "text": text, "ts": ts, "bot_id": "BBOT1" } }))
                .into_response()
        }
        "files.getUploadURLExternal" => {
            let length: usize = s("length").parse().unwrap_or(0);
            if s("filename").is_empty() || length == 0 {
                return app_error("missing_argument");
            }
            let id = format!("F{next:08}");
            let root = st.root.lock().expect("root").clone();
            axum::Json(
                json!({ "ok": true, "upload_url": format!("{root}/upload/{id}"), "file_id": id }),
            )
            .into_response()
        }
        "files.completeUploadExternal" => {
            let files = params["files"].as_array().cloned().unwrap_or_default();
            let uploads = st.uploads.lock().expect("uploads").clone();
            if files.is_empty()
                || files
                    .iter()
                    .any(|f| !uploads.contains_key(f["id"].as_str().unwrap_or("")))
            {
                return app_error("invalid_arguments");
            }
            if let Some(channel) = params["channel_id"].as_str() {
                post(
                    st,
                    channel,
                    Posted {
                        ts,
                        text: s("initial_comment"),
                        blocks: Value::Null,
                        metadata: Value::Null,
                        file_ids: files
                            .iter()
                            .filter_map(|f| f["id"].as_str().map(str::to_owned))
                            .collect(),
                    },
                );
            }
            axum::Json(json!({ "ok": true, "files": files })).into_response()
        }
        "conversations.history" => {
            let Some(messages) = st
                .conversations
                .lock()
                .expect("conversations")
                .get(&s("channel"))
                .cloned()
            else {
                return app_error("channel_not_found");
            };
            let limit: usize = s("limit").parse().unwrap_or(100).clamp(1, 999);
            let with_metadata = s("include_all_metadata") == "true";
            let messages: Vec<Value> = messages
                .iter()
                .rev()
                .take(limit)
                .map(|m| {
                    let mut v = json!({ "type": "message", "ts": m.ts, "text": m.text,
                        "bot_id": "BBOT1", "app_id": "A0FAKE", "user": BOT_USER });
                    if with_metadata && !m.metadata.is_null() {
                        v["metadata"] = m.metadata.clone();
                    }
                    if !m.file_ids.is_empty() {
                        v["subtype"] = json!("file_share");
                        v["files"] = m.file_ids.iter().map(|id| json!({ "id": id })).collect();
                    }
                    v
                })
                .collect();
            axum::Json(json!({ "ok": true, "messages": messages, "has_more": false }))
                .into_response()
        }
        _ => app_error("unknown_method"),
    }
}

async fn upload(
    State(st): State<Arc<FakeState>>,
    Path(file): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    st.uploads.lock().expect("uploads").insert(file, body.len());
    (StatusCode::OK, format!("OK - {}", body.len())).into_response()
}

async fn download(
    State(st): State<Arc<FakeState>>,
    Path(file): Path<String>,
    req: Request,
) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {FAKE_BOT_TOKEN}") {
        // Slack answers a login page, not the file.
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>sign in</html>",
        )
            .into_response();
    }
    match st.files.lock().expect("files").get(&file) {
        Some(bytes) => (StatusCode::OK, bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
