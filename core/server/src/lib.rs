//! The Switchboard runtime: configuration, the channel instances, the HTTP app, and the
//! `switchboard` command built on them.
//!
//! Entry points at two levels, as with axum: [`run`] does it all from a loaded config, and
//! [`app::app`] gives the router to mount or test without binding a port.

pub mod app;
pub mod cli;
pub mod config;
pub mod config_reference;
pub mod error;
pub mod handlers;
pub mod inbox;
pub mod instances;
pub mod liveperson;
pub mod metrics;
pub mod plugins;
pub mod ratelimit;
pub mod readiness;
pub mod routing;
pub mod runtime;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::app::{AppState, app};
use crate::config::{ConfigErrors, LoadedConfig};
use crate::inbox::MemoryInbox;
use crate::instances::ChannelSet;
use crate::routing::{Routing, RoutingSettings, StoreSink};
use switchboard_liveperson::Engine;
use switchboard_store::Store;
use tokio::sync::Notify;

/// The channel kinds compiled into the stock binary. A test checks each is registered: a
/// crate nothing references is not linked, and its `inventory` registration would silently
/// vanish.
pub const BUILTIN_KINDS: &[&str] = &["slack", "sms", "telegram", "webchat"];

// Referenced so the linker keeps each built-in channel crate (and its registration).
extern crate switchboard_channel_slack;
extern crate switchboard_channel_sms;
extern crate switchboard_channel_telegram;
extern crate switchboard_channel_webchat;

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
    /// The embedded simulator's address could not be bound.
    #[error("cannot start the LivePerson simulator on {addr}: {source}")]
    SimulatorBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(String),
    /// The LivePerson engine or the simulator could not be set up.
    #[error("liveperson: {0}")]
    LivePerson(String),
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

/// The App Install Manifest for a deployment (`switchboard manifest`).
pub fn manifest(loaded: &LoadedConfig) -> Result<serde_json::Value, ConfigErrors> {
    let config = &loaded.config;
    let Some(public_url) = &config.server.public_url else {
        return Err(ConfigErrors(vec![loaded.problem(
            switchboard_core::ConfigError::new(
                "server.public_url",
                "must be set: LivePerson calls the webhooks at this HTTPS address",
            ),
        )]));
    };
    if public_url.scheme() != "https" {
        return Err(ConfigErrors(vec![loaded.problem(
            switchboard_core::ConfigError::new(
                "server.public_url",
                "must be an https:// URL: LivePerson only calls HTTPS webhook endpoints",
            ),
        )]));
    }
    let section = &config.liveperson.manifest;
    let mut options = switchboard_liveperson::ManifestOptions::default();
    if let Some(name) = &config.liveperson.client_name {
        options.client_name = name.clone();
    }
    if let Some(description) = &section.description {
        options.description = description.clone();
    }
    if let Some(seconds) = section.retention_time {
        options.retention_time_secs = seconds;
    }
    options.max_retries = section.max_retries;
    options.engagement = section.engagement.clone();
    Ok(switchboard_liveperson::manifest(
        public_url.as_str(),
        &options,
    ))
}

/// The kannel.conf groups for an `sms` channel of a deployment (`switchboard sms
/// kannel-config`): `instance` names it, or the only enabled `sms` instance is used.
pub fn kannel_config(
    loaded: &LoadedConfig,
    instance: Option<&str>,
) -> Result<String, ConfigErrors> {
    let cfg = runtime::instance_config(loaded, "sms", instance).map_err(|message| {
        ConfigErrors(vec![
            loaded.problem(switchboard_core::ConfigError::new("channels", message)),
        ])
    })?;
    switchboard_channel_sms::kannel_config_snippet(&cfg)
        .map_err(|e| ConfigErrors(vec![loaded.problem(e)]))
}

/// The configuration of `switchboard demo`: the simulator, SQLite under `./data`, and a web
/// chat instance `web` for the consumer side.
pub fn demo_config(listen: std::net::SocketAddr) -> Result<LoadedConfig, ConfigErrors> {
    use figment::providers::{Format, Toml};
    let simulator = demo_simulator_addr(listen)
        .map(|a| format!("simulator_listen = \"{a}\"\n"))
        .unwrap_or_default();
    let toml = format!(
        "[server]\nlisten = \"{listen}\"\n[liveperson]\nmode = \"simulator\"\n{simulator}\
         [channels.web]\nkind = \"webchat\"\ntitle = \"Switchboard demo chat\"\n"
    );
    LoadedConfig::from_figment(figment::Figment::from(Toml::string(&toml)), None)
}

/// Where `switchboard demo` puts the simulator and its agent console: the same address as
/// `listen` with the port + 1 (none when `listen`'s port is 0 or the last one).
pub fn demo_simulator_addr(listen: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    let port = listen
        .port()
        .checked_add(1)
        .filter(|_| listen.port() != 0)?;
    Some(std::net::SocketAddr::new(listen.ip(), port))
}

/// Runs the LivePerson simulator alone until ctrl-c (`switchboard sim`).
#[cfg(not(feature = "simulator"))]
pub async fn run_simulator(
    listen: std::net::SocketAddr,
    manifest: Option<String>,
) -> Result<(), RunError> {
    let _ = (listen, manifest);
    Err(RunError::LivePerson(config::NO_SIMULATOR.to_owned()))
}

/// Runs the LivePerson simulator alone until ctrl-c (`switchboard sim`).
#[cfg(feature = "simulator")]
pub async fn run_simulator(
    listen: std::net::SocketAddr,
    manifest: Option<String>,
) -> Result<(), RunError> {
    let mut config = switchboard_lp_sim::SimConfig::default();
    if let Some(json) = manifest {
        config = config
            .with_manifest(&json)
            .map_err(|e| RunError::LivePerson(format!("manifest: {e}")))?;
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: listen,
            source,
        })?;
    let state = switchboard_lp_sim::SimState::new(config)
        .map_err(|e| RunError::LivePerson(e.to_string()))?;
    state.set_public_host(&listen.to_string());
    println!("LivePerson simulator on http://{listen}");
    println!("  domain_api:    http://{listen}");
    println!("  account_id:    {}", state.account_id());
    println!("  client_id:     {}", state.client_id());
    println!(
        "  client_secret: set SWITCHBOARD_LIVEPERSON__CLIENT_SECRET to the simulator's (see /sim)"
    );
    println!("  agent console: http://{listen}/console");
    axum::serve(listener, switchboard_lp_sim::router(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown::signal().await;
            // Open agent consoles keep `/sim/events` streams open; end them.
            state.close_event_streams();
        })
        .await
        .map_err(RunError::Serve)?;
    Ok(())
}

/// The sockets a connector serves on: the public listener, and `server.admin_listen`'s.
#[derive(Debug)]
pub struct Listeners {
    /// `server.listen`.
    pub public: TcpListener,
    /// `server.admin_listen`, when set: `/metrics`, `/readyz` and `/healthz` only.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds `server.listen` and `server.admin_listen`.
    pub async fn bind(server: &config::ServerConfig) -> Result<Self, RunError> {
        let bind = |addr: std::net::SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })
        };
        let public = bind(server.listen).await?;
        let admin = match server.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self { public, admin })
    }
}

/// Runs the connector until SIGTERM or ctrl-c, then drains in-flight work.
pub async fn run(loaded: LoadedConfig) -> Result<(), RunError> {
    let listeners = Listeners::bind(&loaded.config.server).await?;
    start(loaded, listeners)
        .await?
        .serve(shutdown::signal())
        .await
}

/// Runs the connector on a bound listener until `stop` resolves.
pub async fn serve(
    loaded: LoadedConfig,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listeners = Listeners {
        public: listener,
        admin: None,
    };
    start(loaded, listeners).await?.serve(stop).await
}

/// A connector that is set up (store open, LivePerson side ready, channels built, every
/// socket bound) and not serving yet: [`Started::serve`] runs it.
#[derive(Debug)]
pub struct Started {
    loaded: LoadedConfig,
    listeners: Listeners,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    store: Store,
    backend: liveperson::Backend,
    channels: Arc<ChannelSet>,
    routing: Routing,
    state: AppState,
    checks: Vec<tokio::task::JoinHandle<()>>,
}

/// Sets a connector up on bound `listeners`: opens the store, starts the LivePerson side (the
/// embedded simulator binds its own address here), builds the channels.
pub async fn start(loaded: LoadedConfig, listeners: Listeners) -> Result<Started, RunError> {
    let cfg = loaded.config.clone();
    let addr = listeners.public.local_addr().map_err(RunError::Serve)?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);

    let store = Store::connect_with(
        &cfg.store.url,
        switchboard_store::StoreOptions::default().with_sync(cfg.store.sync),
    )
    .await
    .map_err(|e| RunError::Store(e.to_string()))?;
    let backend = liveperson::start(&cfg, addr).await?;
    let engine =
        Engine::new(backend.engine.clone()).map_err(|e| RunError::LivePerson(e.to_string()))?;

    let wake = Arc::new(Notify::new());
    let trace = cfg.store.trace_retention().map(|_| {
        let instance = routing::timeline::instance_id();
        tracing::info!(%instance, "tracing every event in the store");
        switchboard_store::TraceLog::start(store.clone(), instance)
    });
    let sink = Arc::new(StoreSink::new(store.clone(), wake.clone()).with_trace(trace.clone()));
    let channels = Arc::new(ChannelSet::build(&loaded, sink, shutdown_rx.clone())?);
    let mut settings = RoutingSettings::default();
    settings.retry.scale = cfg.liveperson.retry_scale;
    settings.lease = std::time::Duration::from_secs(cfg.store.lease_secs.max(1));
    settings.max_attempts = cfg.store.max_attempts;
    settings.max_age = std::time::Duration::from_secs(cfg.store.max_age_secs);
    if let Some(retention) = cfg.store.trace_retention() {
        settings.trace_retention = retention;
    }
    settings.trace = trace;
    if let Some(seconds) = cfg.liveperson.manifest.retention_time {
        settings.webhook_retention = std::time::Duration::from_secs(seconds.into());
    }
    settings.public_url = cfg
        .server
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned());
    let routing = Routing::new(
        store.clone(),
        engine.clone(),
        channels.clone(),
        settings,
        wake,
    );

    let mut state = AppState::new(channels.clone());
    channels.report_health(&state.readiness);
    state.body_limit = cfg.server.body_limit_bytes;
    state.request_timeout = cfg.server.request_timeout();
    state.trusted_proxies = Arc::from(cfg.server.trusted_proxies.clone());
    state.liveperson = Some(Arc::new(routing.webhook()));
    state.media = Some(Arc::new(routing.clone()));
    state
        .readiness
        .set("store", true, format!("{:?}", store.backend()));
    let store_check = tokio::spawn(readiness::watch_store(
        store.clone(),
        state.readiness.clone(),
        readiness::STORE_CHECK_EVERY,
        shutdown_rx.clone(),
    ));
    state.readiness.set("liveperson", false, "not checked yet");
    let readiness_task = tokio::spawn(liveperson::watch_readiness(
        engine.clone(),
        state.readiness.clone(),
        shutdown_rx,
    ));
    Ok(Started {
        loaded,
        listeners,
        shutdown_tx,
        store,
        backend,
        channels,
        routing,
        state,
        checks: vec![store_check, readiness_task],
    })
}

impl Started {
    /// The embedded simulator's address (`simulator` mode).
    pub fn simulator_addr(&self) -> Option<std::net::SocketAddr> {
        self.backend.simulator_addr()
    }

    /// Serves until `stop` resolves, then drains in-flight work.
    pub async fn serve(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let Started {
            loaded,
            listeners,
            shutdown_tx,
            store,
            backend,
            channels,
            routing,
            state,
            checks,
        } = self;
        let cfg = &loaded.config;
        let shutdown_rx = shutdown_tx.subscribe();
        let addr = listeners.public.local_addr().map_err(RunError::Serve)?;
        let admin_addr = listeners.admin.as_ref().and_then(|l| l.local_addr().ok());

        let workers = routing.spawn_workers(shutdown_rx.clone());
        let started = channels.start_all();
        tracing::info!(
            %addr,
            admin = ?admin_addr,
            channels = channels.len(),
            store = %cfg.store.display_url(),
            liveperson = %backend.describe(),
            "switchboard listening"
        );

        let shutdown_signal = {
            let tx = shutdown_tx.clone();
            async move {
                stop.await;
                tracing::info!("shutting down: finishing in-flight requests");
                let _ = tx.send(true);
            }
        };
        // The peer address feeds per-client limits (`ratelimit`).
        let with_peer = |router: axum::Router| {
            router.into_make_service_with_connect_info::<std::net::SocketAddr>()
        };
        let admin = listeners.admin.map(|listener| {
            let mut rx = shutdown_rx.clone();
            let router = with_peer(app::admin_app(state.clone()));
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await
            })
        });
        let public = if admin.is_some() {
            app::public_app(state)
        } else {
            app(state)
        };
        axum::serve(listeners.public, with_peer(public))
            .with_graceful_shutdown(shutdown_signal)
            .await
            .map_err(RunError::Serve)?;
        if let Some(admin) = admin {
            let _ = admin.await;
        }

        // Workers finish the items they hold; what they did not claim stays in the store.
        let _ = shutdown_tx.send(true);
        let grace = cfg.server.shutdown_grace();
        let everything = futures::future::join_all(started.into_iter().chain(workers));
        if tokio::time::timeout(grace, everything).await.is_err() {
            tracing::warn!(
                ?grace,
                "channels or workers did not stop within the grace period; unfinished work stays in the store"
            );
        }
        for check in checks {
            check.abort();
        }
        channels.shutdown_all().await;
        backend.shutdown().await;
        routing.flush_trace().await;
        store.close().await;
        tracing::info!("switchboard stopped");
        Ok(())
    }
}
