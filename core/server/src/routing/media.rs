//! Agents' files as links, for channels that can only carry text (SMS).
//!
//! LivePerson keeps an agent's file behind a temporary download URL that lives about a minute:
//! no use in a text message read hours later. For a channel that cannot carry the file itself,
//! the router sends a link to `GET {server.public_url}/media/{token}` instead; when the consumer
//! opens it, Switchboard fetches the file from LivePerson at that moment (on the consumer's
//! behalf, with their ConsumerJWS) and streams it back.
//!
//! The token is 256 random bits and says nothing: what it stands for (the consumer, the file's
//! `relativePath`, its type, the expiry) is a row in the store, found by the token's SHA-256,
//! so a copy of the table yields no working link and a link cannot be made up, altered or
//! extended. Serving one never creates anything: a link whose consumer has no LivePerson
//! identity any more is simply not found. Failed look-ups are limited per client address
//! (see [`crate::ratelimit`]).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use switchboard_store::MediaLink;

use super::failures::store_failure;
use super::{Failure, Routing};
use crate::error::ApiError;

/// How long a link stays valid.
pub const MEDIA_LINK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Where links point.
#[derive(Debug, Clone)]
pub(crate) struct MediaLinks {
    base: String,
}

impl MediaLinks {
    /// Links under `public_url`.
    pub(crate) fn new(public_url: &str) -> Self {
        Self {
            base: format!("{}/media/", public_url.trim_end_matches('/')),
        }
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// The store's id of a token: its SHA-256, hex. `None` for what cannot be a token.
fn token_id(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    (bytes.len() == TOKEN_BYTES).then(|| hex::encode(Sha256::digest(token.as_bytes())))
}

impl Routing {
    /// Issues a link to LivePerson file `relative_path` for consumer `consumer_key`, valid for
    /// [`MEDIA_LINK_TTL`]: records it, then returns its URL (the file name at its end is for
    /// the consumer's phone and is ignored when served).
    pub(super) async fn media_link(
        &self,
        consumer_key: &str,
        relative_path: &str,
        file_type: &str,
    ) -> Result<String, Failure> {
        let Some(links) = &self.inner.media else {
            return Err(Failure::dead("media links need `server.public_url`"));
        };
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; TOKEN_BYTES]>());
        let id = token_id(&token).unwrap_or_default();
        let ttl = i64::try_from(MEDIA_LINK_TTL.as_millis()).unwrap_or(i64::MAX);
        let link = MediaLink {
            consumer_key: consumer_key.to_owned(),
            relative_path: relative_path.to_owned(),
            file_type: file_type.to_owned(),
            expires_at_ms: unix_ms().saturating_add(ttl),
        };
        self.inner
            .store
            .save_media_link(&id, &link)
            .await
            .map_err(store_failure)?;
        let name = relative_path.rsplit('/').next().unwrap_or("file");
        Ok(format!("{}{token}/{name}", links.base))
    }

    /// The file behind a media link: its MIME type and bytes, fetched from LivePerson now.
    /// Unknown tokens are `404`, expired ones `410`; nothing is created on the way.
    pub async fn media_file(&self, token: &str) -> Result<(String, bytes::Bytes), ApiError> {
        let unknown = || ApiError::not_found("no such file");
        if self.inner.media.is_none() {
            return Err(unknown());
        }
        let id = token_id(token).ok_or_else(unknown)?;
        let store_down = |_| ApiError::unavailable("the store cannot be read right now", 5);
        let link = self
            .inner
            .store
            .media_link(&id)
            .await
            .map_err(store_down)?
            .ok_or_else(unknown)?;
        if link.expires_at_ms < unix_ms() {
            return Err(ApiError::new(
                axum::http::StatusCode::GONE,
                "expired",
                "this link has expired",
            ));
        }
        let unavailable = |why: &str| {
            tracing::warn!(reason = why, "a media link could not be served");
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "unavailable",
                "the file cannot be fetched from LivePerson right now",
            )
        };
        // Only a consumer who already has a LivePerson identity is served: asking LivePerson
        // for a new one here would create a consumer on a request nobody authenticated.
        let record = self
            .inner
            .store
            .consumer(&link.consumer_key)
            .await
            .map_err(store_down)?;
        let Some((record, (instance, id))) = record
            .filter(|r| r.identity.is_some())
            .zip(super::webhook::split_key(&link.consumer_key))
        else {
            return Err(unknown());
        };
        let address = switchboard_core::ConsumerAddress::new(instance, id);
        let mut identity = self
            .identity(&link.consumer_key, &address, Some(&record))
            .await
            .map_err(|_| unavailable("consumer identity"))?;
        let data = self
            .inner
            .engine
            .download_file(&mut identity, &link.relative_path)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        self.persist_identity(&link.consumer_key, Some(&record), &identity)
            .await;
        let mime = switchboard_liveperson::mime_of_file_type(&link.file_type).to_owned();
        Ok((mime, data))
    }
}

#[async_trait::async_trait]
impl crate::handlers::MediaFiles for Routing {
    async fn fetch(&self, token: &str) -> Result<(String, bytes::Bytes), ApiError> {
        self.media_file(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_shape_is_checked_before_the_store() {
        let a = URL_SAFE_NO_PAD.encode(rand::random::<[u8; TOKEN_BYTES]>());
        let b = URL_SAFE_NO_PAD.encode(rand::random::<[u8; TOKEN_BYTES]>());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let id = token_id(&a).unwrap();
        assert_eq!(id.len(), 64);
        assert!(!id.contains(&a), "the store never holds the token itself");
        assert_eq!(token_id(&a[1..]), None);
        assert_eq!(token_id("eyJjIjoiMyJ9.AAAA"), None);
        assert_eq!(token_id(""), None);
    }
}
