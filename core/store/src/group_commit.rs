//! PostgreSQL's hot writes, several to a transaction (group commit).
//!
//! Applied one by one, every write on PostgreSQL is a transaction of its own: `BEGIN`, its
//! statement and `COMMIT` are three round trips to the server, and the commit waits for the
//! server to flush its WAL. The load tool counted about ten such transactions per message each
//! way (docs/performance.md, "Database work per message on PostgreSQL"), and a consumer's
//! stream is a chain of them.
//!
//! So, as on a SQLite file ([`crate::writer`]), the writes that arrive while a transaction
//! runs are applied together in the next one, each with its own answer; enqueues of one batch
//! are merged into one dedup upsert and one multi-row insert. Unlike SQLite, PostgreSQL runs
//! transactions side by side, so a few batches ([`BATCHERS`]) are in flight at once: a slow
//! flush of one does not hold up the next. At low load a write is a transaction of its own,
//! as before.
//!
//! A batch that fails is rolled back and its writes applied again one by one, so one bad
//! write (or a deadlock between two instances' batches, which PostgreSQL detects and breaks by
//! failing one) fails only itself. When no connection can be had at all every write would wait
//! and fail the same way, and all of the batch fail at once.
//!
//! Every statement reads "now" as its own start ([`crate::clock`]), so grouping changes no
//! time a write records or compares.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

use crate::StoreError;
use crate::clock::HostClock;
use crate::db::Pools;
use crate::writer::{
    Command, Queued, Write, Written, answer_batch, apply, closed, submit, take_batch,
};

/// Batches in flight at once. The pool has [`crate::POSTGRES_MAX_CONNECTIONS`]; the rest
/// serve reads.
const BATCHERS: usize = 4;

/// The handle on the batching tasks of a PostgreSQL store.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    commands: mpsc::UnboundedSender<Command>,
}

impl GroupCommit {
    /// Starts the batching tasks on the current tokio runtime, applying writes through
    /// `pool` (a clone of the store's).
    pub(crate) fn start(pool: Pools, clock: HostClock) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let pool = Arc::new(pool);
        for _ in 0..BATCHERS {
            tokio::spawn(run(Arc::clone(&pool), clock, Arc::clone(&rx)));
        }
        Self { commands }
    }

    /// Applies `write` in the next transaction.
    pub(crate) async fn apply(&self, write: Write) -> Result<Written, StoreError> {
        submit(write, |command| self.commands.send(command).is_ok()).await
    }

    /// Stops the tasks after the writes already queued; later writes fail.
    pub(crate) fn stop(&self) {
        for _ in 0..BATCHERS {
            let _ = self.commands.send(Command::Stop);
        }
    }
}

async fn run(pool: Arc<Pools>, clock: HostClock, rx: Arc<Mutex<mpsc::UnboundedReceiver<Command>>>) {
    loop {
        // One task at a time takes what is queued: the first write, and every one behind it.
        let (batch, stop) = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            take_batch(first, || rx.try_recv().ok())
        };
        if !batch.is_empty() {
            apply_batch(&pool, clock, batch).await;
        }
        if stop {
            return;
        }
    }
}

/// Applies `batch` in one transaction, or each write alone if that fails.
async fn apply_batch(pool: &Pools, clock: HostClock, mut batch: Vec<Queued>) {
    let writes: Vec<&Write> = batch.iter().map(|q| &q.write).collect();
    let result = apply(pool, clock, &writes).await;
    let Some(error) = answer_batch(&mut batch, result) else {
        return;
    };
    match error {
        error if unreachable(&error).is_some() => {
            for queued in batch {
                let _ = queued
                    .reply
                    .send(Err(unreachable(&error).unwrap_or_else(closed)));
            }
        }
        _ => {
            for queued in batch {
                let outcome = apply(pool, clock, &[&queued.write])
                    .await
                    .map(|mut outcomes| outcomes.remove(0));
                let _ = queued.reply.send(outcome);
            }
        }
    }
}

/// When no connection could be had at all (the pool waited its whole acquire timeout, or
/// is closed), so that every other write would wait and fail the same way: that error again,
/// for the next write. A broken connection is not such a case: the writes applied again one
/// by one take fresh connections.
fn unreachable(error: &StoreError) -> Option<StoreError> {
    let again = match error {
        StoreError::Database(sqlx::Error::PoolTimedOut) => sqlx::Error::PoolTimedOut,
        StoreError::Database(sqlx::Error::PoolClosed) => sqlx::Error::PoolClosed,
        _ => return None,
    };
    Some(StoreError::Database(again))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Arg;
    use crate::writer::Job;
    use crate::{Direction, Enqueued};
    use sqlx::Connection;
    use tokio::sync::oneshot;

    /// A pool on a fresh schema of the test database, or `None` (said) without one.
    async fn pool() -> Option<(sqlx::PgPool, String, String)> {
        let Ok(admin) = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "SWITCHBOARD_TEST_POSTGRES_URL must be set when CI=true"
            );
            eprintln!("skipping: set SWITCHBOARD_TEST_POSTGRES_URL to run this test");
            return None;
        };
        let schema = format!("sb_gc_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("schema");
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
        let pool = sqlx::PgPool::connect(&url).await.expect("pool");
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .expect("migrate");
        Some((pool, admin, schema))
    }

    async fn drop_schema(admin: &str, schema: &str) {
        let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .expect("drop schema");
    }

    fn enqueue(consumer: &str) -> Write {
        Write::Enqueue(Job {
            direction: Direction::ToLivePerson,
            items: vec![(consumer.to_owned(), "{}".to_owned(), None)],
            dedup: None,
            raise: None,
        })
    }

    fn queued(write: Write) -> (Queued, oneshot::Receiver<Result<Written, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Queued { write, reply }, answer)
    }

    /// A write that fails inside a batch (here a statement PostgreSQL refuses) rolls the
    /// batch back; the others are applied again alone and stored, each answered on its own.
    #[tokio::test]
    async fn one_failing_write_fails_only_itself() {
        let Some((pg, admin, schema)) = pool().await else {
            return;
        };
        let pools = Pools::Postgres(pg.clone());
        let (batch, answers): (Vec<_>, Vec<_>) = [
            enqueue("c1"),
            Write::Execute {
                sql: "SELECT 1 / $1".into(),
                args: vec![Arg::Int(0)],
            },
            enqueue("c2"),
        ]
        .into_iter()
        .map(queued)
        .unzip();
        apply_batch(&pools, HostClock::default(), batch).await;
        for (i, answer) in answers.into_iter().enumerate() {
            let outcome = answer.await.expect("answered");
            match (i, outcome) {
                (1, Err(StoreError::Database(_))) => {}
                (0 | 2, Ok(Written::Enqueued(Enqueued::Stored(ids)))) => assert_eq!(ids.len(), 1),
                (i, other) => panic!("write {i}: {other:?}"),
            }
        }
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&pg)
            .await
            .expect("count");
        assert_eq!(stored, 2);
        pg.close().await;
        drop_schema(&admin, &schema).await;
    }

    /// Writes that arrive together share one transaction: one transaction id for the batch.
    #[tokio::test]
    async fn writes_queued_together_share_one_transaction() {
        let Some((pg, admin, schema)) = pool().await else {
            return;
        };
        let pools = Pools::Postgres(pg.clone());
        // `txid_current()` assigns the transaction an id and returns it: equal in all.
        let txid = || Write::Claim {
            sql: "SELECT txid_current() AS id, 'to_lp' AS direction, 'c' AS consumer_key,
                     txid_current()::text AS payload, NULL::text AS trace_context,
                     0::bigint AS attempts, NULL::text AS last_error,
                     NULL::text AS streak_kind, 0::bigint AS streak,
                     0::bigint AS created_at, 0::bigint AS claimed_at"
                .into(),
            args: Vec::new(),
        };
        let (batch, answers): (Vec<_>, Vec<_>) = (0..3).map(|_| queued(txid())).unzip();
        apply_batch(&pools, HostClock::default(), batch).await;
        let mut ids = std::collections::HashSet::new();
        for answer in answers {
            match answer.await.expect("answered") {
                Ok(Written::Claimed(items)) => ids.insert(items[0].id),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(ids.len(), 1, "one transaction: {ids:?}");
        pg.close().await;
        drop_schema(&admin, &schema).await;
    }

    /// When the database cannot be reached, every write of the batch fails at once with
    /// that reason, rather than each waiting for a connection again.
    #[tokio::test]
    async fn an_unreachable_database_fails_the_batch_at_once() {
        let Some((pg, admin, schema)) = pool().await else {
            return;
        };
        pg.close().await;
        let pools = Pools::Postgres(pg);
        let (batch, answers): (Vec<_>, Vec<_>) =
            (0..3).map(|i| queued(enqueue(&format!("c{i}")))).unzip();
        apply_batch(&pools, HostClock::default(), batch).await;
        for answer in answers {
            match answer.await.expect("answered") {
                Err(StoreError::Database(sqlx::Error::PoolClosed)) => {}
                other => panic!("{other:?}"),
            }
        }
        drop_schema(&admin, &schema).await;
    }
}
