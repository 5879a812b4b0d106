//! Enqueues, written in as few transactions as possible.
//!
//! SQLite has one writer at a time. When many requests enqueue at once (a burst of webhooks,
//! many consumers writing), separate transactions queue for the write lock (sleeping in
//! SQLite's busy handler) and each pays its own commit. On SQLite every [`Store::enqueue`]
//! therefore goes through one writer task: the calls that arrive while a transaction runs are
//! written together in the next one (group commit). Each call keeps its own meaning (its items
//! stored atomically, or nothing when its dedup key is live) and its own answer; at low load a
//! call is a transaction of its own, as before. PostgreSQL runs transactions side by side, so
//! there each call writes directly.
//!
//! [`Store::enqueue`]: crate::Store::enqueue

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::db::{BeginWrite, Pools, now_ms};
use crate::{Direction, Enqueued, StoreError};

/// The most calls written in one transaction.
const MAX_BATCH: usize = 256;

/// One `enqueue` call.
#[derive(Debug)]
pub(crate) struct Job {
    /// The outbox.
    pub(crate) direction: Direction,
    /// `(consumer_key, payload JSON)` of each item, in order.
    pub(crate) items: Vec<(String, String)>,
    /// The dedup key and when it expires (unix ms).
    pub(crate) dedup: Option<(String, i64)>,
}

struct Queued {
    job: Job,
    reply: oneshot::Sender<Result<Enqueued, StoreError>>,
}

/// The handle on the writer task (SQLite only).
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Queued>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.job.fmt(f)
    }
}

impl GroupCommit {
    /// Starts the writer task on `pool`. It ends when every handle is dropped.
    pub(crate) fn start(pool: sqlx::SqlitePool) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(Pools::Sqlite(pool), rx));
        Self { jobs }
    }

    /// Writes `job` in the next transaction and returns its outcome.
    pub(crate) async fn enqueue(&self, job: Job) -> Result<Enqueued, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Queued { job, reply })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

async fn run(pool: Pools, mut rx: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let jobs: Vec<&Job> = batch.iter().map(|q| &q.job).collect();
        match write(&pool, &jobs).await {
            Ok(outcomes) => {
                for (queued, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = queued.reply.send(Ok(outcome));
                }
            }
            // One call's failure must not fail the others: each is written alone, and gets
            // its own outcome.
            Err(error) if batch.len() == 1 => {
                if let Some(queued) = batch.pop() {
                    let _ = queued.reply.send(Err(error));
                }
            }
            Err(_) => {
                for queued in batch {
                    let outcome = write(&pool, &[&queued.job])
                        .await
                        .map(|mut outcomes| outcomes.remove(0));
                    let _ = queued.reply.send(outcome);
                }
            }
        }
    }
}

/// Writes `jobs` in one transaction; one outcome per job, in order. Whatever the number of
/// jobs, that is two statements: one upsert of every dedup key (returning the keys that were
/// new or expired), then one insert of the items of every job whose key was new.
pub(crate) async fn write(pool: &Pools, jobs: &[&Job]) -> Result<Vec<Enqueued>, StoreError> {
    let now = now_ms();
    // `$1` is now; each key adds two parameters.
    let keyed: Vec<(&str, i64)> = jobs
        .iter()
        .filter_map(|job| job.dedup.as_ref().map(|(k, e)| (k.as_str(), *e)))
        .collect();
    let remember_sql = (!keyed.is_empty()).then(|| {
        let values: Vec<String> = (0..keyed.len())
            .map(|i| format!("(${}, ${})", 2 * i + 2, 2 * i + 3))
            .collect();
        format!(
            "INSERT INTO dedup (key, expires_at) VALUES {}
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
             WHERE dedup.expires_at <= $1 RETURNING key",
            values.join(", ")
        )
    });
    macro_rules! body {
        ($pool:expr) => {{
            let mut tx = $pool.begin_write().await?;
            // The keys this transaction made live; a key appearing in two jobs is the first
            // one's (SQLite applies the rows in order, so the second meets the first).
            let mut fresh: std::collections::HashSet<String> = std::collections::HashSet::new();
            if let Some(sql) = &remember_sql {
                let mut query = sqlx::query(sql).bind(now);
                for (key, expires_at) in &keyed {
                    query = query.bind(*key).bind(*expires_at);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    fresh.insert(row.try_get("key")?);
                }
            }
            let mut stored = Vec::with_capacity(jobs.len());
            for job in jobs {
                let store = match &job.dedup {
                    Some((key, _)) => fresh.remove(key),
                    None => true,
                };
                stored.push(store);
            }
            let rows: Vec<(Direction, &str, &str)> = jobs
                .iter()
                .zip(&stored)
                .filter(|(_, store)| **store)
                .flat_map(|(job, _)| {
                    job.items
                        .iter()
                        .map(|(k, p)| (job.direction, k.as_str(), p.as_str()))
                })
                .collect();
            let mut ids: Vec<i64> = Vec::with_capacity(rows.len());
            if !rows.is_empty() {
                let values: Vec<String> = (0..rows.len())
                    .map(|i| format!("(${}, ${}, ${}, 0, $1, $1)", 3 * i + 2, 3 * i + 3, 3 * i + 4))
                    .collect();
                let sql = format!(
                    "INSERT INTO outbox (direction, consumer_key, payload, attempts, available_at, created_at)
                     VALUES {} RETURNING id",
                    values.join(", ")
                );
                let mut query = sqlx::query(&sql).bind(now);
                for (direction, consumer_key, payload) in &rows {
                    query = query.bind(direction.as_str()).bind(*consumer_key).bind(*payload);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    ids.push(row.try_get("id")?);
                }
                // Ids are allocated in the order of the rows; RETURNING's order is not promised.
                ids.sort_unstable();
            }
            tx.commit().await?;
            let mut ids = ids.into_iter();
            Ok(jobs
                .iter()
                .zip(stored)
                .map(|(job, store)| {
                    if store {
                        Enqueued::Stored(ids.by_ref().take(job.items.len()).collect())
                    } else {
                        Enqueued::Duplicate
                    }
                })
                .collect())
        }};
    }
    match pool {
        Pools::Sqlite(pool) => body!(pool),
        Pools::Postgres(pool) => body!(pool),
    }
}
