//! W3C Trace Context (`traceparent`, `tracestate`) in and out: read from an incoming request's
//! headers, and kept with an outbox item so that the instance which sends it continues the
//! trace of the instance which received it.
//!
//! The stored form is one line: the `traceparent` value, then, when there is one, a space and
//! the `tracestate` value. A `traceparent` never holds a space (W3C Trace Context,
//! "traceparent Header": four dash-separated hex fields), so the first space separates them.

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The remote parent an incoming request names in its `traceparent` (and `tracestate`)
/// headers; `None` without a valid one (an invalid header starts a new trace, as the
/// specification asks).
pub fn from_headers(headers: &http::HeaderMap) -> Option<Context> {
    let cx = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The stored form of `span`'s context, or `None` when the span is not traced (telemetry off,
/// or filtered out).
pub fn to_stored(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let parent = carrier.remove(TRACEPARENT)?;
    Some(match carrier.remove(TRACESTATE).filter(|s| !s.is_empty()) {
        Some(state) => format!("{parent} {state}"),
        None => parent,
    })
}

/// The context a stored form names (`None` for one that does not parse: that item's spans
/// start a trace of their own).
pub fn from_stored(stored: &str) -> Option<Context> {
    let (parent, state) = stored.split_once(' ').unwrap_or((stored, ""));
    let mut carrier = std::collections::HashMap::new();
    carrier.insert(TRACEPARENT.to_owned(), parent.to_owned());
    if !state.is_empty() {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_header_is_the_remote_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        headers.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
        let cx = from_headers(&headers).unwrap();
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "congo=t61rcWkgMzE");
    }

    #[test]
    fn a_malformed_traceparent_is_no_parent() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "junk",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", bad.parse().unwrap());
            assert!(from_headers(&headers).is_none(), "{bad}");
            assert!(from_stored(bad).is_none(), "{bad}");
        }
        assert!(from_headers(&http::HeaderMap::new()).is_none());
    }

    #[test]
    fn the_stored_form_carries_parent_and_state() {
        let cx = from_stored(&format!("{PARENT} congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")).unwrap();
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(
            sc.trace_state().header(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        assert!(from_stored(PARENT).is_some());
    }

    #[test]
    fn an_untraced_span_stores_nothing() {
        assert_eq!(to_stored(&tracing::Span::none()), None);
    }
}
