//! A faithful local simulator of LivePerson Conversational Cloud's Connector API.
//!
//! One axum server plays every LivePerson host a connector talks to — Domain API, Sentinel
//! (AppJWT), IdP (ConsumerJWS), the Send API (CONVERSATION and SEND), swift file storage — and
//! the Webhooks service that POSTs signed notifications back. A `/sim/...` JSON API and an agent
//! console at `/console` play the agent side; `/sim/faults` injects failures.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_lp_sim::SimError> {
//! use switchboard_lp_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default()).await?;
//! sim.set_webhook_endpoint("http://127.0.0.1:9000/webhooks/liveperson");
//! println!("point liveperson.domain_api at {}", sim.domain_api());
//! # Ok(()) }
//! ```
//!
//! The RSA key in `src/sim_key.pem` signs the simulator's tokens; it is public and not a secret.

mod auth;
mod clock;
mod config;
mod console;
mod control;
mod domain;
mod error;
mod fault_layer;
mod faults;
mod inject;
mod notifications;
mod respond;
mod send_api;
mod state;
mod swift;
mod webhooks;

use std::net::SocketAddr;
use std::ops::Deref;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

pub use auth::lp_consumer_id;
pub use config::{
    NOTIFICATION_TYPES, RetryConfig, SignatureAlgorithm, SimConfig, StaticHeader, WebhookEndpoint,
    WebhooksConfig,
};
pub use control::AgentMessage;
pub use error::SimError;
pub use faults::{
    DelayedFault, FaultRequest, FaultState, MalformedFault, MalformedReply, PathClass,
    ScriptedFault,
};
pub use inject::{InjectKind, Injected, WebhookInjection};
pub use notifications::{DeliveryOutcome, WebhookDelivery, signature_header};
pub use state::{
    ConsumerMessage, Conversation, Dialog, DialogParticipant, Participant, ReceivedRequest,
    SimState, TranscriptEntry,
};

async fn not_found() -> Response {
    respond::json_resp(
        StatusCode::NOT_FOUND,
        json!({"error": "Not Found", "message": "no such endpoint in the LivePerson simulator"}),
    )
}

/// The simulator's whole HTTP surface as one router (LivePerson endpoints, `/sim/...`,
/// `/console`), for embedding on your own listener. Call [`SimState::set_public_host`] with the
/// listener's `host:port` so the Domain API hands out the right host (otherwise the request's
/// `Host` header is used).
pub fn router(state: SimState) -> Router {
    let acc = "/api/account/{acc}";
    Router::new()
        // Domain API
        .route(
            &format!("{acc}/service/baseURI.json"),
            get(domain::domain_all),
        )
        .route(
            &format!("{acc}/service/{{service}}/baseURI.json"),
            get(domain::domain_single),
        )
        // Sentinel
        .route(
            "/sentinel/api/account/{acc}/app/token",
            post(domain::sentinel_token),
        )
        .route(
            "/sentinel/api/v2/account/{acc}/app/token",
            post(domain::sentinel_token),
        )
        .route("/sentinel/well-known/jwks", get(domain::jwks))
        // IdP
        .route(&format!("{acc}/consumer"), post(domain::idp_consumer))
        // Send API
        .route(
            &format!("{acc}/messaging/consumer/conversation"),
            post(send_api::conversation),
        )
        .route(
            &format!("{acc}/messaging/consumer/conversation/send"),
            post(send_api::send),
        )
        // swift
        .route("/v1/{*path}", get(swift::get).put(swift::put))
        // control API
        .route("/sim", get(control::info))
        .route(
            "/sim/conversations",
            get(control::list).post(control::start),
        )
        .route("/sim/conversations/{id}", get(control::get_one))
        .route("/sim/conversations/{id}/accept", post(control::accept))
        .route("/sim/conversations/{id}/messages", post(control::message))
        .route("/sim/conversations/{id}/files", post(control::file))
        .route("/sim/conversations/{id}/typing", post(control::typing))
        .route("/sim/conversations/{id}/receipts", post(control::receipt))
        .route("/sim/conversations/{id}/transfer", post(control::transfer))
        .route(
            "/sim/conversations/{id}/back-to-queue",
            post(control::back_to_queue),
        )
        .route("/sim/conversations/{id}/close", post(control::close))
        .route(
            "/sim/conversations/{id}/auto-close",
            post(control::auto_close),
        )
        .route("/sim/requests", get(control::requests))
        .route("/sim/webhooks", get(control::webhooks))
        .route("/sim/webhooks/endpoint", post(control::webhook_endpoint))
        .route("/sim/webhooks/inject", post(control::inject_webhook))
        .route(
            "/sim/faults",
            get(control::get_faults).post(control::post_faults),
        )
        .route("/sim/events", get(console::events))
        .route("/sim/sample-image.svg", get(console::sample_image))
        .route("/console", get(console::page))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fault_layer::fault_layer,
        ))
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
        .with_state(state)
}

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds `127.0.0.1:0`, serves [`router`] on it and returns a handle.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds `addr` (port 0 picks a free one), serves [`router`] on it and returns a handle.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> Result<SimHandle, SimError> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            // Reachable on every interface; loopback is the address to hand out.
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let state = SimState::new(config)?;
        if state.public_host().is_empty() {
            state.set_public_host(&addr.to_string());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(state.clone());
        let streams = state.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                    streams.close_event_streams();
                })
                .await;
        });
        Ok(SimHandle {
            state,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dereferences to [`SimState`] for every control and inspection method.
/// Dropping it stops the server.
#[derive(Debug)]
pub struct SimHandle {
    state: SimState,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:{port}` (the bound address; loopback when bound to all interfaces).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value for a connector's `liveperson.domain_api` (the same server).
    pub fn domain_api(&self) -> String {
        self.base_url()
    }

    /// The bound socket address (loopback when bound to all interfaces).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (also reachable through `Deref`).
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Stops the server and the webhook workers.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.state.stop_webhook_workers();
    }
}

impl Deref for SimHandle {
    type Target = SimState;
    fn deref(&self) -> &SimState {
        &self.state
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.state.stop_webhook_workers();
    }
}
