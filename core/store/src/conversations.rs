//! The conversation map: each channel consumer's LivePerson identity and current
//! conversation, and the per-conversation clock that drops stale notifications.

use sqlx::Row;

use crate::db::Arg;
use crate::db::{count, now_ms};
use crate::{ConsumerRecord, ConversationState, Identity, Store, StoreError};

const CONSUMER_COLUMNS: &str =
    "key, ext_consumer_id, lp_consumer_id, jws, conversation_id, dialog_id, state";

/// Decodes a `ConsumerRecord` from a row with the columns of `CONSUMER_COLUMNS`.
macro_rules! consumer_record {
    ($row:expr) => {{
        let row = $row;
        let ext: Option<String> = row.try_get("ext_consumer_id")?;
        let lp: Option<String> = row.try_get("lp_consumer_id")?;
        let jws: Option<String> = row.try_get("jws")?;
        let state: String = row.try_get("state")?;
        ConsumerRecord {
            key: row.try_get("key")?,
            identity: match (ext, lp, jws) {
                (Some(ext_consumer_id), Some(lp_consumer_id), Some(jws)) => Some(Identity {
                    ext_consumer_id,
                    lp_consumer_id,
                    jws,
                }),
                _ => None,
            },
            conversation_id: row.try_get("conversation_id")?,
            dialog_id: row.try_get("dialog_id")?,
            state: ConversationState::parse(&state).ok_or_else(|| StoreError::Corrupt {
                table: "consumers",
                detail: format!("unknown conversation state `{state}`"),
            })?,
        }
    }};
}

impl Store {
    /// Everything known about consumer `key`, if anything.
    pub async fn consumer(&self, key: &str) -> Result<Option<ConsumerRecord>, StoreError> {
        self.consumer_where("key = $1", key).await
    }

    /// The consumer whose current (or last) conversation is `conversation_id`.
    pub async fn consumer_by_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Option<ConsumerRecord>, StoreError> {
        self.consumer_where("conversation_id = $1", conversation_id)
            .await
    }

    /// The consumer LivePerson knows as `lp_consumer_id`.
    pub async fn consumer_by_lp_id(
        &self,
        lp_consumer_id: &str,
    ) -> Result<Option<ConsumerRecord>, StoreError> {
        self.consumer_where("lp_consumer_id = $1", lp_consumer_id)
            .await
    }

    /// The most recently updated consumer matching `condition` (with one `$1` parameter).
    async fn consumer_where(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<Option<ConsumerRecord>, StoreError> {
        let sql = format!(
            "SELECT {CONSUMER_COLUMNS} FROM consumers WHERE {condition}
             ORDER BY updated_at DESC LIMIT 1"
        );
        on_pool!(self, |pool| {
            match sqlx::query(&sql).bind(value).fetch_optional(pool).await? {
                Some(row) => Ok(Some(consumer_record!(row))),
                None => Ok(None),
            }
        })
    }

    /// Saves (inserts or replaces) the LivePerson identity of consumer `key`, keeping its
    /// conversation fields.
    pub async fn save_identity(&self, key: &str, identity: &Identity) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO consumers
                 (key, ext_consumer_id, lp_consumer_id, jws, state, updated_at)
             VALUES ($1, $2, $3, $4, 'none', $5)
             ON CONFLICT (key) DO UPDATE SET
                 ext_consumer_id = excluded.ext_consumer_id,
                 lp_consumer_id = excluded.lp_consumer_id,
                 jws = excluded.jws,
                 updated_at = excluded.updated_at",
            vec![
                Arg::Text(key.to_owned()),
                Arg::Text(identity.ext_consumer_id.clone()),
                Arg::Text(identity.lp_consumer_id.clone()),
                Arg::Text(identity.jws.clone()),
                Arg::Int(now_ms()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Records `conversation_id` as consumer `key`'s open conversation, with `dialog_id` as
    /// its dialog (the conversation id itself when `dialog_id` is empty). Keeps the identity.
    pub async fn open_conversation(
        &self,
        key: &str,
        conversation_id: &str,
        dialog_id: &str,
    ) -> Result<(), StoreError> {
        let dialog_id = if dialog_id.is_empty() {
            conversation_id
        } else {
            dialog_id
        };
        self.execute(
            "INSERT INTO consumers (key, conversation_id, dialog_id, state, updated_at)
             VALUES ($1, $2, $3, 'open', $4)
             ON CONFLICT (key) DO UPDATE SET
                 conversation_id = excluded.conversation_id,
                 dialog_id = excluded.dialog_id,
                 state = 'open',
                 updated_at = excluded.updated_at",
            vec![
                Arg::Text(key.to_owned()),
                Arg::Text(conversation_id.to_owned()),
                Arg::Text(dialog_id.to_owned()),
                Arg::Int(now_ms()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Makes `dialog_id` the dialog of conversation `conversation_id` (e.g. after a transfer
    /// to a new dialog). Does nothing if no consumer has that conversation.
    pub async fn set_dialog(
        &self,
        conversation_id: &str,
        dialog_id: &str,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE consumers SET dialog_id = $2, updated_at = $3 WHERE conversation_id = $1",
            vec![
                Arg::Text(conversation_id.to_owned()),
                Arg::Text(dialog_id.to_owned()),
                Arg::Int(now_ms()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Marks conversation `conversation_id` closed for the consumer whose current conversation
    /// it is, and returns that consumer's key (`None` if no consumer has it). The next message
    /// of that consumer opens a new conversation.
    pub async fn close_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "UPDATE consumers SET state = 'closed', updated_at = $2
                 WHERE conversation_id = $1 RETURNING key",
            )
            .bind(conversation_id)
            .bind(now)
            .fetch_all(pool)
            .await?;
            match rows.first() {
                Some(row) => Ok(Some(row.try_get("key")?)),
                None => Ok(None),
            }
        })
    }

    /// Keeps the highest `metaDataLastUpdateTs` seen for `conversation_id`: returns `true`
    /// (and stores `ts`) unless `ts` is older than the stored one. A repeat of the newest state
    /// returns `true` again: it may be LivePerson redelivering a notification whose first
    /// handling was interrupted, so callers handle it again (idempotently).
    pub async fn advance_conversation_clock(
        &self,
        conversation_id: &str,
        ts: i64,
    ) -> Result<bool, StoreError> {
        let affected = self
            .execute(
                "INSERT INTO conversation_clocks (conversation_id, ts) VALUES ($1, $2)
                 ON CONFLICT (conversation_id) DO UPDATE SET ts = excluded.ts
                 WHERE conversation_clocks.ts <= excluded.ts",
                vec![Arg::Text(conversation_id.to_owned()), Arg::Int(ts)],
            )
            .await?;
        Ok(affected == 1)
    }

    /// How many consumers have an open conversation, for metrics.
    pub async fn conversation_count(&self) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query("SELECT COUNT(*) AS n FROM consumers WHERE state = 'open'")
                .fetch_one(pool)
                .await?
                .try_get("n")?
        });
        Ok(count(n))
    }
}
