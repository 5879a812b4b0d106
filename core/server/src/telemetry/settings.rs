//! Whether traces are exported, and where: `[telemetry]` and the standard `OTEL_*` environment
//! variables, resolved and checked once when the configuration is loaded.
//!
//! The endpoint comes from `telemetry.otlp_endpoint` (a base URL, like
//! `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/traces` is appended), else
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the whole URL, used as it is), else
//! `OTEL_EXPORTER_OTLP_ENDPOINT`. The file wins over the environment, as programmatic settings
//! win over the environment in the OpenTelemetry SDK specification
//! (opentelemetry-specification `specification/configuration/sdk-environment-variables.md`;
//! `opentelemetry-otlp` `src/exporter/http/mod.rs`, `resolve_http_endpoint`). Without any of
//! them nothing is exported and no span is even created.
//!
//! The SDK reads the other standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_*`). Two are refused here rather than ignored: a protocol other than
//! `http/protobuf` and a compression, which this build does not carry.

use serde::Deserialize;
use switchboard_core::ConfigError;

/// `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP (protobuf) to a collector.
/// Off unless this table or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables name one (see this module).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://collector:4318`; spans are POSTed to
    /// `<base>/v1/traces` (a URL that already ends in `/v1/traces` is an error). `http://` or
    /// `https://` only. Wins over the `OTEL_EXPORTER_OTLP_*ENDPOINT` variables.
    #[serde(default)]
    #[schemars(extend("x-default" = "none (off)"))]
    pub otlp_endpoint: Option<url::Url>,
    /// The spans' `service.name`; an error when no endpoint is set (it would have no effect).
    #[serde(default)]
    #[schemars(extend("x-default" = "`OTEL_SERVICE_NAME`, else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else `switchboard`"))]
    pub service_name: Option<String>,
}

impl TelemetryConfig {
    /// How traces are exported, with this process's environment: `None` when they are off.
    pub fn export_settings(&self) -> Result<Option<ExportSettings>, Vec<Problem>> {
        resolve(self, &|name| std::env::var(name).ok())
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the whole traces URL.
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL of every signal (`/v1/traces` is appended).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The path of the traces service under an OTLP/HTTP base URL (OTLP specification,
/// `docs/specification.md`, "OTLP/HTTP Request").
pub const TRACES_PATH: &str = "/v1/traces";
/// The `service.name` when neither the file nor the environment names one.
pub const DEFAULT_SERVICE_NAME: &str = "switchboard";

/// The protocol variables: only `http/protobuf` is built in.
const PROTOCOL_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];
/// The compression variables: no compression is built in.
const COMPRESSION_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
];

/// How traces are exported, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// The URL spans are POSTed to (OTLP/HTTP, protobuf), `/v1/traces` included.
    pub traces_url: String,
    /// Where that URL came from: `telemetry.otlp_endpoint` or an environment variable.
    pub source: &'static str,
    /// Endpoint variables that are set but lose to `source`, for the start-up log line.
    pub overridden: Vec<&'static str>,
    /// `telemetry.service_name`, when set (else `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`'
    /// `service.name`, or [`DEFAULT_SERVICE_NAME`]).
    pub service_name: Option<String>,
}

impl ExportSettings {
    /// The collector's address as it may be logged: scheme, host and port, no credentials or
    /// path.
    pub fn display_endpoint(&self) -> String {
        url::Url::parse(&self.traces_url)
            .map(|u| {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
            })
            .unwrap_or_else(|_| "the configured collector".to_owned())
    }
}

/// A problem with the telemetry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A `[telemetry]` key (its origin is the file, or a `SWITCHBOARD_TELEMETRY__…` variable).
    Key(ConfigError),
    /// A standard `OTEL_*` environment variable.
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// Resolves `config` and the environment (read through `env`) into the export settings, or
/// `None` when traces are off. Every problem is reported, none silently ignored.
pub fn resolve(
    config: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ExportSettings>, Vec<Problem>> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut problems = Vec::new();
    let mut endpoints: Vec<(&'static str, String)> = Vec::new();
    if let Some(base) = &config.otlp_endpoint {
        match traces_url_of_key(base) {
            Ok(url) => endpoints.push(("telemetry.otlp_endpoint", url)),
            Err(message) => problems.push(Problem::Key(ConfigError::new(
                "telemetry.otlp_endpoint",
                message,
            ))),
        }
    }
    for (name, is_base) in [(TRACES_ENDPOINT_VAR, false), (ENDPOINT_VAR, true)] {
        let Some(value) = var(name) else { continue };
        match traces_url_of_env(value.trim(), is_base) {
            Ok(url) => endpoints.push((name, url)),
            Err(message) => problems.push(Problem::Env { var: name, message }),
        }
    }
    if let Some(name) = &config.service_name
        && name.trim().is_empty()
    {
        problems.push(Problem::Key(ConfigError::new(
            "telemetry.service_name",
            "must not be empty",
        )));
    }
    let on = !endpoints.is_empty() || config.otlp_endpoint.is_some();
    if on {
        for name in PROTOCOL_VARS {
            if let Some(value) = var(name)
                && value.trim() != "http/protobuf"
            {
                problems.push(Problem::Env {
                    var: name,
                    message: format!(
                        "`{value}` is not supported: Switchboard exports traces over OTLP/HTTP \
                         with protobuf (`http/protobuf`) only; unset it or set `http/protobuf`"
                    ),
                });
            }
        }
        for name in COMPRESSION_VARS {
            if let Some(value) = var(name) {
                problems.push(Problem::Env {
                    var: name,
                    message: format!(
                        "`{value}`: Switchboard sends traces uncompressed (no compression is \
                         built in); unset it"
                    ),
                });
            }
        }
    } else if config.service_name.is_some() {
        problems.push(Problem::Key(ConfigError::new(
            "telemetry.service_name",
            format!(
                "has no effect: no traces are exported without `telemetry.otlp_endpoint` (or \
                 {ENDPOINT_VAR}); set the endpoint, or remove the key"
            ),
        )));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut endpoints = endpoints.into_iter();
    Ok(endpoints.next().map(|(source, traces_url)| ExportSettings {
        traces_url,
        source,
        overridden: endpoints.map(|(name, _)| name).collect(),
        service_name: config.service_name.clone(),
    }))
}

/// The traces URL of `telemetry.otlp_endpoint`, a base URL.
fn traces_url_of_key(base: &url::Url) -> Result<String, String> {
    check_url(base)?;
    if base.path().trim_end_matches('/').ends_with(TRACES_PATH) {
        return Err(format!(
            "`{}` is the collector's base URL (e.g. `http://collector:4318`): `{TRACES_PATH}` is \
             added to it; remove `{TRACES_PATH}`",
            redacted(base)
        ));
    }
    Ok(with_traces_path(base))
}

/// The traces URL of an endpoint variable: the base URL of `OTEL_EXPORTER_OTLP_ENDPOINT` gets
/// `/v1/traces`, the signal's own variable is the whole URL.
fn traces_url_of_env(value: &str, is_base: bool) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    check_url(&url)?;
    Ok(if is_base {
        with_traces_path(&url)
    } else {
        url.to_string()
    })
}

fn check_url(url: &url::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{}` must be an http:// or https:// URL (OTLP over HTTP)",
            redacted(url)
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` names no host", redacted(url)));
    }
    Ok(())
}

fn with_traces_path(base: &url::Url) -> String {
    let mut url = base.clone();
    let path = format!("{}{TRACES_PATH}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url.to_string()
}

/// A URL with its password masked, for messages.
fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: Option<&str>, service: Option<&str>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: endpoint.map(|e| url::Url::parse(e).unwrap()),
            service_name: service.map(str::to_owned),
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn off_without_any_endpoint() {
        assert_eq!(resolve(&config(None, None), &env_of(&[])), Ok(None));
    }

    #[test]
    fn the_key_is_a_base_url_and_wins_over_the_environment() {
        let env = env_of(&[(ENDPOINT_VAR, "http://other:4318")]);
        let s = resolve(&config(Some("http://collector:4318"), None), &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(s.source, "telemetry.otlp_endpoint");
        assert_eq!(s.overridden, [ENDPOINT_VAR]);
        let s = resolve(
            &config(Some("https://otlp.example.com/prefix/"), None),
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.traces_url, "https://otlp.example.com/prefix/v1/traces");
    }

    #[test]
    fn the_environment_alone_turns_traces_on_as_the_sdk_reads_it() {
        let env = env_of(&[(ENDPOINT_VAR, "http://collector:4318/")]);
        let s = resolve(&config(None, None), &env).unwrap().unwrap();
        assert_eq!(s.traces_url, "http://collector:4318/v1/traces");
        assert_eq!(s.source, ENDPOINT_VAR);
        // The signal's own variable is the whole URL, and wins over the general one.
        let env = env_of(&[
            (ENDPOINT_VAR, "http://collector:4318"),
            (TRACES_ENDPOINT_VAR, "http://traces:9999/custom"),
        ]);
        let s = resolve(&config(None, None), &env).unwrap().unwrap();
        assert_eq!(s.traces_url, "http://traces:9999/custom");
        assert_eq!(s.overridden, [ENDPOINT_VAR]);
    }

    #[test]
    fn bad_settings_name_their_key_or_variable() {
        let err = resolve(&config(Some("ftp://collector"), None), &env_of(&[])).unwrap_err();
        assert!(
            matches!(&err[..], [Problem::Key(e)] if e.key == "telemetry.otlp_endpoint"),
            "{err:?}"
        );
        let err = resolve(
            &config(Some("http://collector:4318/v1/traces"), None),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(
            matches!(&err[..], [Problem::Key(e)] if e.message.contains("base URL")),
            "{err:?}"
        );
        let env = env_of(&[(ENDPOINT_VAR, "collector:4318")]);
        let err = resolve(&config(None, None), &env).unwrap_err();
        assert!(
            matches!(&err[..], [Problem::Env { var, .. }] if *var == ENDPOINT_VAR),
            "{err:?}"
        );
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]);
        let err = resolve(&config(Some("http://c:4318"), None), &env).unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        // Irrelevant while traces are off.
        assert_eq!(resolve(&config(None, None), &env), Ok(None));
    }

    #[test]
    fn a_service_name_without_an_endpoint_has_no_effect_and_is_an_error() {
        let err = resolve(&config(None, Some("connector")), &env_of(&[])).unwrap_err();
        assert!(
            matches!(&err[..], [Problem::Key(e)] if e.key == "telemetry.service_name"
                && e.message.contains("no effect")),
            "{err:?}"
        );
        let env = env_of(&[(ENDPOINT_VAR, "http://c:4318")]);
        let s = resolve(&config(None, Some("connector")), &env)
            .unwrap()
            .unwrap();
        assert_eq!(s.service_name.as_deref(), Some("connector"));
    }

    #[test]
    fn passwords_stay_out_of_messages_and_logs() {
        let err = resolve(
            &config(Some("http://user:s3cret@c:4318/v1/traces"), None),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
        let s = resolve(
            &config(Some("http://user:s3cret@c:4318"), None),
            &env_of(&[]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.display_endpoint(), "http://c:4318");
    }
}
