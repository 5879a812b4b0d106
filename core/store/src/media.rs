//! Media links: what each `/media/{token}` link Switchboard sent a consumer stands for.
//!
//! A link is an opaque random token; the row it maps to says whose file it is (the consumer
//! whose identity fetches it from LivePerson), LivePerson's `relativePath` and `fileType`, and
//! until when it is served. The caller stores a digest of the token as the id, so that a copy
//! of this table yields no working link.

use std::time::Duration;

use sqlx::Row;

use crate::db::Arg;
use crate::db::{millis, now_ms};
use crate::{Store, StoreError};

/// How long an expired link is remembered (and answered "expired" rather than "unknown")
/// before its row is deleted.
pub const EXPIRED_LINKS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// What one media link stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLink {
    /// The consumer key whose LivePerson identity fetches the file.
    pub consumer_key: String,
    /// LivePerson's `relativePath` of the file.
    pub relative_path: String,
    /// LivePerson's `fileType` (`PNG`, `PDF`, …).
    pub file_type: String,
    /// When the link stops being served, unix milliseconds.
    pub expires_at_ms: i64,
}

impl Store {
    /// Records the link `id` (unique; a digest of the token sent out), and deletes the links
    /// that expired longer than [`EXPIRED_LINKS_KEPT`] ago.
    pub async fn save_media_link(&self, id: &str, link: &MediaLink) -> Result<(), StoreError> {
        let now = now_ms();
        self.execute(
            "INSERT INTO media_links
                 (id, consumer_key, relative_path, file_type, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                Arg::Text(id.to_owned()),
                Arg::Text(link.consumer_key.clone()),
                Arg::Text(link.relative_path.clone()),
                Arg::Text(link.file_type.clone()),
                Arg::Int(link.expires_at_ms),
                Arg::Int(now),
            ],
        )
        .await?;
        self.execute(
            "DELETE FROM media_links WHERE expires_at < $1",
            vec![Arg::Int(now.saturating_sub(millis(EXPIRED_LINKS_KEPT)))],
        )
        .await?;
        Ok(())
    }

    /// The link recorded under `id`, expired or not; `None` for an id never issued (or
    /// forgotten).
    pub async fn media_link(&self, id: &str) -> Result<Option<MediaLink>, StoreError> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT consumer_key, relative_path, file_type, expires_at
                 FROM media_links WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => Ok(Some(MediaLink {
                    consumer_key: row.try_get("consumer_key")?,
                    relative_path: row.try_get("relative_path")?,
                    file_type: row.try_get("file_type")?,
                    expires_at_ms: row.try_get("expires_at")?,
                })),
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(expires_at_ms: i64) -> MediaLink {
        MediaLink {
            consumer_key: "sms:+15550001".into(),
            relative_path: "/v1/acc/f/1.png".into(),
            file_type: "PNG".into(),
            expires_at_ms,
        }
    }

    async fn links_are_kept_and_old_ones_pruned(store: &Store) {
        let now = now_ms();
        store
            .save_media_link("fresh", &link(now + 60_000))
            .await
            .unwrap();
        assert_eq!(
            store.media_link("fresh").await.unwrap(),
            Some(link(now + 60_000))
        );
        assert_eq!(store.media_link("never-issued").await.unwrap(), None);
        // An id is issued once.
        assert!(store.save_media_link("fresh", &link(now)).await.is_err());
        // Expired a moment ago: still known (so it can be answered "expired").
        store
            .save_media_link("expired", &link(now - 1))
            .await
            .unwrap();
        let ancient = now - millis(EXPIRED_LINKS_KEPT) - 1;
        store
            .save_media_link("ancient", &link(ancient))
            .await
            .unwrap();
        // The next save prunes what expired too long ago.
        store.save_media_link("next", &link(now + 1)).await.unwrap();
        assert!(store.media_link("expired").await.unwrap().is_some());
        assert_eq!(store.media_link("ancient").await.unwrap(), None);
    }

    #[tokio::test]
    async fn sqlite_links_are_kept_and_old_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("media.db").display());
        let store = Store::connect(&url).await.unwrap();
        links_are_kept_and_old_ones_pruned(&store).await;
        store.close().await;
    }

    #[tokio::test]
    async fn postgres_links_are_kept_and_old_ones_pruned() {
        use sqlx::Connection as _;
        let Ok(admin_url) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "SWITCHBOARD_TEST_POSTGRES_URL is required under CI"
            );
            eprintln!("skipping: SWITCHBOARD_TEST_POSTGRES_URL is not set");
            return;
        };
        let schema = format!("sb_media_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        let store = Store::connect(&url).await.unwrap();
        links_are_kept_and_old_ones_pruned(&store).await;
        store.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
}
