//! What the simulator sends as webhooks: the notifications queued, their signature and the
//! delivery log. Sending them is [`crate::webhooks`].

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;

use crate::config::{SignatureAlgorithm, WebhookEndpoint};

/// `x-liveperson-signature` value for `body`: `sha1=`/`sha256=` + base64(HMAC(client_secret, body)).
pub fn signature_header(client_secret: &str, body: &[u8], alg: SignatureAlgorithm) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    match alg {
        SignatureAlgorithm::Sha1 => {
            // HMAC accepts keys of any length; the error branch cannot happen.
            let Ok(mut m) = Hmac::<sha1::Sha1>::new_from_slice(client_secret.as_bytes()) else {
                return String::new();
            };
            m.update(body);
            format!("sha1={}", b64.encode(m.finalize().into_bytes()))
        }
        SignatureAlgorithm::Sha256 => {
            let Ok(mut m) = Hmac::<sha2::Sha256>::new_from_slice(client_secret.as_bytes()) else {
                return String::new();
            };
            m.update(body);
            format!("sha256={}", b64.encode(m.finalize().into_bytes()))
        }
    }
}

/// What became of one notification delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryOutcome {
    /// Still being attempted or waiting to be retried.
    Pending,
    /// The endpoint answered 200 or 201.
    Delivered,
    /// Given up (retries exhausted, retention expired, or dropped by a fault).
    Dropped,
}

/// One notification and every attempt to deliver it.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookDelivery {
    /// Index in the delivery log.
    pub id: usize,
    /// Subscription key, e.g. `ms.MessagingEventNotification.ContentEvent`.
    pub notification_type: String,
    /// Conversation the notification is about.
    pub conversation_id: Option<String>,
    /// Endpoint URL.
    pub endpoint: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Status of each attempt (`null` = connect error or timeout).
    pub statuses: Vec<Option<u16>>,
    /// Current outcome.
    pub outcome: DeliveryOutcome,
    /// A duplicate injected by the `duplicate_webhooks` fault.
    pub duplicate: bool,
    /// Duration of the last attempt in ms (LivePerson wants < 2500).
    pub last_duration_ms: Option<u64>,
    /// The notification as sent.
    pub body: Value,
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) conversation_id: Option<String>,
    pub(crate) key: String,
    pub(crate) body: Value,
    /// Sent as `x-liveperson-account-id` instead of the account (injected faults).
    pub(crate) account_id: Option<String>,
    /// Sent as `x-liveperson-client-id` instead of the app's client id (injected faults).
    pub(crate) client_id: Option<String>,
}

impl Outgoing {
    pub(crate) fn new(
        conversation_id: Option<String>,
        key: impl Into<String>,
        body: Value,
    ) -> Self {
        Self {
            conversation_id,
            key: key.into(),
            body,
            account_id: None,
            client_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    Count(u32),
    Ttl { retention: Duration, exempt: bool },
}

#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: usize,
    pub(crate) bytes: Bytes,
    pub(crate) endpoint: WebhookEndpoint,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) mode: Mode,
    pub(crate) scale: f64,
    pub(crate) delay: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_test_vectors() {
        let body = br#"{"kind":"notification","body":{"changes":[]},"type":"ms.MessagingEventNotification"}"#;
        assert_eq!(
            signature_header("example-client-secret", body, SignatureAlgorithm::Sha1),
            "sha1=A/VrDpR6mY5/P5JD/CdW3SSEIp8="
        );
        assert_eq!(
            signature_header("example-client-secret", body, SignatureAlgorithm::Sha256),
            "sha256=mnCTUhDpwCP6pLO1jSUJKBq/IhpTrZiWxYyMAfjCtVA="
        );
        let body2 = r#"{"kind":"notification","body":{"changes":[{"event":{"type":"ContentEvent","contentType":"text/plain","message":"héllo 👋"}}]},"type":"ms.MessagingEventNotification"}"#;
        assert_eq!(body2.len(), 168);
        assert_eq!(
            signature_header(
                "example-client-secret",
                body2.as_bytes(),
                SignatureAlgorithm::Sha1
            ),
            "sha1=JSb2jfN8wNMaYg6cAVdts3lmlRs="
        );
    }
}
