//! What can go wrong talking to the Bot API or reading an update.

use std::time::Duration;

use switchboard_core::DeliveryError;

/// A failed Bot API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Telegram answered `ok: false` (or a non-JSON error from a proxy in front of it).
    #[error("Telegram answered {code}: {description}")]
    Refused {
        /// `error_code` (the HTTP status).
        code: u16,
        /// `description`.
        description: String,
        /// `parameters.retry_after` or the `Retry-After` header.
        retry_after: Option<Duration>,
        /// `parameters.migrate_to_chat_id`: the group became a supergroup with this id.
        migrate_to: Option<i64>,
    },
    /// No answer: connection refused, timeout. Never carries the URL (it holds the token).
    #[error("cannot reach Telegram: {0}")]
    Network(String),
    /// An answer that is not the Bot API's JSON.
    #[error("unexpected answer from Telegram: {0}")]
    Malformed(String),
}

impl ApiError {
    /// Whether trying again later can succeed: network errors, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Refused { code, .. } => *code == 429 || *code >= 500,
            ApiError::Network(_) | ApiError::Malformed(_) => true,
        }
    }

    /// The chat a group moved to, if Telegram says so.
    pub fn migrated_to(&self) -> Option<i64> {
        match self {
            ApiError::Refused { migrate_to, .. } => *migrate_to,
            _ => None,
        }
    }

    /// The wait Telegram asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<ApiError> for DeliveryError {
    /// 429, 5xx and network failures retry (honouring `retry_after`); 400 (chat not found,
    /// bad request), 401 (revoked token), 403 (the user blocked the bot) are permanent.
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
