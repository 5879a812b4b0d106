//! The shared HTTP client and how HTTP outcomes become [`EngineError`]s.

use std::time::Duration;

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

/// The `Retry-After` header in seconds, if present and sane.
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
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
        });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(EngineError::Retryable {
            reason: format!("{what}: HTTP {}", status.as_u16()),
            after: retry_after(response),
            rate_limited: false,
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
