//! The outboxes and the dead-letter table.
//!
//! An item is claimable when it is available (`available_at <= now`), not under a live lease,
//! and is the oldest item of its consumer key (no item of the same direction and consumer key
//! with a smaller id exists) while no other item of that consumer is leased. Claiming sets
//! `lease_owner`/`lease_until`; the owner then completes, retries, updates or dead-letters it.
//! Every one of these checks `lease_owner`, so a worker whose lease expired and was taken over
//! cannot touch the item any more.

use std::time::Duration;

use sqlx::Row;

use crate::clock::offset_ms;
use crate::db::Arg;
use crate::db::{BeginWrite, attempts, count};
use crate::model::{parse_direction, parse_payload};
use crate::writer::{Job, Write, Written};
use crate::{Backend, DeadLetter, Direction, Enqueued, NewItem, OutboxItem, Store, StoreError};

/// The oldest available, unleased items that head their consumer's queue while no other item
/// of that consumer is leased (`{consumer_o}`: nothing, or a filter to one consumer key, `$5`;
/// `$2`: the lease in ms; every time by the database's clock, see [`crate::clock`]). The
/// second condition matters on PostgreSQL only, where ids are allocated before commit: an
/// item committed late with a smaller id must not be handed out while its consumer's
/// (younger) head is being processed.
///
/// `{window}` bounds the search on PostgreSQL (see [`CLAIM_WINDOW`]): nothing, or a filter to
/// the oldest rows of the outbox.
const CLAIM_SQL: &str = "
    UPDATE outbox SET lease_owner = $1, lease_until = {now} + $2
    WHERE id IN (
        SELECT o.id FROM outbox o
        WHERE o.direction = $3{consumer_o}{window}
          AND o.available_at <= {now}
          AND (o.lease_until IS NULL OR o.lease_until <= {now})
          AND NOT EXISTS (
              SELECT 1 FROM outbox p
              WHERE p.direction = o.direction AND p.consumer_key = o.consumer_key
                AND p.id < o.id
          )
          AND NOT EXISTS (
              SELECT 1 FROM outbox q
              WHERE q.direction = o.direction AND q.consumer_key = o.consumer_key
                AND q.lease_until > {now}
          )
        ORDER BY o.id
        LIMIT $4";

/// How many of the oldest rows a PostgreSQL claim searches for consumers' heads first.
///
/// The claim tests each row, oldest first, for being its consumer's head and free. With a
/// backlog of a few consumers' long queues (after an outage) there are fewer free heads than
/// the claim asks for, and an unbounded search then tests every row of the backlog before it
/// ends: 0.4 s for 100,000 rows of 100 consumers here, in every claim. So the search looks at
/// the oldest rows only; when they do not hold enough free heads, [`CLAIM_HEADS_SQL`] finds
/// the rest by walking the consumer index, one step per consumer that has items.
const CLAIM_WINDOW: usize = 1024;

/// The window of [`CLAIM_SQL`].
const WINDOW_SQL: &str = "
          AND o.id IN (SELECT w.id FROM outbox w WHERE w.direction = $3 ORDER BY w.id LIMIT {limit})";

/// The rest of a PostgreSQL claim whose window held too few free heads: each consumer's
/// head, found by a walk of the `(direction, consumer_key, id)` index (a recursive query:
/// from one consumer key to the next, the smallest id of each), then tested as in
/// [`CLAIM_SQL`]. Its cost grows with the number of consumers that have items, not with the
/// length of their queues. The heads the window already claimed are leased by now, so their
/// consumers are skipped.
const CLAIM_HEADS_SQL: &str = "
    UPDATE outbox SET lease_owner = $1, lease_until = {now} + $2
    WHERE id IN (
        WITH RECURSIVE heads AS (
            (SELECT h.consumer_key, h.id FROM outbox h WHERE h.direction = $3
             ORDER BY h.consumer_key, h.id LIMIT 1)
            UNION ALL
            SELECT n.consumer_key, n.id FROM heads, LATERAL (
                SELECT h.consumer_key, h.id FROM outbox h
                WHERE h.direction = $3 AND h.consumer_key > heads.consumer_key
                ORDER BY h.consumer_key, h.id LIMIT 1
            ) n
        )
        SELECT o.id FROM outbox o
        WHERE o.id IN (SELECT id FROM heads)
          AND o.available_at <= {now}
          AND (o.lease_until IS NULL OR o.lease_until <= {now})
          AND NOT EXISTS (
              SELECT 1 FROM outbox q
              WHERE q.direction = o.direction AND q.consumer_key = o.consumer_key
                AND q.lease_until > {now}
          )
        ORDER BY o.id
        LIMIT $4
        FOR UPDATE OF o SKIP LOCKED";

/// The same claim on SQLite, where ids are allocated in commit order (one writer at a time)
/// so only a consumer's head is ever leased: the heads are read off the consumer index (one
/// `MIN(id)` per consumer key) instead of testing every waiting item against the others. With
/// a backlog after an outage the claim, which holds the write lock, stays cheap
/// (`outbox/sqlite_claim…` in the hot-path benchmarks). `{consumer_h}`: as in [`CLAIM_SQL`].
const CLAIM_SQL_SQLITE: &str = "
    UPDATE outbox SET lease_owner = $1, lease_until = {now} + $2
    WHERE id IN (
        SELECT o.id FROM outbox o
        WHERE o.id IN (
              SELECT MIN(h.id) FROM outbox h WHERE h.direction = $3{consumer_h}
              GROUP BY h.consumer_key
          )
          AND o.available_at <= {now}
          AND (o.lease_until IS NULL OR o.lease_until <= {now})
        ORDER BY o.id
        LIMIT $4";

const CLAIM_RETURNING: &str = "
    )
    RETURNING id, direction, consumer_key, payload, trace_context, attempts, last_error,
              streak_kind, streak, created_at, {now} AS claimed_at";

/// Upsert of a dedup key that only overwrites an expired one: one row affected means the key
/// is new (or was expired), none means it is a live duplicate.
pub(crate) const REMEMBER_SQL: &str = "
    INSERT INTO dedup (key, expires_at) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
    WHERE dedup.expires_at <= $3";

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A writer answer of the wrong kind (a bug, reported rather than panicking).
pub(crate) fn unexpected(written: Written) -> StoreError {
    StoreError::Corrupt {
        table: "outbox",
        detail: format!("unexpected answer from the writer: {written:?}"),
    }
}

impl Store {
    /// Runs one statement through [`Store::write`] and returns the rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<u64, StoreError> {
        let sql = std::borrow::Cow::Borrowed(sql);
        match self.write(Write::Execute { sql, args }).await? {
            Written::Affected(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// [`Store::execute`] of a statement that reads the clock as `{now}` (see
    /// [`crate::clock`]).
    pub(crate) async fn execute_timed(
        &self,
        sql: &'static str,
        mut args: Vec<Arg>,
    ) -> Result<u64, StoreError> {
        let sql = std::borrow::Cow::Owned(self.timed(sql, &mut args));
        match self.write(Write::Execute { sql, args }).await? {
            Written::Affected(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Stores `items` in the `direction` outbox, atomically.
    ///
    /// With `dedup = Some((key, ttl))`, the key is remembered in the same transaction: if it is
    /// already remembered and not expired nothing is stored and [`Enqueued::Duplicate`] is
    /// returned; otherwise it is remembered until now + `ttl`. Items of one consumer key are
    /// later claimed in the order given.
    pub async fn enqueue(
        &self,
        direction: Direction,
        items: &[NewItem],
        dedup: Option<(&str, Duration)>,
    ) -> Result<Enqueued, StoreError> {
        self.enqueue_raising(direction, items, dedup, None).await
    }

    /// [`Store::enqueue`], and with `raise = Some((scope, key, value))` the state raised as
    /// [`Store::raise_state`] does, in the same transaction (also when the items are a
    /// duplicate): an event and the progress it makes (a dialog's next expected sequence)
    /// are stored together or not at all, in one commit instead of two.
    pub async fn enqueue_raising(
        &self,
        direction: Direction,
        items: &[NewItem],
        dedup: Option<(&str, Duration)>,
        raise: Option<(&str, &str, i64)>,
    ) -> Result<Enqueued, StoreError> {
        let job = Job {
            direction,
            items: items
                .iter()
                .map(|item| {
                    (
                        item.consumer_key.clone(),
                        item.payload.to_string(),
                        item.trace_context.clone(),
                    )
                })
                .collect(),
            dedup: dedup.map(|(key, ttl)| (key.to_owned(), offset_ms(ttl))),
            raise: raise.map(|(scope, key, value)| (scope.to_owned(), key.to_owned(), value)),
        };
        match self.write(Write::Enqueue(job)).await? {
            Written::Enqueued(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// Leases up to `limit` claimable items of the `direction` outbox to `worker` for `lease`,
    /// oldest first.
    ///
    /// Only the oldest item of each consumer key can be claimed, and only while no other item
    /// of that consumer is leased, so each consumer's items are processed one at a time and in
    /// order, by whichever process claims them. `worker` must be unique per process (or per
    /// worker task). On PostgreSQL rows locked by a concurrent claim are skipped
    /// (`FOR UPDATE SKIP LOCKED`); on SQLite the claim is one statement under the write lock.
    pub async fn claim(
        &self,
        direction: Direction,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.claim_where(direction, worker, limit, lease, None)
            .await
    }

    /// Leases the head item of one consumer's queue, when it is claimable (see
    /// [`Store::claim`]): how a worker that just finished an item of that consumer goes on
    /// with its next one, an index lookup instead of a search of the whole outbox.
    pub async fn claim_next_of(
        &self,
        direction: Direction,
        worker: &str,
        consumer_key: &str,
        lease: Duration,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let items = self
            .claim_where(direction, worker, 1, lease, Some(consumer_key))
            .await?;
        Ok(items.into_iter().next())
    }

    async fn claim_where(
        &self,
        direction: Direction,
        worker: &str,
        limit: usize,
        lease: Duration,
        consumer_key: Option<&str>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let (consumer_o, consumer_h) = match consumer_key {
            Some(_) => (" AND o.consumer_key = $5", " AND h.consumer_key = $5"),
            None => ("", ""),
        };
        // One consumer's claim reads its head off the index: no window.
        let window = match consumer_key {
            Some(_) => String::new(),
            None => WINDOW_SQL.replace("{limit}", &CLAIM_WINDOW.to_string()),
        };
        let template = match self.backend() {
            Backend::Sqlite => format!("{CLAIM_SQL_SQLITE}{CLAIM_RETURNING}"),
            Backend::Postgres => format!("{CLAIM_SQL} FOR UPDATE SKIP LOCKED{CLAIM_RETURNING}"),
        };
        let template = template
            .replace("{consumer_o}", consumer_o)
            .replace("{consumer_h}", consumer_h)
            .replace("{window}", &window);
        // One claim statement's run: `$1`…`$4` (and `$5`, the consumer, in `template`'s).
        let run = |template: &str, limit: usize| {
            let mut args = vec![
                Arg::Text(worker.to_owned()),
                Arg::Int(offset_ms(lease)),
                Arg::Text(direction.as_str().to_owned()),
                Arg::Int(to_i64(limit)),
            ];
            if let Some(key) = consumer_key {
                args.push(Arg::Text(key.to_owned()));
            }
            let sql = self.timed(template, &mut args);
            async move {
                match self.write(Write::Claim { sql, args }).await? {
                    Written::Claimed(items) => Ok(items),
                    other => Err(unexpected(other)),
                }
            }
        };
        let mut items = run(&template, limit).await?;
        if self.backend() == Backend::Postgres && consumer_key.is_none() && items.len() < limit {
            let heads = format!("{CLAIM_HEADS_SQL}{CLAIM_RETURNING}");
            let more = run(&heads, limit - items.len()).await?;
            items.extend(more);
        }
        // RETURNING gives no order guarantee.
        items.sort_by_key(|item| item.id);
        Ok(items)
    }

    /// Extends the lease `worker` holds on item `id` to now + `lease` (the database's now on
    /// PostgreSQL), so that an item taking long is not claimed by another worker while this
    /// one still works on it. Returns `false` (and changes nothing) if `worker` no longer holds
    /// it: another worker claimed it after the lease ran out, and the work must stop.
    pub async fn renew_lease(
        &self,
        id: i64,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let affected = self
            .execute_timed(
                "UPDATE outbox SET lease_until = {now} + $3 WHERE id = $1 AND lease_owner = $2",
                vec![
                    Arg::Int(id),
                    Arg::Text(worker.to_owned()),
                    Arg::Int(offset_ms(lease)),
                ],
            )
            .await?;
        Ok(affected == 1)
    }

    /// Marks a leased item delivered by deleting it. Returns `false` (and changes nothing) if
    /// `worker` no longer holds it, e.g. because its lease expired and another worker took it.
    pub async fn complete(&self, id: i64, worker: &str) -> Result<bool, StoreError> {
        let affected = self
            .execute(
                "DELETE FROM outbox WHERE id = $1 AND lease_owner = $2",
                vec![Arg::Int(id), Arg::Text(worker.to_owned())],
            )
            .await?;
        Ok(affected == 1)
    }

    /// Records a transient failure of a leased item: counts the attempt, keeps `error`,
    /// releases the lease and makes the item claimable again after `after` (by the
    /// database's clock on PostgreSQL). The consumer's later items wait behind it. Returns
    /// `false` if `worker` no longer holds it.
    pub async fn retry_later(
        &self,
        id: i64,
        worker: &str,
        after: Duration,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.retry_for(id, worker, after, error, None).await
    }

    /// [`Store::retry_later`], naming the condition the attempt failed for: the item's
    /// [`Streak`](crate::Streak) counts the attempts in a row that failed for `kind` (and
    /// starts again at 1 after an attempt that failed otherwise, which `None` names).
    pub async fn retry_for(
        &self,
        id: i64,
        worker: &str,
        after: Duration,
        error: &str,
        kind: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.reschedule(id, worker, after, error, kind, 1).await
    }

    /// Releases a leased item to be claimed again after `after` without counting a failed
    /// attempt: it waits for something to happen elsewhere (`why`, kept as its last error, so
    /// operators see what it waits for). Its streak of `kind` grows as with
    /// [`Store::retry_for`]. Returns `false` if `worker` no longer holds it.
    pub async fn postpone(
        &self,
        id: i64,
        worker: &str,
        after: Duration,
        why: &str,
        kind: &str,
    ) -> Result<bool, StoreError> {
        self.reschedule(id, worker, after, why, Some(kind), 0).await
    }

    /// [`Store::retry_for`] adding `counted` (0 or 1) to the attempts.
    async fn reschedule(
        &self,
        id: i64,
        worker: &str,
        after: Duration,
        error: &str,
        kind: Option<&str>,
        counted: i64,
    ) -> Result<bool, StoreError> {
        let mut args = vec![
            Arg::Int(id),
            Arg::Text(worker.to_owned()),
            Arg::Text(error.to_owned()),
            Arg::Int(offset_ms(after)),
            Arg::Int(counted),
        ];
        // `streak_kind = $6` is never true for NULL: no kind, no streak.
        let sql = match kind {
            Some(kind) => {
                args.push(Arg::Text(kind.to_owned()));
                "UPDATE outbox
                 SET attempts = attempts + $5, last_error = $3, available_at = {now} + $4,
                     streak = CASE WHEN streak_kind = $6 THEN streak + 1 ELSE 1 END,
                     streak_kind = $6, lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2"
            }
            None => {
                "UPDATE outbox
                 SET attempts = attempts + $5, last_error = $3, available_at = {now} + $4,
                     streak = 0, streak_kind = NULL, lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND lease_owner = $2"
            }
        };
        let affected = self.execute_timed(sql, args).await?;
        Ok(affected == 1)
    }

    /// Replaces the payload of a leased item, so progress (e.g. the conversation it was sent
    /// to) survives a retry or a crash. Returns `false` if `worker` no longer holds it.
    pub async fn update_payload(
        &self,
        id: i64,
        worker: &str,
        payload: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let affected = self
            .execute(
                "UPDATE outbox SET payload = $3 WHERE id = $1 AND lease_owner = $2",
                vec![
                    Arg::Int(id),
                    Arg::Text(worker.to_owned()),
                    Arg::Text(payload.to_string()),
                ],
            )
            .await?;
        Ok(affected == 1)
    }

    /// Records a permanent failure of a leased item: moves it (payload, direction, consumer
    /// key, attempts) with `reason` and the current time into the dead-letter table and
    /// deletes it from the outbox, in one transaction, so the consumer's next items proceed.
    /// Returns `false` if `worker` no longer holds it.
    pub async fn dead_letter(
        &self,
        id: i64,
        worker: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut args = vec![
            Arg::Int(id),
            Arg::Text(worker.to_owned()),
            Arg::Text(reason.to_owned()),
        ];
        let sql = self.timed(
            "INSERT INTO dead_letters
                 (direction, consumer_key, payload, attempts, reason, created_at, failed_at)
             SELECT direction, consumer_key, payload, attempts, $3, created_at, {now}
             FROM outbox WHERE id = $1 AND lease_owner = $2",
            &mut args,
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let moved = bind_args!(sqlx::query(&sql), &args)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if moved != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query("DELETE FROM outbox WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The oldest `limit` dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT id, direction, consumer_key, payload, attempts, reason, failed_at
                 FROM dead_letters ORDER BY id LIMIT $1",
            )
            .bind(to_i64(limit))
            .fetch_all(pool)
            .await?;
            let mut letters = Vec::with_capacity(rows.len());
            for row in rows {
                letters.push(DeadLetter {
                    id: row.try_get("id")?,
                    direction: parse_direction(row.try_get("direction")?, "dead_letters")?,
                    consumer_key: row.try_get("consumer_key")?,
                    payload: parse_payload(row.try_get("payload")?, "dead_letters")?,
                    attempts: attempts(row.try_get("attempts")?),
                    reason: row.try_get("reason")?,
                    failed_at_ms: row.try_get("failed_at")?,
                });
            }
            Ok(letters)
        })
    }

    /// Dead letter `id`, if there is one.
    pub async fn dead_letter_by_id(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        on_pool!(self, |pool| {
            let row = sqlx::query(
                "SELECT id, direction, consumer_key, payload, attempts, reason, failed_at
                 FROM dead_letters WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(DeadLetter {
                id: row.try_get("id")?,
                direction: parse_direction(row.try_get("direction")?, "dead_letters")?,
                consumer_key: row.try_get("consumer_key")?,
                payload: parse_payload(row.try_get("payload")?, "dead_letters")?,
                attempts: attempts(row.try_get("attempts")?),
                reason: row.try_get("reason")?,
                failed_at_ms: row.try_get("failed_at")?,
            }))
        })
    }

    /// Puts dead letter `id` back into its outbox as a new item (new id, at the end of its
    /// consumer's queue, attempts reset, the reason kept as `last_error`) and removes it from
    /// the dead-letter table. Returns `false` if there is no such dead letter.
    pub async fn retry_dead_letter(&self, id: i64) -> Result<bool, StoreError> {
        let mut args = vec![Arg::Int(id)];
        let sql = self.timed(
            "INSERT INTO outbox
                 (direction, consumer_key, payload, attempts, last_error, available_at, created_at)
             SELECT direction, consumer_key, payload, 0, reason, {now}, {now}
             FROM dead_letters WHERE id = $1",
            &mut args,
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let moved = bind_args!(sqlx::query(&sql), &args)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if moved != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query("DELETE FROM dead_letters WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// How many items the `direction` outbox holds (leased or not), for metrics.
    pub async fn pending(&self, direction: Direction) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE direction = $1")
                .bind(direction.as_str())
                .fetch_one(pool)
                .await?
                .try_get("n")?
        });
        Ok(count(n))
    }

    /// How many dead letters are kept, for metrics.
    pub async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query("SELECT COUNT(*) AS n FROM dead_letters")
                .fetch_one(pool)
                .await?
                .try_get("n")?
        });
        Ok(count(n))
    }
}
