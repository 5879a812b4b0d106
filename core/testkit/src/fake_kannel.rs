//! A hand-written fake of Kannel 1.4.5's HTTP side, following `docs/protocol/channels.md` §3.10: smsbox's
//! `/cgi-bin/sendsms` (GET query or POST text/plain with `X-Kannel-*` headers, the exact
//! status/body pairs), the DLR engine (8 then 1 to the templated `dlr-url`, `%p`/`%P` swapped as
//! the real one does) and the MO engine (the `sms-service` get-url with every escape, UCS-2 as
//! percent-encoded UTF-16BE, retries with the same `%I` on anything but 200/202).
//!
//! It is configured from the same kannel.conf groups as the real Kannel
//! ([`FakeKannel::start`] reads the `get-url`, the `sendsms-user`, `http-request-retry` and
//! `http-queue-delay`), so a test runs one scenario against both. Like smsbox (`gw/smsbox.c`
//! `url_result_thread`), it retries MO *and* DLR callbacks answered anything but 200/202, the
//! same URL every `http-queue-delay` seconds, `http-request-retry` times, then drops them.
//! Delays run on a time scale ([`FakeKannel::with_time_scale`], 1/50 by default) so that a
//! test covers a 15-minute outage in seconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::kannel::KannelError;

/// One sendsms request the fake accepted or refused.
#[derive(Debug, Clone)]
pub struct SendsmsRequest {
    /// The parameters (from the query, or the `X-Kannel-*` headers and body), names lower-case.
    pub params: HashMap<String, String>,
    /// The HTTP status answered.
    pub status: u16,
}

#[derive(Debug)]
struct Config {
    username: String,
    password: String,
    get_url: String,
    retries: u32,
    /// `http-queue-delay`, already scaled.
    retry_delay: Duration,
}

/// How the fake's callback delays compare with Kannel's (10 s of Kannel are 200 ms here).
const DEFAULT_TIME_SCALE: f64 = 0.02;

#[derive(Debug)]
struct State {
    config: Config,
    requests: Mutex<Vec<SendsmsRequest>>,
    next_id: AtomicU64,
    /// While set, sendsms answers `503 Temporal failure, try again later.`
    unavailable: std::sync::atomic::AtomicBool,
}

/// The fake Kannel: a sendsms listener, plus the MO and DLR engines calling the connector.
#[derive(Debug, Clone)]
pub struct FakeKannel {
    state: Arc<State>,
}

fn conf_value(snippet: &str, key: &str) -> Option<String> {
    snippet.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
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
        let missing = |k: &str| KannelError(format!("the kannel.conf groups have no `{k}`"));
        // Kannel's default http-queue-delay is 10 s.
        let delay_secs: f64 = conf_value(channel_snippet, "http-queue-delay")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10.0);
        let config = Config {
            username: conf_value(channel_snippet, "username").ok_or_else(|| missing("username"))?,
            password: conf_value(channel_snippet, "password").ok_or_else(|| missing("password"))?,
            get_url: conf_value(channel_snippet, "get-url").ok_or_else(|| missing("get-url"))?,
            retries: conf_value(channel_snippet, "http-request-retry")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            retry_delay: Duration::from_secs_f64((delay_secs * scale).max(0.0)),
        };
        let listener = TcpListener::bind(("127.0.0.1", sendsms_port))
            .await
            .map_err(|e| KannelError(format!("sendsms port {sendsms_port}: {e}")))?;
        let state = Arc::new(State {
            config,
            requests: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            unavailable: std::sync::atomic::AtomicBool::new(false),
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

    /// Makes sendsms answer `503 Temporal failure, try again later.` (an SMSC outage, a
    /// bearerbox restart) until called with `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Every sendsms request so far.
    pub fn requests(&self) -> Vec<SendsmsRequest> {
        self.state.requests.lock().expect("fake kannel").clone()
    }

    /// Delivers a consumer message through the get-url, as smsbox does: GSM text as UTF-8
    /// (`coding=0`), anything else as UTF-16BE bytes (`coding=2`, `charset=UTF-16BE`).
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
        callback_with_retries(&self.state.config, &url)
            .await
            .map_err(|e| KannelError(format!("the get-url {e}; dropped")))
    }
}

/// One callback as smsbox makes it: 200 or 202 is success; anything else (or no answer) is
/// retried with the same URL every `http-queue-delay`, `http-request-retry` times.
async fn callback_with_retries(config: &Config, url: &str) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        let outcome = match http_get(url).await {
            Ok((200 | 202, _)) => return Ok(()),
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
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    let (status, text) = if path != "/cgi-bin/sendsms" {
        (404, "Unknown service")
    } else {
        let mut params = query_params(query);
        let form_post = method == "POST"
            && !headers
                .get("content-type")
                .is_some_and(|c| c.starts_with("text/plain"));
        if method == "POST" {
            for (k, v) in &headers {
                if let Some(name) = k.strip_prefix("x-kannel-") {
                    params.insert(name.to_owned(), v.clone());
                }
            }
            params.insert("text".into(), String::from_utf8_lossy(&body).into_owned());
        }
        let get = |k: &str| params.get(k).map(String::as_str);
        let answer = if state.unavailable.load(Ordering::SeqCst) {
            (503, "Temporal failure, try again later.")
        } else if form_post {
            (400, "Invalid content-type")
        } else if get("username").or(get("user")) != Some(state.config.username.as_str())
            || get("password").or(get("pass")) != Some(state.config.password.as_str())
        {
            (403, "Authorization failed for sendsms")
        } else if get("to").is_none() {
            // smsbox words it per interface (`gw/smsbox.c`).
            if method == "POST" {
                (400, "Missing receiver(s) number(s), rejected")
            } else {
                (400, "Missing receiver number, rejected")
            }
        } else if get("to").is_some_and(|t| t.trim().is_empty()) {
            (400, "Empty receiver number not allowed, rejected")
        } else if get("text").is_none_or(str::is_empty) {
            (400, "Empty text not allowed, rejected.")
        } else {
            (202, "0: Accepted for delivery")
        };
        if answer.0 == 202 {
            schedule_dlrs(&state, &params);
        }
        state
            .requests
            .lock()
            .expect("fake kannel")
            .push(SendsmsRequest {
                params,
                status: answer.0,
            });
        answer
    };
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

/// The DLR engine: 8 (SMSC ack) then 1 (delivered) for a message with a dlr-url and a mask
/// asking for them, with the handset and our sender swapped in `%p`/`%P` as real Kannel does,
/// each retried as smsbox retries callbacks.
fn schedule_dlrs(state: &Arc<State>, params: &HashMap<String, String>) {
    let state = state.clone();
    let mask: u32 = params
        .get("dlr-mask")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let Some(template) = params.get("dlr-url").cloned() else {
        return;
    };
    let (from, to) = (
        params.get("from").cloned().unwrap_or_default(),
        params.get("to").cloned().unwrap_or_default(),
    );
    let fid = "64c1b333-4eec-49c0-b4cf-c688faa0bf2f";
    tokio::spawn(async move {
        for status in [8u32, 1].into_iter().filter(|s| mask & s != 0) {
            let answer = if status == 8 {
                "ACK/".to_owned()
            } else {
                format!(
                    "id:{fid} sub:001 dlvrd:001 submit date:2611230000 done date:2611230000 \
                     stat:DELIVRD err:000 text:"
                )
            };
            let ts = now_secs().to_string();
            let url = substitute(&template, |escape| match escape {
                'd' => Some(status.to_string()),
                'A' => Some(pct(answer.as_bytes())),
                'T' => Some(ts.clone()),
                'i' => Some("fake1".into()),
                'F' => Some(if status == 1 {
                    fid.into()
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
