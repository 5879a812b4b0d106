//! A hand-written fake of Kannel 1.4.5's HTTP side, following docs/protocol/channels.md §3.2–3.4
//! and its checklist, docs/protocol/channels.md §3.10; the one fake Kannel of the workspace (the
//! server's end-to-end tests and the SMS crate's own tests use it).
//!
//! - smsbox's `/cgi-bin/sendsms`: GET with the query, or POST with a text/plain body and
//!   `X-Kannel-*` headers (a POST reads only those and the body, as `gw/smsbox.c`
//!   `smsbox_sendsms_post` does, not the query); a form POST is `400 Invalid content-type`.
//!   The request is checked as smsbox checks it, then routed as bearerbox answers: exact
//!   status/body pairs, `Server: Kannel/1.4.5`, `Content-type: text/html`, one request per
//!   connection.
//! - Long texts are counted in SMS parts (153 GSM-7 septets or 67 UCS-2 units each) and
//!   **silently truncated** at the `sendsms-user`'s `max-messages` (the gotchas of
//!   docs/protocol/channels.md §3.2): the answer is still `0: Accepted for delivery`, and the
//!   request records it.
//! - The DLR engine calls the templated `dlr-url` once per event the `dlr-mask` asks for
//!   (docs/protocol/channels.md §3.4: 8, SMSC ack, then 1, delivered, unless scripted), with
//!   `%p`/`%P` swapped as the real one does and `%A` as Kannel writes it (`ACK/`, `NACK/`, an
//!   SMPP receipt). Like bearerbox with an SQL DLR storage (Kannel's example tables keep the
//!   dlr-url in `url varchar(255)`), a message whose dlr-url is longer is accepted but its
//!   reports are lost.
//! - The MO engine calls the `sms-service` get-url with every escape, UCS-2 as
//!   percent-encoded UTF-16BE (docs/protocol/channels.md §3.3).
//! - Like smsbox (`gw/smsbox.c` `url_result_thread`), MO *and* DLR callbacks answered anything
//!   but 200/202 are retried, the same URL every `http-queue-delay` seconds,
//!   `http-request-retry` times, then dropped.
//!
//! It is configured from the same kannel.conf groups as the real Kannel
//! ([`FakeKannel::start`] reads the `sendsms-user`, the `sms-service` get-url and the
//! `smsbox` retry keys), so a test runs one scenario against both. Delays run on a time scale
//! ([`FakeKannel::with_time_scale`], 1/50 by default) so that a test covers a 15-minute outage
//! in seconds. Injection knobs: an outage ([`FakeKannel::set_unavailable`],
//! [`FakeKannel::fail_request`]), no route ([`FakeKannel::refuse_request`]), no SMSC
//! connected ([`FakeKannel::set_queued`]), scripted reports ([`FakeKannel::set_dlr_events`])
//! and an answer that comes after the message was taken ([`FakeKannel::answer_late`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::kannel::KannelError;

/// One sendsms request the fake accepted or refused.
#[derive(Debug, Clone)]
pub struct SendsmsRequest {
    /// `GET` or `POST`.
    pub method: String,
    /// The query string, if the URL had one.
    pub query: Option<String>,
    /// The request's headers, names lower-case.
    pub headers: HashMap<String, String>,
    /// The body, as text.
    pub body: String,
    /// The parameters smsbox read (from the query, or from the `X-Kannel-*` headers with the
    /// body as `text`), names lower-case.
    pub params: HashMap<String, String>,
    /// The HTTP status answered.
    pub status: u16,
    /// SMS parts the text goes out as (after truncation at `max-messages`).
    pub parts: usize,
    /// True when the text needed more than `max-messages` parts: Kannel cut it silently.
    pub truncated: bool,
}

/// The longest dlr-url an SQL DLR storage keeps (Kannel's `doc/examples/dlr-mysql.conf`:
/// `url varchar(255)`); the reports of a longer one are lost.
pub const DLR_URL_STORAGE: usize = 255;

/// The reports the SMSC produces for a message unless a test scripts others: the SMSC's
/// acknowledgement, then delivery to the handset (what `fakesmsc` produces,
/// docs/protocol/channels.md §3.6).
const DEFAULT_DLR_EVENTS: [u32; 2] = [8, 1];

/// How the fake's callback delays compare with Kannel's (10 s of Kannel are 200 ms here).
const DEFAULT_TIME_SCALE: f64 = 0.02;

/// The SMSC's message id in reports (`%F`).
const FOREIGN_ID: &str = "64c1b333-4eec-49c0-b4cf-c688faa0bf2f";

/// What the fake takes from the kannel.conf groups.
#[derive(Debug)]
struct Config {
    username: String,
    password: String,
    /// The `sendsms-user`'s `max-messages` (Kannel's default: 1).
    max_messages: usize,
    get_url: String,
    /// The `sms-service`'s `max-messages` is above 0: a non-empty answer to the get-url
    /// becomes an SMS to the consumer (docs/protocol/channels.md §3.3).
    service_replies: bool,
    retries: u32,
    /// `http-queue-delay`, already scaled.
    retry_delay: Duration,
}

/// What tests script: per-request answers and the SMSC's reports.
#[derive(Debug, Default)]
struct Script {
    /// Request numbers (0-based, over all requests) answered 503.
    fail_at: Vec<usize>,
    /// Request numbers answered as bearerbox answers a message it cannot route.
    refuse_at: Vec<usize>,
    /// Request numbers whose message is taken but whose answer comes this late.
    late_at: Vec<(usize, Duration)>,
    /// The DLR events of each accepted message, before the mask filters them.
    dlr_events: Option<Vec<u32>>,
}

#[derive(Debug)]
struct State {
    config: Config,
    requests: Mutex<Vec<SendsmsRequest>>,
    /// SMS the sms-service sent to consumers from get-url answers: (number, text).
    replies: Mutex<Vec<(String, String)>>,
    script: Mutex<Script>,
    next_id: AtomicU64,
    /// While set, sendsms answers `503 Temporal failure, try again later.`
    unavailable: AtomicBool,
    /// While set, sendsms answers `202 3: Queued for later delivery` (no SMSC connected).
    queued: AtomicBool,
    port: u16,
}

impl State {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, Vec<SendsmsRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake Kannel: a sendsms listener, plus the MO and DLR engines calling the connector.
#[derive(Debug, Clone)]
pub struct FakeKannel {
    state: Arc<State>,
}

/// The kannel.conf groups of a snippet, in order: the group's name and its keys (values
/// unquoted). Comment lines are skipped.
fn conf_groups(snippet: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut groups: Vec<(String, HashMap<String, String>)> = Vec::new();
    for line in snippet.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim().trim_matches('"').to_owned());
        if k == "group" {
            groups.push((v, HashMap::new()));
        } else if let Some((_, keys)) = groups.last_mut() {
            keys.insert(k.to_owned(), v);
        }
    }
    groups
}

/// A key of the first group named `group`.
fn conf_value<'a>(
    groups: &'a [(String, HashMap<String, String>)],
    group: &str,
    key: &str,
) -> Option<&'a str> {
    groups
        .iter()
        .find(|(name, _)| name == group)
        .and_then(|(_, keys)| keys.get(key))
        .map(String::as_str)
}

impl FakeKannel {
    /// Listens on `sendsms_port` with the channel's kannel.conf groups.
    pub async fn start(channel_snippet: &str, sendsms_port: u16) -> Result<Self, KannelError> {
        Self::with_time_scale(channel_snippet, sendsms_port, DEFAULT_TIME_SCALE).await
    }

    /// [`FakeKannel::start`], with Kannel's delays multiplied by `scale`.
    pub async fn with_time_scale(
        channel_snippet: &str,
        sendsms_port: u16,
        scale: f64,
    ) -> Result<Self, KannelError> {
        let groups = conf_groups(channel_snippet);
        let required = |group: &str, key: &str| {
            conf_value(&groups, group, key)
                .map(str::to_owned)
                .ok_or_else(|| {
                    KannelError(format!("the kannel.conf groups have no {group} `{key}`"))
                })
        };
        // Kannel's defaults: http-queue-delay 10 s, http-request-retry 0, max-messages 1.
        let delay_secs: f64 = conf_value(&groups, "smsbox", "http-queue-delay")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10.0);
        let config = Config {
            username: required("sendsms-user", "username")?,
            password: required("sendsms-user", "password")?,
            max_messages: conf_value(&groups, "sendsms-user", "max-messages")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            get_url: required("sms-service", "get-url")?,
            // Kannel's default for an sms-service is 1: answers are sent.
            service_replies: conf_value(&groups, "sms-service", "max-messages")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1)
                > 0,
            retries: conf_value(&groups, "smsbox", "http-request-retry")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            retry_delay: Duration::from_secs_f64((delay_secs * scale).max(0.0)),
        };
        let listener = TcpListener::bind(("127.0.0.1", sendsms_port))
            .await
            .map_err(|e| KannelError(format!("sendsms port {sendsms_port}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| KannelError(format!("sendsms port {sendsms_port}: {e}")))?
            .port();
        let state = Arc::new(State {
            config,
            requests: Mutex::new(Vec::new()),
            replies: Mutex::new(Vec::new()),
            script: Mutex::new(Script::default()),
            next_id: AtomicU64::new(1),
            unavailable: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            port,
        });
        let accept_state = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        Ok(Self { state })
    }

    /// The sendsms URL it listens on.
    pub fn sendsms_url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/sendsms", self.state.port)
    }

    /// Makes sendsms answer `503 Temporal failure, try again later.` (an SMSC outage, a
    /// bearerbox restart) until called with `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Answers the `n`-th sendsms request (0-based, counting every request) with `503
    /// Temporal failure, try again later.`, if it passes smsbox's checks.
    pub fn fail_request(&self, n: usize) {
        self.state.script().fail_at.push(n);
    }

    /// Answers the `n`-th sendsms request with bearerbox's `403 Not routable. Do not try
    /// again.` (no SMSC for the message, `gw/smsbox.c` `delayed_http_reply`).
    pub fn refuse_request(&self, n: usize) {
        self.state.script().refuse_at.push(n);
    }

    /// Makes sendsms answer `202 3: Queued for later delivery` (no SMSC connected: stored,
    /// sent later) until called with `false`.
    pub fn set_queued(&self, queued: bool) {
        self.state.queued.store(queued, Ordering::SeqCst);
    }

    /// The reports the SMSC produces for every later accepted message (in order, each only
    /// if the message's `dlr-mask` asks for it): `[]` for none, `[8, 4, 1, 1, 16]` for a storm
    /// with a duplicate and a late rejection. Default `[8, 1]`.
    pub fn set_dlr_events(&self, events: &[u32]) {
        self.state.script().dlr_events = Some(events.to_vec());
    }

    /// Takes the `n`-th sendsms request's message (recorded, reports scheduled) but answers
    /// only after `delay`: past the client's timeout, the outcome is unknown to it.
    pub fn answer_late(&self, n: usize, delay: Duration) {
        self.state.script().late_at.push((n, delay));
    }

    /// Every sendsms request so far.
    pub fn requests(&self) -> Vec<SendsmsRequest> {
        self.state.requests().clone()
    }

    /// The sendsms requests answered 202 (accepted or queued).
    pub fn accepted(&self) -> Vec<SendsmsRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 202)
            .collect()
    }

    /// The SMS smsbox made of get-url answers, as (consumer, text): none unless the
    /// `sms-service` has `max-messages` above 0 and the connector answered with a body (a
    /// misconfiguration the channel's snippet avoids).
    pub fn service_replies(&self) -> Vec<(String, String)> {
        self.state
            .replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Delivers a consumer message through the get-url, as smsbox does: GSM text as UTF-8
    /// (`coding=0`), anything else as UTF-16BE bytes (`coding=2`, `charset=UTF-16BE`); with
    /// an `sms-service` `max-messages` above 0, a non-empty answer goes back to the consumer
    /// ([`FakeKannel::service_replies`]).
    pub async fn send_mo(&self, from: &str, to: &str, text: &str) -> Result<(), KannelError> {
        let gsm = text.chars().all(|c| c.is_ascii() && c != '`');
        let (bytes, coding, charset): (Vec<u8>, &str, &str) = if gsm {
            (text.as_bytes().to_vec(), "0", "UTF-8")
        } else {
            (
                text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
                "2",
                "UTF-16BE",
            )
        };
        let n = self.state.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("a76999cf-a713-411f-9efb-{n:012x}");
        let ts = now_secs().to_string();
        let url = substitute(&self.state.config.get_url, |escape| match escape {
            'p' => Some(pct(from.as_bytes())),
            'P' => Some(pct(to.as_bytes())),
            'a' | 'b' => Some(pct(&bytes)),
            'T' => Some(ts.clone()),
            'I' => Some(id.clone()),
            'i' => Some("fake1".into()),
            'c' => Some(coding.into()),
            'C' => Some(charset.into()),
            'u' => Some(String::new()),
            _ => None,
        });
        let answer = callback_with_retries(&self.state.config, &url)
            .await
            .map_err(|e| KannelError(format!("the get-url {e}; dropped")))?;
        if self.state.config.service_replies && !answer.trim().is_empty() {
            self.state
                .replies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((from.to_owned(), answer));
        }
        Ok(())
    }
}

/// One callback as smsbox makes it: 200 or 202 is success (its body returned); anything else
/// (or no answer) is retried with the same URL every `http-queue-delay`, `http-request-retry`
/// times.
async fn callback_with_retries(config: &Config, url: &str) -> Result<String, String> {
    let mut attempt = 0;
    loop {
        let outcome = match http_get(url).await {
            Ok((200 | 202, body)) => return Ok(body),
            Ok((status, _)) => format!("answered {status}"),
            Err(e) => format!("failed: {e}"),
        };
        if attempt >= config.retries {
            return Err(outcome);
        }
        attempt += 1;
        tokio::time::sleep(config.retry_delay).await;
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Kannel's URL encoding of an escape's value.
fn pct(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pct_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && s.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn query_params(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                String::from_utf8_lossy(&pct_decode(k)).to_lowercase(),
                String::from_utf8_lossy(&pct_decode(v)).into_owned(),
            )
        })
        .collect()
}

/// Replaces `%x` escapes the closure knows; leaves the others as they are.
fn substitute(template: &str, value: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e) => match value(e) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push('%');
                    out.push(e);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// A tiny HTTP/1.0 GET (what Kannel's own client does), returning the status and body.
async fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// callbacks in tests"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(host).await?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: Kannel/1.4.5\r\n\r\n",
        if path.is_empty() { "/" } else { path }
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The fake's own GSM-7 extension table (the characters that take two septets), independent
/// of the channel's.
const GSM_EXTENSION: &str = "\u{0c}^{}\\[~]|€";

/// SMS parts a text needs in `coding` (docs/protocol/channels.md §3.8: 160 septets or 70 UCS-2
/// units alone, 153 or 67 per part of a concatenated message).
fn parts_for(text: &str, coding: &str) -> usize {
    let (units, single, per) = if coding == "2" {
        (text.encode_utf16().count(), 70, 67)
    } else {
        let units = text
            .chars()
            .map(|c| if GSM_EXTENSION.contains(c) { 2 } else { 1 })
            .sum();
        (units, 160, 153)
    };
    if units <= single {
        1
    } else {
        units.div_ceil(per)
    }
}

/// smsbox's answer to a sendsms request: first its own checks (content type, credentials,
/// receiver, sender, text: `gw/smsbox.c` `smsbox_req_sendsms` / `smsbox_sendsms_post`), then
/// bearerbox's routing outcome (an outage, no route, queued, accepted).
fn answer(
    state: &State,
    n: usize,
    post: bool,
    form: bool,
    params: &HashMap<String, String>,
) -> (u16, &'static str) {
    let get = |k: &str| params.get(k).map(String::as_str);
    let script = state.script();
    if form {
        (400, "Invalid content-type")
    } else if get("username").or(get("user")) != Some(state.config.username.as_str())
        || get("password").or(get("pass")) != Some(state.config.password.as_str())
    {
        (403, "Authorization failed for sendsms")
    } else if get("to").is_none() {
        // smsbox words it per interface.
        if post {
            (400, "Missing receiver(s) number(s), rejected")
        } else {
            (400, "Missing receiver number, rejected")
        }
    } else if get("to").is_some_and(|t| t.trim().is_empty()) {
        (400, "Empty receiver number not allowed, rejected")
    } else if get("from").is_none_or(|f| f.trim().is_empty()) {
        // No `global-sender` in the channel's groups.
        (400, "Sender missing and no global set, rejected")
    } else if get("text").is_none_or(str::is_empty) {
        (400, "Empty text not allowed, rejected.")
    } else if script.refuse_at.contains(&n) {
        (403, "Not routable. Do not try again.")
    } else if state.unavailable.load(Ordering::SeqCst) || script.fail_at.contains(&n) {
        (503, "Temporal failure, try again later.")
    } else if state.queued.load(Ordering::SeqCst) {
        (202, "3: Queued for later delivery")
    } else {
        (202, "0: Accepted for delivery")
    }
}

/// Serves one sendsms connection (one request, `Connection: close`, as smsbox does).
async fn serve(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };

    let mut late = None;
    let (status, text) = if path != "/cgi-bin/sendsms" {
        (404, "Unknown service")
    } else {
        // A POST is smsbox_sendsms_post's: the X-Kannel-* headers and the body (the query is
        // not read); a GET is smsbox_req_sendsms's: the query.
        let post = method == "POST";
        let mut params = HashMap::new();
        let mut form = false;
        if post {
            // text/plain and text/html are read as text (`gw/smsbox.c`).
            form = !headers.get("content-type").is_some_and(|c| {
                let c = c.to_ascii_lowercase();
                c.starts_with("text/plain") || c.starts_with("text/html")
            });
            for (k, v) in &headers {
                if let Some(name) = k.strip_prefix("x-kannel-") {
                    params.insert(name.to_owned(), v.clone());
                }
            }
            params.insert("text".into(), body.clone());
        } else {
            params = query_params(query.unwrap_or(""));
        }
        let mut requests = state.requests();
        let n = requests.len();
        let answer = answer(&state, n, post, form, &params);
        let coding = params.get("coding").map_or("0", String::as_str);
        let needed = parts_for(params.get("text").map_or("", String::as_str), coding);
        let max = state.config.max_messages.max(1);
        if answer.0 == 202 {
            schedule_dlrs(&state, &params);
            late = state
                .script()
                .late_at
                .iter()
                .find(|(at, _)| *at == n)
                .map(|(_, delay)| *delay);
        }
        requests.push(SendsmsRequest {
            method: method.to_owned(),
            query: query.map(str::to_owned),
            headers: headers.clone(),
            body,
            params,
            status: answer.0,
            parts: needed.min(max),
            truncated: needed > max,
        });
        answer
    };
    if let Some(delay) = late {
        tokio::time::sleep(delay).await;
    }
    let reason = match status {
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        503 => "Service Unavailable",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: Kannel/1.4.5\r\nContent-type: text/html\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = reader.into_inner();
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// `%A` of a report as Kannel writes it: `ACK/` and `NACK/` before the SMSC's answer for its
/// acknowledgement and its rejection (`gw/bb_smscconn.c` `bb_smscconn_sent` /
/// `bb_smscconn_send_failed`; the SMPP driver's answer is `0x<command_status>/<error>`), an
/// SMPP delivery receipt (SMPP 3.4 Appendix B) for the handset's outcome.
fn report_answer(event: u32) -> String {
    let receipt = |dlvrd: &str, stat: &str, err: &str| {
        format!(
            "id:{FOREIGN_ID} sub:001 dlvrd:{dlvrd} submit date:2611230000 done date:2611230000 \
             stat:{stat} err:{err} text:"
        )
    };
    match event {
        1 => receipt("001", "DELIVRD", "000"),
        2 => receipt("000", "UNDELIV", "001"),
        8 => "ACK/".to_owned(),
        16 => "NACK/0x0000000b/Invalid Destination Address".to_owned(),
        _ => String::new(),
    }
}

/// The DLR engine: the scripted events (default 8 then 1) that the message's `dlr-mask` asks
/// for, to its dlr-url (unless longer than [`DLR_URL_STORAGE`]), with the handset and our
/// sender swapped in `%p`/`%P` as real Kannel does, each retried as smsbox retries callbacks.
fn schedule_dlrs(state: &Arc<State>, params: &HashMap<String, String>) {
    let mask: u32 = params
        .get("dlr-mask")
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    let Some(template) = params.get("dlr-url").cloned() else {
        return;
    };
    if mask == 0 || template.len() > DLR_URL_STORAGE {
        return;
    }
    let events: Vec<u32> = state
        .script()
        .dlr_events
        .clone()
        .unwrap_or_else(|| DEFAULT_DLR_EVENTS.to_vec())
        .into_iter()
        .filter(|e| mask & e != 0)
        .collect();
    let (from, to) = (
        params.get("from").cloned().unwrap_or_default(),
        params.get("to").cloned().unwrap_or_default(),
    );
    let state = state.clone();
    tokio::spawn(async move {
        for event in events {
            let answer = report_answer(event);
            let ts = now_secs().to_string();
            let url = substitute(&template, |escape| match escape {
                'd' => Some(event.to_string()),
                'A' => Some(pct(answer.as_bytes())),
                'T' => Some(ts.clone()),
                'i' => Some("fake1".into()),
                'F' => Some(if event == 1 {
                    FOREIGN_ID.into()
                } else {
                    String::new()
                }),
                'p' => Some(pct(to.as_bytes())),
                'P' => Some(pct(from.as_bytes())),
                _ => None,
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = callback_with_retries(&state.config, &url).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook_receiver::WebhookReceiver;

    /// The groups `switchboard sms kannel-config` prints, trimmed to what the fake reads.
    fn snippet(get_url: &str) -> String {
        format!(
            "group = smsbox\nhttp-request-retry = 2\nhttp-queue-delay = 10\n\n\
             group = sendsms-user\nusername = \"sb\"\npassword = \"pw\"\nmax-messages = 2\n\n\
             group = sms-service\nkeyword = default\nmax-messages = 0\nget-url = \"{get_url}\"\n"
        )
    }

    async fn started() -> (FakeKannel, WebhookReceiver) {
        let callbacks = WebhookReceiver::start().await;
        let get_url = callbacks.url("/mo?from=%p&to=%P&text=%b&id=%I&coding=%c&charset=%C");
        let fake = FakeKannel::with_time_scale(&snippet(&get_url), 0, 0.001)
            .await
            .expect("the fake starts");
        (fake, callbacks)
    }

    /// A sendsms POST with `X-Kannel-*` headers (and optionally a query), and its answer.
    async fn post(
        fake: &FakeKannel,
        query: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut req = reqwest::Client::new()
            .post(format!("{}{query}", fake.sendsms_url()))
            .header("Content-Type", content_type)
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(format!("X-Kannel-{k}"), *v);
        }
        let resp = req.send().await.expect("the fake answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    const GOOD: [(&str, &str); 4] = [
        ("Username", "sb"),
        ("Password", "pw"),
        ("From", "1000"),
        ("To", "+15551234567"),
    ];

    #[tokio::test]
    async fn sendsms_checks_the_request_as_smsbox_does_before_the_route() {
        let (fake, _callbacks) = started().await;
        fake.set_unavailable(true);
        let wrong = [("Username", "sb"), ("Password", "no"), ("To", "+1555")];
        let answer = post(&fake, "", "text/plain", &wrong, "hi").await;
        assert_eq!(answer, (403, "Authorization failed for sendsms".into()));
        let form = post(&fake, "", "application/x-www-form-urlencoded", &GOOD, "a=b").await;
        assert_eq!(form, (400, "Invalid content-type".into()));
        let outage = post(&fake, "", "text/plain; charset=UTF-8", &GOOD, "hi").await;
        assert_eq!(outage, (503, "Temporal failure, try again later.".into()));
        fake.set_unavailable(false);
        let taken = post(&fake, "", "text/plain; charset=UTF-8", &GOOD, "hi").await;
        assert_eq!(taken, (202, "0: Accepted for delivery".into()));
        // A POST reads its headers, not the query.
        let query_only = post(
            &fake,
            "?username=sb&password=pw",
            "text/plain",
            &GOOD[2..],
            "hi",
        );
        assert_eq!(query_only.await.0, 403);
        let no_sender = post(&fake, "", "text/plain", &[GOOD[0], GOOD[1], GOOD[3]], "hi").await;
        assert_eq!(
            no_sender,
            (400, "Sender missing and no global set, rejected".into())
        );
        // A GET reads the query, with smsbox's short parameter names too.
        let get = reqwest::get(format!(
            "{}?user=sb&pass=pw&from=1000&to=%2B15551234567&text=hi",
            fake.sendsms_url()
        ))
        .await
        .expect("the fake answers");
        assert_eq!(get.status().as_u16(), 202);
        assert_eq!(get.headers()["server"], "Kannel/1.4.5");
        fake.set_queued(true);
        let queued = post(&fake, "", "text/plain", &GOOD, "hi").await;
        assert_eq!(queued, (202, "3: Queued for later delivery".into()));
        let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [403, 400, 503, 202, 403, 400, 202, 202]);
    }

    #[tokio::test]
    async fn long_texts_are_cut_silently_at_max_messages() {
        let (fake, _callbacks) = started().await;
        let long = "a".repeat(153 * 3);
        let answer = post(&fake, "", "text/plain", &GOOD, &long).await;
        assert_eq!(answer, (202, "0: Accepted for delivery".into()));
        let ucs2 = "я".repeat(134);
        let mut headers = GOOD.to_vec();
        headers.push(("Coding", "2"));
        post(&fake, "", "text/plain", &headers, &ucs2).await;
        let requests = fake.requests();
        assert_eq!((requests[0].parts, requests[0].truncated), (2, true));
        assert_eq!((requests[1].parts, requests[1].truncated), (2, false));
    }

    #[tokio::test]
    async fn reports_are_the_events_the_mask_asks_for_to_the_dlr_url() {
        let (fake, callbacks) = started().await;
        let dlr_url = callbacks.url("/dlr?s=%d&p=%p&P=%P&a=%A&f=%F");
        let send = |mask: &'static str, url: String| {
            let fake = fake.clone();
            async move {
                let mut headers = GOOD.to_vec();
                headers.push(("DLR-Mask", mask));
                headers.push(("DLR-Url", &url));
                post(&fake, "", "text/plain", &headers, "hi").await.0
            }
        };
        assert_eq!(send("1", dlr_url.clone()).await, 202);
        let reports = || callbacks.received_at("/dlr");
        assert!(crate::eventually(5, || reports().len() == 1).await);
        let first = &reports()[0].path;
        assert!(first.contains("s=1&p=%2B15551234567&P=1000"), "{first}");
        assert!(first.contains("stat%3ADELIVRD"), "{first}");
        assert!(first.contains("&f=64c1b333"), "{first}");
        // The SMSC's answer is retried as smsbox retries a callback.
        callbacks.fail_next(503, None);
        assert_eq!(send("8", dlr_url.clone()).await, 202);
        assert!(crate::eventually(5, || reports().len() == 3).await);
        assert!(reports()[1..].iter().all(|r| r.path.contains("s=8&")));
        // An SQL DLR storage cannot keep a longer dlr-url: its reports are lost.
        let long = format!("{dlr_url}&pad={}", "x".repeat(DLR_URL_STORAGE));
        assert_eq!(send("31", long).await, 202);
        fake.set_dlr_events(&[16]);
        assert_eq!(send("31", dlr_url).await, 202);
        assert!(crate::eventually(5, || reports().len() == 4).await);
        assert!(reports()[3].path.contains("s=16&"), "{:?}", reports()[3]);
    }

    #[tokio::test]
    async fn consumer_messages_go_to_the_get_url_with_kannels_escapes() {
        let (fake, callbacks) = started().await;
        fake.send_mo("+15551234567", "1000", "Привет")
            .await
            .expect("delivered");
        let mo = &callbacks.received_at("/mo")[0].path;
        assert!(
            mo.contains("from=%2B15551234567&to=1000&text=%04%1F%04%40"),
            "{mo}"
        );
        assert!(mo.ends_with("&coding=2&charset=UTF-16BE"), "{mo}");
        // The receiver answered `{"ok":true}`; the service's max-messages = 0 sends nothing.
        assert!(fake.service_replies().is_empty());
    }

    #[tokio::test]
    async fn a_service_allowed_to_answer_turns_the_answer_into_an_sms() {
        let callbacks = WebhookReceiver::start().await;
        let get_url = callbacks.url("/mo?from=%p");
        let groups = snippet(&get_url).replace("max-messages = 0", "max-messages = 1");
        let fake = FakeKannel::with_time_scale(&groups, 0, 0.001)
            .await
            .expect("the fake starts");
        // The receiver answers `{"ok":true}`: smsbox sends it to the consumer.
        fake.send_mo("+15551234567", "1000", "hi")
            .await
            .expect("delivered");
        assert_eq!(
            fake.service_replies(),
            [("+15551234567".to_owned(), r#"{"ok":true}"#.to_owned())]
        );
    }
}
