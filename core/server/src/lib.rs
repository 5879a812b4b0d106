//! The Switchboard runtime: configuration, the channel instances, the HTTP app, and the
//! `switchboard` command built on them.
//!
//! Entry points at two levels, as with axum: [`run`] does it all from a loaded config, and
//! [`app::app`] gives the router to mount or test without binding a port.

pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod inbox;
pub mod metrics;
pub mod readiness;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::{AppState, app};
use crate::config::{ConfigErrors, LoadedConfig};
use crate::inbox::MemoryInbox;
use crate::runtime::ChannelSet;

/// The channel kinds compiled into the stock binary. A test checks each is registered: a
/// crate nothing references is not linked, and its `inventory` registration would silently
/// vanish.
pub const BUILTIN_KINDS: &[&str] = &[];

/// How many accepted inbound events may wait in memory before channels get 503s.
const INBOX_CAPACITY: usize = 100_000;

/// Why the runtime stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration (including a channel's own keys) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Validates a configuration completely without touching the network: the file, the
/// environment overrides, and every enabled channel's own keys.
pub fn check(loaded: &LoadedConfig) -> Result<ChannelSet, ConfigErrors> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    ChannelSet::build(loaded, Arc::new(MemoryInbox::new(1)), rx)
}

/// Runs the connector until SIGTERM or ctrl-c, then drains in-flight work.
pub async fn run(loaded: LoadedConfig) -> Result<(), RunError> {
    let cfg = &loaded.config;
    let listener = TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: cfg.server.listen,
            source,
        })?;
    serve(loaded, listener, shutdown::signal()).await
}

/// Runs the connector on a bound listener until `stop` resolves.
pub async fn serve(
    loaded: LoadedConfig,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let cfg = loaded.config.clone();
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let inbox = Arc::new(MemoryInbox::new(INBOX_CAPACITY));
    let channels = Arc::new(ChannelSet::build(&loaded, inbox.clone(), shutdown_rx)?);

    let mut state = AppState::new(channels.clone());
    state.body_limit = cfg.server.body_limit_bytes;
    state.request_timeout = cfg.server.request_timeout();
    state.readiness.set("inbox", true, "in-memory");

    let started = channels.start_all();
    let addr = listener.local_addr().map_err(RunError::Serve)?;
    tracing::info!(%addr, channels = channels.len(), "switchboard listening");

    let shutdown_signal = {
        let tx = shutdown_tx.clone();
        async move {
            stop.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = tx.send(true);
        }
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal)
        .await
        .map_err(RunError::Serve)?;

    // Let channels finish their loops, within the grace period.
    let _ = shutdown_tx.send(true);
    let grace = cfg.server.shutdown_grace();
    if tokio::time::timeout(grace, futures::future::join_all(started))
        .await
        .is_err()
    {
        tracing::warn!(?grace, "channels did not stop within the grace period");
    }
    channels.shutdown_all().await;
    tracing::info!(pending = inbox.len(), "switchboard stopped");
    Ok(())
}
