//! A hand-written fake of Kannel's smsbox `sendsms` (docs/protocol/channels.md §3.2, §3.10): exact status/body
//! pairs, `X-Kannel-*` headers or query parameters, part counting with silent truncation at
//! `max-messages`, and a DLR engine that calls the templated `dlr-url`.
//!
//! Like the real bearerbox with an SQL DLR storage (Kannel's example tables keep the dlr-url
//! in `url varchar(255)`), a message whose dlr-url is longer is still accepted (`202`) but
//! its reports are lost. An answer can be delayed past the client's timeout after the
//! message was taken (the uncertain send of a slow or cut connection).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(crate) const USER: &str = "sb";
pub(crate) const PASS: &str = "s3cret-pass";

/// One accepted or refused sendsms request.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) query: Option<String>,
    /// Lower-case header names.
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
    pub(crate) status: u16,
    /// SMS parts Kannel would send (after truncation at `max-messages`).
    pub(crate) parts: usize,
    /// True when the text needed more than `max-messages` parts (Kannel cuts silently).
    pub(crate) truncated: bool,
}

#[derive(Debug)]
pub(crate) struct FakeState {
    pub(crate) requests: Mutex<Vec<Recorded>>,
    /// Request numbers (0-based, over all requests) answered 503.
    pub(crate) fail_at: Mutex<Vec<usize>>,
    /// Request numbers (0-based) refused as bearerbox refuses a message it cannot route
    /// (`403 Not routable. Do not try again.`, `gw/smsbox.c` `delayed_http_reply`).
    pub(crate) refuse_at: Mutex<Vec<usize>>,
    /// `3: Queued for later delivery` (no SMSC connected).
    pub(crate) queued: Mutex<bool>,
    /// DLR events sent for each accepted MT with a dlr-url.
    pub(crate) dlr_statuses: Mutex<Vec<u32>>,
    pub(crate) max_messages: usize,
    /// The longest dlr-url bearerbox can store (255 with Kannel's SQL DLR tables).
    pub(crate) dlr_url_limit: usize,
    /// Request numbers (0-based) whose message is taken but whose answer comes this late.
    pub(crate) slow_answer_at: Mutex<Vec<(usize, std::time::Duration)>>,
    http: reqwest::Client,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeKannel {
    pub(crate) url: String,
    pub(crate) state: Arc<FakeState>,
}

impl FakeKannel {
    pub(crate) async fn start(max_messages: usize) -> Self {
        let state = Arc::new(FakeState {
            requests: Mutex::new(Vec::new()),
            fail_at: Mutex::new(Vec::new()),
            refuse_at: Mutex::new(Vec::new()),
            queued: Mutex::new(false),
            dlr_statuses: Mutex::new(vec![8, 1]),
            max_messages,
            dlr_url_limit: 255,
            slow_answer_at: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .route(
                "/cgi-bin/sendsms",
                axum::routing::get(sendsms).post(sendsms),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://127.0.0.1:{port}/cgi-bin/sendsms"),
            state,
        }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The accepted (202) requests.
    pub(crate) fn accepted(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 202)
            .collect()
    }
}

fn kannel(status: StatusCode, body: &'static str) -> (StatusCode, Response) {
    let resp = (
        status,
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::SERVER, "Kannel/1.4.5"),
        ],
        body,
    )
        .into_response();
    (status, resp)
}

/// The fake's own GSM extension table (independent of the channel's).
const EXT: &str = "\u{0c}^{}\\[~]|€";

fn parts_for(text: &str, coding: &str) -> usize {
    let (units, single, per) = if coding == "2" {
        (text.encode_utf16().count(), 70, 67)
    } else {
        let units = text
            .chars()
            .map(|c| if EXT.contains(c) { 2 } else { 1 })
            .sum();
        (units, 160, 153)
    };
    if units <= single {
        1
    } else {
        units.div_ceil(per)
    }
}

fn form_decode(q: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

async fn sendsms(
    State(st): State<Arc<FakeState>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let hdrs: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    // Parameters from the query (GET) or the X-Kannel-* headers (POST text/plain).
    let params: HashMap<String, String> = if method == Method::GET {
        form_decode(query.as_deref().unwrap_or(""))
    } else {
        let mut p = HashMap::new();
        for (k, v) in &hdrs {
            if let Some(name) = k.strip_prefix("x-kannel-") {
                p.insert(name.to_owned(), v.clone());
            }
        }
        p.insert("text".into(), body.clone());
        p
    };
    let n = st.requests.lock().unwrap().len();
    let coding = params.get("coding").cloned().unwrap_or_else(|| "0".into());
    let text = params.get("text").cloned().unwrap_or_default();
    let needed = parts_for(&text, &coding);
    let (status, resp) = if method == Method::POST
        && !hdrs
            .get("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    {
        kannel(StatusCode::BAD_REQUEST, "Invalid content-type")
    } else if params.get("username").map(String::as_str) != Some(USER)
        || params.get("password").map(String::as_str) != Some(PASS)
    {
        kannel(StatusCode::FORBIDDEN, "Authorization failed for sendsms")
    } else if !params.contains_key("to") {
        // smsbox words it per interface (`gw/smsbox.c`: smsbox_req_sendsms for GET,
        // smsbox_sendsms_post for POST).
        kannel(
            StatusCode::BAD_REQUEST,
            if method == Method::POST {
                "Missing receiver(s) number(s), rejected"
            } else {
                "Missing receiver number, rejected"
            },
        )
    } else if params.get("to").is_some_and(|t| t.trim().is_empty()) {
        kannel(
            StatusCode::BAD_REQUEST,
            "Empty receiver number not allowed, rejected",
        )
    } else if text.is_empty() {
        kannel(StatusCode::BAD_REQUEST, "Empty text not allowed, rejected.")
    } else if st.refuse_at.lock().unwrap().contains(&n) {
        kannel(StatusCode::FORBIDDEN, "Not routable. Do not try again.")
    } else if st.fail_at.lock().unwrap().contains(&n) {
        kannel(
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporal failure, try again later.",
        )
    } else if *st.queued.lock().unwrap() {
        kannel(StatusCode::ACCEPTED, "3: Queued for later delivery")
    } else {
        kannel(StatusCode::ACCEPTED, "0: Accepted for delivery")
    };
    st.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        query: query.clone(),
        headers: hdrs,
        body,
        status: status.as_u16(),
        parts: needed.min(st.max_messages),
        truncated: needed > st.max_messages,
    });
    if status == StatusCode::ACCEPTED
        && let (Some(mask), Some(url)) = (params.get("dlr-mask"), params.get("dlr-url"))
        && mask.parse::<u32>().unwrap_or(0) != 0
        && url.len() <= st.dlr_url_limit
    {
        let statuses = st.dlr_statuses.lock().unwrap().clone();
        let (url, from, to) = (
            url.clone(),
            params.get("from").cloned().unwrap_or_default(),
            params.get("to").cloned().unwrap_or_default(),
        );
        let http = st.http.clone();
        tokio::spawn(async move {
            for s in statuses {
                let answer = if s == 8 { "ACK/" } else { "" };
                // As real Kannel: %p and %P swapped relative to the MT.
                let target = fill(&url, s, answer, &to, &from);
                let _ = http.get(target).send().await;
            }
        });
    }
    let slow = st
        .slow_answer_at
        .lock()
        .unwrap()
        .iter()
        .find(|(at, _)| *at == n)
        .map(|(_, delay)| *delay);
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    resp
}

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned()
}

/// Substitutes Kannel's DLR escapes in a dlr-url template.
fn fill(template: &str, status: u32, answer: &str, p: &str, big_p: &str) -> String {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&status.to_string()),
            Some('A') => out.push_str(&enc(answer)),
            Some('T') => out.push_str("1795384787"),
            Some('i') => out.push_str("fake1"),
            Some('F') => out.push_str(if status == 1 { "64c1b333" } else { "" }),
            Some('p') => out.push_str(&enc(p)),
            Some('P') => out.push_str(&enc(big_p)),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}
