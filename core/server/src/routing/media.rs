//! Agents' files as links, for channels that can only carry text (SMS).
//!
//! LivePerson keeps an agent's file behind a temporary download URL that lives about a minute:
//! no use in a text message read hours later. For a channel that cannot carry the file itself,
//! the router sends a link to `GET {server.public_url}/media/{token}` instead; when the consumer
//! opens it, Switchboard fetches the file from LivePerson at that moment (on the consumer's
//! behalf, with their ConsumerJWS) and streams it back. Nothing is stored: the token carries
//! the consumer, the file's `relativePath`, its type and an expiry, signed with HMAC-SHA256
//! under a key derived from the LivePerson client secret, so only links Switchboard issued are
//! served, and rotating the secret revokes them all.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Routing;
use crate::error::ApiError;

/// How long a link stays valid.
pub const MEDIA_LINK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a link's token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MediaRef {
    /// The consumer key (whose identity fetches the file).
    c: String,
    /// LivePerson's `relativePath`.
    p: String,
    /// LivePerson's `fileType`.
    t: String,
    /// Expiry, Unix seconds.
    e: i64,
}

/// Issues and checks media links.
#[derive(Clone)]
pub(crate) struct MediaLinks {
    key: [u8; 32],
    base: String,
}

impl std::fmt::Debug for MediaLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLinks")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl MediaLinks {
    /// Links under `public_url`, signed with a key derived from `client_secret`.
    pub(crate) fn new(public_url: &str, client_secret: &str) -> Self {
        let mut derive =
            Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()).expect("any key length");
        derive.update(b"switchboard media links v1");
        Self {
            key: derive.finalize().into_bytes().into(),
            base: format!("{}/media/", public_url.trim_end_matches('/')),
        }
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(payload);
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// The link to LivePerson file `relative_path` for consumer `consumer_key`.
    pub(crate) fn link(&self, consumer_key: &str, relative_path: &str, file_type: &str) -> String {
        self.link_at(consumer_key, relative_path, file_type, unix_now())
    }

    fn link_at(
        &self,
        consumer_key: &str,
        relative_path: &str,
        file_type: &str,
        now: i64,
    ) -> String {
        let reference = MediaRef {
            c: consumer_key.to_owned(),
            p: relative_path.to_owned(),
            t: file_type.to_owned(),
            e: now.saturating_add(MEDIA_LINK_TTL.as_secs() as i64),
        };
        let payload = serde_json::to_vec(&reference).unwrap_or_default();
        let name = relative_path.rsplit('/').next().unwrap_or("file");
        format!(
            "{}{}.{}/{}",
            self.base,
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.tag(&payload)),
            name
        )
    }

    /// Checks a token (`{payload}.{tag}`, the file name after it ignored).
    fn check(&self, token: &str, now: i64) -> Result<MediaRef, ApiError> {
        let unknown = || ApiError::not_found("no such file");
        let (payload, tag) = token.split_once('.').ok_or_else(unknown)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| unknown())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| unknown())?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(&payload);
        mac.verify_truncated_left(&tag).map_err(|_| unknown())?;
        let reference: MediaRef = serde_json::from_slice(&payload).map_err(|_| unknown())?;
        if reference.e < now {
            return Err(ApiError::new(
                axum::http::StatusCode::GONE,
                "expired",
                "this link has expired",
            ));
        }
        Ok(reference)
    }
}

impl Routing {
    /// The file behind a media link: its MIME type and bytes, fetched from LivePerson now.
    pub async fn media_file(&self, token: &str) -> Result<(String, bytes::Bytes), ApiError> {
        let Some(links) = &self.inner.media else {
            return Err(ApiError::not_found("no such file"));
        };
        let reference = links.check(token, unix_now())?;
        let unavailable = |why: &str| {
            tracing::warn!(reason = why, "a media link could not be served");
            ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "unavailable",
                "the file cannot be fetched from LivePerson right now",
            )
        };
        let record = self
            .inner
            .store
            .consumer(&reference.c)
            .await
            .map_err(|_| unavailable("store"))?;
        let Some((instance, id)) = super::webhook::split_key(&reference.c) else {
            return Err(ApiError::not_found("no such file"));
        };
        let address = switchboard_core::ConsumerAddress::new(instance, id);
        let mut identity = self
            .identity(&reference.c, &address, record.as_ref())
            .await
            .map_err(|_| unavailable("consumer identity"))?;
        let data = self
            .inner
            .engine
            .download_file(&mut identity, &reference.p)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        self.persist_identity(&reference.c, record.as_ref(), &identity)
            .await;
        let mime = switchboard_liveperson::mime_of_file_type(&reference.t).to_owned();
        Ok((mime, data))
    }
}

#[async_trait::async_trait]
impl crate::app::MediaFiles for Routing {
    async fn fetch(&self, token: &str) -> Result<(String, bytes::Bytes), ApiError> {
        self.media_file(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_checked_and_expire() {
        let links = MediaLinks::new("https://cx.example/", "secret-1");
        let link = links.link_at("3:sms:+15550001", "/v1/acc/f/1.png", "PNG", 1_000);
        let token = link
            .strip_prefix("https://cx.example/media/")
            .and_then(|t| t.split('/').next())
            .unwrap();
        let reference = links.check(token, 1_000).unwrap();
        assert_eq!(reference.p, "/v1/acc/f/1.png");
        assert!(link.ends_with("/1.png"));
        // Expired, forged, tampered, signed under another secret.
        let later = 1_000 + MEDIA_LINK_TTL.as_secs() as i64 + 1;
        assert_eq!(links.check(token, later).unwrap_err().status, 410);
        let (payload, _) = token.split_once('.').unwrap();
        assert_eq!(
            links
                .check(&format!("{payload}.AAAA"), 1_000)
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(links.check("garbage", 1_000).unwrap_err().status, 404);
        let other = MediaLinks::new("https://cx.example/", "secret-2");
        assert_eq!(other.check(token, 1_000).unwrap_err().status, 404);
    }
}
