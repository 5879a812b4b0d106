//! Errors of the engine, shaped by what the caller must do next.

use std::time::Duration;

/// A failed call to LivePerson, classified by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Try again later: network trouble, 5xx, 429, an outage. `after` is LivePerson's own hint
    /// (`Retry-After`), if it gave one; otherwise the caller's backoff decides.
    #[error("LivePerson is unavailable ({reason}); will retry")]
    Retryable {
        /// What happened.
        reason: String,
        /// The delay LivePerson asked for.
        after: Option<Duration>,
        /// True for `429 Too Many Requests` (retry no sooner than one second).
        rate_limited: bool,
    },
    /// LivePerson refused the request itself; retrying the same request cannot succeed.
    #[error("LivePerson rejected the request: {reason}")]
    Permanent {
        /// LivePerson's message.
        reason: String,
    },
    /// `Bad Request, Conversation is close`: open a new conversation and resend.
    #[error("the conversation is closed")]
    ConversationClosed,
    /// `... already has open conversation`: LivePerson knows an open conversation this
    /// connector does not have in its map.
    #[error("the consumer already has an open conversation: {reason}")]
    AlreadyOpen {
        /// LivePerson's message.
        reason: String,
    },
    /// Credentials were refused even after fetching new ones.
    #[error("LivePerson refused our credentials: {reason}")]
    Unauthorized {
        /// What was refused (with LivePerson's `errorCode`).
        reason: String,
    },
    /// A configuration value is unusable.
    #[error("{key}: {message}")]
    Config {
        /// The full key, e.g. `liveperson.domain_api`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl EngineError {
    /// A retryable error without a hint.
    pub(crate) fn retry(reason: impl Into<String>) -> Self {
        EngineError::Retryable {
            reason: reason.into(),
            after: None,
            rate_limited: false,
        }
    }

    /// A permanent error.
    pub(crate) fn permanent(reason: impl Into<String>) -> Self {
        EngineError::Permanent {
            reason: reason.into(),
        }
    }

    /// True when retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EngineError::Retryable { .. } | EngineError::Unauthorized { .. }
        )
    }
}

/// Why a webhook request was refused (answered with 401 before its body is parsed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookAuthError {
    /// No `x-liveperson-signature` header.
    #[error("the x-liveperson-signature header is missing")]
    MissingSignature,
    /// The signature is not `sha1=<base64>` or `sha256=<base64>`.
    #[error("the x-liveperson-signature header is malformed")]
    MalformedSignature,
    /// The HMAC does not match the body.
    #[error("the signature does not match the body")]
    BadSignature,
    /// `x-liveperson-account-id` is missing or another account.
    #[error("the x-liveperson-account-id header does not name this account")]
    WrongAccount,
    /// `x-liveperson-client-id` is missing or another app installation.
    #[error("the x-liveperson-client-id header does not name this app installation")]
    WrongClient,
}

/// A webhook body that is not a LivePerson notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a LivePerson notification: {0}")]
pub struct WebhookParseError(pub String);
