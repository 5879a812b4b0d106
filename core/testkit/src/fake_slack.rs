//! A hand-written fake of Slack that enforces Slack's published rules (docs/protocol/channels.md §1.11,
//! docs.slack.dev/apis/web-api and the method reference pages), not our channel's habits.
//!
//! Web API (`{api_base}/{method}`, POST, form-encoded or JSON):
//! - Authentication as Slack does it: `Authorization: Bearer` (a JSON body must use it; a form
//!   body may carry `token` instead), `not_authed` without a token, `invalid_auth` for an
//!   unknown one, `token_expired` for a rotating token past its 12 hours,
//!   `not_allowed_token_type` for an app-level token on a bot method and the reverse.
//! - Scopes: every method checks the scope Slack requires and answers
//!   `missing_scope` with `needed`/`provided`; without `users:read.email` `users.info` has no
//!   e-mail; without `files:read` a `url_private` download is Slack's HTML sign-in page (HTTP
//!   200), never the file.
//! - Envelopes: HTTP 200 with `{"ok":false,"error":…}` for application errors, HTTP 429
//!   `ratelimited` with `Retry-After`; injected failures (`fail_next`).
//! - `conversations.history` with the limits non-Marketplace apps get since 2025-05-29: at most
//!   15 messages a request and one request a minute (429 with `Retry-After` beyond it), with
//!   `oldest`/`latest` (exclusive), `cursor` paging, newest first.
//! - Files: `files.getUploadURLExternal` → upload URL → `files.completeUploadExternal`,
//!   `files.info`, shared files with Slack Connect's `check_file_info`.
//! - Token rotation: `oauth.v2.access` with `grant_type=refresh_token` gives a new pair and
//!   revokes the refresh token used.
//! - Socket Mode: `apps.connections.open` with the app-level token hands out single-use URLs
//!   of the [`SocketServer`].
//!
//! Inbound: signed Events API and interactivity requests sent to the connector as Slack signs
//! them, redelivered like Slack with `X-Slack-Retry-Num` until acknowledged; and, once told
//! where ([`FakeSlack::echo_to_events`], [`FakeSlack::echo_to_socket`]), the `message` event
//! Slack sends the app for each of its own posts in a DM (with `bot_id`, `app_id` and the bot
//! user, without the post's metadata: the Events API does not promise it).
//!
//! Posted messages (with their `metadata`) and shared files are kept per conversation, so a
//! test can tell what a consumer really sees.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub use crate::fake_slack_socket::SocketServer;

/// The bot token the fake accepts.
pub const FAKE_BOT_TOKEN: &str = "xoxb-1111-2222-fakeSlackBotToken";
/// The app-level token (Socket Mode) the fake accepts.
pub const FAKE_APP_TOKEN: &str = "xapp-1-A0FAKE-3333-4444fakeappleveltoken";
/// The app's Client ID (token rotation).
pub const FAKE_CLIENT_ID: &str = "4123121235.9872358710";
/// The app's Client Secret (token rotation).
pub const FAKE_CLIENT_SECRET: &str = "e1b9e11dfcd19c1982d5de12921e17e8c";
/// The bot user the fake's workspace has.
pub const BOT_USER: &str = "UBOTUSER1";
/// The bot id of our app's bot.
pub const BOT_ID: &str = "BBOT1";
/// Our app's id.
pub const APP_ID: &str = "A0FAKE";
/// The fake's workspace.
pub const TEAM_ID: &str = "T0FAKE";
/// Most messages `conversations.history` returns to a non-Marketplace app.
pub const HISTORY_MAX: usize = 15;
/// The scopes the fake's bot token has unless told otherwise.
pub const DEFAULT_SCOPES: &[&str] = &[
    "chat:write",
    "im:history",
    "users:read",
    "users:read.email",
    "files:read",
    "files:write",
    "app_mentions:read",
    "channels:history",
    "groups:history",
];

/// One Web API call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method (`chat.postMessage`).
    pub method: String,
    /// Its parameters; `blocks`, `files` and `metadata` parsed from their JSON strings.
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

/// A file users share, as the fake's workspace holds it.
#[derive(Debug, Clone)]
struct StoredFile {
    bytes: Vec<u8>,
    /// Served with this `Content-Type`.
    mime: String,
    /// `files.info` refuses it with `access_denied` (a Slack Connect file whose organization
    /// does not share it).
    connect_denied: bool,
}

/// Where the fake sends the echo of each post of our bot in a DM.
#[derive(Debug, Clone)]
enum EchoTarget {
    None,
    Events { url: String, secret: String },
    Socket,
}

#[derive(Debug)]
struct Tokens {
    /// Valid bot tokens and when each expires.
    bot: HashMap<String, Option<Instant>>,
    /// The refresh token that works now (token rotation).
    refresh: Option<String>,
    issued: u64,
}

#[derive(Debug)]
struct FakeState {
    calls: Mutex<Vec<Call>>,
    failures: Mutex<Vec<SlackFailure>>,
    files: Mutex<HashMap<String, StoredFile>>,
    uploads: Mutex<HashMap<String, usize>>,
    conversations: Mutex<HashMap<String, Vec<Posted>>>,
    next: Mutex<u64>,
    root: Mutex<String>,
    tokens: Mutex<Tokens>,
    scopes: Mutex<HashSet<String>>,
    history_calls: Mutex<Vec<Instant>>,
    slow_users_info: Mutex<Option<Duration>>,
    failing_downloads: Mutex<u32>,
    echo: Mutex<EchoTarget>,
    socket: SocketServer,
    http: reqwest::Client,
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

fn ok(mut body: Value) -> Response {
    body["ok"] = json!(true);
    axum::Json(body).into_response()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Slack's sign-in page, which Slack serves (HTTP 200) for a file request it does not
/// authorise.
fn sign_in_page() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to your workspace</body></html>",
    )
        .into_response()
}

impl FakeSlack {
    /// Starts the fake (and its Socket Mode server) on free loopback ports.
    pub async fn start() -> Self {
        let socket = SocketServer::start(APP_ID).await;
        let mut bot = HashMap::new();
        bot.insert(FAKE_BOT_TOKEN.to_owned(), None);
        let state = Arc::new(FakeState {
            calls: Mutex::default(),
            failures: Mutex::default(),
            files: Mutex::default(),
            uploads: Mutex::default(),
            conversations: Mutex::default(),
            next: Mutex::default(),
            root: Mutex::default(),
            tokens: Mutex::new(Tokens {
                bot,
                refresh: None,
                issued: 0,
            }),
            scopes: Mutex::new(DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect()),
            history_calls: Mutex::default(),
            slow_users_info: Mutex::default(),
            failing_downloads: Mutex::default(),
            echo: Mutex::new(EchoTarget::None),
            socket,
            http: reqwest::Client::new(),
        });
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

    /// The Socket Mode server behind `apps.connections.open`.
    pub fn socket(&self) -> &SocketServer {
        &self.state.socket
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

    /// The bot token has exactly these scopes from now on.
    pub fn set_scopes(&self, scopes: &[&str]) {
        *self.state.scopes.lock().expect("scopes") =
            scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// `users.info` answers only after `delay` (a slow Slack).
    pub fn slow_users_info(&self, delay: Duration) {
        *self.state.slow_users_info.lock().expect("slow") = Some(delay);
    }

    /// The next `n` file downloads meet a 503 from Slack's edge.
    pub fn fail_next_downloads(&self, n: u32) {
        *self.state.failing_downloads.lock().expect("downloads") = n;
    }

    /// Turns token rotation on: the plain bot token stops working and a rotating pair
    /// (`xoxe.xoxb-…`, `xoxe-1-…`) is issued, as the OAuth flow of an app with rotation gives
    /// it. Returns (access token, refresh token).
    pub fn enable_rotation(&self) -> (String, String) {
        let mut tokens = self.state.tokens.lock().expect("tokens");
        tokens.bot.clear();
        issue_pair(&mut tokens)
    }

    /// Every rotating bot token issued so far expires now.
    pub fn expire_bot_tokens(&self) {
        let mut tokens = self.state.tokens.lock().expect("tokens");
        let now = Instant::now();
        for expiry in tokens.bot.values_mut() {
            *expiry = Some(now);
        }
    }

    /// Sends the echo of every post of our bot in a DM to the connector's Events URL, signed
    /// with `secret`.
    pub fn echo_to_events(&self, url: &str, secret: &str) {
        *self.state.echo.lock().expect("echo") = EchoTarget::Events {
            url: url.to_owned(),
            secret: secret.to_owned(),
        };
    }

    /// Sends the echo of every post of our bot in a DM over Socket Mode.
    pub fn echo_to_socket(&self) {
        *self.state.echo.lock().expect("echo") = EchoTarget::Socket;
    }

    /// Stores a file a user shares; returns its `url_private`.
    pub fn add_file(&self, id: &str, bytes: &[u8]) -> String {
        self.add_file_as(id, bytes, "application/octet-stream")
    }

    /// Stores a file a user shares, served with `mime`; returns its `url_private`.
    pub fn add_file_as(&self, id: &str, bytes: &[u8], mime: &str) -> String {
        self.state.files.lock().expect("files").insert(
            id.into(),
            StoredFile {
                bytes: bytes.to_vec(),
                mime: mime.to_owned(),
                connect_denied: false,
            },
        );
        format!("{}/files/{id}", self.root)
    }

    /// Stores a Slack Connect file that `files.info` refuses (`access_denied`).
    pub fn add_denied_connect_file(&self, id: &str) {
        self.state.files.lock().expect("files").insert(
            id.into(),
            StoredFile {
                bytes: Vec::new(),
                mime: "application/pdf".into(),
                connect_denied: true,
            },
        );
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

    /// The `message` event Slack sends the app for a message our bot posted in DM `channel`.
    pub fn echo_of(posted: &Posted, channel: &str) -> Value {
        echo_event(posted, channel)
    }

    /// Bytes uploaded through the external upload flow, by file id.
    pub fn uploads(&self) -> HashMap<String, usize> {
        self.state.uploads.lock().expect("uploads").clone()
    }

    /// `X-Slack-Request-Timestamp` and `X-Slack-Signature` for `body` at `timestamp`.
    pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> (String, String) {
        sign(secret, timestamp, body)
    }

    /// An `event_callback` envelope around `event`.
    pub fn envelope(event_id: &str, event: Value) -> Value {
        envelope(event_id, event)
    }

    /// A direct message from `user` in DM channel `channel`.
    pub fn dm(user: &str, channel: &str, text: &str, ts: &str) -> Value {
        json!({ "type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
            "event_ts": ts, "channel_type": "im", "team": TEAM_ID,
            "client_msg_id": "7e3d2f0c-0000-4000-8000-000000000000" })
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
        deliver(&self.http, url, secret, content_type, body, timestamp, None).await
    }

    /// Sends one delivery of an event callback as a retry of an earlier one (headers
    /// `X-Slack-Retry-Num: num`, `X-Slack-Retry-Reason: reason`), with Slack's 3-second
    /// patience. Returns the status (0 for no answer in time).
    pub async fn send_retry(
        &self,
        url: &str,
        secret: &str,
        envelope: &Value,
        num: u32,
        reason: &str,
    ) -> u16 {
        let body = serde_json::to_vec(envelope).expect("json");
        deliver(
            &self.http,
            url,
            secret,
            "application/json",
            body,
            None,
            Some((num, reason)),
        )
        .await
        .0
    }

    /// Sends an event callback to the connector's Events URL as Slack does: an answer later
    /// than 3 s or other than 2xx is a failure, redelivered up to three more times with
    /// `X-Slack-Retry-Num` / `X-Slack-Retry-Reason` and a fresh signature (the delays are
    /// shortened from Slack's minutes), unless the answer carried `X-Slack-No-Retry: 1`.
    /// Returns the last status (0 for no answer).
    pub async fn send_event(&self, url: &str, secret: &str, envelope: &Value) -> u16 {
        send_event(&self.http, url, secret, envelope).await
    }

    /// Like [`FakeSlack::send_event`], and returns the status of each delivery made.
    pub async fn send_event_traced(&self, url: &str, secret: &str, envelope: &Value) -> Vec<u16> {
        send_event_traced(&self.http, url, secret, envelope).await
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
        let body =
            serde_urlencoded_pair("payload", &block_actions(user, channel, value).to_string());
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

    /// The `block_actions` payload of a press of a button with `value` (for Socket Mode's
    /// `interactive` envelopes, which carry it as a JSON object).
    pub fn block_actions(user: &str, channel: &str, value: &str) -> Value {
        block_actions(user, channel, value)
    }
}

fn block_actions(user: &str, channel: &str, value: &str) -> Value {
    json!({
        "type": "block_actions",
        "team": { "id": TEAM_ID, "domain": "fake" },
        "user": { "id": user, "username": "consumer", "team_id": TEAM_ID },
        "api_app_id": APP_ID,
        "container": { "type": "message", "message_ts": "1795384800.000100", "channel_id": channel, "is_ephemeral": false },
        "trigger_id": "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3",
        "channel": { "id": channel, "name": "directmessage" },
        "actions": [{ "action_id": "sb-0", "block_id": "b1", "type": "button", "value": value,
            "text": { "type": "plain_text", "text": "button" }, "action_ts": "1795384801.840180" }]
    })
}

fn envelope(event_id: &str, event: Value) -> Value {
    json!({
        "token": "deprecated-verification-token", "team_id": TEAM_ID, "api_app_id": APP_ID,
        "event": event, "type": "event_callback", "event_id": event_id, "event_time": 1795384800,
        "authorizations": [{ "enterprise_id": null, "team_id": TEAM_ID, "user_id": BOT_USER,
            "is_bot": true, "is_enterprise_install": false }],
        "is_ext_shared_channel": false,
        "event_context": "4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMEZBS0UifQ"
    })
}

/// Our bot's post as the `message` event Slack sends the app: `bot_id`, `app_id`, the bot
/// user, `bot_profile`; for a file share `subtype: file_share` with the files.
fn echo_event(posted: &Posted, channel: &str) -> Value {
    let mut event = json!({ "type": "message", "channel": channel, "channel_type": "im",
        "text": posted.text, "ts": posted.ts, "event_ts": posted.ts, "bot_id": BOT_ID,
        "app_id": APP_ID, "user": BOT_USER, "team": TEAM_ID,
        "bot_profile": { "id": BOT_ID, "app_id": APP_ID, "name": "switchboard", "team_id": TEAM_ID } });
    if !posted.file_ids.is_empty() {
        event["subtype"] = json!("file_share");
        event["files"] = posted
            .file_ids
            .iter()
            .map(|id| json!({ "id": id, "mode": "hosted", "file_access": "visible" }))
            .collect();
    }
    event
}

fn sign(secret: &str, timestamp: i64, body: &[u8]) -> (String, String) {
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

async fn deliver(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    content_type: &str,
    body: Vec<u8>,
    timestamp: Option<i64>,
    retry: Option<(u32, &str)>,
) -> (u16, String) {
    let (ts, sig) = sign(secret, timestamp.unwrap_or_else(now_secs), &body);
    let mut request = http
        .post(url)
        .timeout(Duration::from_secs(3))
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

async fn send_event(http: &reqwest::Client, url: &str, secret: &str, envelope: &Value) -> u16 {
    send_event_traced(http, url, secret, envelope)
        .await
        .last()
        .copied()
        .unwrap_or(0)
}

async fn send_event_traced(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    envelope: &Value,
) -> Vec<u16> {
    let body = serde_json::to_vec(envelope).expect("json");
    let mut statuses = Vec::new();
    let mut retry = None;
    for attempt in 0..4u32 {
        let (got, text) = deliver(
            http,
            url,
            secret,
            "application/json",
            body.clone(),
            None,
            retry,
        )
        .await;
        statuses.push(got);
        if (200..300).contains(&got) || text == "no-retry" {
            break;
        }
        let reason = if got == 0 {
            "http_timeout"
        } else {
            "http_error"
        };
        retry = Some((attempt + 1, reason));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    statuses
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

/// A new rotating pair; the previous refresh token stops working.
fn issue_pair(tokens: &mut Tokens) -> (String, String) {
    tokens.issued += 1;
    let n = tokens.issued;
    let access = format!("xoxe.xoxb-1-MS0yLTEx{n:04}-fakeRotatingBotToken");
    let refresh = format!("xoxe-1-My0xLTEx{n:04}-fakeRefreshToken");
    tokens.bot.insert(
        access.clone(),
        Some(Instant::now() + Duration::from_secs(43_200)),
    );
    tokens.refresh = Some(refresh.clone());
    (access, refresh)
}

/// The scope a method needs (docs.slack.dev/reference/methods/*), `None` for methods any
/// token may call. `conversations.history` needs the history scope of the channel's type.
fn needed_scope(method: &str, params: &Value) -> Option<&'static str> {
    Some(match method {
        "chat.postMessage" => "chat:write",
        "users.info" => "users:read",
        "files.getUploadURLExternal" | "files.completeUploadExternal" => "files:write",
        "files.info" => "files:read",
        "conversations.history" => match params["channel"].as_str().unwrap_or("").chars().next() {
            Some('D') => "im:history",
            Some('G') => "groups:history",
            _ => "channels:history",
        },
        _ => return None,
    })
}

async fn api(
    State(st): State<Arc<FakeState>>,
    Path(method): Path<String>,
    req: Request,
) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let is_json = content_type.starts_with("application/json");
    let body = axum::body::to_bytes(req.into_body(), 1 << 22)
        .await
        .unwrap_or_default();
    if !is_json
        && !content_type.starts_with("application/x-www-form-urlencoded")
        && !body.is_empty()
    {
        return app_error("invalid_form_data");
    }
    let params = if is_json {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return app_error("invalid_json"),
        }
    } else {
        form_params(&body)
    };
    // JSON bodies take the token only in the header (docs.slack.dev/apis/web-api: "JSON-encoded
    // bodies"); form bodies may carry it as `token` too, except for Socket Mode's method.
    let token = bearer.or_else(|| {
        (!is_json && method != "apps.connections.open")
            .then(|| params["token"].as_str().map(str::to_owned))
            .flatten()
    });
    st.calls.lock().expect("calls").push(Call {
        method: method.clone(),
        params: params.clone(),
    });
    if method == "oauth.v2.access" {
        return refresh(&st, &params);
    }
    let Some(token) = token else {
        if method == "apps.connections.open" && params["token"].is_string() {
            return app_error("invalid_auth");
        }
        return app_error("not_authed");
    };
    if method == "apps.connections.open" {
        if token.starts_with("xoxb-") || token.starts_with("xoxe.") || token.starts_with("xoxp-") {
            return app_error("not_allowed_token_type");
        }
        if token != FAKE_APP_TOKEN {
            return app_error("invalid_auth");
        }
        return ok(json!({ "url": st.socket.issue_url() }));
    }
    if token.starts_with("xapp-") {
        return app_error("not_allowed_token_type");
    }
    match st.tokens.lock().expect("tokens").bot.get(&token) {
        None => return app_error("invalid_auth"),
        Some(Some(expiry)) if Instant::now() >= *expiry => return app_error("token_expired"),
        Some(_) => {}
    }
    if let Some(scope) = needed_scope(&method, &params) {
        let scopes = st.scopes.lock().expect("scopes");
        if !scopes.contains(scope) {
            let mut provided: Vec<&String> = scopes.iter().collect();
            provided.sort();
            let provided: Vec<&str> = provided.iter().map(|s| s.as_str()).collect();
            return axum::Json(json!({ "ok": false, "error": "missing_scope",
                "needed": scope, "provided": provided.join(",") }))
            .into_response();
        }
    }
    let posting = method == "chat.postMessage" || method.starts_with("files.");
    let next = {
        let mut n = st.next.lock().expect("next");
        *n += 1;
        *n
    };
    let mut fail_after_applying = false;
    if posting && method != "files.info" {
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
    if method == "users.info" {
        let delay = *st.slow_users_info.lock().expect("slow");
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }
    let answer = answer(&st, &method, &params, next);
    if fail_after_applying && answer.status() == StatusCode::OK {
        return edge_unavailable();
    }
    answer
}

/// `oauth.v2.access` with `grant_type=refresh_token` (docs.slack.dev/authentication/using-token-rotation).
fn refresh(st: &FakeState, params: &Value) -> Response {
    let s = |k: &str| params[k].as_str().unwrap_or("");
    if s("client_id") != FAKE_CLIENT_ID {
        return app_error("invalid_client_id");
    }
    if s("client_secret") != FAKE_CLIENT_SECRET {
        return app_error("bad_client_secret");
    }
    if s("grant_type") != "refresh_token" {
        return app_error("invalid_grant_type");
    }
    let mut tokens = st.tokens.lock().expect("tokens");
    if tokens.refresh.as_deref() != Some(s("refresh_token")) {
        return app_error("invalid_refresh_token");
    }
    let (access, refresh) = issue_pair(&mut tokens);
    ok(
        json!({ "app_id": APP_ID, "authed_user": { "id": "U0INSTALLER" }, "scope": DEFAULT_SCOPES.join(","),
        "token_type": "bot", "access_token": access, "bot_user_id": BOT_USER,
        "refresh_token": refresh, "expires_in": 43200,
        "team": { "id": TEAM_ID, "name": "Fake" }, "enterprise": null, "is_enterprise_install": false }),
    )
}

fn post(st: &Arc<FakeState>, channel: &str, posted: Posted) {
    st.conversations
        .lock()
        .expect("conversations")
        .entry(channel.to_owned())
        .or_default()
        .push(posted.clone());
    if !channel.starts_with('D') {
        return;
    }
    let target = st.echo.lock().expect("echo").clone();
    let event = echo_event(&posted, channel);
    let event_id = format!("Ev0ECHO{}", posted.ts.replace('.', ""));
    match target {
        EchoTarget::None => {}
        EchoTarget::Socket => {
            st.socket
                .send_envelope("events_api", envelope(&event_id, event));
        }
        EchoTarget::Events { url, secret } => {
            let http = st.http.clone();
            tokio::spawn(async move {
                send_event(&http, &url, &secret, &envelope(&event_id, event)).await;
            });
        }
    }
}

/// `conversations.history` for a non-Marketplace app: at most [`HISTORY_MAX`] messages, one
/// request a minute, `oldest`/`latest` exclusive, newest first, with a cursor.
fn history(st: &FakeState, params: &Value) -> Response {
    let s = |k: &str| params[k].as_str().unwrap_or("").to_owned();
    {
        let mut calls = st.history_calls.lock().expect("history");
        let now = Instant::now();
        calls.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if let Some(first) = calls.first() {
            let wait = 60u64
                .saturating_sub(now.duration_since(*first).as_secs())
                .max(1);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.to_string())],
                axum::Json(json!({ "ok": false, "error": "ratelimited" })),
            )
                .into_response();
        }
        calls.push(now);
    }
    let Some(messages) = st
        .conversations
        .lock()
        .expect("conversations")
        .get(&s("channel"))
        .cloned()
    else {
        return app_error("channel_not_found");
    };
    // A `ts` is "seconds.microseconds"; anything else is refused as Slack does.
    let valid_ts = |t: &str| {
        let (secs, micros) = t.split_once('.').unwrap_or((t, "0"));
        !secs.is_empty()
            && secs.chars().all(|c| c.is_ascii_digit())
            && micros.chars().all(|c| c.is_ascii_digit())
    };
    for (key, error) in [
        ("oldest", "invalid_ts_oldest"),
        ("latest", "invalid_ts_latest"),
    ] {
        if !s(key).is_empty() && !valid_ts(&s(key)) {
            return app_error(error);
        }
    }
    let ts_num = |t: &str| t.parse::<f64>().unwrap_or(0.0);
    let oldest = (!s("oldest").is_empty()).then(|| ts_num(&s("oldest")));
    let latest = (!s("latest").is_empty()).then(|| ts_num(&s("latest")));
    let inclusive = s("inclusive") == "true" || s("inclusive") == "1";
    let limit: usize = s("limit")
        .parse()
        .unwrap_or(HISTORY_MAX)
        .clamp(1, HISTORY_MAX);
    let skip: usize = s("cursor")
        .strip_prefix("bmV4dF90czo")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let with_metadata = s("include_all_metadata") == "true";
    let in_window: Vec<&Posted> = messages
        .iter()
        .rev()
        .filter(|m| {
            let t = ts_num(&m.ts);
            oldest.is_none_or(|o| if inclusive { t >= o } else { t > o })
                && latest.is_none_or(|l| if inclusive { t <= l } else { t < l })
        })
        .collect();
    let page: Vec<Value> = in_window
        .iter()
        .skip(skip)
        .take(limit)
        .map(|m| {
            let mut v = json!({ "type": "message", "ts": m.ts, "text": m.text,
                "bot_id": BOT_ID, "app_id": APP_ID, "user": BOT_USER });
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
    let more = in_window.len() > skip + limit;
    let cursor = if more {
        format!("bmV4dF90czo{}", skip + limit)
    } else {
        String::new()
    };
    ok(json!({ "messages": page, "has_more": more, "pin_count": 0,
        "response_metadata": { "next_cursor": cursor } }))
}

/// Applies a Web API call (already authenticated and authorised) and answers it.
fn answer(st: &Arc<FakeState>, method: &str, params: &Value, next: u64) -> Response {
    let s = |k: &str| params[k].as_str().unwrap_or("").to_owned();
    let ts = format!("{}.{next:06}", now_secs());
    match method {
        "auth.test" => ok(json!({ "url": "https://fake.slack.com/", "team": "Fake",
            "user": "switchboard", "team_id": TEAM_ID, "user_id": BOT_USER, "bot_id": BOT_ID,
            "is_enterprise_install": false })),
        "users.info" => {
            let user = s("user");
            if user.is_empty() {
                return app_error("invalid_arguments");
            }
            if user.starts_with("UNKNOWN") {
                return app_error("user_not_found");
            }
            let mut profile = json!({ "display_name": "ada.l", "real_name": "Ada Lovelace",
                "first_name": "Ada", "last_name": "Lovelace" });
            if st
                .scopes
                .lock()
                .expect("scopes")
                .contains("users:read.email")
            {
                profile["email"] = json!("ada@example.com");
            }
            let mut u = json!({ "id": user, "team_id": TEAM_ID, "name": "ada", "real_name": "Ada Lovelace",
                "is_bot": false, "profile": profile });
            if s("include_locale") == "true" {
                u["locale"] = json!("en-GB");
            }
            ok(json!({ "user": u }))
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
            if params["blocks"].is_string()
                || params["blocks"].as_array().is_some_and(|b| b.len() > 50)
            {
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
            ok(json!({ "channel": channel, "ts": ts,
                "message": { "type": "message", "text": text, "ts": ts, "bot_id": BOT_ID,
                    "app_id": APP_ID, "user": BOT_USER } }))
        }
        "files.getUploadURLExternal" => {
            let length: usize = s("length").parse().unwrap_or(0);
            if s("filename").is_empty() || length == 0 {
                return app_error("missing_argument");
            }
            if s("alt_txt").chars().count() > 1000 {
                return app_error("alt_txt_too_large");
            }
            let id = format!("F{next:08}");
            let root = st.root.lock().expect("root").clone();
            ok(json!({ "upload_url": format!("{root}/upload/{id}"), "file_id": id }))
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
            ok(json!({ "files": files }))
        }
        "files.info" => {
            let id = s("file");
            let Some(file) = st.files.lock().expect("files").get(&id).cloned() else {
                return app_error("file_not_found");
            };
            if file.connect_denied {
                return app_error("access_denied");
            }
            let root = st.root.lock().expect("root").clone();
            let url = format!("{root}/files/{id}");
            ok(
                json!({ "file": { "id": id, "name": format!("{id}.bin"), "mimetype": file.mime,
                "size": file.bytes.len(), "mode": "hosted", "file_access": "visible",
                "url_private": url, "url_private_download": url } }),
            )
        }
        "conversations.history" => history(st, params),
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
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let valid = matches!(
        st.tokens.lock().expect("tokens").bot.get(&token),
        Some(expiry) if expiry.is_none_or(|e| Instant::now() < e)
    );
    {
        let mut failing = st.failing_downloads.lock().expect("downloads");
        if *failing > 0 {
            *failing -= 1;
            return edge_unavailable();
        }
    }
    // Slack answers a request it does not authorise with its sign-in page, status 200.
    if !valid || !st.scopes.lock().expect("scopes").contains("files:read") {
        return sign_in_page();
    }
    match st.files.lock().expect("files").get(&file) {
        Some(f) if !f.connect_denied => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, f.mime.clone())],
            f.bytes.clone(),
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
