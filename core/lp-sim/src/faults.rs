//! Fault injection: error rates, scripted 429/5xx, latency, outages, token revocation and
//! webhook misbehaviour.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::state::{SimState, epoch_ms};

/// Which group of endpoints a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathClass {
    /// The Domain API.
    Domain,
    /// Sentinel (AppJWT, JWKS).
    Sentinel,
    /// IdP (ConsumerJWS).
    Idp,
    /// CONVERSATION (create).
    Conversation,
    /// SEND.
    Send,
    /// Fake swift file storage.
    Swift,
    /// Every LivePerson endpoint (never `/sim` or `/console`).
    Any,
}

/// "The next `count` requests to `class` answer `status`" (with an optional `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptedFault {
    /// Endpoint group.
    pub class: PathClass,
    /// How many more requests to fail.
    pub count: u32,
    /// HTTP status to answer (e.g. 429, 500, 503).
    pub status: u16,
    /// `Retry-After` header value in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// The current faults (also the `GET /sim/faults` body).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultState {
    /// Probability (0–1) that a CONVERSATION/SEND request answers a 5xx.
    pub error_rate: f64,
    /// Status used by `error_rate` (default 500).
    pub error_status: Option<u16>,
    /// Latency added to every LivePerson endpoint, in ms.
    pub latency_ms: u64,
    /// All LivePerson endpoints answer 503 until this epoch-ms time.
    pub outage_until_ms: Option<u64>,
    /// Scripted failures, consumed in order.
    pub scripted: Vec<ScriptedFault>,
    /// The next N Send API calls report the ConsumerJWS invalid (401 / 40103).
    pub invalidate_jws: u32,
    /// Deliver every webhook notification twice.
    pub duplicate_webhooks: bool,
    /// Deliver webhook notifications out of order (random delays, no per-conversation queue).
    pub reorder_webhooks: bool,
    /// Silently drop the next N webhook notifications.
    pub drop_webhooks: u32,
    /// Process LivePerson requests, then hold the response this many ms ("commit then
    /// timeout": the client may give up although the server acted).
    pub response_delay_ms: u64,
    /// Delay every webhook notification by this many ms before its first attempt.
    pub webhook_delay_ms: u64,
    /// Sign the next N webhook notifications with a wrong secret (tests the receiver's check).
    pub bad_signature_webhooks: u32,
}

/// Body of `POST /sim/faults`: every field optional; applied in the order listed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRequest {
    /// Reset all faults first.
    pub clear: bool,
    /// See [`FaultState::error_rate`].
    pub error_rate: Option<f64>,
    /// See [`FaultState::error_status`].
    pub error_status: Option<u16>,
    /// See [`FaultState::latency_ms`].
    pub latency_ms: Option<u64>,
    /// Start a full outage lasting this many ms (0 ends it).
    pub outage_ms: Option<u64>,
    /// Add a scripted failure.
    pub fail_next: Option<ScriptedFault>,
    /// Revoke every AppJWT issued so far (next Send API call → 40102).
    pub revoke_tokens: bool,
    /// See [`FaultState::invalidate_jws`].
    pub invalidate_jws: Option<u32>,
    /// See [`FaultState::duplicate_webhooks`].
    pub duplicate_webhooks: Option<bool>,
    /// See [`FaultState::reorder_webhooks`].
    pub reorder_webhooks: Option<bool>,
    /// See [`FaultState::drop_webhooks`].
    pub drop_webhooks: Option<u32>,
    /// See [`FaultState::response_delay_ms`].
    pub response_delay_ms: Option<u64>,
    /// See [`FaultState::webhook_delay_ms`].
    pub webhook_delay_ms: Option<u64>,
    /// See [`FaultState::bad_signature_webhooks`].
    pub bad_signature_webhooks: Option<u32>,
}

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
            }),
            ..Default::default()
        });
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

fn fault_response(status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = (
        status,
        axum::Json(
            json!({"code": status.as_u16(), "error": status_text(status), "simulatedFault": true}),
        ),
    )
        .into_response();
    if let Some(s) = retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
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
            Some((503, None))
        } else if let Some(pos) = f
            .scripted
            .iter()
            .position(|s| s.count > 0 && (s.class == class || s.class == PathClass::Any))
        {
            let s = &mut f.scripted[pos];
            s.count -= 1;
            let d = (s.status, s.retry_after);
            if s.count == 0 {
                f.scripted.remove(pos);
            }
            Some(d)
        } else if matches!(class, PathClass::Send | PathClass::Conversation)
            && f.error_rate > 0.0
            && rand::random::<f64>() < f.error_rate
        {
            Some((f.error_status.unwrap_or(500), None))
        } else {
            None
        }
    };
    match decision {
        Some((status, retry_after)) => fault_response(status, retry_after),
        None => {
            let resp = next.run(req).await;
            let delay = sim.lock().faults.response_delay_ms;
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            resp
        }
    }
}
