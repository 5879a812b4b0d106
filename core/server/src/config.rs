//! The configuration file: one TOML file plus `SWITCHBOARD_...` environment overrides.
//!
//! Loaded with figment. Environment variables override the file: `SWITCHBOARD_` followed by
//! the key path with `__` between levels, so `SWITCHBOARD_LIVEPERSON__CLIENT_SECRET` sets
//! `liveperson.client_secret`. Only variables with a `__` are read, because every key lives
//! in a table; that keeps unrelated `SWITCHBOARD_*` variables (such as test settings) out.
//!
//! Every problem names the key and where its value came from (the file, or the environment).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use switchboard_core::{ConfigError, Secret};

use crate::plugins::DynamicPlugin;
pub use crate::telemetry::settings::TelemetryConfig;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// The LivePerson account, or the embedded simulator.
    #[serde(default)]
    pub liveperson: LivePersonSection,
    /// Where conversations and outboxes are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// Channel instances by name: `[channels.<instance>]`.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSection>,
    /// Dynamic plugins.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// OpenTelemetry traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

impl TelemetryConfig {
    /// The `[telemetry]` of `file` with its environment overrides, read alone (see
    /// `cli::main`); `None` when it does not parse (the full load reports why).
    pub fn peek(file: &Path) -> Option<Self> {
        let figment = Figment::new()
            .merge(Toml::file_exact(file))
            .merge(env_provider());
        if figment.find_value("telemetry").is_err() {
            return Some(Self::default());
        }
        figment.extract_inner("telemetry").ok()
    }
}

/// `[server]`: where Switchboard listens and how the outside world reaches it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on (`"0.0.0.0:8080"` behind a proxy).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The public base URL (scheme, host, optional path; https in production) at which
    /// LivePerson and the channel platforms reach this deployment, e.g.
    /// `https://connector.example.com`. Needed for the App Install Manifest and for channels
    /// that register webhooks.
    #[serde(default)]
    pub public_url: Option<url::Url>,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Longest time one request may take, in seconds, before it is answered 503.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// On shutdown, how long in-flight work may take to finish, in seconds.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// A second address (e.g. `"10.0.0.5:9090"`) serving only `/metrics`, `/readyz` and
    /// `/healthz`, for monitoring on a private network; when set, the public listener no
    /// longer serves `/metrics` and `/readyz` (see [operations.md](operations.md#the-admin-listener)).
    /// Must differ from `listen`.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Networks (CIDR, e.g. `["10.0.0.0/8", "127.0.0.1/32"]`) of the reverse proxies in front
    /// of Switchboard: for a request from one of them, the client is the nearest
    /// `X-Forwarded-For` address that is not one of them. Per-client limits (failed `/media/…`
    /// links) count that address; without it, they count the proxy's.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            body_limit_bytes: default_body_limit(),
            request_timeout_secs: default_request_timeout(),
            shutdown_grace_secs: default_shutdown_grace(),
            admin_listen: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The shutdown grace period as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_body_limit() -> usize {
    1024 * 1024
}
fn default_request_timeout() -> u64 {
    30
}
fn default_shutdown_grace() -> u64 {
    30
}

/// Why a build without the `simulator` feature cannot run in simulator mode.
pub const NO_SIMULATOR: &str = "this build has no LivePerson simulator (it was built without \
     the `simulator` feature): set `liveperson.mode = \"live\"`, or use a build with the default \
     features for `switchboard demo` and `switchboard sim`";

/// Whether Switchboard talks to a real LivePerson account or to the embedded simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LivePersonMode {
    /// the embedded LivePerson simulator: no account, and no consumer's message reaches a
    /// real agent.
    #[default]
    Simulator,
    /// your Conversational Cloud account.
    Live,
}

/// `[liveperson]`: the account and how conversations are routed.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LivePersonSection {
    /// Which LivePerson to talk to. Without channels an unset mode means `simulator`.
    #[serde(default)]
    #[schemars(extend("x-default" = "required when a channel is enabled"))]
    pub mode: Option<LivePersonMode>,
    /// The LivePerson account (site) id; required in `live` mode.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The app installation's client id; required in `live` mode.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The app installation's client secret; required in `live` mode. Set it through
    /// `SWITCHBOARD_LIVEPERSON__CLIENT_SECRET` or `client_secret_file` rather than in the file.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<Secret>,
    /// A file whose content (trimmed) is the client secret, as container secrets are mounted
    /// (see "Secrets in files"); read when the configuration is loaded.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Base URL of the Domain API (tests point it at the simulator). Service hosts are looked
    /// up there, never hard-coded; when it is `http://`, they are called over `http://` too.
    #[serde(default)]
    #[schemars(extend("x-default" = "`\"https://api.liveperson.net\"`"))]
    pub domain_api: Option<url::Url>,
    /// Skill new conversations are routed to (`-1` = any).
    #[serde(default)]
    pub skill_id: Option<String>,
    /// Campaign for new conversations (LivePerson's preferred routing); set both it and
    /// `engagement_id`, or neither.
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// Engagement within the campaign; set both it and `campaign_id`, or neither.
    #[serde(default)]
    pub engagement_id: Option<String>,
    /// Allow plain `http://` to a Domain API that is not on loopback (never in production).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// `Client-Properties` features announced on every CONVERSATION and SEND call. A list
    /// replaces the default, what every channel renders (narrow it, or add `AUTO_MESSAGES`);
    /// unknown names are an error.
    #[serde(default)]
    #[schemars(extend("x-default" = "`[\"RICH_CONTENT\", \"QUICK_REPLIES\", \"MULTI_DIALOG\"]`"))]
    pub features: Option<Vec<String>>,
    /// `client_name` in the App Install Manifest (`switchboard manifest`): agents see it as
    /// the source.
    #[serde(default)]
    #[schemars(extend("x-default" = "`\"Switchboard\"`"))]
    pub client_name: Option<String>,
    /// Multiplies every retry delay; only tests change it.
    #[serde(default = "default_retry_scale")]
    pub retry_scale: f64,
    /// Longest one LivePerson API call may take, in seconds (1-300); a call that outlasts it
    /// is retried as one whose outcome is unknown (a create is never blindly repeated).
    #[serde(default = "default_lp_request_timeout")]
    pub request_timeout_secs: u64,
    /// How long the Domain API's service hosts are kept before they are looked up again, in
    /// seconds (1-86400).
    #[serde(default = "default_domain_cache")]
    pub domain_cache_secs: u64,
    /// `ttrDefName` of new conversations: `NORMAL`, `URGENT` or `PRIORITIZED`.
    #[serde(default)]
    pub ttr: Option<String>,
    /// `conversationContext.lang` of new conversations (an IETF tag such as `en-US`) when the
    /// channel does not know the consumer's language.
    #[serde(default)]
    pub language: Option<String>,
    /// `simulator` mode only: the address the embedded simulator and its agent console
    /// (`/console`) listen on, e.g. `"127.0.0.1:8081"`; `switchboard demo` uses its listen port
    /// + 1.
    #[serde(default)]
    #[schemars(extend("x-default" = "a free loopback port"))]
    pub simulator_listen: Option<SocketAddr>,
    /// What `switchboard manifest` prints besides the endpoints.
    #[serde(default)]
    pub manifest: ManifestSection,
}

/// `[liveperson.manifest]`: App Install Manifest settings.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestSection {
    /// The manifest's `description`.
    #[serde(default)]
    #[schemars(extend("x-default" = "a one-line description"))]
    pub description: Option<String>,
    /// `max_retries` (0-5) on each webhook, for LivePerson's count-based retries.
    #[serde(default)]
    pub max_retries: Option<u8>,
    /// `retry.retention_time` in seconds (2-259200): TTL retries, which keep per-conversation
    /// order.
    #[serde(default)]
    #[schemars(extend("x-default" = "`86400`"))]
    pub retention_time: Option<u32>,
    /// A table whose keys replace those of the manifest's `capabilities.engagement` block (the
    /// keys it does not name keep LivePerson's template values).
    #[serde(default)]
    #[schemars(extend("x-default" = "LivePerson's template defaults (full lists)"))]
    pub engagement: Option<serde_json::Value>,
}

fn default_retry_scale() -> f64 {
    1.0
}

fn default_lp_request_timeout() -> u64 {
    10
}

fn default_domain_cache() -> u64 {
    300
}

impl Default for LivePersonSection {
    fn default() -> Self {
        Self {
            mode: None,
            account_id: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            domain_api: None,
            skill_id: None,
            campaign_id: None,
            engagement_id: None,
            allow_insecure_http: false,
            features: None,
            client_name: None,
            retry_scale: default_retry_scale(),
            request_timeout_secs: default_lp_request_timeout(),
            domain_cache_secs: default_domain_cache(),
            ttr: None,
            language: None,
            simulator_listen: None,
            manifest: ManifestSection::default(),
        }
    }
}

impl LivePersonSection {
    /// The mode in effect: the one set, or `simulator` (allowed only without channels).
    pub fn mode(&self) -> LivePersonMode {
        self.mode.unwrap_or_default()
    }

    /// The engine configuration of `live` mode (call [`LivePersonSection::validate`] first).
    pub fn engine_config(&self) -> switchboard_liveperson::EngineConfig {
        let mut config = switchboard_liveperson::EngineConfig::new(
            self.account_id.clone().unwrap_or_default(),
            self.client_id.clone().unwrap_or_default(),
            self.client_secret
                .clone()
                .unwrap_or_else(|| Secret::new("")),
        );
        if let Some(url) = &self.domain_api {
            config.domain_api = url.as_str().trim_end_matches('/').to_owned();
        }
        config.allow_insecure_http = self.allow_insecure_http;
        config.features = self.features();
        self.apply_timing(&mut config);
        config.routing = switchboard_liveperson::ConversationRouting {
            skill_id: self.skill_id.clone(),
            campaign_id: self.campaign_id.clone(),
            engagement_id: self.engagement_id.clone(),
            ttr: self.ttr.clone(),
            language: self.language.clone(),
        };
        config
    }

    /// The `Client-Properties` features: as configured, or LivePerson's defaults for
    /// everything the channels render (`switchboard_liveperson::DEFAULT_FEATURES`).
    pub fn features(&self) -> Vec<String> {
        self.features
            .clone()
            .unwrap_or_else(switchboard_liveperson::default_features)
    }

    /// Sets the engine's call timeout and Domain API cache from this section (both modes).
    pub fn apply_timing(&self, config: &mut switchboard_liveperson::EngineConfig) {
        config.request_timeout = Duration::from_secs(self.request_timeout_secs);
        config.domain_ttl = Duration::from_secs(self.domain_cache_secs);
    }

    /// Checks the keys `live` mode needs.
    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.mode() == LivePersonMode::Live {
            for (key, present) in [
                ("account_id", self.account_id.is_some()),
                ("client_id", self.client_id.is_some()),
                (
                    "client_secret",
                    self.client_secret.as_ref().is_some_and(|s| !s.is_empty()),
                ),
            ] {
                if !present {
                    errors.push(ConfigError::new(
                        format!("liveperson.{key}"),
                        "required when `liveperson.mode = \"live\"`",
                    ));
                }
            }
            if errors.is_empty()
                && let Err(switchboard_liveperson::EngineError::Config { key, message }) =
                    self.engine_config().validate()
            {
                errors.push(ConfigError::new(key, message));
            }
        }
        // Both modes: the simulator holds the engine to the same rules as LivePerson.
        if self.mode() == LivePersonMode::Simulator {
            let engine = self.engine_config();
            let checks = [
                switchboard_liveperson::validate_features(&engine.features),
                engine.routing.validate(),
            ];
            for check in checks {
                if let Err(switchboard_liveperson::EngineError::Config { key, message }) = check {
                    errors.push(ConfigError::new(key, message));
                }
            }
        }
        if let Some(ttr) = &self.ttr
            && !["NORMAL", "URGENT", "PRIORITIZED"].contains(&ttr.as_str())
        {
            errors.push(ConfigError::new(
                "liveperson.ttr",
                "must be NORMAL, URGENT or PRIORITIZED",
            ));
        }
        if self.manifest.max_retries.is_some_and(|n| n > 5) {
            errors.push(ConfigError::new(
                "liveperson.manifest.max_retries",
                "LivePerson allows 0 to 5",
            ));
        }
        if self
            .manifest
            .retention_time
            .is_some_and(|t| !(2..=259_200).contains(&t))
        {
            errors.push(ConfigError::new(
                "liveperson.manifest.retention_time",
                "LivePerson allows 2 to 259200 seconds",
            ));
        }
        if !(self.retry_scale.is_finite() && self.retry_scale > 0.0) {
            errors.push(ConfigError::new(
                "liveperson.retry_scale",
                "must be a positive number",
            ));
        }
        if !(1..=300).contains(&self.request_timeout_secs) {
            errors.push(ConfigError::new(
                "liveperson.request_timeout_secs",
                "must be 1 to 300 seconds",
            ));
        }
        if !(1..=86_400).contains(&self.domain_cache_secs) {
            errors.push(ConfigError::new(
                "liveperson.domain_cache_secs",
                "must be 1 to 86400 seconds",
            ));
        }
        errors
    }
}

/// `[store]`: the database. Its `Debug` masks the URL's password, like every other place
/// the URL is shown.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// A SQLite file (created with its folder), `sqlite::memory:` (tests only: nothing
    /// survives), or `postgres://user@host/db` for several instances sharing one database. A
    /// PostgreSQL URL is parsed when the configuration is loaded (a bad port or host is an
    /// error naming `store.url`); its password is never shown. Migrations are applied at start.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// A file whose content (trimmed) is `url`, for a URL that holds a password (see "Secrets
    /// in files"); read when the configuration is loaded.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// How long an instance holds a claimed event, in seconds; after a crash another instance
    /// takes it over once this has passed.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// An event (either direction) that failed this many times is dead-lettered with its last
    /// error, so no consumer's queue waits behind it for ever; 100 is about 13 hours of
    /// LivePerson failures, 8 of a channel's.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// An event older than this many seconds (three days by default, LivePerson's longest
    /// webhook retention) that fails once more is dead-lettered the same way.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// SQLite only (an error with PostgreSQL): when a commit reaches the disk (see
    /// docs/operations.md).
    #[serde(default)]
    #[schemars(extend("x-default" = "`\"full\"`"))]
    pub sync: Option<switchboard_store::SyncMode>,
    /// How long the timeline of every event (`switchboard trace`, see docs/operations.md) is
    /// kept: a number of seconds, or a text such as `"90s"`, `"30m"`, `"12h"`, `"7d"`; `0` or
    /// `"off"` records nothing. Older rows are pruned every minute in small batches; about
    /// 1.8 KB per message on SQLite.
    #[serde(default = "default_trace_retention")]
    #[schemars(with = "String", extend("x-default" = "`\"7d\"`"))]
    pub trace_retention: TraceRetention,
}

/// `store.trace_retention`: how long trace rows are kept, `None` when tracing is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRetention(pub Option<Duration>);

fn default_trace_retention() -> TraceRetention {
    TraceRetention(Some(crate::routing::DEFAULT_TRACE_RETENTION))
}

impl TraceRetention {
    /// `"off"`, `"0"`, `"90s"`, `"30m"`, `"12h"`, `"7d"` or a number of seconds.
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(TraceRetention(None));
        }
        let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let n: u64 = digits.parse().map_err(|_| {
            format!("`{text}` is not a duration (e.g. \"7d\", \"12h\", 3600 or \"off\")")
        })?;
        let unit = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}` (use s, m, h or d)"
                ));
            }
        };
        Ok(TraceRetention(
            (n > 0).then(|| Duration::from_secs(n.saturating_mul(unit))),
        ))
    }
}

impl<'de> Deserialize<'de> for TraceRetention {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a number of seconds or a duration such as \"7d\", \"12h\" or \"off\"",
            )
        })? {
            Raw::Seconds(0) => Ok(TraceRetention(None)),
            Raw::Seconds(n) => Ok(TraceRetention(Some(Duration::from_secs(n)))),
            Raw::Text(text) => TraceRetention::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            url_file: None,
            lease_secs: default_lease_secs(),
            max_attempts: default_max_attempts(),
            max_age_secs: default_max_age_secs(),
            sync: None,
            trace_retention: default_trace_retention(),
        }
    }
}

fn default_max_attempts() -> u32 {
    crate::routing::DEFAULT_MAX_ATTEMPTS
}

fn default_max_age_secs() -> u64 {
    crate::routing::DEFAULT_MAX_AGE.as_secs()
}

fn default_lease_secs() -> u64 {
    120
}

fn default_store_url() -> String {
    "sqlite://data/switchboard.db".to_string()
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.display_url())
            .field("url_file", &self.url_file)
            .field("lease_secs", &self.lease_secs)
            .field("max_attempts", &self.max_attempts)
            .field("max_age_secs", &self.max_age_secs)
            .field("sync", &self.sync)
            .finish()
    }
}

impl StoreConfig {
    /// `store.trace_retention`, `None` when tracing is off.
    pub fn trace_retention(&self) -> Option<Duration> {
        self.trace_retention.0
    }

    /// The limits of the outbox: attempts at least 1, age at least a minute.
    fn validate_limits(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.max_attempts == 0 {
            errors.push(ConfigError::new("store.max_attempts", "must be at least 1"));
        }
        if self.max_age_secs < 60 {
            errors.push(ConfigError::new(
                "store.max_age_secs",
                "must be at least 60 seconds",
            ));
        }
        if self.sync.is_some() && !self.url.starts_with("sqlite:") {
            errors.push(ConfigError::new(
                "store.sync",
                "applies to SQLite only: PostgreSQL makes each commit durable before it returns (see docs/operations.md)",
            ));
        }
        errors
    }

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = self.validate_limits();
        errors.extend(self.validate_url());
        errors
    }

    /// The URL as it may be shown: its password masked (see [`switchboard_store::redact_url`]).
    pub fn display_url(&self) -> String {
        switchboard_store::redact_url(&self.url)
    }

    /// Checks the scheme, and that a PostgreSQL URL parses (port, host, escapes), without
    /// connecting; no message shows the password.
    fn validate_url(&self) -> Vec<ConfigError> {
        let url = &self.url;
        let problem = |message: String| vec![ConfigError::new("store.url", message)];
        if url.starts_with("sqlite:") {
            return Vec::new();
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return problem(format!(
                "`{}` is neither a sqlite:// nor a postgres:// URL",
                self.display_url()
            ));
        }
        match url::Url::parse(url) {
            Err(e) => problem(format!("`{}` is not a valid URL: {e}", self.display_url())),
            Ok(parsed) if parsed.host_str().is_some_and(str::is_empty) => {
                problem(format!("`{}` names no host", self.display_url()))
            }
            Ok(_) => Vec::new(),
        }
    }
}

/// `[channels.<instance>]`: one channel instance. Keys other than `kind` and `enabled` belong
/// to the channel kind and are checked by it. Its `Debug` shows the names of those keys, not
/// their values (tokens and passwords are among them).
#[derive(Clone, Deserialize, schemars::JsonSchema)]
pub struct ChannelSection {
    /// A registered channel kind (`switchboard channels` lists them).
    pub kind: String,
    /// `false` keeps the table but does not run the instance.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The kind's own keys.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for ChannelSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSection")
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn default_true() -> bool {
    true
}

/// `[plugins]`: dynamic plugin libraries loaded at start (docs/plugins.md).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Absolute paths of plugin libraries (`.so` / `.dylib` / `.dll`, exporting
    /// `SWITCHBOARD_PLUGIN_V1`); a relative path, a missing file, a file that is not a library
    /// or a plugin of another ABI or switchboard-core major version is an error naming the file.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Optional pins: a library path as in `paths` to the hex sha256 its file must have.
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
    /// Longest a call into a dynamic channel (building it, a request, a delivery, its
    /// shutdown) may take before the host gives up on it with an error, in seconds.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_secs: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            sha256: BTreeMap::new(),
            call_timeout_secs: default_call_timeout(),
        }
    }
}

fn default_call_timeout() -> u64 {
    30
}

impl PluginsConfig {
    /// How the host calls dynamic instances.
    pub fn call_options(&self) -> crate::plugins::CallOptions {
        crate::plugins::CallOptions {
            timeout: Duration::from_secs(self.call_timeout_secs.max(1)),
        }
    }
}

/// One configuration problem: the key, where its value came from, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key.
    pub key: String,
    /// The file path or environment the value came from (or the file that lacks it).
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.origin, self.key, self.message)
    }
}

/// Everything wrong with a configuration, reported together.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A loaded configuration with the provenance of every value, so later checks (a channel's
/// own keys) can still say which file a key came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    figment: Figment,
    file: Option<PathBuf>,
    plugins: Vec<&'static DynamicPlugin>,
}

impl LoadedConfig {
    /// Loads `file` (if given) and the environment overrides.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigErrors(vec![ConfigProblem {
                    key: "--config".into(),
                    origin: path.display().to_string(),
                    message: "no such file".into(),
                }]));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(env_provider());
        Self::from_figment(figment, file.map(Path::to_path_buf))
    }

    /// Builds from an existing figment (tests use inline TOML).
    pub fn from_figment(figment: Figment, file: Option<PathBuf>) -> Result<Self, ConfigErrors> {
        let config: Config = figment
            .extract()
            .map_err(|e| figment_errors(e, file.as_deref()))?;
        let mut loaded = Self {
            config,
            figment,
            file,
            plugins: Vec::new(),
        };
        // Secrets from files first: the checks below see them as if they were in the file.
        let mut problems: Vec<ConfigProblem> = loaded.read_secret_files();
        problems.extend(loaded.check_mode());
        problems.extend(loaded.check_server());
        problems.extend(
            loaded
                .config
                .liveperson
                .validate()
                .into_iter()
                .map(|e| loaded.problem(e)),
        );
        problems.extend(
            loaded
                .config
                .store
                .validate()
                .into_iter()
                .map(|e| loaded.problem(e)),
        );
        if let Some(url) = &loaded.config.server.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            problems.push(loaded.problem(ConfigError::new(
                "server.public_url",
                "must be an http:// or https:// URL",
            )));
        }
        problems.extend(loaded.check_telemetry());
        problems.extend(loaded.load_plugins());
        for (name, ch) in &loaded.config.channels {
            if !valid_instance_name(name) {
                problems.push(loaded.problem(ConfigError::new(
                    format!("channels.{name}"),
                    "instance names use only a-z, 0-9, '-' and '_' (they appear in URLs)",
                )));
            }
            if switchboard_core::find_registration(&ch.kind).is_none()
                && loaded.dynamic_kind(&ch.kind).is_none()
            {
                let known: Vec<_> = switchboard_core::registrations()
                    .iter()
                    .map(|r| r.kind)
                    .chain(
                        loaded
                            .plugins
                            .iter()
                            .flat_map(|p| p.kinds().iter().map(|k| k.name.as_str())),
                    )
                    .collect();
                problems.push(loaded.problem(ConfigError::new(
                    format!("channels.{name}.kind"),
                    format!(
                        "unknown channel kind `{}`; registered kinds: {}",
                        ch.kind,
                        known.join(", ")
                    ),
                )));
            }
        }
        if problems.is_empty() {
            Ok(loaded)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Whether `key` was given at all (in the file or the environment), default or not.
    fn is_set(&self, key: &str) -> bool {
        self.figment.find_value(key).is_ok()
    }

    /// Replaces every `<key>_file` secret with the trimmed content of its file:
    /// `liveperson.client_secret_file`, `store.url_file`, and any `<key>_file` of an enabled
    /// channel's table (so a channel kind needs nothing of its own for it). Setting both the
    /// key and its file, or a file that cannot be read or is empty, is a problem naming both.
    fn read_secret_files(&mut self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let lp_file = self.config.liveperson.client_secret_file.clone();
        match self.secret_from_file("liveperson.client_secret", lp_file.as_deref()) {
            Ok(Some(secret)) => self.config.liveperson.client_secret = Some(Secret::new(secret)),
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
        let url_file = self.config.store.url_file.clone();
        match self.secret_from_file("store.url", url_file.as_deref()) {
            Ok(Some(url)) => self.config.store.url = url,
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
        let mut channels = std::mem::take(&mut self.config.channels);
        for (name, section) in channels.iter_mut().filter(|(_, c)| c.enabled) {
            let files: Vec<String> = section
                .settings
                .keys()
                .filter(|k| k.len() > "_file".len() && k.ends_with("_file"))
                .cloned()
                .collect();
            for file_key in files {
                let key = &file_key[..file_key.len() - "_file".len()];
                let full = format!("channels.{name}.{key}");
                let path = section.settings.remove(&file_key);
                let path = match path.as_ref().and_then(serde_json::Value::as_str) {
                    Some(path) => PathBuf::from(path),
                    None => {
                        problems.push(self.problem(ConfigError::new(
                            format!("{full}_file"),
                            "must be the path of a file holding the secret (a string)",
                        )));
                        continue;
                    }
                };
                let explicit = section.settings.contains_key(key);
                match self.secret_from_file_if(&full, Some(&path), explicit) {
                    Ok(Some(secret)) => {
                        section
                            .settings
                            .insert(key.to_owned(), serde_json::Value::String(secret));
                    }
                    Ok(None) => {}
                    Err(p) => problems.push(p),
                }
            }
        }
        self.config.channels = channels;
        problems
    }

    /// The secret `key` read from `file`, when one is named.
    fn secret_from_file(
        &self,
        key: &str,
        file: Option<&Path>,
    ) -> Result<Option<String>, ConfigProblem> {
        self.secret_from_file_if(key, file, self.is_set(key))
    }

    fn secret_from_file_if(
        &self,
        key: &str,
        file: Option<&Path>,
        key_is_set: bool,
    ) -> Result<Option<String>, ConfigProblem> {
        let Some(path) = file else {
            return Ok(None);
        };
        let file_key = format!("{key}_file");
        if key_is_set {
            return Err(self.problem(ConfigError::new(
                file_key,
                format!(
                    "`{key}` is set too (in {}): set the secret or the file that holds it, not both",
                    self.origin_of(key)
                ),
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.problem(ConfigError::new(
                file_key.clone(),
                format!("cannot read `{}`: {e}", path.display()),
            ))
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(self.problem(ConfigError::new(
                file_key,
                format!("`{}` is empty", path.display()),
            )));
        }
        Ok(Some(secret.to_owned()))
    }

    /// `liveperson.mode` must be chosen when channels run (real consumers must never talk to
    /// the embedded simulator by default), and a key the mode ignores is an error rather than
    /// silence: account credentials in `simulator` mode, simulator settings in `live` mode.
    fn check_mode(&self) -> Vec<ConfigProblem> {
        let lp = &self.config.liveperson;
        let mut problems = Vec::new();
        if lp.mode.is_none() && self.config.channels.values().any(|c| c.enabled) {
            problems.push(self.problem(ConfigError::new(
                "liveperson.mode",
                "must be set when a channel is enabled: \"live\" for your LivePerson account, \
                 or \"simulator\" for the embedded simulator (no consumer's message reaches a \
                 real agent); to try Switchboard out, `switchboard demo` needs no file",
            )));
        }
        if !cfg!(feature = "simulator") && lp.mode == Some(LivePersonMode::Simulator) {
            problems.push(self.problem(ConfigError::new("liveperson.mode", NO_SIMULATOR)));
        }
        let (ignored, why): (&[&str], String) = match lp.mode() {
            LivePersonMode::Simulator => (
                SIMULATOR_IGNORES,
                format!(
                    "is ignored in `simulator` mode{}: the embedded simulator supplies the \
                     account, the credentials and the Domain API. Set `liveperson.mode = \"live\"` \
                     to use it, or remove it",
                    if lp.mode.is_none() {
                        " (the mode when `liveperson.mode` is not set)"
                    } else {
                        ""
                    }
                ),
            ),
            LivePersonMode::Live => (
                LIVE_IGNORES,
                "is ignored in `live` mode: there is no embedded simulator. Remove it, or set \
                 `liveperson.mode = \"simulator\"`"
                    .to_owned(),
            ),
        };
        for key in ignored {
            let key = format!("liveperson.{key}");
            if self.is_set(&key) {
                problems.push(self.problem(ConfigError::new(key, why.clone())));
            }
        }
        problems
    }

    /// Settings of `[server]` that depend on each other or on a channel's: the admin listener
    /// is another address, and no long poll outlasts the request timeout (it would be answered
    /// 503 each time it found nothing).
    fn check_server(&self) -> Vec<ConfigProblem> {
        let server = &self.config.server;
        let mut problems = Vec::new();
        if server.admin_listen == Some(server.listen) && server.listen.port() != 0 {
            problems.push(self.problem(ConfigError::new(
                "server.admin_listen",
                "must differ from `server.listen`",
            )));
        }
        let timeout = server.request_timeout_secs;
        for (name, section) in &self.config.channels {
            if !section.enabled || section.kind != "webchat" {
                continue;
            }
            let set = section.settings.get("poll_secs");
            let poll = set
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(switchboard_channel_webchat::DEFAULT_POLL_SECS);
            if poll >= timeout {
                let key = if set.is_some() {
                    format!("channels.{name}.poll_secs")
                } else {
                    "server.request_timeout_secs".to_owned()
                };
                problems.push(self.problem(ConfigError::new(
                    key,
                    format!(
                        "the web chat `{name}` holds an idle poll {poll} s (`poll_secs`), which \
                         is not shorter than the request timeout of {timeout} s \
                         (`server.request_timeout_secs`): every poll that finds nothing would \
                         be answered 503. Make `poll_secs` shorter than the request timeout"
                    ),
                )));
            }
        }
        problems
    }

    /// `[telemetry]` and the standard `OTEL_*` variables it goes with (see
    /// [`crate::telemetry::settings`]).
    fn check_telemetry(&self) -> Vec<ConfigProblem> {
        use crate::telemetry::settings::Problem;
        match self.config.telemetry.export_settings() {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .into_iter()
                .map(|p| match p {
                    Problem::Key(e) => self.problem(e),
                    Problem::Env { var, message } => ConfigProblem {
                        key: var.to_owned(),
                        origin: "environment".to_owned(),
                        message,
                    },
                })
                .collect(),
        }
    }

    /// Loads and checks every `[plugins] paths` library (once per process), and refuses
    /// kinds that clash with a linked kind or another plugin's.
    fn load_plugins(&mut self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let section = &self.config.plugins;
        for pinned in section.sha256.keys() {
            if !section
                .paths
                .iter()
                .any(|p| p.to_str() == Some(pinned.as_str()))
            {
                problems.push(self.problem(ConfigError::new(
                    format!("plugins.sha256.{pinned}"),
                    "pins a library that is not in `plugins.paths`",
                )));
            }
        }
        let mut plugins: Vec<&'static DynamicPlugin> = Vec::new();
        for (i, path) in section.paths.iter().enumerate() {
            let key = format!("plugins.paths.{i}");
            let pin = path.to_str().and_then(|p| section.sha256.get(p));
            let plugin = match crate::plugins::load(path, pin.map(String::as_str)) {
                Ok(plugin) => plugin,
                Err(e) => {
                    problems.push(self.problem(ConfigError::new(key, e.to_string())));
                    continue;
                }
            };
            if plugins.iter().any(|p| std::ptr::eq(*p, plugin)) {
                continue; // the same library listed twice (it is loaded once)
            }
            for kind in plugin.kinds() {
                let clash = if let Some(reg) = switchboard_core::find_registration(&kind.name) {
                    Some(format!("the linked crate `{}`", reg.package))
                } else {
                    plugins
                        .iter()
                        .find(|other| other.kind(&kind.name).is_some())
                        .map(|other| format!("`{}`", other.path().display()))
                };
                if let Some(owner) = clash {
                    problems.push(self.problem(ConfigError::new(
                        key.clone(),
                        format!(
                            "`{}` declares kind `{}`, which {owner} already provides",
                            path.display(),
                            kind.name
                        ),
                    )));
                }
            }
            plugins.push(plugin);
        }
        self.plugins = plugins;
        problems
    }

    /// The dynamic plugins the configuration loaded.
    pub fn plugins(&self) -> &[&'static DynamicPlugin] {
        &self.plugins
    }

    /// The dynamic plugin providing `kind`, if a configured one does.
    pub fn dynamic_kind(&self, kind: &str) -> Option<&'static DynamicPlugin> {
        self.plugins
            .iter()
            .copied()
            .find(|p| p.kind(kind).is_some())
    }

    /// A problem for a key, naming where that key (or its nearest table) came from.
    pub fn problem(&self, err: ConfigError) -> ConfigProblem {
        ConfigProblem {
            origin: self.origin_of(&err.key),
            key: err.key,
            message: err.message,
        }
    }

    /// Where the value at `key` (or its closest parent) came from.
    pub fn origin_of(&self, key: &str) -> String {
        let mut k = key;
        loop {
            if let Some(md) = self.figment.find_metadata(k) {
                return describe_metadata(md);
            }
            match k.rsplit_once('.') {
                Some((parent, _)) => k = parent,
                None => break,
            }
        }
        match &self.file {
            Some(f) => f.display().to_string(),
            None => "built-in defaults".to_string(),
        }
    }

    /// The config file, if one was given.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// `[liveperson]` keys that `simulator` mode ignores (the simulator supplies them).
const SIMULATOR_IGNORES: &[&str] = &[
    "account_id",
    "client_id",
    "client_secret",
    "client_secret_file",
    "domain_api",
    "allow_insecure_http",
];

/// `[liveperson]` keys that `live` mode ignores.
const LIVE_IGNORES: &[&str] = &["simulator_listen"];

/// `SWITCHBOARD_A__B=...` overrides `a.b`.
fn env_provider() -> Env {
    Env::prefixed("SWITCHBOARD_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

fn valid_instance_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn describe_metadata(md: &figment::Metadata) -> String {
    match &md.source {
        Some(figment::Source::File(p)) => p.display().to_string(),
        Some(other) => format!("{} ({other})", md.name),
        None => md.name.to_string(),
    }
}

fn figment_errors(err: figment::Error, file: Option<&Path>) -> ConfigErrors {
    let problems = err
        .into_iter()
        .map(|e| {
            let mut key = e.path.join(".");
            // Name the missing or unknown key itself when figment reports its parent.
            let field = match &e.kind {
                figment::error::Kind::UnknownField(f, _) => Some(f.as_str()),
                figment::error::Kind::MissingField(f) => Some(f.as_ref()),
                _ => None,
            };
            if let Some(field) = field
                && e.path.last().map(String::as_str) != Some(field)
            {
                key = if key.is_empty() {
                    field.to_string()
                } else {
                    format!("{key}.{field}")
                };
            }
            let origin = match &e.metadata {
                Some(md) => describe_metadata(md),
                None => file
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "configuration".into()),
            };
            ConfigProblem {
                key,
                origin,
                message: e.kind.to_string(),
            }
        })
        .collect();
    ConfigErrors(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(s: &str) -> Result<LoadedConfig, ConfigErrors> {
        LoadedConfig::from_figment(Figment::from(Toml::string(s)), None)
    }

    #[test]
    fn liveperson_timing_is_configurable_and_checked() {
        let c = from_toml("[liveperson]\nrequest_timeout_secs = 25\ndomain_cache_secs = 60\n")
            .unwrap()
            .config;
        let engine = c.liveperson.engine_config();
        assert_eq!(engine.request_timeout, Duration::from_secs(25));
        assert_eq!(engine.domain_ttl, Duration::from_secs(60));
        let defaults = from_toml("").unwrap().config.liveperson.engine_config();
        assert_eq!(defaults.request_timeout, Duration::from_secs(10));
        assert_eq!(defaults.domain_ttl, Duration::from_secs(300));
        let e = from_toml("[liveperson]\nrequest_timeout_secs = 0\ndomain_cache_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("liveperson.request_timeout_secs"), "{e}");
        assert!(e.contains("liveperson.domain_cache_secs"), "{e}");
    }

    #[test]
    fn defaults_are_embedded() {
        let c = from_toml("").unwrap().config;
        assert_eq!(c.server.listen, default_listen());
        assert_eq!(c.store.url, "sqlite://data/switchboard.db");
        assert_eq!(c.liveperson.mode, None);
        assert_eq!(c.liveperson.mode(), LivePersonMode::Simulator);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlistn = 1\n").unwrap_err();
        assert_eq!(e.0[0].key, "server.listn", "{e}");
        let e = from_toml("[servr]\n").unwrap_err();
        assert_eq!(e.0[0].key, "servr", "{e}");
    }

    #[test]
    fn live_mode_needs_credentials() {
        let e = from_toml("[liveperson]\nmode = \"live\"\naccount_id = \"1\"\n").unwrap_err();
        let keys: Vec<_> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["liveperson.client_id", "liveperson.client_secret"]);
    }

    #[test]
    fn plugin_paths_must_be_absolute_and_exist() {
        let e = from_toml("[plugins]\npaths = [\"lib.so\"]\n").unwrap_err();
        assert_eq!(e.0[0].key, "plugins.paths.0");
        assert!(e.0[0].message.contains("not an absolute path"), "{e}");
        let e = from_toml("[plugins]\npaths = [\"/nonexistent/libx.so\"]\n").unwrap_err();
        assert_eq!(e.0[0].key, "plugins.paths.0");
        assert_eq!(
            e.0[0].message,
            "cannot load plugin `/nonexistent/libx.so`: no such file"
        );
    }

    #[test]
    fn a_pin_for_an_unlisted_library_is_an_error() {
        let e = from_toml("[plugins]\nsha256 = { \"/opt/lib.so\" = \"00\" }\n").unwrap_err();
        assert_eq!(e.0[0].key, "plugins.sha256./opt/lib.so", "{e}");
    }

    #[test]
    fn debug_output_shows_no_password_or_channel_secret() {
        let c = from_toml(
            "[store]\nurl = \"postgres://sb:db-pass-77@db/x\"\n[liveperson]\nmode = \"simulator\"\n\
             [channels.web]\nkind = \"webchat\"\ntitle = \"token-like-77\"\n",
        )
        .unwrap()
        .config;
        let shown = format!("{c:?}");
        assert!(shown.contains("postgres://sb:***@db/x"), "{shown}");
        assert!(
            !shown.contains("db-pass-77") && !shown.contains("token-like-77"),
            "{shown}"
        );
    }

    #[test]
    fn telemetry_is_off_by_default() {
        let c = from_toml("").unwrap().config;
        assert_eq!(c.telemetry.otlp_endpoint, None);
        if std::env::var_os(crate::telemetry::settings::ENDPOINT_VAR).is_none()
            && std::env::var_os(crate::telemetry::settings::TRACES_ENDPOINT_VAR).is_none()
        {
            assert_eq!(c.telemetry.export_settings(), Ok(None));
        }
    }

    #[test]
    fn bad_values_are_named() {
        let e = from_toml("[store]\nurl = \"mysql://x\"\n").unwrap_err();
        assert_eq!(e.0[0].key, "store.url");
        let e = from_toml("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!(e.0[0].key, "server.listen");
        let e = from_toml("[channels.Bad]\nkind = \"nope\"\n").unwrap_err();
        assert!(e.0.iter().any(|p| p.key == "channels.Bad"), "{e}");
        assert!(e.0.iter().any(|p| p.key == "channels.Bad.kind"), "{e}");
    }
}
