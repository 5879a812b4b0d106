//! What the channel asks of an SMS gateway ([`SmsGateway`]: send one text), and how a send
//! failed ([`SendError`]: certainly or possibly not taken). Kannel's and Vonage's clients
//! implement it.

use std::fmt;
use std::time::Duration;

use switchboard_core::{Delivered, DeliveryError, async_trait};

use crate::encoding::Coding;

/// One SMS submission: a text that fits the configured part cap.
#[derive(Debug, Clone)]
pub struct OutgoingSms<'a> {
    /// The consumer's number.
    pub to: &'a str,
    /// The text.
    pub text: &'a str,
    /// Its coding.
    pub coding: Coding,
    /// What the gateway's delivery reports for this call carry back: the message's
    /// [`crate::tracking::piece_ref`].
    pub reference: &'a str,
    /// Ask for delivery reports carrying `reference` (false for the channel's own keyword
    /// replies, which LivePerson does not know).
    pub report: bool,
}

/// Why a gateway call failed, and whether the gateway may have taken the message anyway (a
/// timeout or a connection lost after the request went out: the outcome is unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct SendError {
    /// The failure, as the runtime sees it.
    pub error: DeliveryError,
    /// The gateway may have taken the message.
    pub uncertain: bool,
}

impl SendError {
    /// A failure after which the message is known not to have been taken (the gateway
    /// answered, or the connection was never made).
    pub fn known(error: DeliveryError) -> Self {
        Self {
            error,
            uncertain: false,
        }
    }

    /// A failure whose outcome is unknown.
    pub fn uncertain(error: DeliveryError) -> Self {
        Self {
            error,
            uncertain: true,
        }
    }

    /// A transport failure: certain when no connection was made, uncertain otherwise (the
    /// request may have arrived).
    pub(crate) fn transport(e: reqwest::Error, gateway: &str) -> Self {
        let uncertain = !e.is_connect();
        let error = DeliveryError::retryable(format!(
            "cannot reach {gateway}{}: {}",
            if uncertain {
                " (the outcome is unknown)"
            } else {
                ""
            },
            e.without_url()
        ));
        if !uncertain {
            Self::known(error)
        } else {
            Self::uncertain(error)
        }
    }
}

impl From<DeliveryError> for SendError {
    fn from(error: DeliveryError) -> Self {
        Self::known(error)
    }
}

/// What an SMS gateway must do for the channel: accept one MT.
#[async_trait]
pub trait SmsGateway: Send + Sync + fmt::Debug + 'static {
    /// Submits one MT; `Ok` once the gateway accepted it (Kannel `202`, Vonage status 0).
    async fn send(&self, mt: &OutgoingSms<'_>) -> Result<Delivered, SendError>;

    /// Whether the gateway reports soon after taking a message that asks for reports
    /// (Kannel: `dlr_mask` has 8 or 16, the SMSC's answer; Vonage: always, `accepted` or a
    /// final status): then an uncertain send waits for that report before it is repeated.
    fn reports(&self) -> bool;
}

/// A gateway's answer to a send, read the same way for every gateway: its status, its body
/// (an unreadable body only loses its text: the status is the answer) and its `Retry-After`
/// in seconds, if any. `gateway` names it in the debug line of an unreadable body.
pub(crate) async fn read_answer(
    resp: reqwest::Response,
    gateway: &str,
) -> (u16, String, Option<Duration>) {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp.text().await.unwrap_or_else(|e| {
        tracing::debug!(error = %e.without_url(), "{gateway}'s answer body was unreadable");
        String::new()
    });
    (status, body, retry_after)
}
