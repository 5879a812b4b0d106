//! A hand-written fake of Vonage's SMS API (docs/protocol/channels.md §3.7, §3.10), written
//! from the spec and Vonage's documentation, not from the channel's code; the one fake Vonage
//! of the workspace (the SMS crate's tests use it).
//!
//! - `POST /sms/json` (form or JSON): credentials checked (status 4), required parameters
//!   (status 2), one `messages` element per SMS part (GSM-7 160/153, unicode 70/67 UTF-16
//!   units), scripted statuses and HTTP errors, `client-ref` echoed;
//! - a DLR engine calling the `callback` URL once per part and status, signed;
//! - an inbound-message engine (`send_mo`) splitting long texts into `concat-*` parts, sent in
//!   any order, signed;
//! - webhooks as GET query, POST form or POST JSON, signed with `md5hash` or an HMAC, with
//!   Vonage's retry rule: anything but `200 OK` or `204 No Content` ("Inbound SMS": "you must
//!   send a 200 OK or 204 No Content response. If you don't … Vonage will … keep resending
//!   it for the next 24 hours") is resent, re-signed with a new nonce but the **same signed
//!   `timestamp` and `message-timestamp`: the time of the first push**. A push can be made to
//!   have started hours ago ([`FakeVonage::set_push_started_ago`]), as Vonage's late retries
//!   are.
//!
//! The signature is computed here independently of the channel ([`sign`], [`signed`]): every
//! parameter but `sig`, sorted by key, as `&key=value` with `&` and `=` in values replaced by
//! `_`; `md5hash` is `md5(string + secret)`, the others `HMAC(secret, string)`, lower-case hex.
//!
//! The fake knows one account ([`API_KEY`], [`API_SECRET`], [`SIG_SECRET`], [`OUR_NUMBER`]).
//! Injection knobs: scripted statuses ([`FakeVonage::script_status`]) and HTTP errors
//! ([`FakeVonage::script_http_error`]), the receipts of every part
//! ([`FakeVonage::set_dlr_statuses`]), an answer that comes after the message was taken
//! ([`FakeVonage::answer_late`]) and late retries ([`FakeVonage::set_push_started_ago`]).
//! Tests that call the channel's `handle_http` directly build Vonage's requests with
//! [`inbound_params`], [`signed`] and [`webhook_request`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// The account's API key: `/sms/json` requires it (`api_key`), webhooks carry it (`api-key`).
pub const API_KEY: &str = "abcd1234";
/// The account's API secret: `/sms/json` answers status 4 without it.
pub const API_SECRET: &str = "api-s3cret-XYZ";
/// The account's signature secret: every webhook the fake sends is signed with it.
pub const SIG_SECRET: &str = "sig-s3cret-0123456789abcdef";
/// Our Vonage number, as Vonage writes it.
pub const OUR_NUMBER: &str = "447700900000";

/// How webhooks are sent (Dashboard → API Settings → webhook format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `GET` with the parameters in the query.
    Get,
    /// `POST` with an `application/x-www-form-urlencoded` body.
    PostForm,
    /// `POST` with a JSON object of strings.
    PostJson,
}

/// Every webhook format, for tests that run a scenario in each.
pub const FORMATS: [Format; 3] = [Format::Get, Format::PostForm, Format::PostJson];
/// Every signature method Vonage offers, by the name the channel's config and [`sign`] take.
pub const METHODS: [&str; 5] = ["md5hash", "md5", "sha1", "sha256", "sha512"];

/// Now, in Unix seconds: what webhooks sign as `timestamp`.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(secret: &str, data: &[u8]) -> String {
    let mut mac =
        <M as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// Vonage's signature of `params` (`sig` left out) with `method`, one of [`METHODS`].
///
/// # Panics
///
/// When `method` is not one of [`METHODS`]: a mistake in the test, not a request.
pub fn sign(method: &str, secret: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut data = String::new();
    for (k, v) in sorted {
        data.push('&');
        data.push_str(k);
        data.push('=');
        data.push_str(&v.replace(['&', '='], "_"));
    }
    match method {
        "md5hash" => {
            let mut h = Md5::new();
            h.update(data.as_bytes());
            h.update(secret.as_bytes());
            hex::encode(h.finalize())
        }
        "md5" => hmac_hex::<Hmac<Md5>>(secret, data.as_bytes()),
        "sha1" => hmac_hex::<Hmac<sha1::Sha1>>(secret, data.as_bytes()),
        "sha256" => hmac_hex::<Hmac<sha2::Sha256>>(secret, data.as_bytes()),
        "sha512" => hmac_hex::<Hmac<sha2::Sha512>>(secret, data.as_bytes()),
        other => panic!("unknown method {other}"),
    }
}

static NONCES: AtomicU64 = AtomicU64::new(1);

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time, as Vonage writes `message-timestamp`.
fn utc(ts: i64) -> String {
    const FORMAT: &[BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        .unwrap_or_else(|| panic!("{ts} is beyond four-digit years"))
}

/// Adds `timestamp` (now, unless given), a fresh `nonce` (unless given) and `sig`: `params`
/// as Vonage signs a webhook.
///
/// # Panics
///
/// As [`sign`].
pub fn signed(
    method: &str,
    secret: &str,
    mut params: Vec<(String, String)>,
) -> Vec<(String, String)> {
    if !params.iter().any(|(k, _)| k == "timestamp") {
        params.push(("timestamp".into(), unix_now().to_string()));
    }
    if !params.iter().any(|(k, _)| k == "nonce") {
        let n = NONCES.fetch_add(1, Ordering::Relaxed);
        params.push((
            "nonce".into(),
            format!("6f1c2a3b-{n:04x}-4c5d-8e9f-{:012x}", unix_now()),
        ));
    }
    let sig = sign(method, secret, &params);
    params.push(("sig".into(), sig));
    params
}

fn form_encode(params: &[(String, String)]) -> String {
    serde_urlencoded::to_string(params).expect("string pairs always encode")
}

/// A webhook request as Vonage sends it in `format`, for a channel's `handle_http` (`path`
/// relative to the instance), so that tests need no HTTP server.
///
/// # Panics
///
/// When `path` is not a URI path.
pub fn webhook_request(
    format: Format,
    path: &str,
    params: &[(String, String)],
) -> switchboard_core::HttpRequest {
    let b = switchboard_core::http::Request::builder();
    match format {
        Format::Get => b
            .method("GET")
            .uri(format!("{path}?{}", form_encode(params)))
            .body(Default::default()),
        Format::PostForm => b
            .method("POST")
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(params).into()),
        Format::PostJson => {
            let map: serde_json::Map<String, serde_json::Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            b.method("POST")
                .uri(path)
                .header("content-type", "application/json")
                .body(serde_json::Value::Object(map).to_string().into())
        }
    }
    .expect("a URI path")
}

/// The parameters of an inbound message to [`OUR_NUMBER`] (unsigned: [`signed`] signs them),
/// its `type` and `keyword` derived from `text` as Vonage derives them.
pub fn inbound_params(from: &str, message_id: &str, text: &str) -> Vec<(String, String)> {
    let unicode = !text.chars().all(|c| gsm_units(c).is_some());
    vec![
        ("api-key".into(), API_KEY.into()),
        ("msisdn".into(), from.into()),
        ("to".into(), OUR_NUMBER.into()),
        ("messageId".into(), message_id.into()),
        ("text".into(), text.into()),
        (
            "type".into(),
            if unicode { "unicode" } else { "text" }.into(),
        ),
        (
            "keyword".into(),
            text.split_whitespace().next().unwrap_or("").to_uppercase(),
        ),
        ("message-timestamp".into(), "2020-01-01 12:00:00".into()),
    ]
}

/// One `/sms/json` request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The request's `Content-Type` (empty when it had none).
    pub content_type: String,
    /// The query string, if the URL had one (Vonage reads only the body).
    pub query: Option<String>,
    /// The body's parameters, from a form or a JSON object (non-strings as JSON text).
    pub params: HashMap<String, String>,
    /// The HTTP status answered.
    pub http_status: u16,
    /// The `status` of every part (empty when the HTTP status was an error).
    pub statuses: Vec<u32>,
    /// How many `messages` elements the answer had: one per SMS part when accepted.
    pub parts: usize,
}

#[derive(Debug)]
struct FakeState {
    sent: Mutex<Vec<Sent>>,
    /// Scripted HTTP errors for the next calls.
    http_errors: Mutex<VecDeque<u16>>,
    /// Delays of the answers to the next calls, after the message was taken (and its receipts
    /// started): a slow or cut connection, for uncertain sends.
    slow_answers: Mutex<VecDeque<Duration>>,
    /// Scripted `status` codes for the next calls (every part of a call gets it).
    statuses: Mutex<VecDeque<u32>>,
    /// DLR statuses sent for every part of an accepted message with a `callback`.
    dlr_statuses: Mutex<Vec<&'static str>>,
    /// Answers the channel gave to the fake's webhooks, in order.
    webhook_answers: Mutex<Vec<u16>>,
    /// How often a webhook answered with anything but 200/204 is resent.
    retries: usize,
    /// How long ago (seconds) the pushes of new webhooks started: their signed `timestamp`.
    push_started_ago: Mutex<i64>,
    method: &'static str,
    format: Format,
    next_id: AtomicU64,
    http: reqwest::Client,
}

/// The lock's value, even if a test panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fake Vonage: a `/sms/json` listener, plus the DLR and inbound-message engines calling
/// the channel's webhooks.
#[derive(Debug, Clone)]
pub struct FakeVonage {
    /// The REST base URL (the channel's `api_base_url`).
    pub url: String,
    state: Arc<FakeState>,
}

/// The fake's own GSM-7 check (basic + extension tables).
fn gsm_units(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüàç";
    if BASIC.contains(c) {
        Some(1)
    } else if "\u{0c}^{}\\[~]|€".contains(c) {
        Some(2)
    } else {
        None
    }
}

fn parts_for(text: &str, kind: &str) -> usize {
    let (units, single, per) = if kind == "unicode" {
        (text.encode_utf16().count(), 70, 67)
    } else {
        (
            text.chars().map(|c| gsm_units(c).unwrap_or(1)).sum(),
            160,
            153,
        )
    };
    if units <= single {
        1
    } else {
        units.div_ceil(per)
    }
}

impl FakeVonage {
    /// Listens on a free loopback port; its webhooks are signed with `method` (one of
    /// [`METHODS`]) and sent in `format`. Every part of an accepted message with a `callback`
    /// gets the receipts `accepted`, then `delivered`, unless set otherwise.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(method: &'static str, format: Format) -> Self {
        let state = Arc::new(FakeState {
            sent: Mutex::new(Vec::new()),
            http_errors: Mutex::new(VecDeque::new()),
            slow_answers: Mutex::new(VecDeque::new()),
            statuses: Mutex::new(VecDeque::new()),
            dlr_statuses: Mutex::new(vec!["accepted", "delivered"]),
            webhook_answers: Mutex::new(Vec::new()),
            retries: 2,
            push_started_ago: Mutex::new(0),
            method,
            format,
            next_id: AtomicU64::new(0x0A00_0000_0000_0001),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .route("/sms/json", axum::routing::post(sms_json))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the fake Vonage");
        let port = listener
            .local_addr()
            .expect("the fake Vonage's address")
            .port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// Every `/sms/json` request so far.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.state.sent).clone()
    }

    /// Answers the next `/sms/json` request without a scripted HTTP error with Vonage's
    /// `status` for every part (1 throttled, 5 internal error, 9 quota, any other refused;
    /// `0` leaves it accepted), unless its credentials or parameters are wrong (the script is
    /// used up all the same). Calls queue up.
    pub fn script_status(&self, status: u32) {
        lock(&self.state.statuses).push_back(status);
    }

    /// Answers the next `/sms/json` request with the HTTP error `status` and an HTML body,
    /// before any check. Calls queue up.
    pub fn script_http_error(&self, status: u16) {
        lock(&self.state.http_errors).push_back(status);
    }

    /// The receipts (`status` values) sent for every part of a later accepted message with a
    /// `callback`, in order: `[]` for none. Default `["accepted", "delivered"]`.
    pub fn set_dlr_statuses(&self, statuses: &[&'static str]) {
        *lock(&self.state.dlr_statuses) = statuses.to_vec();
    }

    /// Answers the next `/sms/json` request without a scripted HTTP error only after `delay`,
    /// its message already taken (recorded, receipts started): past the client's timeout, the
    /// outcome is unknown to it. Calls queue up.
    pub fn answer_late(&self, delay: Duration) {
        lock(&self.state.slow_answers).push_back(delay);
    }

    /// Makes new webhooks look like Vonage's late retries: their first push (and so their
    /// signed `timestamp`) was `secs` ago.
    pub fn set_push_started_ago(&self, secs: i64) {
        *lock(&self.state.push_started_ago) = secs;
    }

    /// The answers the channel gave to every webhook push so far (retries included), in
    /// order; 0 when it could not be reached.
    pub fn answers(&self) -> Vec<u16> {
        lock(&self.state.webhook_answers).clone()
    }

    /// Sends a consumer message to `<callback_base>/inbound`, split into `concat-*` parts when
    /// long (part numbers sent in `order`, 1-based, when given). Returns the last answer of
    /// each part (0: unreachable).
    ///
    /// # Panics
    ///
    /// When `order` names a part the text does not have.
    pub async fn send_mo(
        &self,
        callback_base: &str,
        from: &str,
        message_id: &str,
        text: &str,
        order: Option<&[u8]>,
    ) -> Vec<u16> {
        let unicode = !text.chars().all(|c| gsm_units(c).is_some());
        let per = if unicode { 67 } else { 153 };
        let chunks: Vec<String> = if parts_for(text, if unicode { "unicode" } else { "text" }) == 1
        {
            vec![text.to_owned()]
        } else {
            let chars: Vec<char> = text.chars().collect();
            chars.chunks(per).map(|c| c.iter().collect()).collect()
        };
        let total = chunks.len();
        let order: Vec<u8> = match order {
            Some(o) => o.to_vec(),
            None => (1..=total as u8).collect(),
        };
        let mut answers = Vec::new();
        for part in order {
            let chunk = &chunks[usize::from(part) - 1];
            let id = if total == 1 {
                message_id.to_owned()
            } else {
                format!("{message_id}-{part}")
            };
            let mut params = inbound_params(from, &id, chunk);
            if total > 1 {
                params.push(("concat".into(), "true".into()));
                params.push(("concat-ref".into(), "77".into()));
                params.push(("concat-total".into(), total.to_string()));
                params.push(("concat-part".into(), part.to_string()));
            }
            answers.push(
                deliver_webhook(&self.state, &format!("{callback_base}/inbound"), params).await,
            );
        }
        answers
    }
}

/// Pushes one webhook in the configured format: signed with the time the push started (now
/// minus [`FakeState::push_started_ago`], also as `message-timestamp`) and a fresh nonce;
/// anything but 200 or 204 is resent up to `retries` times, re-signed with a new nonce and the
/// same timestamp. Returns the last answer (0: unreachable).
async fn deliver_webhook(st: &FakeState, url: &str, mut params: Vec<(String, String)>) -> u16 {
    let started = unix_now() - *lock(&st.push_started_ago);
    params.retain(|(k, _)| k != "message-timestamp" && k != "timestamp");
    params.push(("message-timestamp".into(), utc(started)));
    params.push(("timestamp".into(), started.to_string()));
    let mut last = 0;
    for attempt in 0..=st.retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let params = signed(st.method, SIG_SECRET, params.clone());
        let req = match st.format {
            Format::Get => st.http.get(format!("{url}?{}", form_encode(&params))),
            Format::PostForm => st
                .http
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_encode(&params)),
            Format::PostJson => {
                let map: serde_json::Map<String, serde_json::Value> = params
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                st.http.post(url).json(&map)
            }
        };
        last = match req.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        lock(&st.webhook_answers).push(last);
        if last == 200 || last == 204 {
            break;
        }
    }
    last
}

/// The first parameter of a `/sms/json` request whose value Vonage's spec refuses.
fn invalid_param(params: &HashMap<String, String>) -> Option<&'static str> {
    let to = params.get("to").map(String::as_str).unwrap_or("");
    if !(7..=15).contains(&to.len()) || !to.bytes().all(|b| b.is_ascii_digit()) {
        return Some("to");
    }
    if params
        .get("client-ref")
        .is_some_and(|r| r.chars().count() > 40)
    {
        return Some("client-ref");
    }
    if params
        .get("status-report-req")
        .is_some_and(|v| !["0", "1", "true", "false"].contains(&v.as_str()))
    {
        return Some("status-report-req");
    }
    if params.get("type").is_some_and(|t| {
        !["text", "binary", "wappush", "unicode", "vcal", "vcard"].contains(&t.as_str())
    }) {
        return Some("type");
    }
    if params
        .get("callback")
        .is_some_and(|c| !(c.starts_with("https://") || c.starts_with("http://")) || c.len() > 2048)
    {
        return Some("callback");
    }
    None
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn sms_json(
    State(st): State<Arc<FakeState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let params: HashMap<String, String> = if content_type.starts_with("application/json") {
        serde_json::from_slice::<HashMap<String, serde_json::Value>>(&body)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect()
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    let mut record = Sent {
        content_type,
        query,
        params: params.clone(),
        http_status: 200,
        statuses: Vec::new(),
        parts: 0,
    };
    let http_error = lock(&st.http_errors).pop_front();
    if let Some(code) = http_error {
        record.http_status = code;
        lock(&st.sent).push(record);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "<html>error</html>").into_response();
    }
    let text = params.get("text").cloned().unwrap_or_default();
    let kind = params.get("type").cloned().unwrap_or_else(|| "text".into());
    let parts = parts_for(&text, &kind);
    let error = |status: u32, text: &str| serde_json::json!({ "status": status.to_string(), "error-text": text });
    let scripted = lock(&st.statuses).pop_front();
    let (status, messages): (u32, Vec<serde_json::Value>) =
        if params.get("api_key").map(String::as_str) != Some(API_KEY)
            || params.get("api_secret").map(String::as_str) != Some(API_SECRET)
        {
            (4, vec![error(4, "Bad Credentials")])
        } else if ["from", "to", "text"]
            .iter()
            .any(|k| params.get(*k).is_none_or(|v| v.is_empty()))
        {
            (2, vec![error(2, "Missing from, to or text param")])
        } else if let Some(invalid) = invalid_param(&params) {
            // `definitions/sms.yml` NewMessage: `to` is `\d{7,15}`, `client-ref` at most 40
            // characters, `status-report-req` a boolean, `type` one of its enum; a bad
            // `callback` is status 23.
            let code = if invalid == "callback" { 23 } else { 3 };
            (code, vec![error(code, &format!("Invalid {invalid} param"))])
        } else if let Some(code) = scripted.filter(|c| *c != 0) {
            let text = match code {
                1 => "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
                5 => "Internal Error",
                9 => "Quota Exceeded - rejected",
                _ => "Refused",
            };
            (code, vec![error(code, text)])
        } else {
            let to = params.get("to").cloned().unwrap_or_default();
            let messages = (0..parts)
                .map(|_| {
                    let id = st.next_id.fetch_add(1, Ordering::Relaxed);
                    let mut m = serde_json::json!({
                        "to": to,
                        "message-id": format!("{id:016X}"),
                        "status": "0",
                        "remaining-balance": "3.14159265",
                        "message-price": "0.03330000",
                        "network": "12345",
                    });
                    if let Some(r) = params.get("client-ref") {
                        m["client-ref"] = serde_json::Value::String(r.clone());
                    }
                    m
                })
                .collect();
            (0, messages)
        };
    record.statuses = vec![status; messages.len()];
    record.parts = messages.len();
    lock(&st.sent).push(record);
    let body = serde_json::json!({
        "message-count": messages.len().to_string(),
        "messages": messages,
    });
    if status == 0
        && let Some(callback) = params.get("callback").cloned()
        && !matches!(
            params.get("status-report-req").map(String::as_str),
            Some("0" | "false")
        )
    {
        let st = st.clone();
        let ids: Vec<String> = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["message-id"].as_str().map(str::to_owned))
            .collect();
        tokio::spawn(async move {
            let statuses = lock(&st.dlr_statuses).clone();
            for id in ids {
                for status in &statuses {
                    let mut p: Vec<(String, String)> = vec![
                        (
                            "msisdn".into(),
                            params.get("to").cloned().unwrap_or_default(),
                        ),
                        ("to".into(), params.get("from").cloned().unwrap_or_default()),
                        ("network-code".into(), "12345".into()),
                        ("messageId".into(), id.clone()),
                        ("price".into(), "0.03330000".into()),
                        ("status".into(), (*status).into()),
                        ("scts".into(), "2001011400".into()),
                        (
                            "err-code".into(),
                            if *status == "delivered" || *status == "accepted" {
                                "0"
                            } else {
                                "5"
                            }
                            .into(),
                        ),
                        ("api-key".into(), API_KEY.into()),
                        ("message-timestamp".into(), "2020-01-01 12:00:00".into()),
                    ];
                    if let Some(r) = params.get("client-ref") {
                        p.push(("client-ref".into(), r.clone()));
                    }
                    deliver_webhook(&st, &callback, p).await;
                }
            }
        });
    }
    let slow = lock(&st.slow_answers).pop_front();
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    json_response(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn message_timestamps_are_utc_to_the_second() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_825_599), "2000-02-29 11:59:59");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
    }
}
