//! Errors that cross the channel contract. Their variants decide what the runtime does next.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why an outbound event was not delivered, and whether trying again can help.
///
/// Channels classify their platform's answers into these two variants; the runtime retries
/// `Retryable` ones with backoff (waiting at least `after` when the platform said so, as with a
/// 429's `Retry-After`) and dead-letters `Permanent` ones.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryError {
    /// A transient failure: network error, timeout, 5xx, rate limit.
    #[error("retryable delivery failure: {reason}")]
    Retryable {
        /// What went wrong, for logs and the dead-letter table. Never contains secrets.
        reason: String,
        /// The earliest time to try again, when the platform said.
        #[serde(default, with = "opt_millis", skip_serializing_if = "Option::is_none")]
        after: Option<Duration>,
    },
    /// The platform refused the event for good: bad request, consumer blocked the bot, unknown
    /// chat, revoked credentials.
    #[error("permanent delivery failure: {reason}")]
    Permanent {
        /// What went wrong, for logs and the dead-letter table. Never contains secrets.
        reason: String,
    },
}

impl DeliveryError {
    /// A transient failure with no hint of when to retry.
    pub fn retryable(reason: impl Into<String>) -> Self {
        DeliveryError::Retryable {
            reason: reason.into(),
            after: None,
        }
    }

    /// A transient failure that must not be retried before `after`.
    pub fn retry_after(reason: impl Into<String>, after: Duration) -> Self {
        DeliveryError::Retryable {
            reason: reason.into(),
            after: Some(after),
        }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }

    /// True for `Retryable`.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable { .. })
    }
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Why [`ChannelContext::submit`](crate::ChannelContext::submit) did not accept events.
///
/// A channel answers its platform with a failure status on any of these, so that the platform
/// retries later: nothing unaccepted may be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitError {
    /// The runtime cannot take more right now (store busy or down); try again later.
    #[error("temporarily unavailable: {reason}")]
    Unavailable {
        /// What is wrong.
        reason: String,
        /// A hint for the platform's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The events are invalid (for example addressed to another channel instance).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The process is shutting down and accepts nothing new.
    #[error("shutting down")]
    ShuttingDown,
}

/// A configuration problem, naming the key it is about.
///
/// `key` is the full dotted path (`channels.sms.sendsms_url`); the runtime adds the file or
/// environment variable the value came from when it reports the error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{key}`: {message}")]
pub struct ConfigError {
    /// The dotted key path.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for a key.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A channel failed outside a single delivery: at start, or while polling.
#[derive(Debug, Error)]
pub enum ChannelError {
    /// Its configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Setting up with the platform failed (for example `setWebhook` was refused).
    #[error("start failed: {0}")]
    Start(String),
    /// Anything else the channel wants to report.
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_errors_serialize_with_millis() {
        let e = DeliveryError::retry_after("429", Duration::from_millis(1500));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"retryable","reason":"429","after":1500})
        );
        assert_eq!(serde_json::from_value::<DeliveryError>(v).unwrap(), e);
        assert!(e.is_retryable());
        assert!(!DeliveryError::permanent("blocked").is_retryable());
    }
}
