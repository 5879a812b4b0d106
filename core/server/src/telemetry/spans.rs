//! The spans of one message's trace, named as a trace viewer shows them:
//!
//! - `{METHOD} {route}`: the HTTP server span of a request ([`trace_layer`]), e.g.
//!   `GET /channels/{instance}/{*rest}` for an SMS from Kannel or `POST /webhooks/liveperson`;
//!   the child of the request's `traceparent`, when it has a valid one. Its attributes follow
//!   OpenTelemetry's HTTP semantic conventions (`http.request.method`, `http.route`,
//!   `http.response.status_code`), plus the channel instance. No query string, path value or
//!   body is recorded: they carry phone numbers, texts and link tokens.
//! - `store.enqueue`: the write that made the event durable, the parent of every attempt.
//! - `outbox.attempt`: one attempt at sending an item (it may run on another instance),
//!   with its outcome (`delivered`, `retry`, `wait` or `dead_letter`).
//! - `liveperson.create_conversation`, `liveperson.send` and `channel.deliver`: the calls to
//!   the other side within an attempt.
//!
//! A span of these records failure as OpenTelemetry's `ERROR` status with a description.

use std::time::Duration;

use axum::extract::MatchedPath;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::SPAN_TARGET;

/// Routes polled by monitoring, which get no span (they would bury the messages' traces).
const UNTRACED_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The layer that runs each request inside its HTTP server span: tower-http's trace layer,
/// with the span made by [`RequestSpan`] and the answer recorded by [`RecordStatus`]. It logs
/// nothing itself (the request counter and the handlers' own lines say what happened). With
/// telemetry off the span is disabled and costs a check of a cached flag.
pub fn trace_layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), RecordStatus, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(RecordStatus)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Makes a request's `http.server` span, the child of its `traceparent` when it has a valid
/// one; monitoring routes get none.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &http::Request<B>) -> tracing::Span {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        if UNTRACED_ROUTES.contains(&route) {
            return tracing::Span::none();
        }
        let method = req.method();
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            "http.server",
            otel.name = format!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = route,
            http.response.status_code = Empty,
            switchboard.channel = Empty,
            otel.status_code = Empty,
        );
        if span.is_disabled() {
            return span;
        }
        if let Some(parent) = super::from_headers(req.headers()) {
            let _ = span.set_parent(parent);
        }
        if let Some(instance) = req
            .uri()
            .path()
            .strip_prefix("/channels/")
            .and_then(|rest| rest.split('/').next())
            .filter(|_| route.starts_with("/channels/{instance}"))
        {
            span.record("switchboard.channel", instance);
        }
        span
    }
}

/// Records the answer's status on the request's span; a 5xx marks it failed (a 4xx is the
/// client's error, per OpenTelemetry's HTTP semantic conventions).
#[derive(Debug, Clone, Copy)]
pub struct RecordStatus;

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, response: &http::Response<B>, _latency: Duration, span: &tracing::Span) {
        if span.is_disabled() {
            return;
        }
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}

/// The span of the write to `store` that makes an event of `direction` durable; its context
/// is what the item stores ([`super::to_stored`]).
pub fn store_write(
    store: &switchboard_store::Store,
    direction: switchboard_store::Direction,
) -> tracing::Span {
    tracing::info_span!(
        target: SPAN_TARGET,
        "store.enqueue",
        outbox.direction = direction.as_str(),
        db.system.name = match store.backend() {
            switchboard_store::Backend::Sqlite => "sqlite",
            switchboard_store::Backend::Postgres => "postgresql",
        },
    )
}

/// The span of one attempt at item `item`: the child of the context stored with it, so it
/// joins the trace of the request that brought the event in, on whichever instance.
pub fn attempt(item: &switchboard_store::OutboxItem) -> tracing::Span {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "outbox.attempt",
        outbox.direction = item.direction.as_str(),
        outbox.item_id = item.id,
        outbox.attempt = u64::from(item.attempts) + 1,
        outbox.outcome = Empty,
        outbox.retry_in_ms = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if !span.is_disabled()
        && let Some(parent) = item.trace_context.as_deref().and_then(super::from_stored)
    {
        let _ = span.set_parent(parent);
    }
    span
}

/// Records an attempt's `outcome` on its span (the current one), and `error` as its failure.
pub fn attempt_outcome(
    outcome: &'static str,
    retry_in: Option<std::time::Duration>,
    error: Option<&str>,
) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.record("outbox.outcome", outcome);
    if let Some(after) = retry_in {
        span.record(
            "outbox.retry_in_ms",
            u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        );
    }
    if let Some(error) = error {
        failed(&span, error);
    }
}

/// The span of one Send API request of the kind `request` (`text`, `file`, `chat_state`,
/// `accept_status`).
pub fn liveperson_send(request: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: SPAN_TARGET,
        "liveperson.send",
        otel.kind = "client",
        liveperson.request = request,
        liveperson.sequence = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// The span of a conversation request (CONVERSATION, `consumerRequestConversation`).
pub fn liveperson_create_conversation() -> tracing::Span {
    tracing::info_span!(
        target: SPAN_TARGET,
        "liveperson.create_conversation",
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// The span of a channel's `deliver` of an event of `kind` to a consumer of `instance`.
pub fn channel_deliver(instance: &str, kind: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: SPAN_TARGET,
        "channel.deliver",
        otel.kind = "client",
        switchboard.channel = instance,
        switchboard.event = kind,
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// Marks `span` failed with `description`.
pub fn failed(span: &tracing::Span, description: &str) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", description);
}
