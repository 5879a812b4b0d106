//! Messages that arrive in parts the gateway does not put together (Vonage's concatenated
//! SMS, `concat-ref`/`-total`/`-part`), reassembled here so that every instance sharing the
//! database sees every part: one row per message (`message_part_groups`) and one per part
//! (`message_parts`), written in one transaction per part.
//!
//! - [`Store::add_part`] keeps a part and, when it completes the message, *claims* it for the
//!   caller (a lease of [`CLAIM_LEASE`]) and returns every part in order: exactly one caller
//!   gets the message, whichever instance and whatever the order the parts arrived in. On
//!   PostgreSQL the message's row is locked by the insert-or-update of each part, so two
//!   parts arriving at once on two instances are counted one after the other; on SQLite
//!   writes are serialised anyway.
//! - [`Store::finish_parts`] says how the claim ended: submitted (the parts' texts are
//!   emptied; the rows stay until [`FORGET_AFTER`], so a part retried later is recognised) or
//!   not (the claim is released, and the gateway's retry of the part claims it again). A claim
//!   whose holder died lapses after its lease, then the message is claimed again.
//! - A message still missing parts when its wait is over is handed out by
//!   [`Store::take_expired_parts`], claimed like a complete one, with the parts that came.
//! - Senders reuse references (an 8-bit `concat-ref` comes round again): a part whose number
//!   was kept with another gateway id starts the message anew once the earlier one was
//!   submitted; while the earlier one is still being put together it is [`PartAdded::Late`]
//!   (the caller delivers it on its own, nothing is lost).
//!
//! Lease and wait times use the database's clock on PostgreSQL, so instances on hosts whose
//! clocks differ agree; on SQLite (one host) the process's.

use std::time::Duration;

use sqlx::Row;

use crate::db::{BeginWrite, millis, now_ms};
use crate::{Backend, Store, StoreError};

/// How long a claim lasts: the claimer submits the message within it, or another caller may
/// claim it again (the submission is then deduplicated by the caller's message id).
pub const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// How long a finished message's rows are kept, so that a part the gateway retries later (for
/// up to 24 hours with Vonage) is known as already taken.
pub const FORGET_AFTER: Duration = Duration::from_secs(2 * 24 * 3600);

/// One part of a message, as a caller hands it to [`Store::add_part`].
#[derive(Debug, Clone, Copy)]
pub struct NewPart<'a> {
    /// The channel instance.
    pub instance: &'a str,
    /// The message, as the caller identifies it (sender, reference and part count).
    pub group: &'a str,
    /// This part's number, from 1.
    pub part: u32,
    /// The gateway's id of this part (the same on the gateway's retries of it).
    pub id: &'a str,
    /// How many parts the message has.
    pub total: u32,
    /// The part's text.
    pub body: &'a str,
    /// How long after its first part the message is given up if parts are still missing.
    pub wait: Duration,
}

/// What keeping a part gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartAdded {
    /// Parts are still missing, or another caller holds (or submitted) the message and this
    /// part was one it has: nothing to do.
    Waiting,
    /// The message is complete and claimed for this caller. Submit it, then call
    /// [`Store::finish_parts`].
    Complete {
        /// Every part's text, in order.
        parts: Vec<String>,
        /// The first part's gateway id: the message's id, the same whoever claims it.
        id: String,
    },
    /// The message was already submitted (complete, or given up without this part) and this
    /// part is new: it came too late to be part of it.
    Late,
}

/// A message given up with parts missing, claimed for the caller of
/// [`Store::take_expired_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredParts {
    /// The message.
    pub group: String,
    /// How many parts it should have had.
    pub total: u32,
    /// The parts that came: (number, text), in order.
    pub parts: Vec<(u32, String)>,
    /// The gateway id of the first part that came: the message's id.
    pub id: String,
}

/// The current time in unix milliseconds by the database's clock on PostgreSQL.
const PG_NOW: &str = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

fn to_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl Store {
    /// The time leases and waits are measured by.
    async fn parts_clock(&self) -> Result<i64, StoreError> {
        match self.backend() {
            Backend::Sqlite => Ok(now_ms()),
            Backend::Postgres => on_pool!(self, |pool| {
                Ok(sqlx::query_scalar::<_, i64>(PG_NOW).fetch_one(pool).await?)
            }),
        }
    }

    /// Keeps one part of a message and, when the message is now complete and nobody holds it,
    /// claims it for the caller (see the module documentation). A part kept before (the
    /// gateway's retry) is not kept twice.
    pub async fn add_part(&self, part: &NewPart<'_>) -> Result<PartAdded, StoreError> {
        if part.part == 0 || part.part > part.total {
            return Err(StoreError::Corrupt {
                table: "message_parts",
                detail: format!("part {} of {} does not exist", part.part, part.total),
            });
        }
        let now = self.parts_clock().await?;
        let expires_at = now.saturating_add(millis(part.wait));
        let forget_at = expires_at.saturating_add(millis(FORGET_AFTER));
        let claimed_until = now.saturating_add(millis(CLAIM_LEASE));
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // The insert-or-update locks the message's row until commit (PostgreSQL), so the
            // parts of one message are counted one transaction at a time.
            let group = sqlx::query(
                "INSERT INTO message_part_groups
                     (instance, group_key, total, created_at, expires_at, forget_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (instance, group_key) DO UPDATE SET total = message_part_groups.total
                 RETURNING done, claimed_until",
            )
            .bind(part.instance)
            .bind(part.group)
            .bind(i64::from(part.total))
            .bind(now)
            .bind(expires_at)
            .bind(forget_at)
            .fetch_one(&mut *tx)
            .await?;
            let mut done: i64 = group.try_get("done")?;
            let mut claim: Option<i64> = group.try_get("claimed_until")?;
            let kept: Option<String> = sqlx::query_scalar(
                "SELECT part_id FROM message_parts
                 WHERE instance = $1 AND group_key = $2 AND part = $3",
            )
            .bind(part.instance)
            .bind(part.group)
            .bind(i64::from(part.part))
            .fetch_optional(&mut *tx)
            .await?;
            match kept.as_deref() {
                // The gateway's retry of a part of a message already submitted.
                Some(id) if id == part.id && done == 1 => {
                    tx.commit().await?;
                    return Ok(PartAdded::Waiting);
                }
                // The gateway's retry of a part kept: the message may be complete now.
                Some(id) if id == part.id => {}
                // Another message with the same reference, while this one is still open.
                Some(_) if done == 0 => {
                    tx.commit().await?;
                    return Ok(PartAdded::Late);
                }
                // A later message reusing the reference: it starts anew.
                Some(_) => {
                    sqlx::query("DELETE FROM message_parts WHERE instance = $1 AND group_key = $2")
                        .bind(part.instance)
                        .bind(part.group)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "UPDATE message_part_groups SET done = 0, claimed_until = NULL,
                             created_at = $3, expires_at = $4, forget_at = $5
                         WHERE instance = $1 AND group_key = $2",
                    )
                    .bind(part.instance)
                    .bind(part.group)
                    .bind(now)
                    .bind(expires_at)
                    .bind(forget_at)
                    .execute(&mut *tx)
                    .await?;
                    (done, claim) = (0, None);
                }
                None => {}
            }
            if kept.is_none() || done == 0 && kept.as_deref() != Some(part.id) {
                sqlx::query(
                    "INSERT INTO message_parts (instance, group_key, part, part_id, body)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(part.instance)
                .bind(part.group)
                .bind(i64::from(part.part))
                .bind(part.id)
                .bind(if done == 1 { "" } else { part.body })
                .execute(&mut *tx)
                .await?;
            }
            if done == 1 {
                // New, but the message it belongs to was already submitted without it.
                tx.commit().await?;
                return Ok(PartAdded::Late);
            }
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM message_parts WHERE instance = $1 AND group_key = $2",
            )
            .bind(part.instance)
            .bind(part.group)
            .fetch_one(&mut *tx)
            .await?;
            if count < i64::from(part.total) || claim.is_some_and(|until| until > now) {
                tx.commit().await?;
                return Ok(PartAdded::Waiting);
            }
            sqlx::query(
                "UPDATE message_part_groups SET claimed_until = $3
                 WHERE instance = $1 AND group_key = $2",
            )
            .bind(part.instance)
            .bind(part.group)
            .bind(claimed_until)
            .execute(&mut *tx)
            .await?;
            let rows = sqlx::query(
                "SELECT part_id, body FROM message_parts WHERE instance = $1 AND group_key = $2
                 ORDER BY part",
            )
            .bind(part.instance)
            .bind(part.group)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let id = match rows.first() {
                Some(row) => row.try_get("part_id")?,
                None => part.id.to_owned(),
            };
            let parts = rows
                .iter()
                .map(|row| row.try_get("body"))
                .collect::<Result<Vec<String>, sqlx::Error>>()?;
            Ok(PartAdded::Complete { parts, id })
        })
    }

    /// Ends the caller's claim of a message: `submitted` marks it done (its parts' texts are
    /// emptied, the rows kept until they are forgotten); otherwise the claim is released so
    /// that the gateway's retry, or the expiry sweep, claims it again.
    pub async fn finish_parts(
        &self,
        instance: &str,
        group: &str,
        submitted: bool,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE message_part_groups SET claimed_until = NULL, done = $3
                 WHERE instance = $1 AND group_key = $2",
            )
            .bind(instance)
            .bind(group)
            .bind(i64::from(submitted))
            .execute(&mut *tx)
            .await?;
            if submitted {
                sqlx::query(
                    "UPDATE message_parts SET body = '' WHERE instance = $1 AND group_key = $2",
                )
                .bind(instance)
                .bind(group)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Up to `limit` messages of `instance` whose wait is over with parts still missing,
    /// each claimed for the caller (another instance's sweep skips them), with the parts
    /// that came. Also forgets finished messages whose time is up.
    pub async fn take_expired_parts(
        &self,
        instance: &str,
        limit: usize,
    ) -> Result<Vec<ExpiredParts>, StoreError> {
        let now = self.parts_clock().await?;
        let claimed_until = now.saturating_add(millis(CLAIM_LEASE));
        let lock = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let select = format!(
            "SELECT group_key, total FROM message_part_groups
             WHERE instance = $1 AND done = 0 AND expires_at <= $2
               AND (claimed_until IS NULL OR claimed_until <= $2)
             ORDER BY expires_at LIMIT $3{lock}"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM message_parts WHERE (instance, group_key) IN (SELECT instance, group_key FROM message_part_groups WHERE forget_at <= $1)")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM message_part_groups WHERE forget_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let rows = sqlx::query(&select)
                .bind(instance)
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            let mut expired = Vec::with_capacity(rows.len());
            for row in rows {
                let group: String = row.try_get("group_key")?;
                let total: i64 = row.try_get("total")?;
                sqlx::query(
                    "UPDATE message_part_groups SET claimed_until = $3
                     WHERE instance = $1 AND group_key = $2",
                )
                .bind(instance)
                .bind(&group)
                .bind(claimed_until)
                .execute(&mut *tx)
                .await?;
                let rows = sqlx::query(
                    "SELECT part, part_id, body FROM message_parts
                     WHERE instance = $1 AND group_key = $2 ORDER BY part",
                )
                .bind(instance)
                .bind(&group)
                .fetch_all(&mut *tx)
                .await?;
                let id = match rows.first() {
                    Some(row) => row.try_get("part_id")?,
                    None => String::new(),
                };
                let parts = rows
                    .iter()
                    .map(|r| Ok((to_u32(r.try_get("part")?), r.try_get("body")?)))
                    .collect::<Result<Vec<(u32, String)>, sqlx::Error>>()?;
                expired.push(ExpiredParts {
                    group,
                    total: to_u32(total),
                    parts,
                    id,
                });
            }
            tx.commit().await?;
            Ok(expired)
        })
    }
}
