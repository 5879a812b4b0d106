//! Applying faults: the control methods on [`SimState`] that set them, and the middleware that
//! injects them into the simulator's answers. What can be injected is [`crate::faults`].

use crate::clock::epoch_ms;
use crate::faults::{
    DelayedFault, FaultRequest, FaultState, MalformedFault, MalformedReply, PathClass,
    ScriptedFault,
};
use crate::state::SimState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

impl SimState {
    /// The current faults.
    pub fn faults(&self) -> FaultState {
        self.lock().faults.clone()
    }

    /// Applies a fault request (the Rust form of `POST /sim/faults`).
    pub fn apply_faults(&self, r: FaultRequest) -> FaultState {
        let mut g = self.lock();
        if r.clear {
            g.faults = FaultState::default();
        }
        let f = &mut g.faults;
        if let Some(v) = r.error_rate {
            f.error_rate = if v.is_finite() {
                v.clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
        if let Some(v) = r.error_status {
            f.error_status = Some(v);
        }
        if let Some(v) = r.latency_ms {
            f.latency_ms = v;
        }
        if let Some(ms) = r.outage_ms {
            f.outage_until_ms = (ms > 0).then(|| epoch_ms().saturating_add(ms));
        }
        if let Some(s) = r.fail_next
            && s.count > 0
        {
            f.scripted.push(s);
        }
        if let Some(v) = r.invalidate_jws {
            f.invalidate_jws = v;
        }
        if let Some(v) = r.duplicate_webhooks {
            f.duplicate_webhooks = v;
        }
        if let Some(v) = r.reorder_webhooks {
            f.reorder_webhooks = v;
        }
        if let Some(v) = r.drop_webhooks {
            f.drop_webhooks = v;
        }
        if let Some(v) = r.response_delay_ms {
            f.response_delay_ms = v;
        }
        if let Some(v) = r.webhook_delay_ms {
            f.webhook_delay_ms = v;
        }
        if let Some(v) = r.bad_signature_webhooks {
            f.bad_signature_webhooks = v;
        }
        if let Some(d) = r.delay_next
            && d.count > 0
        {
            f.delayed.push(d);
        }
        if let Some(m) = r.malform_next
            && m.count > 0
        {
            f.malformed.push(m);
        }
        if let Some(v) = r.domain_hosts {
            f.domain_hosts = v;
        }
        if let Some(v) = r.domain_missing {
            f.domain_missing = v;
        }
        if let Some(v) = r.clock_skew_secs {
            // Within a century either way: enough for any test, no overflow anywhere.
            f.clock_skew_secs = v.clamp(-3_155_760_000, 3_155_760_000);
        }
        if let Some(v) = r.idp_status_200 {
            f.idp_status_200 = v;
        }
        if let Some(v) = r.delay_types {
            f.delay_types = v;
        }
        if r.revoke_tokens {
            let issued: Vec<String> = g.issued_tokens.drain().collect();
            g.revoked_tokens.extend(issued);
        }
        g.faults.clone()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.apply_faults(FaultRequest {
            clear: true,
            ..Default::default()
        });
    }

    /// Probability (0–1) of a 5xx on CONVERSATION/SEND.
    pub fn set_error_rate(&self, rate: f64) {
        self.apply_faults(FaultRequest {
            error_rate: Some(rate),
            ..Default::default()
        });
    }

    /// The next `count` requests to `class` answer `status`, with `Retry-After: retry_after`.
    pub fn fail_next(&self, class: PathClass, count: u32, status: u16, retry_after: Option<u64>) {
        self.apply_faults(FaultRequest {
            fail_next: Some(ScriptedFault {
                class,
                count,
                status,
                retry_after,
                retry_after_http_date: false,
            }),
            ..Default::default()
        });
    }

    /// The next `count` requests to `class` are acted on, then answered `delay` late (a client
    /// with a shorter timeout gives up on a request that succeeded).
    pub fn delay_next(&self, class: PathClass, count: u32, delay: Duration) {
        self.apply_faults(FaultRequest {
            delay_next: Some(DelayedFault {
                class,
                count,
                delay_ms: delay.as_millis().try_into().unwrap_or(u64::MAX),
            }),
            ..Default::default()
        });
    }

    /// The next `count` requests to `class` are acted on, then answered with `reply`.
    pub fn malform_next(&self, class: PathClass, count: u32, reply: MalformedReply) {
        self.apply_faults(FaultRequest {
            malform_next: Some(MalformedFault {
                class,
                count,
                reply,
            }),
            ..Default::default()
        });
    }

    /// The Domain API hands out `host` (`host:port`, no scheme) for `service`; `None` restores
    /// the simulator's own host.
    pub fn set_domain_host(&self, service: &str, host: Option<&str>) {
        let mut hosts = self.faults().domain_hosts;
        match host {
            Some(h) => hosts.insert(service.to_string(), h.to_string()),
            None => hosts.remove(service),
        };
        self.apply_faults(FaultRequest {
            domain_hosts: Some(hosts),
            ..Default::default()
        });
    }

    /// The Domain API stops (`true`) or resumes (`false`) listing `service`.
    pub fn set_domain_missing(&self, service: &str, missing: bool) {
        let mut list = self.faults().domain_missing;
        list.retain(|s| s != service);
        if missing {
            list.push(service.to_string());
        }
        self.apply_faults(FaultRequest {
            domain_missing: Some(list),
            ..Default::default()
        });
    }

    /// LivePerson's clock runs `secs` ahead of the real one (negative: behind).
    pub fn set_clock_skew(&self, secs: i64) {
        self.apply_faults(FaultRequest {
            clock_skew_secs: Some(secs),
            ..Default::default()
        });
    }

    /// LivePerson's current time in epoch seconds (the real one plus the clock skew).
    pub(crate) fn lp_now_secs(&self) -> u64 {
        let skew = self.lock().faults.clock_skew_secs;
        (epoch_ms() / 1000).saturating_add_signed(skew)
    }

    /// Adds latency to every LivePerson endpoint.
    pub fn set_latency(&self, latency: Duration) {
        self.apply_faults(FaultRequest {
            latency_ms: Some(latency.as_millis() as u64),
            ..Default::default()
        });
    }

    /// Every LivePerson endpoint answers 503 for `duration`.
    pub fn outage(&self, duration: Duration) {
        self.apply_faults(FaultRequest {
            outage_ms: Some(duration.as_millis().max(1) as u64),
            ..Default::default()
        });
    }

    /// Revokes (expires) every AppJWT issued so far: the next Send API call answers 40102.
    pub fn revoke_tokens(&self) {
        self.apply_faults(FaultRequest {
            revoke_tokens: true,
            ..Default::default()
        });
    }

    /// The next `count` Send API calls report the ConsumerJWS invalid (40103).
    pub fn invalidate_consumer_jws(&self, count: u32) {
        self.apply_faults(FaultRequest {
            invalidate_jws: Some(count),
            ..Default::default()
        });
    }

    /// Deliver each webhook notification twice.
    pub fn set_duplicate_webhooks(&self, on: bool) {
        self.apply_faults(FaultRequest {
            duplicate_webhooks: Some(on),
            ..Default::default()
        });
    }

    /// Deliver webhook notifications out of order.
    pub fn set_reorder_webhooks(&self, on: bool) {
        self.apply_faults(FaultRequest {
            reorder_webhooks: Some(on),
            ..Default::default()
        });
    }
}

pub(crate) fn classify(path: &str) -> Option<PathClass> {
    if path.starts_with("/sim") || path.starts_with("/console") {
        return None;
    }
    if path.starts_with("/sentinel") {
        return Some(PathClass::Sentinel);
    }
    if path.starts_with("/v1/") {
        return Some(PathClass::Swift);
    }
    if path.ends_with("/conversation/send") {
        return Some(PathClass::Send);
    }
    if path.ends_with("/messaging/consumer/conversation") {
        return Some(PathClass::Conversation);
    }
    if path.starts_with("/api/account/") && path.contains("/service/") {
        return Some(PathClass::Domain);
    }
    if path.starts_with("/api/account/") && path.ends_with("/consumer") {
        return Some(PathClass::Idp);
    }
    Some(PathClass::Any)
}

fn status_text(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

fn fault_response(status: u16, retry_after: Option<u64>, http_date: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = (
        status,
        axum::Json(
            json!({"code": status.as_u16(), "error": status_text(status), "simulatedFault": true}),
        ),
    )
        .into_response();
    if let Some(s) = retry_after {
        let value = if http_date {
            let at = SystemTime::now()
                .checked_add(Duration::from_secs(s))
                .unwrap_or_else(SystemTime::now);
            httpdate::fmt_http_date(at)
        } else {
            s.to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

fn matches(fault: PathClass, class: PathClass) -> bool {
    fault == class || fault == PathClass::Any
}

/// Consumes one count of the first entry of `list` that applies to `class`.
fn take<T: Clone>(
    list: &mut Vec<T>,
    class: PathClass,
    fields: impl Fn(&mut T) -> (PathClass, &mut u32),
) -> Option<T> {
    let pos = list.iter_mut().position(|f| {
        let (c, n) = fields(f);
        *n > 0 && matches(c, class)
    })?;
    let taken = list[pos].clone();
    let (_, n) = fields(&mut list[pos]);
    *n -= 1;
    if *n == 0 {
        list.remove(pos);
    }
    Some(taken)
}

/// Rewrites every answer element (the object, or each object of an array).
fn each_answer(value: &mut Value, f: impl Fn(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Object(o) => f(o),
        Value::Array(items) => items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(f),
        _ => {}
    }
}

/// Turns a real answer into the malformed one `reply` asks for (status kept).
async fn malform(resp: Response, reply: MalformedReply) -> Response {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match reply {
        MalformedReply::NonJson => {
            return (status, [(header::CONTENT_TYPE, "text/plain")], "OK").into_response();
        }
        MalformedReply::EmptyArray => value = json!([]),
        MalformedReply::JsonString => value = json!("OK"),
        MalformedReply::StringBody => each_answer(&mut value, |o| {
            let text = o
                .get("body")
                .and_then(|b| b.get("msg"))
                .and_then(Value::as_str)
                .unwrap_or("OK")
                .to_string();
            o.insert("body".into(), Value::String(text));
        }),
        MalformedReply::NumericCode => each_answer(&mut value, |o| {
            let code = match o.get("code").and_then(Value::as_str) {
                Some("OK") => json!(200),
                Some("BAD_REQUEST") => json!(400),
                Some(other) => other.parse::<u64>().map(|n| json!(n)).unwrap_or(json!(500)),
                None => return,
            };
            o.insert("code".into(), code);
        }),
    }
    (status, axum::Json(value)).into_response()
}

/// Middleware applying the current faults before the real handler.
pub(crate) async fn fault_layer(State(sim): State<SimState>, req: Request, next: Next) -> Response {
    let Some(class) = classify(req.uri().path()) else {
        return next.run(req).await;
    };
    let latency = sim.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let decision = {
        let mut g = sim.lock();
        let f = &mut g.faults;
        if f.outage_until_ms.is_some_and(|t| epoch_ms() < t) {
            Some((503, None, false))
        } else if let Some(s) = take(&mut f.scripted, class, |s| (s.class, &mut s.count)) {
            Some((s.status, s.retry_after, s.retry_after_http_date))
        } else if matches!(class, PathClass::Send | PathClass::Conversation)
            && f.error_rate > 0.0
            && rand::random::<f64>() < f.error_rate
        {
            Some((f.error_status.unwrap_or(500), None, false))
        } else {
            None
        }
    };
    if let Some((status, retry_after, http_date)) = decision {
        return fault_response(status, retry_after, http_date);
    }
    // The request is acted on; what follows only spoils or delays its answer.
    let mut resp = next.run(req).await;
    let (malformed, delayed, delay) = {
        let mut g = sim.lock();
        let f = &mut g.faults;
        (
            take(&mut f.malformed, class, |m| (m.class, &mut m.count)),
            take(&mut f.delayed, class, |d| (d.class, &mut d.count)),
            f.response_delay_ms,
        )
    };
    if let Some(m) = malformed {
        resp = malform(resp, m.reply).await;
    }
    let delay = delay.saturating_add(delayed.map_or(0, |d| d.delay_ms));
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    resp
}
