//! Logging and tracing.
//!
//! Logs are readable text by default, JSON on request, filtered by `RUST_LOG`, on stderr.
//!
//! Traces are OpenTelemetry's, exported over OTLP/HTTP when `[telemetry]` (or the standard
//! `OTEL_EXPORTER_OTLP_*` variables) names a collector ([`settings`]), and off otherwise. Every
//! message is one trace: the server span of the request that brought it in (the child of the
//! request's `traceparent`, when it has one), the store write that accepted it, each attempt
//! at sending it, and each call to the other side within an attempt ([`spans`]). The trace
//! context is stored with the outbox item ([`context`]), so an attempt made by another
//! instance sharing the store continues the same trace.
//!
//! The spans are `tracing` spans of the target [`SPAN_TARGET`], at `info`. Only the trace
//! layer ([`Telemetry::layer`]) takes them, whatever `RUST_LOG` says; the log lines never show
//! them. With telemetry off no layer takes them, and creating one costs a check of a cached
//! flag.

mod context;
mod export;
pub mod settings;
pub mod spans;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt as _, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

pub use context::{from_headers, from_stored, to_stored};
pub use export::{ExportWarnings, Telemetry, TelemetryError, WARNING_INTERVAL};
pub use settings::ExportSettings;

/// The target of the spans that become OpenTelemetry spans (and of nothing else).
pub const SPAN_TARGET: &str = "switchboard::trace";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber: the logs, and the trace layer of `telemetry` when traces
/// are on. `RUST_LOG` overrides the logs' default `info` level (it does not filter what is
/// traced). Logs go to stderr so that commands printing data (`manifest`, `channels`) keep
/// stdout clean.
pub fn init(format: LogFormat, telemetry: Option<&Telemetry>) {
    let traces = telemetry.map(Telemetry::layer);
    // Already initialised (tests): keep the existing subscriber.
    let _ = Registry::default()
        .with(logs(format))
        .with(traces)
        .try_init();
}

/// The log layer: `RUST_LOG` (default `info`), without the trace spans.
pub fn logs<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The hint keeps `RUST_LOG`'s level the process's maximum (`And` of a filter without
    // one has none), so that disabled `debug!`s cost a level comparison, as before.
    let filter =
        filter.and(filter_fn(|meta| !is_trace_span(meta)).with_max_level_hint(LevelFilter::TRACE));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
    }
}

fn is_trace_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == SPAN_TARGET
}

/// What the trace layer takes: the trace spans, and the events of Switchboard's crates at
/// `info` and above (they become events of the span they happen in; outside any span they
/// are dropped). Events with a `consumer` field stay out: it is the consumer's address (a
/// phone number), which a trace must not carry. So do the exporter's own warnings, so that
/// reporting a failed export can never feed the export.
fn exported(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        return meta.target() == SPAN_TARGET;
    }
    *meta.level() <= Level::INFO
        && meta.target().starts_with("switchboard")
        && !meta.target().starts_with("switchboard::telemetry")
        && meta.fields().field("consumer").is_none()
}
