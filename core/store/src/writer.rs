//! The store's hot writes, in as few transactions and thread hops as possible.
//!
//! SQLite has one writer at a time, and every write outside a transaction is a transaction of
//! its own: it takes the write lock (waiting in SQLite's busy handler while another connection
//! holds it) and commits to the WAL. Measured under load, such a write cost about 300 µs,
//! against 10-30 µs for the same statement inside a transaction. And sqlx runs each SQLite
//! statement on its connection's own thread: every statement is two thread wake-ups, which
//! profiles showed to be most of the connector's CPU.
//!
//! So on a SQLite file the hot writes (enqueues, claims, completions, progress, state, the
//! conversation map) go to one writer thread that owns its own connection (rusqlite, the same
//! SQLite library sqlx links): the writes that arrive while a transaction runs are applied
//! together in the next one (group commit), each with its own answer, with no further hop per
//! statement. Enqueues of one batch are merged into two statements (one upsert of every dedup
//! key, one multi-row insert of every item). If a batch fails, its writes are applied again one
//! by one, so one bad write fails only itself. At low load a write is a transaction of its own,
//! as before. Reads stay on sqlx's pool (WAL: they never wait for the writer).
//!
//! On PostgreSQL the same batches are applied through sqlx by a few tasks at once
//! ([`crate::group_commit`]); an in-memory SQLite database is one sqlx connection, where every
//! write is applied directly, with the same statements.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::oneshot;

use crate::clock::HostClock;
use crate::db::{Arg, BeginWrite, Pools, attempts};
use crate::model::{parse_direction, parse_payload};
use crate::{Backend, Direction, Enqueued, OutboxItem, StoreError, Streak};

/// The most writes applied in one transaction (here and in [`crate::group_commit`]).
const MAX_BATCH: usize = 256;

/// Prepared statements the writer's connection keeps.
const STATEMENT_CACHE: usize = 128;

/// One write.
#[derive(Debug)]
pub(crate) enum Write {
    /// Items stored atomically, unless the dedup key is live.
    Enqueue(Job),
    /// A statement answered with the number of rows it changed.
    Execute {
        /// The statement.
        sql: std::borrow::Cow<'static, str>,
        /// Its arguments, `$1`…
        args: Vec<Arg>,
    },
    /// One statement run once for each set of arguments, answered with the rows changed in
    /// all: many rows inserted through one prepared statement (SQLite's writer prepares it
    /// once and caches it, where a multi-row insert of every batch size would be parsed anew).
    ExecuteEach {
        /// The statement.
        sql: std::borrow::Cow<'static, str>,
        /// The arguments of each run, `$1`…
        rows: Vec<Vec<Arg>>,
    },
    /// A claim: a statement returning outbox rows.
    Claim {
        /// The statement.
        sql: String,
        /// Its arguments, `$1`…
        args: Vec<Arg>,
    },
}

/// One `enqueue` call.
#[derive(Debug)]
pub(crate) struct Job {
    /// The outbox.
    pub(crate) direction: Direction,
    /// `(consumer_key, payload JSON, trace context)` of each item, in order.
    pub(crate) items: Vec<(String, String, Option<String>)>,
    /// The dedup key and how long it lives (ms).
    pub(crate) dedup: Option<(String, i64)>,
    /// `(scope, key, value)` of a state raised in the same transaction, whether the items
    /// were stored or were a duplicate ([`crate::Store::enqueue_raising`]).
    pub(crate) raise: Option<(String, String, i64)>,
}

/// Raises a numeric state to `$3` (never lowers it): [`crate::Store::raise_state`], and the raise
/// that [`crate::Store::enqueue_raising`] makes in the enqueue's transaction.
pub(crate) const RAISE_STATE: &str =
    "INSERT INTO channel_state (scope, key, value, updated_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT (scope, key) DO UPDATE SET
         value = excluded.value, updated_at = excluded.updated_at
     WHERE CAST(channel_state.value AS BIGINT) < CAST(excluded.value AS BIGINT)";

/// The arguments of [`RAISE_STATE`].
pub(crate) fn raise_args(scope: &str, key: &str, value: i64) -> Vec<Arg> {
    vec![
        Arg::Text(scope.to_owned()),
        Arg::Text(key.to_owned()),
        Arg::Text(value.to_string()),
        Arg::Int(crate::db::now_ms()),
    ]
}

/// The arguments of [`RAISE_STATE`] for each job that raises a state.
fn raises(jobs: &[&Job]) -> Vec<Vec<Arg>> {
    jobs.iter()
        .filter_map(|job| job.raise.as_ref())
        .map(|(scope, key, value)| raise_args(scope, key, *value))
        .collect()
}

/// What a write did.
#[derive(Debug)]
pub(crate) enum Written {
    /// The outcome of an [`Write::Enqueue`].
    Enqueued(Enqueued),
    /// Rows changed by an [`Write::Execute`].
    Affected(u64),
    /// Items leased by a [`Write::Claim`].
    Claimed(Vec<OutboxItem>),
}

/// A write waiting for its transaction, and where its outcome goes.
pub(crate) struct Queued {
    pub(crate) write: Write,
    pub(crate) reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// What a writer (this thread, or [`crate::group_commit`]'s tasks) is told.
pub(crate) enum Command {
    Apply(Queued),
    Stop,
}

/// Hands `write` to a writer through `send` (false when the writer is gone) and waits for
/// its outcome.
pub(crate) async fn submit(
    write: Write,
    send: impl FnOnce(Command) -> bool,
) -> Result<Written, StoreError> {
    let (reply, answer) = oneshot::channel();
    if !send(Command::Apply(Queued { write, reply })) {
        return Err(closed());
    }
    answer.await.map_err(|_| closed())?
}

/// The next batch: `first` and the commands queued behind it, taken with `next` (`None`
/// when nothing more is queued), up to [`MAX_BATCH`] writes or a [`Command::Stop`]; and
/// whether that stop came.
pub(crate) fn take_batch(
    first: Command,
    mut next: impl FnMut() -> Option<Command>,
) -> (Vec<Queued>, bool) {
    let mut batch = Vec::new();
    let mut stop = false;
    let mut command = Some(first);
    while let Some(c) = command.take() {
        match c {
            Command::Apply(queued) => batch.push(queued),
            Command::Stop => stop = true,
        }
        if batch.len() < MAX_BATCH && !stop {
            command = next();
        }
    }
    (batch, stop)
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write.fmt(f)
    }
}

/// The handle on the writer thread of a SQLite file.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    commands: std::sync::mpsc::Sender<Command>,
}

impl Writer {
    /// Opens the writer's own connection to the database file at `path` (already created and
    /// migrated) and starts its thread, which ends with [`Writer::stop`] or when every handle
    /// is dropped.
    pub(crate) fn start(
        path: &Path,
        busy_timeout: Duration,
        clock: HostClock,
        synchronous: &str,
    ) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL by default: the WAL is synced before each group commit returns (see
        // `SyncMode`), so every write answered here survives a power loss.
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Room for every statement of the hot path beside the batches' multi-row ones, which
        // differ by size (rusqlite's default is 16: the hot ones were parsed again and again).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (commands, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, clock, rx))
            .map_err(StoreError::WriterThread)?;
        Ok(Self { commands })
    }

    /// Applies `write` in the next transaction.
    pub(crate) async fn apply(&self, write: Write) -> Result<Written, StoreError> {
        submit(write, |command| self.commands.send(command).is_ok()).await
    }

    /// Stops the thread after the writes already queued; later writes fail.
    pub(crate) fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// Answers the writes of `batch` from the outcome of applying them together, where that
/// settles them: each its own outcome, or the error of the one write there was. Returns the
/// error, with `batch` unanswered, when several writes failed together: the caller decides
/// whether they all fail or are applied again one by one.
pub(crate) fn answer_batch(
    batch: &mut Vec<Queued>,
    result: Result<Vec<Written>, StoreError>,
) -> Option<StoreError> {
    match result {
        Ok(outcomes) => {
            for (queued, outcome) in batch.drain(..).zip(outcomes) {
                let _ = queued.reply.send(Ok(outcome));
            }
            None
        }
        Err(error) if batch.len() == 1 => {
            if let Some(queued) = batch.pop() {
                let _ = queued.reply.send(Err(error));
            }
            None
        }
        Err(error) => Some(error),
    }
}

/// The error of a write given to a writer that has stopped.
pub(crate) fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

fn run(mut conn: rusqlite::Connection, clock: HostClock, rx: std::sync::mpsc::Receiver<Command>) {
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else { return };
        let (mut batch, stopped) = take_batch(first, || rx.try_recv().ok());
        stop = stopped;
        if batch.is_empty() {
            continue;
        }
        let writes: Vec<&Write> = batch.iter().map(|q| &q.write).collect();
        let result = apply_sqlite(&mut conn, clock, &writes);
        let Some(error) = answer_batch(&mut batch, result) else {
            continue;
        };
        match error {
            // The database is locked (another process holds it beyond the busy timeout): every
            // write would wait and fail the same way, so all fail at once.
            error if is_busy(&error) => {
                for queued in batch {
                    let _ = queued.reply.send(Err(busy()));
                }
            }
            // The transaction was rolled back: each write alone, with its own outcome.
            _ => {
                for queued in batch {
                    let outcome = apply_sqlite(&mut conn, clock, &[&queued.write])
                        .map(|mut outcomes| outcomes.remove(0));
                    let _ = queued.reply.send(outcome);
                }
            }
        }
    }
}

/// True for SQLite's "database is busy / locked".
fn is_busy(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Sqlite(e) if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    )
}

/// The error of a write that met a locked database.
fn busy() -> StoreError {
    StoreError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("database is locked".into()),
    ))
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
            Arg::OptInt(v) => v.to_sql(),
        }
    }
}

/// `sql` with its `$1`, `$2`… parameters written `?1`, `?2`…, as the writer prepares it.
/// SQLite reads `$1` as a *named* parameter (<https://sqlite.org/lang_expr.html#varparam>),
/// whose index a bind finds by a linear search of the statement's names: a batch insert with
/// thousands of parameters made millions of string comparisons per statement (the largest
/// single cost of the writer thread in a profile, docs/performance.md). `?NNN` is the NNN-th
/// parameter, bound without a search. Only a `$` before a digit changes: no statement of the
/// store has one in a literal (JSON paths are `'$.x'`).
fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let numbered = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if numbered { '?' } else { c });
    }
    out
}

/// Prepares `sql` (written with `$1`, `$2`…, see [`positional`]) through the connection's
/// statement cache.
fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    conn.prepare_cached(&positional(sql))
}

/// Binds `args` to the parameters `?1`, `?2`… of `stmt` (each may appear several times, or
/// not at all: a statement has as many parameters as the highest number it uses).
fn bind(stmt: &mut rusqlite::Statement<'_>, args: &[Arg]) -> rusqlite::Result<()> {
    let count = stmt.parameter_count();
    for (i, arg) in args.iter().enumerate().take(count) {
        stmt.raw_bind_parameter(i + 1, arg)?;
    }
    Ok(())
}

/// The writes of a batch in one `BEGIN IMMEDIATE` transaction on the writer's connection.
fn apply_sqlite(
    conn: &mut rusqlite::Connection,
    clock: HostClock,
    writes: &[&Write],
) -> Result<Vec<Written>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let jobs = enqueue_jobs(writes);
    let mut enqueued = Vec::new().into_iter();
    if !jobs.is_empty() {
        let mut fresh = HashSet::new();
        if let Some((sql, args)) = remember(&jobs, clock, Backend::Sqlite) {
            let mut stmt = prepare(&tx, &sql)?;
            bind(&mut stmt, &args)?;
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next()? {
                fresh.insert(row.get::<_, String>(0)?);
            }
        }
        let stored = stored(&jobs, &mut fresh);
        let mut ids = Vec::new();
        if let Some((sql, args)) = insert(&jobs, &stored, clock, Backend::Sqlite) {
            let mut stmt = prepare(&tx, &sql)?;
            bind(&mut stmt, &args)?;
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next()? {
                ids.push(row.get::<_, i64>(0)?);
            }
        }
        enqueued = outcomes(&jobs, stored, ids).into_iter();
        for args in raises(&jobs) {
            let mut stmt = prepare(&tx, RAISE_STATE)?;
            bind(&mut stmt, &args)?;
            stmt.raw_execute()?;
        }
    }
    let mut written = Vec::with_capacity(writes.len());
    for write in writes {
        written.push(match write {
            Write::Enqueue(_) => Written::Enqueued(enqueued.next().unwrap_or(Enqueued::Duplicate)),
            Write::Execute { sql, args } => {
                let mut stmt = prepare(&tx, sql)?;
                bind(&mut stmt, args)?;
                Written::Affected(stmt.raw_execute()? as u64)
            }
            Write::ExecuteEach { sql, rows } => {
                let mut stmt = prepare(&tx, sql)?;
                let mut changed = 0;
                for args in rows {
                    bind(&mut stmt, args)?;
                    changed += stmt.raw_execute()? as u64;
                }
                Written::Affected(changed)
            }
            Write::Claim { sql, args } => {
                let mut stmt = prepare(&tx, sql)?;
                bind(&mut stmt, args)?;
                let mut rows = stmt.raw_query();
                let mut items = Vec::new();
                while let Some(row) = rows.next()? {
                    items.push(OutboxItem {
                        id: row.get("id")?,
                        direction: parse_direction(row.get("direction")?, "outbox")?,
                        consumer_key: row.get("consumer_key")?,
                        payload: parse_payload(row.get("payload")?, "outbox")?,
                        trace_context: row.get("trace_context")?,
                        attempts: attempts(row.get("attempts")?),
                        last_error: row.get("last_error")?,
                        streak: streak(row.get("streak_kind")?, row.get("streak")?),
                        created_at_ms: row.get("created_at")?,
                        claimed_at_ms: row.get("claimed_at")?,
                    });
                }
                Written::Claimed(items)
            }
        });
    }
    tx.commit()?;
    Ok(written)
}

fn enqueue_jobs<'a>(writes: &[&'a Write]) -> Vec<&'a Job> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Enqueue(job) => Some(job),
            _ => None,
        })
        .collect()
}

/// The upsert of every dedup key of `jobs`, returning the keys that were new or expired;
/// `None` when no job has a key. Expiry is by the backend's clock (see [`crate::clock`]).
fn remember(jobs: &[&Job], clock: HostClock, backend: Backend) -> Option<(String, Vec<Arg>)> {
    let keys: Vec<&(String, i64)> = jobs.iter().filter_map(|job| job.dedup.as_ref()).collect();
    if keys.is_empty() {
        return None;
    }
    let values: Vec<String> = (0..keys.len())
        .map(|i| format!("(${}, {{now}} + ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO dedup (key, expires_at) VALUES {}
         ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
         WHERE dedup.expires_at <= {{now}} RETURNING key",
        values.join(", ")
    );
    let mut args = Vec::with_capacity(2 * keys.len() + 1);
    for (key, ttl_ms) in keys {
        args.push(Arg::Text(key.clone()));
        args.push(Arg::Int(*ttl_ms));
    }
    let sql = clock.render(backend, &sql, &mut args);
    Some((sql, args))
}

/// Which jobs store their items: those without a key, and the first with each key that this
/// transaction made live (`fresh`, consumed).
fn stored(jobs: &[&Job], fresh: &mut HashSet<String>) -> Vec<bool> {
    jobs.iter()
        .map(|job| match &job.dedup {
            Some((key, _)) => fresh.remove(key),
            None => true,
        })
        .collect()
}

/// One insert of the items of the stored jobs, returning their ids; `None` when there is
/// nothing to insert. Their times are the backend's clock (see [`crate::clock`]).
fn insert(
    jobs: &[&Job],
    stored: &[bool],
    clock: HostClock,
    backend: Backend,
) -> Option<(String, Vec<Arg>)> {
    let mut args = Vec::new();
    let mut values = Vec::new();
    for (job, _) in jobs.iter().zip(stored).filter(|(_, s)| **s) {
        for (consumer_key, payload, trace_context) in &job.items {
            let n = args.len();
            values.push(format!(
                "(${}, ${}, ${}, ${}, 0, {{now}}, {{now}})",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ));
            args.push(Arg::Text(job.direction.as_str().to_owned()));
            args.push(Arg::Text(consumer_key.clone()));
            args.push(Arg::Text(payload.clone()));
            args.push(Arg::OptText(trace_context.clone()));
        }
    }
    (!values.is_empty()).then(|| {
        let sql = format!(
            "INSERT INTO outbox
                 (direction, consumer_key, payload, trace_context, attempts, available_at, created_at)
             VALUES {} RETURNING id",
            values.join(", ")
        );
        let sql = clock.render(backend, &sql, &mut args);
        (sql, args)
    })
}

/// Each job's outcome, given which were stored and the ids of the inserted items (ids are
/// allocated in the order of the rows; RETURNING's order is not promised, so they are sorted).
fn outcomes(jobs: &[&Job], stored: Vec<bool>, mut ids: Vec<i64>) -> Vec<Enqueued> {
    ids.sort_unstable();
    let mut ids = ids.into_iter();
    jobs.iter()
        .zip(stored)
        .map(|(job, store)| {
            if store {
                Enqueued::Stored(ids.by_ref().take(job.items.len()).collect())
            } else {
                Enqueued::Duplicate
            }
        })
        .collect()
}

/// Applies `writes` in one transaction through sqlx (PostgreSQL, in-memory SQLite); one
/// outcome per write, in order.
pub(crate) async fn apply(
    pool: &Pools,
    clock: HostClock,
    writes: &[&Write],
) -> Result<Vec<Written>, StoreError> {
    let backend = match pool {
        Pools::Sqlite(_) => Backend::Sqlite,
        Pools::Postgres(_) => Backend::Postgres,
    };
    let jobs = enqueue_jobs(writes);
    macro_rules! body {
        ($pool:expr) => {{
            let mut tx = $pool.begin_write().await?;
            let mut enqueued = Vec::new().into_iter();
            if !jobs.is_empty() {
                let mut fresh = HashSet::new();
                if let Some((sql, args)) = remember(&jobs, clock, backend) {
                    let query = bind_args!(sqlx::query(&sql), &args);
                    for row in query.fetch_all(&mut *tx).await? {
                        fresh.insert(row.try_get("key")?);
                    }
                }
                let stored = stored(&jobs, &mut fresh);
                let mut ids = Vec::new();
                if let Some((sql, args)) = insert(&jobs, &stored, clock, backend) {
                    let query = bind_args!(sqlx::query(&sql), &args);
                    for row in query.fetch_all(&mut *tx).await? {
                        ids.push(row.try_get("id")?);
                    }
                }
                enqueued = outcomes(&jobs, stored, ids).into_iter();
                for args in raises(&jobs) {
                    let query = bind_args!(sqlx::query(RAISE_STATE), &args);
                    query.execute(&mut *tx).await?;
                }
            }
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes {
                outcomes.push(match write {
                    Write::Enqueue(_) => {
                        Written::Enqueued(enqueued.next().unwrap_or(Enqueued::Duplicate))
                    }
                    Write::Execute { sql, args } => {
                        let query = bind_args!(sqlx::query(sql.as_ref()), args);
                        Written::Affected(query.execute(&mut *tx).await?.rows_affected())
                    }
                    Write::ExecuteEach { sql, rows } => {
                        let mut changed = 0;
                        for args in rows {
                            let query = bind_args!(sqlx::query(sql.as_ref()), args);
                            changed += query.execute(&mut *tx).await?.rows_affected();
                        }
                        Written::Affected(changed)
                    }
                    Write::Claim { sql, args } => {
                        let query = bind_args!(sqlx::query(sql.as_str()), args);
                        let mut items = Vec::new();
                        for row in query.fetch_all(&mut *tx).await? {
                            items.push(outbox_item(&row)?);
                        }
                        Written::Claimed(items)
                    }
                });
            }
            tx.commit().await?;
            Ok(outcomes)
        }};
    }
    match pool {
        Pools::Sqlite(pool) => body!(pool),
        Pools::Postgres(pool) => body!(pool),
    }
}

/// Decodes an outbox item from a row with the columns `id, direction, consumer_key, payload,
/// trace_context, attempts, last_error, streak_kind, streak, created_at, claimed_at`.
pub(crate) fn outbox_item<R>(row: &R) -> Result<OutboxItem, StoreError>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(OutboxItem {
        id: row.try_get("id")?,
        direction: parse_direction(row.try_get("direction")?, "outbox")?,
        consumer_key: row.try_get("consumer_key")?,
        payload: parse_payload(row.try_get("payload")?, "outbox")?,
        trace_context: row.try_get("trace_context")?,
        attempts: attempts(row.try_get("attempts")?),
        last_error: row.try_get("last_error")?,
        streak: streak(row.try_get("streak_kind")?, row.try_get("streak")?),
        created_at_ms: row.try_get("created_at")?,
        claimed_at_ms: row.try_get("claimed_at")?,
    })
}

/// The streak columns as a [`Streak`] (none without a kind or a count).
fn streak(kind: Option<String>, count: i64) -> Option<Streak> {
    let count = attempts(count);
    kind.filter(|_| count > 0)
        .map(|kind| Streak { kind, count })
}

#[cfg(test)]
mod tests {
    use super::positional;

    #[test]
    fn numbered_parameters_become_positional_and_nothing_else_changes() {
        assert_eq!(
            positional(
                "UPDATE t SET a = $1, b = $12 WHERE c = $1 AND json_extract(d, '$.x') = '$'"
            ),
            "UPDATE t SET a = ?1, b = ?12 WHERE c = ?1 AND json_extract(d, '$.x') = '$'"
        );
        assert_eq!(positional("SELECT 1"), "SELECT 1");
        assert_eq!(positional("$"), "$");
    }
}
