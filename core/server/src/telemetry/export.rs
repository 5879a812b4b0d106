//! The OpenTelemetry pipeline: the `tracing` spans of [`super::SPAN_TARGET`] become
//! OpenTelemetry spans (`tracing-opentelemetry`), which the SDK's batch span processor hands,
//! off the request path, to an OTLP/HTTP exporter.
//!
//! Ending a span only puts it into the batch processor's bounded queue (a full queue drops
//! it); the processor's own thread encodes batches (protobuf) and POSTs them every 5 s or
//! every 512 spans (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`). The POST
//! goes through the workspace's reqwest (its blocking client, on that thread), so no second
//! HTTP stack is linked. A collector that cannot be reached costs that thread its timeouts
//! and the spans it could not send, and a warning at most once a minute ([`ExportWarnings`]).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use super::settings::{DEFAULT_SERVICE_NAME, ExportSettings};

/// How often, at most, a failing export is logged.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutting down waits for the last spans to be sent.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);
/// Largest collector answer read (its body is a small protobuf).
const MAX_ANSWER: u64 = 64 * 1024;

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

/// A running trace pipeline. Dropping it sends the spans still queued (for up to 5 s) and stops
/// it.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Builds the exporter and the batch processor for `settings`. Nothing is sent until a
    /// span ends.
    pub fn start(settings: &ExportSettings) -> Result<Self, TelemetryError> {
        let client = ExportClient {
            client: OnceLock::new(),
            timeout: export_timeout(&|name| std::env::var(name).ok()),
            warnings: Arc::new(ExportWarnings::new(settings.display_endpoint())),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_url.clone())
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(settings.service_name.as_deref()))
            .build();
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns this process's spans of [`super::SPAN_TARGET`] (and the
    /// events of Switchboard's own crates inside them, at `info` and above) into
    /// OpenTelemetry spans. Entering a span does not activate an OpenTelemetry context, and no
    /// thread, source location, target or idle time is recorded: each would cost time at every poll
    /// of a traced future, for nothing Switchboard uses.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("switchboard"))
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_filter(
                tracing_subscriber::filter::filter_fn(super::exported)
                    .with_max_level_hint(tracing_subscriber::filter::LevelFilter::INFO),
            )
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown_with_timeout(SHUTDOWN_BUDGET);
    }
}

/// The process's resource: `service.name` from `telemetry.service_name`, else the SDK's
/// reading of `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, else `switchboard`; the
/// other attributes of `OTEL_RESOURCE_ATTRIBUTES` (e.g. `service.instance.id`) as given.
fn resource(service_name: Option<&str>) -> Resource {
    let detected = Resource::builder().build();
    let key = opentelemetry::Key::from_static_str("service.name");
    let unnamed = detected
        .get(&key)
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    let name = match service_name {
        Some(name) => Some(name.to_owned()),
        None if unnamed => Some(DEFAULT_SERVICE_NAME.to_owned()),
        None => None,
    };
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(name) = name {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

/// How long one export may take: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else 10 s, as the SDK reads them for its own
/// clients.
fn export_timeout(env: &dyn Fn(&str) -> Option<String>) -> Duration {
    [
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT,
    ]
    .iter()
    .find_map(|name| env(name)?.trim().parse::<u64>().ok())
    .map(Duration::from_millis)
    .unwrap_or(opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT)
}

/// The exporter's HTTP client: reqwest's blocking client, created on the batch processor's
/// thread at the first export (a blocking client must not be created or dropped on an async
/// runtime's thread) and used only there, where the SDK blocks on each export anyway.
#[derive(Debug)]
struct ExportClient {
    client: OnceLock<Result<reqwest::blocking::Client, String>>,
    timeout: Duration,
    warnings: Arc<ExportWarnings>,
}

impl ExportClient {
    fn send(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, HttpError> {
        use std::io::Read as _;
        let client = self
            .client
            .get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .timeout(self.timeout)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| HttpError::from(e.clone()))?;
        let request = reqwest::blocking::Request::try_from(request)?;
        let mut response = client
            .execute(request)
            .map_err(reqwest::Error::without_url)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        response.take(MAX_ANSWER).read_to_end(&mut body)?;
        let mut answer = http::Response::builder()
            .status(status)
            .body(Bytes::from(body))?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

#[async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let result = self.send(request);
        match &result {
            Ok(answer) if answer.status().is_success() => self.warnings.succeeded(),
            Ok(answer) => {
                let reason = format!("the collector answered {}", answer.status());
                self.warnings.failed(&reason);
            }
            Err(e) => {
                self.warnings.failed(&causes(e.as_ref()));
            }
        }
        result
    }
}

/// An error with its causes ("error sending request: … Connection refused"); reqwest's own
/// message names only the first.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Export failures, logged at most once per [`WARNING_INTERVAL`] with the count of those in
/// between, and the recovery once.
#[derive(Debug)]
pub struct ExportWarnings {
    endpoint: String,
    state: Mutex<WarningState>,
}

#[derive(Debug, Default)]
struct WarningState {
    last_warning: Option<Instant>,
    unreported: u64,
    failing: bool,
}

impl ExportWarnings {
    /// Warnings about exports to `endpoint` (as it may be shown).
    pub fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            state: Mutex::default(),
        }
    }

    /// Records a failed export; logs it when no warning was logged for a minute. Returns
    /// whether it logged.
    pub fn failed(&self, reason: &str) -> bool {
        self.failed_at(Instant::now(), reason)
    }

    fn failed_at(&self, now: Instant, reason: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.failing = true;
        state.unreported += 1;
        let due = state
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= WARNING_INTERVAL);
        if due {
            tracing::warn!(
                target: "switchboard::telemetry",
                collector = %self.endpoint,
                error = %reason,
                failed_exports = state.unreported,
                "cannot export traces; their spans are dropped, the connector carries on \
                 (this warning repeats at most once a minute)"
            );
            state.last_warning = Some(now);
            state.unreported = 0;
        }
        due
    }

    /// Records a successful export (and logs the recovery after failures).
    pub fn succeeded(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::take(&mut state.failing) {
            state.unreported = 0;
            tracing::info!(target: "switchboard::telemetry", collector = %self.endpoint,
                "traces reach the collector again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_collector_is_reported_at_most_once_a_minute() {
        let warnings = ExportWarnings::new("http://c:4318".into());
        let start = Instant::now();
        assert!(warnings.failed_at(start, "refused"));
        for s in 1..60 {
            assert!(
                !warnings.failed_at(start + Duration::from_secs(s), "refused"),
                "{s}"
            );
        }
        assert!(warnings.failed_at(start + Duration::from_secs(60), "refused"));
        // Recovered, then failing again within the minute: still quiet.
        warnings.succeeded();
        assert!(!warnings.failed_at(start + Duration::from_secs(61), "refused"));
    }

    #[test]
    fn the_service_is_named_switchboard_unless_told_otherwise() {
        let key = opentelemetry::Key::from_static_str("service.name");
        if std::env::var_os("OTEL_SERVICE_NAME").is_none()
            && std::env::var_os("OTEL_RESOURCE_ATTRIBUTES").is_none()
        {
            assert_eq!(
                resource(None).get(&key).map(|v| v.to_string()),
                Some("switchboard".into())
            );
        }
        assert_eq!(
            resource(Some("sb-eu")).get(&key).map(|v| v.to_string()),
            Some("sb-eu".into())
        );
    }
}
