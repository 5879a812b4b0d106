//! What can go wrong talking to Slack.

use std::time::Duration;

use switchboard_core::DeliveryError;

/// A failed Web API call.
#[derive(Debug, thiserror::Error)]
pub enum SlackApiError {
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
    NotApplied(Box<SlackApiError>),
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

impl SlackApiError {
    /// Classifies a transport error; the URL (which may carry a file link) is dropped.
    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        let connect = e.is_connect();
        let text = e.without_url().to_string();
        if connect {
            SlackApiError::Unreachable(text)
        } else {
            SlackApiError::Network(text)
        }
    }

    /// `e`, known to have left nothing on Slack.
    pub(crate) fn not_applied(e: SlackApiError) -> Self {
        match e {
            SlackApiError::NotApplied(_) => e,
            other => SlackApiError::NotApplied(Box::new(other)),
        }
    }

    /// Whether Slack may have acted on a request that failed this way (a post that timed out
    /// or met a 5xx may still have been posted), so that a retry must check first.
    pub fn maybe_applied(&self) -> bool {
        match self {
            SlackApiError::Network(_) | SlackApiError::Malformed(_) => true,
            SlackApiError::Status(code) => *code >= 500,
            SlackApiError::Refused { error, .. } => {
                matches!(
                    error.as_str(),
                    "internal_error" | "fatal_error" | "request_timeout"
                )
            }
            SlackApiError::Unreachable(_)
            | SlackApiError::State(_)
            | SlackApiError::NotApplied(_) => false,
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SlackApiError::Refused { error, .. } => TRANSIENT.contains(&error.as_str()),
            SlackApiError::Status(code) => *code == 429 || *code >= 500,
            SlackApiError::Network(_)
            | SlackApiError::Unreachable(_)
            | SlackApiError::Malformed(_)
            | SlackApiError::State(_) => true,
            SlackApiError::NotApplied(inner) => inner.is_retryable(),
        }
    }

    /// The wait Slack asked for (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackApiError::Refused { retry_after, .. } => *retry_after,
            SlackApiError::NotApplied(inner) => inner.retry_after(),
            _ => None,
        }
    }
}

impl From<SlackApiError> for DeliveryError {
    /// `ratelimited` (after `Retry-After`), 5xx, `internal_error`, `service_unavailable` and
    /// network errors retry; `invalid_auth`, `channel_not_found`, `not_in_channel`,
    /// `is_archived`, `msg_too_long`, `invalid_blocks` and other refusals are permanent.
    fn from(e: SlackApiError) -> Self {
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
