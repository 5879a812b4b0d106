//! Fault injection: error rates, scripted 429/5xx, latency, outages, token revocation and
//! webhook misbehaviour.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Send `Retry-After` as the HTTP date `retry_after` seconds from now instead of a number
    /// of seconds (both forms are legal HTTP; LivePerson documents neither).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_after_http_date: bool,
}

/// "The next `count` requests to `class` are processed, then answered `delay_ms` late": the
/// commit-then-timeout case (docs/protocol/liveperson.md §14) for one endpoint group, so that the others stay quick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayedFault {
    /// Endpoint group.
    pub class: PathClass,
    /// How many more requests to delay.
    pub count: u32,
    /// How long the answer is held after the request was acted on, in ms.
    pub delay_ms: u64,
}

/// How a malformed answer is malformed (docs/protocol/liveperson.md §14: "string vs integer `code`, body as string vs
/// object"; plus answers a client cannot read at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MalformedReply {
    /// The status stays, the body is `OK` as `text/plain`: not JSON at all.
    NonJson,
    /// Each answer's `body` becomes a JSON string (its `msg`, or `"OK"`), as the WebSocket
    /// API's close answer is (docs/protocol/liveperson.md §4.2).
    StringBody,
    /// Each `code` becomes an integer (`"OK"` → `200`, `"BAD_REQUEST"` → `400`), as in the
    /// authorization error bodies (docs/protocol/liveperson.md §4.2 [CONFLICT]).
    NumericCode,
    /// The body is `[]`.
    EmptyArray,
    /// The body is the JSON string `"OK"`.
    JsonString,
}

/// "The next `count` requests to `class` are processed, then answered with a malformed body".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedFault {
    /// Endpoint group.
    pub class: PathClass,
    /// How many more answers to malform.
    pub count: u32,
    /// How.
    pub reply: MalformedReply,
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
    /// Per-class commit-then-timeout, consumed in order.
    pub delayed: Vec<DelayedFault>,
    /// Per-class malformed answers (after the request was acted on), consumed in order.
    pub malformed: Vec<MalformedFault>,
    /// The Domain API hands out these hosts (`host:port`) instead of its own, per service
    /// name: a base URI changed mid-run, or pointing nowhere.
    pub domain_hosts: BTreeMap<String, String>,
    /// Services the Domain API does not list (the all-services form leaves them out, the
    /// single-service form answers `400` unknown service).
    pub domain_missing: Vec<String>,
    /// LivePerson's clock runs this many seconds ahead of the real one (negative: behind):
    /// AppJWT `iat`/`exp` are issued and checked on it. The connector's clock is the real one.
    pub clock_skew_secs: i64,
    /// The IdP answers `200` instead of the documented `201`.
    pub idp_status_200: bool,
    /// Notifications of these subscription keys (e.g. `cqm.ExConversationChangeNotification`)
    /// are delivered this many ms late, outside their conversation's queue, so later
    /// notifications of other keys overtake them: what a first attempt that failed and was
    /// retried looks like in count mode, whose retries keep no order (docs/protocol/liveperson.md §7.5).
    pub delay_types: BTreeMap<String, u64>,
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
    /// Add a per-class commit-then-timeout (see [`FaultState::delayed`]).
    pub delay_next: Option<DelayedFault>,
    /// Add malformed answers (see [`FaultState::malformed`]).
    pub malform_next: Option<MalformedFault>,
    /// Replace [`FaultState::domain_hosts`] (`{}` restores the real hosts).
    pub domain_hosts: Option<BTreeMap<String, String>>,
    /// Replace [`FaultState::domain_missing`].
    pub domain_missing: Option<Vec<String>>,
    /// See [`FaultState::clock_skew_secs`].
    pub clock_skew_secs: Option<i64>,
    /// See [`FaultState::idp_status_200`].
    pub idp_status_200: Option<bool>,
    /// Replace [`FaultState::delay_types`] (`{}` delivers every type on time again).
    pub delay_types: Option<BTreeMap<String, u64>>,
}
