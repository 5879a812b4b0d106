//! A small channel kind registered only in this test binary, and helpers.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use switchboard::config::LoadedConfig;
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ConsumerAddress, Delivered,
    DeliveryError, HttpRequest, HttpResponse, Inbound, InboundEvent, OutboundEvent, Secret,
    async_trait,
};

/// The test kind's config: a required token and an optional greeting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EchoConfig {
    token: Secret,
    #[serde(default)]
    greeting: Option<String>,
}

/// A channel that turns `POST /in?from=X` bodies into text events, after checking a token.
#[derive(Debug)]
pub(crate) struct EchoChannel {
    config: EchoConfig,
}

switchboard_core::register_channel! {
    kind: "test-echo",
    description: "Test channel: POST /in?from=ID with a text body",
    build: |config: &ChannelConfig| {
        let config: EchoConfig = config.parse()?;
        Ok(Arc::new(EchoChannel { config }) as Arc<dyn Channel>)
    },
}

#[async_trait]
impl Channel for EchoChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let presented = http_util::header_str(&req, "x-token").unwrap_or("");
        if !self.config.token.matches(presented.as_bytes()) {
            return json_error(http::StatusCode::UNAUTHORIZED, "unauthorized", "bad token");
        }
        match req.uri().path() {
            "/in" => {
                let from = http_util::query_pairs(&req)
                    .into_iter()
                    .find(|(k, _)| k == "from")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(req.body()).into_owned();
                let mut event = InboundEvent::new(ctx.consumer(from), Inbound::text(text));
                if let Some(id) = http_util::header_str(&req, "x-id") {
                    event = event.with_platform_id(id);
                }
                match ctx.submit(vec![event]).await {
                    Ok(()) => http_util::text(
                        http::StatusCode::OK,
                        self.config.greeting.clone().unwrap_or_default(),
                    ),
                    Err(e) => http_util::submit_failed(&e),
                }
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                http_util::empty(http::StatusCode::OK)
            }
            "/panic" => panic!("test channel asked to panic"),
            "/echo-path" => http_util::text(
                http::StatusCode::OK,
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
            ),
            _ => json_error(http::StatusCode::NOT_FOUND, "not_found", "no such path"),
        }
    }

    async fn deliver(
        &self,
        _to: &ConsumerAddress,
        _event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        Ok(Delivered::default())
    }
}

/// Loads TOML written to a temporary file, as `--config` would.
pub(crate) fn load_toml(
    toml: &str,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Result<LoadedConfig, switchboard::config::ConfigErrors>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, toml).expect("write config");
    let loaded = LoadedConfig::load(Some(&path));
    (dir, path, loaded)
}

/// Outbound events the `test-recorder` channel delivered, by instance.
static DELIVERED: std::sync::Mutex<Vec<(ConsumerAddress, OutboundEvent)>> =
    std::sync::Mutex::new(Vec::new());

/// Config of the recorder: deliveries fail (retryably) while a counter lasts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecorderConfig {
    #[serde(default)]
    fail_first: u32,
    /// Declare full rich-content support (buttons come back as choices).
    #[serde(default)]
    rich: bool,
    /// The `Retry-After` header value the failing deliveries pass on, in seconds (a string,
    /// as the header arrives: any `u64`, which TOML's integers cannot all hold).
    #[serde(default)]
    retry_after: Option<String>,
}

/// A channel that submits `POST /in?from=ID` bodies (with `x-id` as the platform id) and
/// records what it is asked to deliver.
#[derive(Debug)]
pub(crate) struct RecorderChannel {
    failures_left: std::sync::atomic::AtomicU32,
    rich: bool,
    retry_after: Option<std::time::Duration>,
}

switchboard_core::register_channel! {
    kind: "test-recorder",
    description: "Test channel: POST /in?from=ID, records deliveries",
    build: |config: &ChannelConfig| {
        let config: RecorderConfig = config.parse()?;
        Ok(Arc::new(RecorderChannel {
            failures_left: config.fail_first.into(),
            rich: config.rich,
            retry_after: config
                .retry_after
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_secs),
        }) as Arc<dyn Channel>)
    },
}

#[async_trait]
impl Channel for RecorderChannel {
    fn capabilities(&self) -> Capabilities {
        if self.rich {
            use switchboard_core::Support::Full;
            Capabilities::text_only()
                .with_rich_content(Full)
                .with_images(Full)
                .with_files(Full)
                .with_typing(Full)
                .with_read_receipts(true)
        } else {
            Capabilities::text_only()
        }
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let from = http_util::query_pairs(&req)
            .into_iter()
            .find(|(k, _)| k == "from")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let body: Inbound = match serde_json::from_slice(req.body()) {
            Ok(body) => body,
            Err(_) => Inbound::text(String::from_utf8_lossy(req.body()).into_owned()),
        };
        let mut event = InboundEvent::new(ctx.consumer(from), body);
        if let Some(id) = http_util::header_str(&req, "x-id") {
            event = event.with_platform_id(id);
        }
        if let Some(profile) =
            http_util::header_str(&req, "x-profile").and_then(|p| serde_json::from_str(p).ok())
        {
            event = event.with_profile(profile);
        }
        match ctx.submit(vec![event]).await {
            Ok(()) => http_util::empty(http::StatusCode::OK),
            Err(e) => http_util::submit_failed(&e),
        }
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        use std::sync::atomic::Ordering;
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(DeliveryError::Retryable {
                reason: "recorder told to fail".into(),
                after: self.retry_after,
            });
        }
        DELIVERED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((to.clone(), event.clone()));
        Ok(Delivered::default())
    }
}

/// What the recorder delivered to consumers of `instance`.
pub(crate) fn delivered(instance: &str) -> Vec<(ConsumerAddress, OutboundEvent)> {
    DELIVERED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(to, _)| to.instance == instance)
        .cloned()
        .collect()
}

/// Waits until `check` holds, polling.
pub(crate) async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 1×1 PNG, for files sent each way.
pub(crate) const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// The `[liveperson]` table of a connector that talks to the simulator `sim` as to a real
/// account (Domain API, credentials), with retries scaled down by `retry_scale`.
pub(crate) fn liveperson_toml(sim: &switchboard_lp_sim::SimHandle, retry_scale: f64) -> String {
    format!(
        "[liveperson]\nmode = \"live\"\naccount_id = \"{}\"\nclient_id = \"{}\"\n\
         client_secret = \"{}\"\ndomain_api = \"{}\"\nretry_scale = {retry_scale}\n",
        sim.account_id(),
        sim.client_id(),
        sim.client_secret(),
        sim.domain_api(),
    )
}

/// The `switchboard` binary running a config of its own; killed when dropped.
pub(crate) struct RunningBinary {
    child: std::process::Child,
    /// Where the connector listens (`127.0.0.1:{port}`).
    pub(crate) port: u16,
    _dir: tempfile::TempDir,
}

impl RunningBinary {
    /// The URL of its SQLite store (open it beside the running process to look inside).
    pub(crate) fn store_url(&self) -> String {
        format!("sqlite://{}", self._dir.path().join("sb.db").display())
    }

    /// Its config file (for the commands that read the store beside it).
    pub(crate) fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("switchboard.toml")
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `switchboard` binary as a user runs it: without the developer's `RUST_LOG` and
/// `SWITCHBOARD_CONFIG`, and with no standard input.
pub(crate) fn switchboard_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.env_remove("RUST_LOG")
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Starts `switchboard run` on a free port with `[server]` (listen and public URL on that
/// port), an SQLite store in a temporary folder, the simulator's `[liveperson]` table (pointing
/// its webhooks at the connector), then `tables`; `env` adds environment overrides. Returns
/// once the port answers.
pub(crate) async fn run_binary(
    sim: &switchboard_lp_sim::SimHandle,
    tables: &str,
    env: &[(&str, &str)],
) -> RunningBinary {
    run_binary_on(switchboard_testkit::free_port(), sim, tables, env).await
}

/// [`run_binary`] on a port chosen by the caller (whose tables need it beforehand).
pub(crate) async fn run_binary_on(
    port: u16,
    sim: &switchboard_lp_sim::SimHandle,
    tables: &str,
    env: &[(&str, &str)],
) -> RunningBinary {
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
         [store]\nurl = \"sqlite://{db}\"\n{liveperson}{tables}",
        db = dir.path().join("sb.db").display(),
        liveperson = liveperson_toml(sim, 0.001),
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, toml).expect("write config");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn switchboard");
    let running = RunningBinary {
        child,
        port,
        _dir: dir,
    };
    assert!(
        switchboard_testkit::eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "switchboard did not start"
    );
    running
}
