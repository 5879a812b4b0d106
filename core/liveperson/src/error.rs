//! Errors of the engine, shaped by what the caller must do next.

use std::time::Duration;

/// Part of the message of every error after which a request may have reached LivePerson
/// although no readable answer said so (see [`EngineError::may_have_arrived`], which decides
/// from the error's `may_have_arrived` field, never from this text). Stable: stored errors and
/// logs show it.
pub const MAY_HAVE_ARRIVED: &str = "the request may have arrived";

/// A failed call to LivePerson, classified by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Try again later: network trouble, 5xx, 429, an outage. `after` is LivePerson's own hint
    /// (`Retry-After`), if it gave one; otherwise the caller's backoff decides.
    #[error(
        "LivePerson is unavailable ({reason}{uncertain}); will retry",
        uncertain = if *may_have_arrived { format!(" ({MAY_HAVE_ARRIVED})") } else { String::new() }
    )]
    Retryable {
        /// What happened.
        reason: String,
        /// The delay LivePerson asked for.
        after: Option<Duration>,
        /// True for `429 Too Many Requests` (retry no sooner than one second).
        rate_limited: bool,
        /// True when the request may have reached LivePerson and been acted on although no
        /// readable answer said so: a timeout or a connection lost after the request was
        /// written, a `502`/`504` from a gateway, a success status with a body that cannot be
        /// read. LivePerson has no idempotency key (docs/protocol/liveperson.md §12.13): a caller must not repeat such a
        /// request blindly (the router looks for LivePerson's echo of a text first). Set where
        /// the error is made.
        may_have_arrived: bool,
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
    /// `ms.GenerateURLForUploadFile` was refused because file sharing is switched off for the
    /// account (site setting `messaging.file.sharing.enabled`, docs/protocol/liveperson.md §5.10): the file cannot be
    /// published, and docs/protocol/liveperson.md §13 prescribes a text in its place. Never retried.
    #[error("file sharing is disabled for the LivePerson account: {reason}")]
    FileSharingDisabled {
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
            may_have_arrived: false,
        }
    }

    /// A retryable error after which the request may have reached LivePerson (see
    /// [`MAY_HAVE_ARRIVED`]).
    pub(crate) fn uncertain(reason: impl std::fmt::Display) -> Self {
        EngineError::retry(reason.to_string()).into_uncertain()
    }

    /// The same error, marked as one after which the request may have arrived.
    pub(crate) fn into_uncertain(self) -> Self {
        match self {
            EngineError::Retryable {
                reason,
                after,
                rate_limited,
                ..
            } => EngineError::Retryable {
                reason,
                after,
                rate_limited,
                may_have_arrived: true,
            },
            other => other,
        }
    }

    /// A permanent error.
    pub(crate) fn permanent(reason: impl Into<String>) -> Self {
        EngineError::Permanent {
            reason: reason.into(),
        }
    }

    /// True when the failed request may nevertheless have reached LivePerson and been acted on
    /// (a timeout, a lost or unreadable answer): repeating it may duplicate it.
    pub fn may_have_arrived(&self) -> bool {
        matches!(
            self,
            EngineError::Retryable {
                may_have_arrived: true,
                ..
            }
        )
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

/// A consumer event that cannot become Send API requests: retrying it cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A choice of a button the message's click table does not have (or of a message whose
    /// table is gone).
    #[error("button `{choice}` of message `{message}` is unknown")]
    UnknownButton {
        /// The message the button was on.
        message: String,
        /// The button's id.
        choice: String,
    },
    /// A choice on a message that is not a LivePerson agent event's
    /// ([`crate::translate::message_ref`]).
    #[error("choice on an unknown message `{message}`")]
    UnknownMessage {
        /// The message id the channel gave.
        message: String,
    },
}
