//! Dedup keys and the small key/value state channels keep (e.g. a polling offset).

use std::time::Duration;

use sqlx::Row;

use crate::db::Arg;
use crate::db::{millis, now_ms};
use crate::outbox::REMEMBER_SQL;
use crate::writer::{RAISE_STATE, raise_args};
use crate::{Store, StoreError};

impl Store {
    /// Remembers dedup `key` until now + `ttl`. Returns `true` if it is new (or had expired),
    /// `false` if it is already remembered and not expired (a duplicate). Shared by every
    /// instance using the same database.
    pub async fn remember(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = now_ms();
        let affected = on_pool!(self, |pool| {
            sqlx::query(REMEMBER_SQL)
                .bind(key)
                .bind(now.saturating_add(millis(ttl)))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected == 1)
    }

    /// Deletes the expired dedup keys and returns how many there were.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let affected = on_pool!(self, |pool| {
            sqlx::query("DELETE FROM dedup WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected)
    }

    /// The value saved under (`scope`, `key`), if any.
    pub async fn load_state(&self, scope: &str, key: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool| {
            let row = sqlx::query("SELECT value FROM channel_state WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Ok(Some(row.try_get("value")?)),
                None => Ok(None),
            }
        })
    }

    /// Saves `value` under (`scope`, `key`), replacing any previous value.
    pub async fn save_state(&self, scope: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO channel_state (scope, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, key) DO UPDATE SET
                 value = excluded.value, updated_at = excluded.updated_at",
            vec![
                Arg::Text(scope.to_owned()),
                Arg::Text(key.to_owned()),
                Arg::Text(value.to_owned()),
                Arg::Int(now_ms()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Saves the number `value` under (`scope`, `key`) unless a greater number is saved there
    /// already, and returns whether it was saved: a counter that only moves forward, however
    /// many processes advance it at once (a slower one never puts it back). Every value of
    /// `scope` must be a number.
    pub async fn raise_state(
        &self,
        scope: &str,
        key: &str,
        value: i64,
    ) -> Result<bool, StoreError> {
        let affected = self
            .execute(RAISE_STATE, raise_args(scope, key, value))
            .await?;
        Ok(affected == 1)
    }

    /// [`Store::raise_state`] with the store's clock now (unix milliseconds; the database's on
    /// PostgreSQL, so instances on hosts whose clocks disagree record comparable times):
    /// "this last happened at", compared later with other times of the same clock, such as
    /// [`OutboxItem::claimed_at_ms`](crate::OutboxItem::claimed_at_ms).
    pub async fn raise_state_to_now(&self, scope: &str, key: &str) -> Result<bool, StoreError> {
        let affected = self
            .execute_timed(
                "INSERT INTO channel_state (scope, key, value, updated_at)
                 VALUES ($1, $2, CAST({now} AS TEXT), {now})
                 ON CONFLICT (scope, key) DO UPDATE SET
                     value = excluded.value, updated_at = excluded.updated_at
                 WHERE CAST(channel_state.value AS BIGINT) < CAST(excluded.value AS BIGINT)",
                vec![Arg::Text(scope.to_owned()), Arg::Text(key.to_owned())],
            )
            .await?;
        Ok(affected == 1)
    }

    /// The value under (`scope`, `key`) and every value of `list_scope` whose key starts with
    /// `prefix` (ordered by key), in one query: what a caller that needs both on a hot path
    /// would otherwise read in two round trips.
    pub async fn state_and_prefixed(
        &self,
        scope: &str,
        key: &str,
        list_scope: &str,
        prefix: &str,
    ) -> Result<(Option<String>, Vec<(String, String)>), StoreError> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT scope, key, value FROM channel_state
                 WHERE (scope = $1 AND key = $2)
                    OR (scope = $3 AND substr(key, 1, $4) = $5)
                 ORDER BY scope, key",
            )
            .bind(scope)
            .bind(key)
            .bind(list_scope)
            .bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
            .bind(prefix)
            .fetch_all(pool)
            .await?;
            let mut value = None;
            let mut listed = Vec::new();
            for row in &rows {
                let (row_scope, row_key): (String, String) =
                    (row.try_get("scope")?, row.try_get("key")?);
                let row_value: String = row.try_get("value")?;
                if row_scope == scope && row_key == key {
                    value = Some(row_value);
                } else {
                    listed.push((row_key, row_value));
                }
            }
            Ok::<_, StoreError>((value, listed))
        })
    }

    /// Every value of `scope` whose key starts with `prefix`, ordered by key.
    pub async fn states_with_prefix(
        &self,
        scope: &str,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT key, value FROM channel_state
                 WHERE scope = $1 AND substr(key, 1, $2) = $3 ORDER BY key",
            )
            .bind(scope)
            .bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
            .bind(prefix)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get("key")?, row.try_get("value")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// Deletes the value under (`scope`, `key`); returns whether there was one.
    pub async fn delete_state(&self, scope: &str, key: &str) -> Result<bool, StoreError> {
        let affected = self
            .execute(
                "DELETE FROM channel_state WHERE scope = $1 AND key = $2",
                vec![Arg::Text(scope.to_owned()), Arg::Text(key.to_owned())],
            )
            .await?;
        Ok(affected == 1)
    }
}
