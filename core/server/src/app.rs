//! The HTTP surface: health, readiness, metrics, channel endpoints and the LivePerson webhook,
//! built by one function so tests drive it with `oneshot` without binding a port.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::instances::ChannelSet;
use crate::metrics as m;
use crate::ratelimit::{FailureLimiter, client_ip};
use crate::readiness::Readiness;

/// Failed media-link requests a client address may make at once (a consumer who mistypes a
/// link a few times is never refused) …
pub const MEDIA_FAILURE_BURST: u32 = 20;
/// … and how often one more is allowed after those: guessing costs a guesser this long per
/// try, and nobody else anything.
pub const MEDIA_FAILURE_REFILL: Duration = Duration::from_secs(3);

/// Re-exported from where the app names them (the routing layer implements them by this path).
pub use crate::handlers::{LivePersonWebhook, MediaFiles};

/// Everything the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The channel instances.
    pub channels: Arc<ChannelSet>,
    /// Component readiness for `/readyz`.
    pub readiness: Readiness,
    /// The metrics renderer for `/metrics`.
    pub metrics: PrometheusHandle,
    /// The LivePerson webhook handler, once the engine is configured.
    pub liveperson: Option<Arc<dyn LivePersonWebhook>>,
    /// The media links' file server, once the engine is configured.
    pub media: Option<Arc<dyn MediaFiles>>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// `server.trusted_proxies`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Failed `/media/…` requests per client address.
    pub media_failures: Arc<FailureLimiter>,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("channels", &self.channels.len())
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State with the given channels and defaults for everything else (1 MiB body limit, 30 s
    /// timeout, no LivePerson webhook handler).
    pub fn new(channels: Arc<ChannelSet>) -> Self {
        Self {
            channels,
            readiness: Readiness::default(),
            metrics: m::handle(),
            liveperson: None,
            media: None,
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            trusted_proxies: Arc::from(Vec::new()),
            media_failures: Arc::new(FailureLimiter::new(
                MEDIA_FAILURE_BURST,
                MEDIA_FAILURE_REFILL,
            )),
        }
    }
}

/// Builds the router with every endpoint, `/metrics` and `/readyz` included (no
/// `server.admin_listen`).
pub fn app(state: AppState) -> Router {
    router(state, Endpoints::All)
}

/// The router of the public listener when `server.admin_listen` is set: everything but
/// `/metrics` and `/readyz`, which [`admin_app`] serves.
pub fn public_app(state: AppState) -> Router {
    router(state, Endpoints::Public)
}

/// The router of `server.admin_listen`: `/healthz`, `/readyz` and `/metrics` only.
pub fn admin_app(state: AppState) -> Router {
    router(state, Endpoints::Admin)
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoints {
    All,
    Public,
    Admin,
}

fn router(state: AppState, endpoints: Endpoints) -> Router {
    let mut router = Router::new().route("/healthz", get(healthz));
    if endpoints != Endpoints::Public {
        router = router
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text));
    }
    if endpoints != Endpoints::Admin {
        router = router
            .route("/webhooks/liveperson", post(liveperson_webhook))
            .route("/media/{token}", get(media_file))
            .route("/media/{token}/{name}", get(media_file_named))
            .route("/channels/{instance}", any(channel_root))
            .route("/channels/{instance}/", any(channel_root))
            .route("/channels/{instance}/{*rest}", any(channel_path));
    }
    router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            timeout_and_count,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }))
        // Outermost, so that the request's span covers everything it does (`telemetry::spans`).
        .layer(crate::telemetry::spans::trace_layer())
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, components) = state.readiness.snapshot();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "components": components,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn liveperson_webhook(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(handler) = state.liveperson.clone() else {
        return Err(ApiError::unavailable(
            "the LivePerson engine is not configured",
            30,
        ));
    };
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.body_limit).await?;
    let handled = handler.handle(&parts.headers, body).await;
    metrics::histogram!(m::LP_WEBHOOK_SECONDS).record(started.elapsed().as_secs_f64());
    handled?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /media/{token}`: a client address that has failed too often is refused with 429
/// before the token is looked at; a token not found (or expired) counts as a failure.
async fn media_file(
    State(state): State<AppState>,
    Path(token): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let client = client_ip(req.extensions(), req.headers(), &state.trusted_proxies);
    if let Err(wait) = state.media_failures.check(client) {
        metrics::counter!(m::MEDIA_REFUSED).increment(1);
        return Err(ApiError {
            retry_after: Some(wait.as_secs().max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for links that do not exist; try again later",
            )
        });
    }
    let Some(media) = state.media.clone() else {
        state.media_failures.failed(client);
        return Err(ApiError::not_found("no such file"));
    };
    let (mime, data) = match media.fetch(&token).await {
        Ok(file) => file,
        Err(e) => {
            if matches!(e.status, StatusCode::NOT_FOUND | StatusCode::GONE) {
                state.media_failures.failed(client);
            }
            return Err(e);
        }
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, mime),
            (
                axum::http::header::CACHE_CONTROL,
                "private, max-age=3600".to_owned(),
            ),
        ],
        data,
    )
        .into_response())
}

async fn media_file_named(
    state: State<AppState>,
    Path((token, _name)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    media_file(state, Path(token), req).await
}

async fn channel_root(
    State(state): State<AppState>,
    Path(instance): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    dispatch(state, instance, String::new(), req).await
}

async fn channel_path(
    State(state): State<AppState>,
    Path((instance, rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    dispatch(state, instance, rest, req).await
}

/// Hands a request to a channel instance as plain data, with its path made relative to the
/// instance's mount point.
async fn dispatch(
    state: AppState,
    instance: String,
    rest: String,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(inst) = state.channels.get(&instance) else {
        return Err(ApiError::not_found(format!(
            "no channel instance `{instance}`"
        )));
    };
    let (parts, body) = req.into_parts();
    let body = read_body(body, state.body_limit).await?;
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let mut builder = http::Request::builder()
        .method(parts.method)
        .uri(path_and_query)
        .version(parts.version);
    if let Some(h) = builder.headers_mut() {
        *h = parts.headers;
    }
    let plain = builder
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let started = std::time::Instant::now();
    let resp = inst.channel.handle_http(plain, &inst.ctx).await;
    metrics::histogram!(m::CHANNEL_WEBHOOK_SECONDS, "channel" => instance)
        .record(started.elapsed().as_secs_f64());
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// Reads a body up to `limit` bytes; more is a 413 with a JSON body.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        // to_bytes reports the limit through its error source chain.
        let too_large = std::error::Error::source(&err)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "could not read the request body",
            )
        }
    })
}

/// Times out slow requests with a JSON 503 and counts every request by route and status.
async fn timeout_and_count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    // The handler is never cut off in the middle of storing an event: past the timeout it is
    // dropped (503, the sender retries) only if no event write had started, and a write in
    // flight runs to its end and the handler answers (see `WriteGate`).
    let gate = Arc::new(crate::routing::WriteGate::default());
    let handler = gate.guard(next.run(req));
    tokio::pin!(handler);
    let resp = match tokio::time::timeout(state.request_timeout, &mut handler).await {
        Ok(resp) => resp,
        Err(_) if gate.close() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "request took too long",
        )
        .into_response(),
        Err(_) => handler.await,
    };
    metrics::counter!(m::HTTP_REQUESTS, "route" => route, "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}
