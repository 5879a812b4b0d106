//! What the HTTP app hands requests to but does not implement: the LivePerson webhook and the
//! media links, implemented by the routing layer. Here, below both, so that the app and the
//! routing depend on these traits and not on each other.

use std::fmt;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::HeaderMap;

use crate::error::ApiError;

/// Handles `POST /webhooks/liveperson`: verifies, parses and durably accepts a notification.
/// Implemented by the LivePerson engine's integration; the app answers 503 until one is set.
#[async_trait]
pub trait LivePersonWebhook: Send + Sync + fmt::Debug + 'static {
    /// Handles one delivery. `Ok` means the resulting work is durably accepted (LivePerson
    /// gets its 200 only then).
    async fn handle(&self, headers: &HeaderMap, body: Bytes) -> Result<(), ApiError>;
}

/// Serves agents' files behind the links sent to channels that can only carry a link
/// (`GET /media/{token}`).
#[async_trait]
pub trait MediaFiles: Send + Sync + fmt::Debug + 'static {
    /// The file a link token names: its MIME type and bytes. Unknown or forged tokens are
    /// `404`, expired ones `410`.
    async fn fetch(&self, token: &str) -> Result<(String, Bytes), ApiError>;
}
