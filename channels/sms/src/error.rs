//! Why an inbound callback was refused, and the HTTP answer for it.

use switchboard_core::http::StatusCode;
use switchboard_core::http_util::json_error;
use switchboard_core::{HttpResponse, SubmitError, http_util};
use thiserror::Error;

/// Why a gateway callback was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InboundError {
    /// The `token` was missing or wrong.
    #[error("missing or invalid callback token")]
    Unauthorized,
    /// A Vonage webhook's signature, timestamp or nonce was refused.
    #[error("{0}")]
    BadSignature(String),
    /// A required parameter was missing or malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No such endpoint.
    #[error("no such SMS endpoint")]
    NotFound,
    /// Wrong method.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// The runtime did not accept the event; the gateway retries.
    #[error("{0}")]
    Submit(SubmitError),
}

impl InboundError {
    /// A bad request.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        InboundError::BadRequest(message.into())
    }

    /// The JSON error answer.
    pub fn to_response(&self) -> HttpResponse {
        match self {
            InboundError::Unauthorized => {
                json_error(StatusCode::UNAUTHORIZED, "unauthorized", &self.to_string())
            }
            InboundError::BadSignature(m) => {
                json_error(StatusCode::UNAUTHORIZED, "bad_signature", m)
            }
            InboundError::BadRequest(m) => json_error(StatusCode::BAD_REQUEST, "bad_request", m),
            InboundError::NotFound => {
                json_error(StatusCode::NOT_FOUND, "not_found", &self.to_string())
            }
            InboundError::MethodNotAllowed => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &self.to_string(),
            ),
            InboundError::Submit(e) => http_util::submit_failed(e),
        }
    }
}
