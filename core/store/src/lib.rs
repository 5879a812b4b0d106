//! Durable storage for Switchboard: the outboxes, the dead letters, the dedup keys, the
//! conversation map and small per-channel state.
//!
//! Every event is written here before its sender is acknowledged; workers [`claim`] items,
//! deliver them and [`complete`] (delete) them. Items of one consumer key are handed out one at
//! a time, oldest first, even across processes sharing one PostgreSQL database, so per-consumer
//! order holds. A worker that dies simply lets its lease expire and another takes over.
//!
//! Two backends, chosen by URL in [`Store::connect`]:
//! - SQLite (`sqlite://path/to/file.db`, or `sqlite::memory:` for tests): one process;
//! - PostgreSQL (`postgres://…`): several instances sharing one database; claims use
//!   `FOR UPDATE SKIP LOCKED`.
//!
//! The store knows nothing about events: payloads are opaque JSON. It is not a message broker
//! either: there is no notification of new items, workers poll [`claim`].
//!
//! [`claim`]: Store::claim
//! [`complete`]: Store::complete

#[macro_use]
mod db;
mod clock;
mod conversations;
mod error;
mod group_commit;
mod kv;
mod media;
mod model;
mod outbox;
mod parts;
mod trace;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::db::{BeginWrite, Pools};

pub use crate::error::{StoreError, redact_url};
pub use crate::media::{EXPIRED_LINKS_KEPT, MediaLink};
pub use crate::model::{
    ConsumerRecord, ConversationState, DeadLetter, Direction, Enqueued, Identity, NewItem,
    OutboxItem, Streak, UnknownDirection,
};
pub use crate::parts::{CLAIM_LEASE, ExpiredParts, FORGET_AFTER, NewPart, PartAdded};
pub use crate::trace::{TraceEntry, TraceLog, TraceRecord, TraceStage, trace_direction};

/// How long a SQLite connection waits for the write lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept for a SQLite file (one writer at a time, readers in parallel with WAL).
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Connections per process for PostgreSQL.
pub(crate) const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How long to wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long PostgreSQL lets one of our sessions sit idle inside a transaction before it ends
/// the session and rolls the transaction back (`idle_in_transaction_session_timeout`).
///
/// Our transactions send their statements back to back and never wait on anything else, so a
/// healthy instance is idle in one for milliseconds. An instance that stops mid-transaction
/// (a paused VM or container, SIGSTOP, a host swapping hard, a network partition that leaves
/// the TCP session open) would otherwise hold its row locks for as long as it is gone: the
/// outbox row it was updating is skipped by every other instance's claim (`SKIP LOCKED`) and
/// a state row it was raising blocks their writes, so the lease that should hand its work to
/// another instance hands over nothing. Ending such a session is safe: nothing in an
/// uncommitted transaction was acknowledged to anyone, and the stalled instance, when it
/// wakes, finds its connection closed and its write failed, as after any database error.
pub const STALLED_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a [`Store`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// An embedded SQLite file (or memory).
    Sqlite,
    /// A PostgreSQL server, possibly shared by several instances.
    Postgres,
}

/// The handle to the store. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pools,
    /// SQLite's writer thread (see [`writer`]), or PostgreSQL's batching tasks (see
    /// [`group_commit`]); `None` for an in-memory SQLite database (one connection).
    writer: Option<Writers>,
    /// The host's clock, for the times SQLite keeps (see [`clock`]).
    clock: clock::HostClock,
}

/// Where a store's hot writes go.
#[derive(Debug)]
enum Writers {
    Sqlite(writer::Writer),
    Postgres(group_commit::GroupCommit),
}

/// How [`Store::connect_with`] opens a store, beyond its URL.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Shifts this store's reading of its host's clock by this many milliseconds: how a test
    /// plays a host whose clock is wrong. On PostgreSQL the outbox's times come from the
    /// database and must not move with it.
    #[doc(hidden)]
    pub host_clock_offset_ms: i64,
    /// SQLite's durability (`store.sync`); `None` is [`SyncMode::Full`]. Must be `None` on
    /// PostgreSQL, whose commits are made durable by the server (see [`Store::connect`]).
    pub sync: Option<SyncMode>,
}

/// When a SQLite commit reaches the disk (`store.sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// `synchronous=FULL`: the write-ahead log is synced at every commit, before the commit
    /// returns, so an event answered 2xx survives a power loss or an OS crash. The writer
    /// thread commits many writes at once, so the cost is one sync per group, not per event.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the log is synced at checkpoints only. Faster; the last commits
    /// before a power loss or an OS crash (not a crash of the process) can be lost although
    /// their senders were answered 2xx, and those senders will not send them again.
    Normal,
}

impl SyncMode {
    /// The value of SQLite's `synchronous` pragma.
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        }
    }
}

impl StoreOptions {
    /// These options with the host's clock read `ms` milliseconds off (see
    /// [`StoreOptions::host_clock_offset_ms`]).
    #[doc(hidden)]
    pub fn with_host_clock_offset_ms(mut self, ms: i64) -> Self {
        self.host_clock_offset_ms = ms;
        self
    }

    /// These options with SQLite's durability set to `sync`.
    pub fn with_sync(mut self, sync: Option<SyncMode>) -> Self {
        self.sync = sync;
        self
    }
}

impl Store {
    /// Opens the store and applies the embedded migrations.
    ///
    /// `url` is `sqlite://path/to/file.db` (the file and its directory are created if missing;
    /// WAL journal, `synchronous=FULL` unless [`StoreOptions::sync`] says otherwise, 5 s busy
    /// timeout, foreign keys on), `sqlite::memory:`
    /// (a private in-memory database on a single connection) or `postgres://…` /
    /// `postgresql://…` (any parameter sqlx understands, e.g.
    /// `?options=-c%20search_path%3Dmy_schema` to use another schema).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with(url, StoreOptions::default()).await
    }

    /// Opens the store as [`Store::connect`] does, with `options`.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let clock = clock::HostClock {
            offset_ms: options.host_clock_offset_ms,
        };
        let redacted = redact_url(url);
        let mut file = None;
        let sync = options.sync.unwrap_or_default();
        let pool = if url.starts_with("sqlite:") {
            let (pool, path) = connect_sqlite(url, &redacted, sync).await?;
            file = path;
            Pools::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if options.sync.is_some() {
                return Err(StoreError::SyncOnPostgres);
            }
            Pools::Postgres(connect_postgres(url, &redacted).await?)
        } else {
            return Err(StoreError::UnsupportedUrl { url: redacted });
        };
        match &pool {
            Pools::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Pools::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .map_err(StoreError::Migrate)?;
        // After the migrations: the writer's connection finds the schema in place.
        let writer = match (&file, &pool) {
            (Some(path), _) => Some(Writers::Sqlite(writer::Writer::start(
                path,
                SQLITE_BUSY_TIMEOUT,
                clock,
                sync.pragma(),
            )?)),
            (None, Pools::Postgres(pg)) => Some(Writers::Postgres(
                group_commit::GroupCommit::start(Pools::Postgres(pg.clone()), clock),
            )),
            (None, Pools::Sqlite(_)) => None,
        };
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                writer,
                clock,
            }),
        };
        tracing::info!(backend = ?store.backend(), url = %redacted, "store opened");
        Ok(store)
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match &self.inner.pool {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Checks that the store answers and could take a write now, for readiness checks: opens
    /// a write transaction (on SQLite this takes the write lock, so a database another
    /// process holds locked fails after the busy timeout), reads, and rolls back.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("SELECT 1").execute(&mut *tx).await?;
            tx.rollback().await?;
        });
        Ok(())
    }

    /// Applies one hot write: on a SQLite file through the writer thread, on PostgreSQL
    /// through the batching tasks (batched with concurrent ones either way), on in-memory
    /// SQLite directly.
    pub(crate) async fn write(&self, write: writer::Write) -> Result<writer::Written, StoreError> {
        match &self.inner.writer {
            Some(Writers::Sqlite(w)) => w.apply(write).await,
            Some(Writers::Postgres(w)) => w.apply(write).await,
            None => {
                let mut outcomes =
                    writer::apply(&self.inner.pool, self.inner.clock, &[&write]).await?;
                Ok(outcomes.remove(0))
            }
        }
    }

    /// `sql` (with [`clock::NOW`] for "now") ready for this store's backend, see
    /// [`clock::HostClock::render`].
    pub(crate) fn timed(&self, sql: &str, args: &mut Vec<db::Arg>) -> String {
        self.inner.clock.render(self.backend(), sql, args)
    }

    /// Closes every connection; pending operations finish first. Clones become unusable.
    pub async fn close(&self) {
        match &self.inner.writer {
            Some(Writers::Sqlite(w)) => w.stop(),
            Some(Writers::Postgres(w)) => w.stop(),
            None => {}
        }
        on_pool!(self, |pool| pool.close().await)
    }
}

/// The pool, and the database file (`None` in memory).
async fn connect_sqlite(
    url: &str,
    redacted: &str,
    sync: SyncMode,
) -> Result<(sqlx::SqlitePool, Option<std::path::PathBuf>), StoreError> {
    let connect_error = |source| StoreError::Connect {
        url: redacted.to_owned(),
        source,
    };
    let options = SqliteConnectOptions::from_str(url).map_err(connect_error)?;
    let in_memory = url == "sqlite::memory:"
        || url.contains("mode=memory")
        || options.get_filename().as_os_str() == ":memory:";
    let options = options
        .create_if_missing(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
        .synchronous(match sync {
            SyncMode::Full => SqliteSynchronous::Full,
            SyncMode::Normal => SqliteSynchronous::Normal,
        });
    if in_memory {
        // One connection that lives as long as the pool: the database is that connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        return Ok((pool, None));
    }
    if let Some(dir) = options.get_filename().parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let path = options.get_filename().to_owned();
    let pool = SqlitePoolOptions::new()
        .max_connections(SQLITE_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection to a local file does not go stale; pinging it before every query was a
        // round trip to its thread for nothing (a tenth of the connector's CPU under load).
        .test_before_acquire(false)
        .connect_with(options.journal_mode(SqliteJournalMode::Wal))
        .await
        .map_err(connect_error)?;
    Ok((pool, Some(path)))
}

/// The session settings of every PostgreSQL connection a [`Store`] opens: `url`'s, plus
/// [`STALLED_TRANSACTION_TIMEOUT`]. Public for the tests that play a stalled instance.
#[doc(hidden)]
pub fn postgres_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let timeout = STALLED_TRANSACTION_TIMEOUT.as_millis().to_string();
    Ok(PgConnectOptions::from_str(url)?
        .options([("idle_in_transaction_session_timeout", timeout.as_str())]))
}

async fn connect_postgres(url: &str, redacted: &str) -> Result<sqlx::PgPool, StoreError> {
    let connect_error = |source| StoreError::Connect {
        url: redacted.to_owned(),
        source,
    };
    let options = postgres_options(url).map_err(connect_error)?;
    let pool = PgPoolOptions::new()
        .max_connections(POSTGRES_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connect_error)?;
    // A commit must be on disk before the connector answers the event's sender: refuse a
    // server, role, database or URL (`options=-c synchronous_commit=off`) that turned that
    // off. `local`, `remote_write`, `on` and `remote_apply` all flush the local WAL first.
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&pool)
        .await
        .map_err(connect_error)?;
    if setting.eq_ignore_ascii_case("off") {
        pool.close().await;
        return Err(StoreError::AsynchronousCommit {
            url: redacted.to_owned(),
        });
    }
    Ok(pool)
}
