//! What can go wrong talking to Slack.

use std::time::Duration;

use switchboard_core::DeliveryError;

/// A failed Web API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Slack answered `{"ok":false,"error":…}` (HTTP 200), or HTTP 429 `ratelimited`.
    #[error("Slack answered `{error}`")]
    Refused {
        /// The error code (`channel_not_found`, `ratelimited`, …).
        error: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// A 5xx or another non-200 status (often HTML from Slack's edge).
    #[error("Slack answered HTTP {0}")]
    Status(u16),
    /// The connection could not be made: the request was certainly not sent.
    #[error("cannot connect to Slack: {0}")]
    Unreachable(String),
    /// The request went out but no answer came (timeout, connection reset): Slack may have
    /// acted on it. Never carries the URL.
    #[error("no answer from Slack: {0}")]
    Network(String),
    /// An answer that is not Slack's JSON.
    #[error("unexpected answer from Slack: {0}")]
    Malformed(String),
    /// The channel's durable state could not be read or written before a post, so nothing
    /// was sent (the mark that prevents a repeated post after a crash comes first).
    #[error("cannot keep the post's mark in the store: {0}")]
    State(String),
    /// A failure that certainly left nothing visible on Slack, whatever its kind (an upload
    /// that failed before the file was shared).
    #[error("{0}")]
    NotApplied(Box<ApiError>),
}

/// Error codes that can heal by waiting (`awaiting_echo` is ours: an uncertain post's echo
/// is awaited).
const TRANSIENT: [&str; 7] = [
    "awaiting_echo",
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

impl ApiError {
    /// Classifies a transport error; the URL (which may carry a file link) is dropped.
    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        let connect = e.is_connect();
        let text = e.without_url().to_string();
        if connect {
            ApiError::Unreachable(text)
        } else {
            ApiError::Network(text)
        }
    }

    /// `e`, known to have left nothing on Slack.
    pub(crate) fn not_applied(e: ApiError) -> Self {
        match e {
            ApiError::NotApplied(_) => e,
            other => ApiError::NotApplied(Box::new(other)),
        }
    }

    /// Whether Slack may have acted on a request that failed this way (a post that timed out
    /// or met a 5xx may still have been posted), so that a retry must check first.
    pub fn maybe_applied(&self) -> bool {
        match self {
            ApiError::Network(_) | ApiError::Malformed(_) => true,
            ApiError::Status(code) => *code >= 500,
            ApiError::Refused { error, .. } => {
                matches!(
                    error.as_str(),
                    "internal_error" | "fatal_error" | "request_timeout"
                )
            }
            ApiError::Unreachable(_) | ApiError::State(_) | ApiError::NotApplied(_) => false,
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Refused { error, .. } => TRANSIENT.contains(&error.as_str()),
            ApiError::Status(code) => *code == 429 || *code >= 500,
            ApiError::Network(_)
            | ApiError::Unreachable(_)
            | ApiError::Malformed(_)
            | ApiError::State(_) => true,
            ApiError::NotApplied(inner) => inner.is_retryable(),
        }
    }

    /// The wait Slack asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Refused { retry_after, .. } => *retry_after,
            ApiError::NotApplied(inner) => inner.retry_after(),
            _ => None,
        }
    }
}

impl From<ApiError> for DeliveryError {
    /// `ratelimited` (after `Retry-After`), 5xx, `internal_error`, `service_unavailable` and
    /// network errors retry; `invalid_auth`, `channel_not_found`, `not_in_channel`,
    /// `is_archived`, `msg_too_long`, `invalid_blocks` and other refusals are permanent.
    fn from(e: ApiError) -> Self {
        if e.is_retryable() {
            DeliveryError::Retryable {
                after: e.retry_after(),
                reason: e.to_string(),
            }
        } else {
            DeliveryError::permanent(e.to_string())
        }
    }
}
