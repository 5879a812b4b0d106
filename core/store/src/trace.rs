//! The timeline of every event (`switchboard trace`): one row per stage an event went
//! through, written by whichever instance did it, kept for `store.trace_retention`.
//!
//! Rows never cost the hot path a round trip of its own: the runtime hands them to a
//! [`TraceLog`], whose task writes whatever accumulated in one multi-row insert, on a SQLite
//! file through the writer thread (so they share the group commits of the hot writes), on
//! PostgreSQL in a transaction of their own. A row is written a moment after the write it
//! describes; a crash in between loses that row, never the event.
//!
//! Times are the store's clock (see [`crate::clock`]): on SQLite the host's reading when the
//! row was recorded, on PostgreSQL the database's when it was written, one clock for every
//! instance.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::clock::offset_ms;
use crate::db::Arg;
use crate::outbox::unexpected;
use crate::writer::{Write, Written};
use crate::{Backend, Direction, Store, StoreError};

/// The most rows one insert writes.
const MAX_ROWS_PER_INSERT: usize = 256;

/// The insert of trace rows, up to its `VALUES`; the columns after `at` are those of
/// `record_trace`'s `columns`.
const INSERT_TRACE: &str = "INSERT INTO trace (at, instance, direction, stage, channel,
     consumer, conversation_id, platform_id, platform_alias, item, detail) VALUES";
/// The values of one row, its time bound by the host (SQLite: see [`crate::clock`]).
const ONE_TRACE_ROW: &str = "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
/// The most rows the [`TraceLog`]'s task gathers before writing them.
const MAX_ROWS_GATHERED: usize = 1024;
/// How long the [`TraceLog`]'s task gathers rows after the first of a batch before writing
/// them: the rows of many messages share one transaction every so often, where writing as
/// they came added a commit (a WAL sync on SQLite, a round trip on PostgreSQL) to nearly every
/// message (docs/performance.md). `switchboard trace` shows a row this much later at most;
/// a shutdown flushes what is gathered.
const GATHER: std::time::Duration = std::time::Duration::from_millis(250);
/// Rows waiting for the [`TraceLog`]'s task beyond which new ones are dropped (and counted)
/// rather than making the hot path wait.
const QUEUE_CAPACITY: usize = 65_536;
/// How many rounds [`Store::trace_lookup`] follows links (an item to its rows, a platform id
/// to the rows naming it, a requeued event to its new item).
const LOOKUP_ROUNDS: usize = 6;
/// Values bound per `IN (…)` list.
const IN_CHUNK: usize = 500;

/// A stage of an event's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceStage {
    /// A channel or LivePerson's webhook handed the event over (possibly a dropped duplicate).
    Received,
    /// The event is in its outbox.
    Stored,
    /// One try to deliver it: its outcome, status or error, the retry delay chosen.
    Attempt,
    /// Delivered to its target (LivePerson's conversation and sequence, or the channel's id).
    Sent,
    /// The target confirmed it: LivePerson's echo, or the channel's delivery report.
    Confirmed,
    /// Given up, moved to the dead letters.
    DeadLettered,
    /// Put back from the dead letters into its outbox.
    Requeued,
}

impl TraceStage {
    /// The value stored in the `stage` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceStage::Received => "received",
            TraceStage::Stored => "stored",
            TraceStage::Attempt => "attempt",
            TraceStage::Sent => "sent",
            TraceStage::Confirmed => "confirmed",
            TraceStage::DeadLettered => "dead_lettered",
            TraceStage::Requeued => "requeued",
        }
    }
}

impl fmt::Display for TraceStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TraceStage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "received" => TraceStage::Received,
            "stored" => TraceStage::Stored,
            "attempt" => TraceStage::Attempt,
            "sent" => TraceStage::Sent,
            "confirmed" => TraceStage::Confirmed,
            "dead_lettered" => TraceStage::DeadLettered,
            "requeued" => TraceStage::Requeued,
            other => return Err(format!("unknown trace stage `{other}`")),
        })
    }
}

/// The name a trace gives a direction: `to_liveperson` or `to_channel`.
pub fn trace_direction(direction: Direction) -> &'static str {
    match direction {
        Direction::ToLivePerson => "to_liveperson",
        Direction::ToChannel => "to_channel",
    }
}

fn parse_trace_direction(s: &str) -> Result<Direction, StoreError> {
    match s {
        "to_liveperson" => Ok(Direction::ToLivePerson),
        "to_channel" => Ok(Direction::ToChannel),
        other => Err(StoreError::Corrupt {
            table: "trace",
            detail: format!("unknown direction `{other}`"),
        }),
    }
}

/// What one stage of one event records.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    /// Which way the event travels.
    pub direction: Direction,
    /// The stage.
    pub stage: TraceStage,
    /// The channel instance of the consumer.
    pub channel: Option<String>,
    /// The consumer's address as operators write it, `<instance>:<id>`.
    pub consumer: Option<String>,
    /// The LivePerson conversation, once known.
    pub conversation_id: Option<String>,
    /// The platform's id for the event (the channel's message id, or the id of the message
    /// sent).
    pub platform_id: Option<String>,
    /// The bare id an operator knows when `platform_id` is a composite one (Slack's `ts`,
    /// Telegram's `update_id`), so that either finds the event.
    pub platform_alias: Option<String>,
    /// The outbox id the event had, which ties its stages together.
    pub item: Option<i64>,
    /// Whatever else the stage knows, as a JSON object.
    pub detail: serde_json::Value,
}

impl TraceEntry {
    /// An entry of `stage` for an event travelling `direction`, with nothing else known yet.
    pub fn new(direction: Direction, stage: TraceStage) -> Self {
        Self {
            direction,
            stage,
            channel: None,
            consumer: None,
            conversation_id: None,
            platform_id: None,
            platform_alias: None,
            item: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }
}

/// A row of the timeline, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    /// Its id, increasing in the order rows were written.
    pub id: i64,
    /// When, by the store's clock (unix milliseconds).
    pub at_ms: i64,
    /// The connector process that recorded it.
    pub instance: String,
    /// What it records.
    pub entry: TraceEntry,
}

impl Store {
    /// Writes trace rows recorded by connector process `instance`, each with the host's time
    /// it was recorded at (used on SQLite; PostgreSQL uses its own clock), in one transaction
    /// on SQLite, in one insert per [`MAX_ROWS_PER_INSERT`] rows on PostgreSQL. [`TraceLog`]
    /// calls it off the hot path.
    pub async fn record_trace(
        &self,
        instance: &str,
        rows: &[(i64, TraceEntry)],
    ) -> Result<(), StoreError> {
        let columns = |entry: &TraceEntry| {
            [
                Arg::Text(instance.to_owned()),
                Arg::Text(trace_direction(entry.direction).to_owned()),
                Arg::Text(entry.stage.as_str().to_owned()),
                Arg::OptText(entry.channel.clone()),
                Arg::OptText(entry.consumer.clone()),
                Arg::OptText(entry.conversation_id.clone()),
                Arg::OptText(entry.platform_id.clone()),
                Arg::OptText(entry.platform_alias.clone()),
                Arg::OptInt(entry.item),
                Arg::Text(entry.detail.to_string()),
            ]
        };
        let writes = match self.backend() {
            // The writer thread runs one prepared single-row insert per row: no statement to
            // parse per batch, and no thousands of parameters to bind.
            Backend::Sqlite => vec![Write::ExecuteEach {
                sql: format!("{INSERT_TRACE} {ONE_TRACE_ROW}").into(),
                rows: rows
                    .iter()
                    .map(|(at, entry)| {
                        let mut args = vec![Arg::Int(*at)];
                        args.extend(columns(entry));
                        args
                    })
                    .collect(),
            }],
            // One round trip per chunk: a multi-row insert, timed by the database.
            Backend::Postgres => rows
                .chunks(MAX_ROWS_PER_INSERT)
                .map(|chunk| {
                    let mut args = Vec::with_capacity(chunk.len() * 10);
                    let mut values = Vec::with_capacity(chunk.len());
                    for (_, entry) in chunk {
                        let n = args.len();
                        let numbered: Vec<String> =
                            (n + 1..=n + 10).map(|i| format!("${i}")).collect();
                        values.push(format!("({}, {})", crate::clock::NOW, numbered.join(", ")));
                        args.extend(columns(entry));
                    }
                    let sql = format!("{INSERT_TRACE} {}", values.join(", "));
                    Write::Execute {
                        sql: self.timed(&sql, &mut args).into(),
                        args,
                    }
                })
                .collect(),
        };
        for write in writes {
            match self.write(write).await? {
                Written::Affected(_) => {}
                other => return Err(unexpected(other)),
            }
        }
        Ok(())
    }

    /// Deletes up to `batch` trace rows older than `retention` (oldest first) and returns
    /// how many; called repeatedly, in small batches, by the runtime's pruning task.
    pub async fn prune_trace(&self, retention: Duration, batch: usize) -> Result<u64, StoreError> {
        let args = vec![
            Arg::Int(offset_ms(retention)),
            Arg::Int(i64::try_from(batch).unwrap_or(i64::MAX)),
        ];
        self.execute_timed(
            "DELETE FROM trace WHERE id IN (
                 SELECT id FROM trace WHERE at < {now} - $1 ORDER BY id LIMIT $2
             )",
            args,
        )
        .await
    }

    /// How many trace rows are kept.
    pub async fn trace_count(&self) -> Result<u64, StoreError> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query("SELECT COUNT(*) AS n FROM trace")
                .fetch_one(pool)
                .await?
                .try_get("n")?
        });
        Ok(crate::db::count(n))
    }

    /// Every row of the events that `key` names, oldest first: `key` is a platform id (or
    /// its alias), a
    /// LivePerson conversation id or a consumer address (`<instance>:<id>`). The rows that
    /// name it directly are followed to their events (their outbox items, the platform ids
    /// those carry within the same channel, the items a requeue created). At most `limit`
    /// rows naming the key are looked at, the newest.
    pub async fn trace_lookup(
        &self,
        key: &str,
        limit: usize,
    ) -> Result<Vec<TraceRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut found: BTreeMap<i64, TraceRecord> = BTreeMap::new();
        for record in self
            .trace_select(
                "platform_id = $1 OR platform_alias = $1 OR conversation_id = $1 OR consumer = $1
                 ORDER BY id DESC LIMIT $2",
                vec![Arg::Text(key.to_owned()), Arg::Int(limit)],
            )
            .await?
        {
            found.insert(record.id, record);
        }
        let mut items_seen = HashSet::new();
        let mut ids_seen = HashSet::new();
        for _ in 0..LOOKUP_ROUNDS {
            let items: Vec<i64> = found
                .values()
                .filter_map(|r| r.entry.item)
                .filter(|item| items_seen.insert(*item))
                .collect();
            let ids: Vec<(Option<String>, String)> = found
                .values()
                .filter(|r| r.entry.item.is_some() || r.entry.stage != TraceStage::Received)
                .filter_map(|r| {
                    let id = r.entry.platform_id.clone()?;
                    Some((r.entry.channel.clone(), id))
                })
                .filter(|pair| ids_seen.insert(pair.clone()))
                .collect();
            if items.is_empty() && ids.is_empty() {
                break;
            }
            for chunk in items.chunks(IN_CHUNK) {
                let list = placeholders(chunk.len());
                let args = chunk.iter().map(|i| Arg::Int(*i)).collect();
                for record in self
                    .trace_select(&format!("item IN ({list})"), args)
                    .await?
                {
                    found.insert(record.id, record);
                }
            }
            for chunk in ids.chunks(IN_CHUNK) {
                let list = placeholders(chunk.len());
                let args = chunk.iter().map(|(_, id)| Arg::Text(id.clone())).collect();
                for record in self
                    .trace_select(&format!("platform_id IN ({list})"), args)
                    .await?
                {
                    // The same id in another channel is another platform's message.
                    let same_channel = chunk.iter().any(|(channel, id)| {
                        record.entry.platform_id.as_ref() == Some(id)
                            && &record.entry.channel == channel
                    });
                    if same_channel {
                        found.insert(record.id, record);
                    }
                }
            }
        }
        let mut records: Vec<TraceRecord> = found.into_values().collect();
        records.sort_by_key(|r| (r.at_ms, r.id));
        Ok(records)
    }

    async fn trace_select(
        &self,
        condition: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<TraceRecord>, StoreError> {
        let sql = format!(
            "SELECT id, at, instance, direction, stage, channel, consumer, conversation_id,
                    platform_id, platform_alias, item, detail
             FROM trace WHERE {condition}"
        );
        on_pool!(self, |pool| {
            let rows = bind_args!(sqlx::query(&sql), &args).fetch_all(pool).await?;
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                let detail: String = row.try_get("detail")?;
                let stage: String = row.try_get("stage")?;
                records.push(TraceRecord {
                    id: row.try_get("id")?,
                    at_ms: row.try_get("at")?,
                    instance: row.try_get("instance")?,
                    entry: TraceEntry {
                        direction: parse_trace_direction(row.try_get("direction")?)?,
                        stage: stage.parse().map_err(|detail| StoreError::Corrupt {
                            table: "trace",
                            detail,
                        })?,
                        channel: row.try_get("channel")?,
                        consumer: row.try_get("consumer")?,
                        conversation_id: row.try_get("conversation_id")?,
                        platform_id: row.try_get("platform_id")?,
                        platform_alias: row.try_get("platform_alias")?,
                        item: row.try_get("item")?,
                        detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
                            table: "trace",
                            detail: format!("detail is not JSON: {e}"),
                        })?,
                    },
                });
            }
            Ok(records)
        })
    }
}

/// `$1, $2, … $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

enum Command {
    Row(i64, TraceEntry),
    Flush(oneshot::Sender<()>),
}

/// Where the runtime records trace rows: [`TraceLog::record`] never waits; a task writes
/// what accumulated, in batches, through [`Store::record_trace`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TraceLog {
    commands: mpsc::Sender<Command>,
    dropped: Arc<AtomicU64>,
    clock: crate::clock::HostClock,
}

impl TraceLog {
    /// Starts the writing task (on the current Tokio runtime) for connector process
    /// `instance`; it ends when every handle is dropped.
    pub fn start(store: Store, instance: impl Into<String>) -> Self {
        let (commands, rx) = mpsc::channel(QUEUE_CAPACITY);
        let clock = store.inner.clock;
        tokio::spawn(run(store, instance.into(), rx));
        Self {
            commands,
            dropped: Arc::default(),
            clock,
        }
    }

    /// Queues `entry`, timed now. When the store falls so far behind that the queue is full,
    /// the row is dropped and counted ([`TraceLog::dropped`]): a trace is worth less than
    /// the event it describes.
    pub fn record(&self, entry: TraceEntry) {
        let at = self.clock.now_ms();
        if self.commands.try_send(Command::Row(at, entry)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(
                    dropped = n + 1,
                    "trace rows dropped: the store does not keep up"
                );
            }
        }
    }

    /// How many rows were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every row recorded before this call was written (or failed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Store, instance: String, mut rx: mpsc::Receiver<Command>) {
    let mut rows = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        // Gather what comes within GATHER of the first row (a flush writes at once).
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Row(at, entry) => rows.push((at, entry)),
                Command::Flush(done) => {
                    waiting.push(done);
                    break;
                }
            }
            if rows.len() < MAX_ROWS_GATHERED {
                next = tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten();
            }
        }
        if !rows.is_empty() {
            if let Err(e) = store.record_trace(&instance, &rows).await {
                tracing::warn!(error = %e, rows = rows.len(), "cannot write trace rows");
            }
            rows.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
