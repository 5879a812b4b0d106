//! The two backends behind [`Store`](crate::Store) and the helpers that let one query body
//! serve both.
//!
//! Every query is written once with `$1`-style placeholders, which SQLite accepts as well as
//! PostgreSQL; [`on_pool!`] expands the body once per backend so each copy is type-checked
//! against its own driver.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
    /// A text or NULL.
    OptText(Option<String>),
    /// An integer or NULL.
    OptInt(Option<i64>),
}

/// The connection pool of the configured backend.
#[derive(Debug)]
pub(crate) enum Pools {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store uses.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.inner.pool {
            $crate::db::Pools::Sqlite($pool) => $body,
            $crate::db::Pools::Postgres($pool) => $body,
        }
    };
}

/// Binds every [`Arg`] of `$args`, in order, to the sqlx query `$query`.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                $crate::db::Arg::Int(v) => query.bind(*v),
                $crate::db::Arg::Text(v) => query.bind(v.as_str()),
                $crate::db::Arg::OptText(v) => query.bind(v.as_deref()),
                $crate::db::Arg::OptInt(v) => query.bind(*v),
            };
        }
        query
    }};
}

/// Starting a transaction that will write.
pub(crate) trait BeginWrite {
    /// The driver.
    type Db: sqlx::Database;

    /// SQLite takes the write lock up front (`BEGIN IMMEDIATE`) so a transaction that reads
    /// before writing cannot fail with a stale snapshot; PostgreSQL needs nothing special.
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// The host's current time in unix milliseconds, for the times only informative or kept for
/// days (`updated_at`, dedup keys outside the outbox); the outbox's own times come from
/// [`crate::clock`].
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// A duration in milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A count from the database as `u64` (counts are never negative).
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// An attempts column as `u32`, saturating.
pub(crate) fn attempts(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}
