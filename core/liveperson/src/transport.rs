//! The shared HTTP client and how HTTP outcomes become [`EngineError`]s.

use std::time::{Duration, SystemTime};

use reqwest::{Response, StatusCode};

use crate::error::EngineError;

/// Builds the client every call to LivePerson goes through.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, EngineError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| EngineError::Config {
            key: "liveperson",
            message: format!("cannot build the HTTP client: {e}"),
        })
}

/// A network-level failure (connect, timeout, reset): always worth retrying. The URL is left out
/// of the message because token endpoints carry the account in it, and nothing else matters.
pub(crate) fn transport_error(what: &str, e: &reqwest::Error) -> EngineError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    EngineError::retry(format!("{what} {kind}: {}", describe(e)))
}

/// A failure of a request that changes something at LivePerson (CONVERSATION, SEND). Only a
/// failure to connect proves the request never arrived; a timeout or a connection lost after
/// the request was written may hide a request LivePerson acted on (docs/protocol/liveperson.md §8: no idempotency key).
pub(crate) fn transport_error_after_send(what: &str, e: &reqwest::Error) -> EngineError {
    let error = transport_error(what, e);
    if e.is_connect() {
        error
    } else {
        error.into_uncertain()
    }
}

/// The error and its causes, without the URL (which may carry temporary signatures).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "…");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The longest `Retry-After` honoured: a longer hint is treated as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The `Retry-After` header, if present and sane.
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    parse_retry_after(value.to_str().ok()?, SystemTime::now())
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). LivePerson
/// documents neither form for the Connector API; both are accepted, and a date in the past
/// means "now" (the caller's own floor, one second for a `429`, still applies).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Classifies statuses that mean the same on every LivePerson endpoint: 429 and 5xx retry,
/// anything else in 4xx is permanent. Returns `None` for statuses the caller handles itself.
pub(crate) fn generic_failure(
    what: &str,
    status: StatusCode,
    response: &Response,
) -> Option<EngineError> {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(EngineError::Retryable {
            reason: format!("{what}: 429 Too Many Requests"),
            after: retry_after(response),
            rate_limited: true,
            may_have_arrived: false,
        });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(EngineError::Retryable {
            reason: format!("{what}: HTTP {}", status.as_u16()),
            after: retry_after(response),
            rate_limited: false,
            may_have_arrived: false,
        });
    }
    None
}

/// Reads a body, bounded, as text for error messages.
pub(crate) async fn body_excerpt(response: Response) -> String {
    match response.text().await {
        Ok(text) => text.chars().take(300).collect(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let p = |v: &str| parse_retry_after(v, now);
        assert_eq!(p("7"), Some(Duration::from_secs(7)));
        assert_eq!(p(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(p("99999999"), Some(MAX_RETRY_AFTER));
        // The three date formats HTTP allows.
        assert_eq!(
            p("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p("Sunday, 06-Nov-94 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(p("Sun Nov  6 08:50:07 1994"), Some(Duration::from_secs(30)));
        // A date already past: no extra wait.
        assert_eq!(p("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(5 * 86400));
        assert_eq!(p(&far), Some(MAX_RETRY_AFTER));
        for garbage in ["", "-5", "soon", "1.5", "Sun, 99 Nov 1994 08:00:00 GMT"] {
            assert_eq!(p(garbage), None, "{garbage:?}");
        }
    }
}
