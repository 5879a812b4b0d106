//! A hand-written fake of the Telegram Bot API that refuses what the real server refuses, with
//! the real server's status codes and error texts (docs/protocol/channels.md §2.7; the server is
//! `tdlib/telegram-bot-api`, whose `Client.cpp`, `ClientManager.cpp`, `Query.cpp`,
//! `HttpConnection.cpp` and `WebhookActor.cpp` are cited where a rule comes from; the method
//! and field rules are the Bot API page, https://core.telegram.org/bots/api).
//!
//! - `/bot<token>/<method>` (method names in any case) with query, form, JSON or multipart
//!   parameters; `{"ok":…}` envelopes whose HTTP status is the `error_code`; 429s carry both
//!   `parameters.retry_after` and a `Retry-After` header.
//! - Chats exist once their user wrote to the bot (a pushed update) or a test opened them:
//!   sending anywhere else is `400 Bad Request: chat not found`, to a user who blocked the bot
//!   `403`, to an upgraded group `400` with `parameters.migrate_to_chat_id`.
//! - `sendMessage`, `sendPhoto`, `sendDocument` validate text, captions, keyboards and files:
//!   a photo or document sent by URL is fetched as Telegram fetches it (only loopback URLs
//!   answer here, the fake's own [`FakeTelegram::host`] among them; anything else cannot be
//!   reached), an uploaded photo must be an image within Telegram's size and dimension limits.
//! - `setWebhook` (once a second at most, secret rules, HTTPS on the allowed ports except for a
//!   loopback URL, which stands for the operator's TLS proxy in tests), `deleteWebhook`,
//!   `getWebhookInfo`, and a pusher that POSTs each update with the secret header and retries
//!   until a 2xx, honouring the `Retry-After` of the answer.
//! - `getUpdates` long polling with offset confirmation, `limit`, the 50 s clamp, 409 while a
//!   webhook is set and 409 for the earlier of two concurrent pollers; `allowed_updates`
//!   filters what either transport hands on.
//! - `getFile` (20 MB limit) and `/file/bot<token>/<path>`, `answerCallbackQuery` (once, for a
//!   query Telegram sent), `sendChatAction`, `getMe`.
//! - Failure injection for what cannot be provoked by the request: floods, a proxy's HTML 502,
//!   a one-off block, and an answer lost after the message was sent.

// The fake's checks return the HTTP answer Telegram would give as their error: it is what
// the handler answers, at once, on a test's loopback, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod media;
mod methods;
mod params;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";

/// The bot token the fake accepts.
pub const FAKE_TOKEN: &str = TOKEN;

/// The bot's own user id (the digits before the token's colon).
pub const BOT_ID: i64 = 123_456;

/// One call the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method, lower-case.
    pub method: String,
    /// Its parameters (JSON as sent; query, form and multipart text fields parsed as JSON
    /// where they are JSON, else strings).
    pub params: Value,
    /// Bytes of an uploaded file, if any.
    pub upload: Option<usize>,
}

/// A failure to inject into the next send call (`send*` but `sendChatAction`).
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// 429 `Too Many Requests: retry after N`, with `parameters.retry_after` and `Retry-After`.
    Flood(u64),
    /// A proxy in front of the API answers 502 with HTML.
    BadGateway,
    /// 403 `Forbidden: bot was blocked by the user`, this once (see [`FakeTelegram::block`]
    /// for a user who stays blocked).
    Blocked,
    /// 400 `Bad Request: group chat was upgraded to a supergroup chat` with
    /// `parameters.migrate_to_chat_id`.
    Migrated(i64),
    /// The message is sent, but the answer comes only after this long: a client with a shorter
    /// timeout never learns that it went.
    LostAnswer(Duration),
    /// No failure: this call goes through as usual (to make a later one fail).
    Nothing,
}

/// A chat the bot can write to.
#[derive(Debug, Default)]
struct Chat {
    /// `private`, `group`, `supergroup`.
    kind: String,
    /// The user blocked the bot: every send is 403.
    blocked: bool,
    /// The messages the bot sent there, as the `Message` objects it was answered.
    messages: Vec<Value>,
}

/// The webhook as set.
#[derive(Debug, Clone)]
struct Webhook {
    url: String,
    secret: String,
    max_connections: u32,
}

/// A file the bot can `getFile` and download.
#[derive(Debug, Clone)]
struct StoredFile {
    path: String,
    bytes: Vec<u8>,
    /// The size Telegram knows (may exceed `bytes` for a file too big to serve).
    size: u64,
}

/// Everything the fake holds, behind one lock never held across an await.
#[derive(Debug, Default)]
struct Inner {
    calls: Vec<Call>,
    token_revoked: bool,
    chats: HashMap<i64, Chat>,
    migrated: HashMap<i64, i64>,
    next_message: i64,
    updates: Vec<Value>,
    next_update: i64,
    webhook: Option<Webhook>,
    /// `None`: the default set (everything but `chat_member`, `message_reaction`,
    /// `message_reaction_count`).
    allowed_updates: Option<Vec<String>>,
    last_webhook_error: Option<(u64, String)>,
    next_set_webhook: Option<Instant>,
    files: HashMap<String, StoredFile>,
    hosted: HashMap<String, (String, Vec<u8>)>,
    /// Callback queries Telegram sent: when, and whether they were answered.
    callbacks: HashMap<String, (Instant, bool)>,
    failures: VecDeque<Failure>,
    poll_generation: u64,
}

/// What the handlers share.
#[derive(Debug)]
struct FakeState {
    inner: Mutex<Inner>,
    http: reqwest::Client,
    base: Mutex<String>,
    arrived: Notify,
}

impl FakeState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake telegram lock")
    }
}

/// A running fake Bot API.
#[derive(Debug, Clone)]
pub struct FakeTelegram {
    /// Its base URL (the channel's `api_base_url`).
    pub base: String,
    state: Arc<FakeState>,
}

/// The update types Telegram sends when `allowed_updates` was never set or set to `[]`
/// (Bot API, `getUpdates.allowed_updates`).
const NOT_BY_DEFAULT: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];

/// Telegram's error envelope, with the HTTP status equal to `error_code` (Query.cpp).
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
        // HttpConnection.cpp adds the header to every 429.
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, n.to_string().parse().unwrap());
    }
    response
}

fn ok(result: Value) -> Response {
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

fn ok_described(result: Value, description: &str) -> Response {
    axum::Json(json!({ "ok": true, "result": result, "description": description })).into_response()
}

impl FakeTelegram {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> Self {
        let state = Arc::new(FakeState {
            inner: Mutex::new(Inner {
                next_update: 700_000_001,
                next_message: 100,
                ..Inner::default()
            }),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            base: Mutex::new(String::new()),
            arrived: Notify::new(),
        });
        let app = axum::Router::new()
            .route("/{bot}/{method}", axum::routing::any(method))
            .route("/file/{bot}/{*path}", axum::routing::get(file))
            .route("/hosted/{*path}", axum::routing::get(hosted))
            // Uploads go up to 50 MB (sendDocument).
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = format!("http://127.0.0.1:{port}");
        *state.base.lock().unwrap() = base.clone();
        Self { base, state }
    }

    /// The calls of `method` (any case) so far.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.state
            .lock()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// What the consumer in `chat` sees: the messages the bot sent there, in order, as the
    /// `Message` objects Telegram answered.
    pub fn messages(&self, chat: i64) -> Vec<Value> {
        self.state
            .lock()
            .chats
            .get(&chat)
            .map(|c| c.messages.clone())
            .unwrap_or_default()
    }

    /// Opens the private chat of user `chat` (as their first message to the bot would), so
    /// that the bot may write there.
    pub fn open_chat(&self, chat: i64) {
        let kind = if chat > 0 { "private" } else { "group" };
        self.state.lock().chats.entry(chat).or_insert_with(|| Chat {
            kind: kind.into(),
            ..Chat::default()
        });
    }

    /// The user of `chat` blocks the bot: from now on every send there is 403.
    pub fn block(&self, chat: i64) {
        self.open_chat(chat);
        if let Some(c) = self.state.lock().chats.get_mut(&chat) {
            c.blocked = true;
        }
    }

    /// The bot's owner revokes the token in @BotFather: every call is 401 `Unauthorized`.
    pub fn revoke_token(&self) {
        self.state.lock().token_revoked = true;
    }

    /// Hands an update to the bot, with the next `update_id` (returned), unless the bot's
    /// `allowed_updates` excludes its kind (then it is dropped, as Telegram drops it): POSTed
    /// to the webhook when one is set (retried until answered 2xx, honouring `Retry-After`),
    /// else queued for `getUpdates`. The chat and a callback query's id become known.
    pub async fn push_update(&self, mut update: Value) -> i64 {
        let (id, webhook) = {
            let mut inner = self.state.lock();
            inner.next_update += 1;
            let id = inner.next_update;
            update["update_id"] = json!(id);
            learn_from_update(&mut inner, &update);
            if !allowed(&inner, &update) {
                return id;
            }
            (id, inner.webhook.clone())
        };
        match webhook {
            Some(webhook) => deliver_to_webhook(&self.state, &webhook, &update).await,
            None => {
                self.state.lock().updates.push(update);
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
        self.state.lock().files.insert(
            file_id.into(),
            StoredFile {
                path: path.into(),
                bytes: bytes.to_vec(),
                size: bytes.len() as u64,
            },
        );
    }

    /// A file Telegram knows to be `size` bytes: over 20 MB, `getFile` refuses it.
    pub fn add_file_of_size(&self, file_id: &str, path: &str, size: u64) {
        self.state.lock().files.insert(
            file_id.into(),
            StoredFile {
                path: path.into(),
                bytes: Vec::new(),
                size,
            },
        );
    }

    /// Serves `bytes` as `content_type` at the returned URL, for sends by URL (Telegram
    /// fetches them) and for anything else that wants a web server.
    pub fn host(&self, path: &str, content_type: &str, bytes: &[u8]) -> String {
        self.state
            .lock()
            .hosted
            .insert(path.into(), (content_type.into(), bytes.to_vec()));
        format!("{}/hosted/{path}", self.base)
    }

    /// Upgrades the group `from` to the supergroup `to`: from now on, as on Telegram, every
    /// send to `from` is refused with 400 and `parameters.migrate_to_chat_id`.
    pub fn migrate(&self, from: i64, to: i64) {
        let mut inner = self.state.lock();
        inner.migrated.insert(from, to);
        inner.chats.entry(to).or_insert_with(|| Chat {
            kind: "supergroup".into(),
            ..Chat::default()
        });
    }

    /// The next send calls (`send*` but `sendChatAction`) fail as given, one failure per call.
    pub fn fail_next(&self, failures: &[Failure]) {
        self.state.lock().failures.extend(failures.iter().copied());
    }

    /// The webhook URL and secret set, if any.
    pub fn webhook(&self) -> Option<(String, String)> {
        self.state
            .lock()
            .webhook
            .as_ref()
            .map(|w| (w.url.clone(), w.secret.clone()))
    }

    /// The last error the webhook answered, as `getWebhookInfo` reports it.
    pub fn last_webhook_error(&self) -> Option<String> {
        self.state
            .lock()
            .last_webhook_error
            .as_ref()
            .map(|(_, e)| e.clone())
    }
}

/// Chats and callback queries become known when Telegram hands them to the bot.
fn learn_from_update(inner: &mut Inner, update: &Value) {
    for key in ["message", "edited_message"] {
        let chat = &update[key]["chat"];
        if let Some(id) = chat["id"].as_i64() {
            let kind = chat["type"].as_str().unwrap_or("private").to_owned();
            inner.chats.entry(id).or_insert_with(|| Chat {
                kind,
                ..Chat::default()
            });
        }
    }
    let query = &update["callback_query"];
    if let Some(id) = query["id"].as_str() {
        inner.callbacks.insert(id.into(), (Instant::now(), false));
        let chat = query["message"]["chat"]["id"]
            .as_i64()
            .or_else(|| query["from"]["id"].as_i64());
        if let Some(chat) = chat {
            inner.chats.entry(chat).or_insert_with(|| Chat {
                kind: "private".into(),
                ..Chat::default()
            });
        }
    }
}

/// The update's kind is one the bot asked for.
fn allowed(inner: &Inner, update: &Value) -> bool {
    let Some(kind) = update
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
    else {
        return false;
    };
    match &inner.allowed_updates {
        Some(list) if !list.is_empty() => list.contains(&kind),
        _ => !NOT_BY_DEFAULT.contains(&kind.as_str()),
    }
}

/// Posts one update until the webhook answers 2xx (WebhookActor.cpp: retries double from
/// 1 s up to a minute; a `Retry-After` in the answer sets the next delay, clamped to an hour).
/// Gives up after two minutes of failures, which is as good as forever in a test.
async fn deliver_to_webhook(state: &FakeState, webhook: &Webhook, update: &Value) {
    let give_up = Instant::now() + Duration::from_secs(120);
    let mut delay = Duration::from_secs(1);
    loop {
        let mut request = state.http.post(&webhook.url).json(update);
        if !webhook.secret.is_empty() {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", &webhook.secret);
        }
        let (error, retry_after) = match request.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                let retry_after = r
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(3600)));
                let status = r.status();
                (
                    format!(
                        "Wrong response from the webhook: {} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    ),
                    retry_after,
                )
            }
            Err(_) => ("Connection refused".to_owned(), None),
        };
        state.lock().last_webhook_error = Some((unix_now(), error));
        let wait = retry_after.unwrap_or(delay);
        if Instant::now() + wait > give_up {
            return;
        }
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token check of ClientManager.cpp: a malformed token is refused before anything else.
fn check_token(inner: &Inner, bot: &str) -> Result<(), Response> {
    let Some(token) = bot.strip_prefix("bot") else {
        return Err(envelope_error(404, "Not Found", None));
    };
    let malformed = token.is_empty()
        || token.starts_with('0')
        || token.len() > 80
        || token.contains('/')
        || !token.contains(':')
        || !token
            .split(':')
            .next()
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    if malformed {
        return Err(envelope_error(
            401,
            "Unauthorized: invalid token specified",
            None,
        ));
    }
    if token != TOKEN || inner.token_revoked {
        return Err(envelope_error(401, "Unauthorized", None));
    }
    Ok(())
}

async fn method(
    State(st): State<Arc<FakeState>>,
    Path((bot, method)): Path<(String, String)>,
    req: Request,
) -> Response {
    if let Err(refused) = check_token(&st.lock(), &bot) {
        return refused;
    }
    let received = params::read(req).await;
    let method = method.to_ascii_lowercase();
    st.lock().calls.push(Call {
        method: method.clone(),
        params: received.params.clone(),
        upload: received.file.as_ref().map(|f| f.bytes.len()),
    });
    methods::handle(&st, &method, received).await
}

async fn file(
    State(st): State<Arc<FakeState>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    let inner = st.lock();
    if bot != format!("bot{TOKEN}") || inner.token_revoked {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match inner.files.values().find(|f| f.path == path) {
        Some(f) => Response::builder()
            .status(200)
            .body(Body::from(f.bytes.clone()))
            .unwrap(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn hosted(State(st): State<Arc<FakeState>>, Path(path): Path<String>) -> Response {
    match st.lock().hosted.get(&path) {
        Some((content_type, bytes)) => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes.clone()))
            .unwrap(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Updates waiting for `getUpdates`, for [`methods`].
fn pending(inner: &Inner, limit: usize) -> Vec<Value> {
    inner.updates.iter().take(limit).cloned().collect()
}

/// The chats the bot may not reach, for [`methods`]: `Err` is Telegram's answer.
fn check_chat(inner: &Inner, chat: Option<i64>) -> Result<i64, Response> {
    let Some(chat) = chat else {
        return Err(envelope_error(400, "Bad Request: chat_id is empty", None));
    };
    if let Some(to) = inner.migrated.get(&chat) {
        let body = json!({ "ok": false, "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": { "migrate_to_chat_id": to } });
        return Err((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    }
    match inner.chats.get(&chat) {
        None => Err(envelope_error(400, "Bad Request: chat not found", None)),
        Some(c) if c.blocked => Err(envelope_error(
            403,
            "Forbidden: bot was blocked by the user",
            None,
        )),
        Some(_) => Ok(chat),
    }
}
