//! The router: durable outboxes between channels and LivePerson, and the workers that drain
//! them in order per consumer (docs/architecture.md "Data flow").
//!
//! - [`StoreSink`]: channels' `submit` writes to the to-LivePerson outbox.
//! - [`LpWebhook`]: LivePerson's webhook writes to the to-channel outbox.
//! - [`Routing::spawn_workers`]: one worker per direction claims the head event of each
//!   consumer's queue (several processes may share one PostgreSQL store), delivers it, and
//!   completes, retries later or dead-letters it.

mod adoption;
mod echo;
mod failures;
mod identity;
pub mod jobs;
mod media;
mod order;
mod sink;
pub mod timeline;
mod to_channel;
mod to_liveperson;
mod typing;
mod unconfirmed;
mod webhook;

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;
use std::time::Duration;

use switchboard_liveperson::{Engine, RetryPolicy};
use switchboard_store::{Direction, OutboxItem, Store};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use media::MEDIA_LINK_TTL;
pub use sink::{INBOUND_DEDUP_TTL, StoreSink, WriteGate};
pub use webhook::{LpWebhook, WEBHOOK_DEDUP_TTL};

use crate::instances::ChannelSet;
use crate::metrics as m;
use crate::telemetry::spans;
use tracing::Instrument as _;

/// How often idle workers look for work other processes queued or retries that became due.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Tuning of the workers.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// Items claimed at once per direction (each a different consumer).
    pub batch: usize,
    /// How long a claimed item is reserved for this process before another may take it.
    pub lease: Duration,
    /// LivePerson's retry policy (its `scale` also scales channel retries).
    pub retry: RetryPolicy,
    /// Longest a channel's `deliver` may take.
    pub deliver_timeout: Duration,
    /// `server.public_url`: where media links point (agents' files for channels that can only
    /// carry a link). Without it such files become a text notice.
    pub public_url: Option<String>,
    /// `store.max_attempts`: an event that failed this many times (in either direction, for
    /// any reason, a panic included) is dead-lettered with its last error instead of being
    /// retried again, so that no consumer's queue waits behind it forever.
    pub max_attempts: u32,
    /// `store.max_age_secs`: an event older than this that fails once more is dead-lettered
    /// the same way.
    pub max_age: Duration,
    /// `liveperson.manifest.retention_time`: how long LivePerson keeps retrying a webhook,
    /// the longest an echo can be awaited (see [`echo`]).
    pub webhook_retention: Duration,
    /// Where the stages of every event are recorded (`switchboard trace`); `None` when
    /// `store.trace_retention` turned tracing off.
    pub trace: Option<switchboard_store::TraceLog>,
    /// `store.trace_retention`: trace rows older than this are pruned.
    pub trace_retention: Duration,
}

/// The default of [`RoutingSettings::max_attempts`]: at LivePerson's retry delays (up to 8
/// minutes apart) about 13 hours of failures, at channels' (up to 5 minutes) about 8.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 100;
/// The default of [`RoutingSettings::max_age`]: three days, LivePerson's longest webhook
/// retention (`retention_time` ≤ 259200 s).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3 * 24 * 3600);
/// The default of [`RoutingSettings::webhook_retention`]: the manifest's default
/// `retention_time`, one day.
pub const DEFAULT_WEBHOOK_RETENTION: Duration = Duration::from_secs(86_400);
/// The default of [`RoutingSettings::trace_retention`]: a week.
pub const DEFAULT_TRACE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest delay a channel's `Retry-After` hint is honoured for; a longer one (up to
/// `u64::MAX` seconds, as a platform may send) is treated as this.
const MAX_CHANNEL_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            batch: 64,
            lease: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            deliver_timeout: Duration::from_secs(30),
            public_url: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: DEFAULT_MAX_AGE,
            webhook_retention: DEFAULT_WEBHOOK_RETENTION,
            trace: None,
            trace_retention: DEFAULT_TRACE_RETENTION,
        }
    }
}

/// Everything the workers and the webhook share.
#[derive(Debug, Clone)]
pub struct Routing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    engine: Engine,
    channels: Arc<ChannelSet>,
    settings: RoutingSettings,
    worker_id: String,
    wake_lp: Arc<Notify>,
    wake_channel: Arc<Notify>,
    /// One lock per stripe of dialogs, so one dialog's events are put in order one at a time.
    dialog_locks: Vec<tokio::sync::Mutex<()>>,
    /// The consumer of each conversation seen lately (see [`webhook::KnownConversations`]).
    known: webhook::KnownConversations,
    /// Media links, when there is a public URL.
    media: Option<media::MediaLinks>,
    /// `sent` trace entries waiting for their attempt's (see [`timeline`]).
    pending_sent: timeline::PendingSent,
}

/// What became of one outbox item.
#[derive(Debug)]
enum Failure {
    /// Try again after the delay. `streak` names the condition the attempt met, when the
    /// worker gives up after so many of them in a row (see [`switchboard_store::Streak`]).
    Retry {
        after: Duration,
        reason: String,
        streak: Option<&'static str>,
    },
    /// Not a failure: the item waits for something to happen elsewhere (LivePerson's echo),
    /// and is looked at again after the delay. It does not count as an attempt
    /// (`store.max_attempts`), so the wait is bounded by its own deadline and by
    /// `store.max_age_secs` only.
    Wait {
        after: Duration,
        reason: String,
        streak: &'static str,
    },
    /// Keep it in the dead-letter table.
    Dead { reason: String },
}

impl Failure {
    fn dead(reason: impl Into<String>) -> Self {
        Failure::Dead {
            reason: reason.into(),
        }
    }

    /// Why: the reason of a retry or a wait, or of the dead letter.
    fn into_reason(self) -> String {
        match self {
            Failure::Retry { reason, .. }
            | Failure::Wait { reason, .. }
            | Failure::Dead { reason } => reason,
        }
    }

    /// Try again after `after`, for no condition in particular.
    fn retry(after: Duration, reason: impl Into<String>) -> Self {
        Failure::Retry {
            after,
            reason: reason.into(),
            streak: None,
        }
    }
}

impl Routing {
    /// Builds the router. `wake_lp` is the [`StoreSink`]'s notifier.
    pub fn new(
        store: Store,
        engine: Engine,
        channels: Arc<ChannelSet>,
        settings: RoutingSettings,
        wake_lp: Arc<Notify>,
    ) -> Self {
        let media = settings.public_url.as_deref().map(media::MediaLinks::new);
        Self {
            inner: Arc::new(Inner {
                store,
                engine,
                channels,
                settings,
                worker_id: format!("sb-{}", uuid::Uuid::new_v4()),
                wake_lp,
                wake_channel: Arc::new(Notify::new()),
                dialog_locks: (0..order::LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                known: webhook::KnownConversations::default(),
                media,
                pending_sent: timeline::PendingSent::default(),
            }),
        }
    }

    /// The webhook handler for `POST /webhooks/liveperson`.
    pub fn webhook(&self) -> LpWebhook {
        LpWebhook::new(self.clone())
    }

    /// Starts both workers and the gauge updater; they stop when `shutdown` turns true,
    /// after finishing the items they hold.
    pub fn spawn_workers(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let to_lp = {
            let r = self.clone();
            let wake = self.inner.wake_lp.clone();
            run_worker(
                self.clone(),
                Direction::ToLivePerson,
                wake,
                shutdown.clone(),
                move |item, leased| {
                    let r = r.clone();
                    async move {
                        r.keeping_lease(item.id, leased, r.process_to_lp(item))
                            .await
                    }
                },
            )
        };
        let to_channel = {
            let r = self.clone();
            let wake = self.inner.wake_channel.clone();
            run_worker(
                self.clone(),
                Direction::ToChannel,
                wake,
                shutdown.clone(),
                move |item, leased| {
                    let r = r.clone();
                    async move {
                        r.keeping_lease(item.id, leased, r.process_to_channel(item))
                            .await
                    }
                },
            )
        };
        // Until now this instance did not answer LivePerson's webhooks: echoes awaited after a
        // restart may come one webhook retry later (see `echo`). Recorded before the first
        // claim, so that no echo wait is measured without it.
        let store = self.inner.store.clone();
        let to_lp = async move {
            echo::webhooks_failed(&store).await;
            to_lp.await
        };
        vec![
            tokio::spawn(to_lp),
            tokio::spawn(to_channel),
            tokio::spawn(self.clone().sweep_parked(shutdown.clone())),
            tokio::spawn(self.clone().prune_trace(shutdown.clone())),
            tokio::spawn(self.clone().purge_dedup_keys(shutdown.clone())),
            tokio::spawn(self.clone().gauges(shutdown)),
        ]
    }

    /// Deletes trace rows older than `store.trace_retention`, every minute, in small batches
    /// (each a short transaction of its own, so the hot writes never wait long behind it).
    async fn prune_trace(self, mut shutdown: watch::Receiver<bool>) {
        if self.inner.settings.trace.is_none() {
            return;
        }
        let retention = self.inner.settings.trace_retention;
        loop {
            loop {
                match self
                    .inner
                    .store
                    .prune_trace(retention, timeline::PRUNE_BATCH)
                    .await
                {
                    Ok(n) if n as usize >= timeline::PRUNE_BATCH => {
                        tracing::debug!(pruned = n, "old trace rows removed");
                        tokio::task::yield_now().await;
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot prune the trace");
                        break;
                    }
                }
                if *shutdown.borrow() {
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(timeline::PRUNE_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Publishes outbox depths and dead letters as gauges every few seconds.
    async fn gauges(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let store = &self.inner.store;
            for direction in [Direction::ToLivePerson, Direction::ToChannel] {
                if let Ok(n) = store.pending(direction).await {
                    metrics::gauge!(m::QUEUE_DEPTH, "queue" => direction.as_str()).set(n as f64);
                }
            }
            if let Ok(n) = store.dead_letter_count().await {
                metrics::gauge!(m::DEAD_LETTERS).set(n as f64);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Removes expired dedup keys (platform message ids past their retry window) every few
    /// seconds, so the dedup table stays as large as the platforms' retry windows need.
    async fn purge_dedup_keys(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.inner.store.purge_expired().await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired dedup keys removed"),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot remove expired dedup keys now"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Applies a processing result to the item.
    ///
    /// A store that cannot record it right now (SQLite locked by another process beyond its
    /// busy timeout, a PostgreSQL failover) is asked again with a growing pause, for up to
    /// half the lease ([`Routing::store_patience`]): giving up at once would leave the item
    /// leased by nobody working on it, so its consumer would stall until the lease ran out
    /// and the finished item would then be done a second time.
    async fn finish(&self, item: &OutboxItem, direction: Direction, result: Result<(), Failure>) {
        let result = self.give_up_if_exhausted(item, direction, result);
        self.trace_outcome(item, &result);
        let label = direction.to_string();
        let instance = webhook::split_key(&item.consumer_key)
            .map(|(instance, _)| instance.to_owned())
            .unwrap_or_default();
        // The consumer's id is a phone number on SMS: logs show it masked.
        let consumer = webhook::masked_key(&item.consumer_key);
        match &result {
            Ok(()) => spans::attempt_outcome("delivered", None, None),
            Err(Failure::Retry { after, reason, .. }) => {
                spans::attempt_outcome("retry", Some(*after), Some(reason));
                metrics::counter!(m::DELIVERY_FAILURES, "direction" => label.clone(), "channel" => instance, "outcome" => "retry")
                    .increment(1);
                tracing::warn!(id = item.id, consumer = %consumer, attempts = item.attempts + 1,
                    retry_in_ms = after.as_millis() as u64, %reason, "{label}: will retry");
            }
            Err(Failure::Wait { after, reason, .. }) => {
                spans::attempt_outcome("wait", Some(*after), None);
                tracing::info!(id = item.id, consumer = %consumer,
                    look_again_in_ms = after.as_millis() as u64, %reason, "{label}: waiting");
            }
            Err(Failure::Dead { reason }) => {
                spans::attempt_outcome("dead_letter", None, Some(reason));
                metrics::counter!(m::DELIVERY_FAILURES, "direction" => label.clone(), "channel" => instance, "outcome" => "dead_letter")
                    .increment(1);
                tracing::error!(id = item.id, consumer = %consumer, %reason, "{label}: dead-lettered");
            }
        }
        let patience = self.store_patience();
        match persist(&label, patience, || self.store_result(item, &result)).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                id = item.id,
                "{label}: lease lost before the result was recorded; another worker repeats it"
            ),
            Err(e) => tracing::error!(id = item.id, error = %e,
                "{label}: cannot record the result; the item is repeated when its lease ends"),
        }
    }

    /// A retry of an item that already failed `max_attempts` times, or is older than
    /// `max_age`, becomes a dead letter carrying why it was given up and its last error.
    fn give_up_if_exhausted(
        &self,
        item: &OutboxItem,
        direction: Direction,
        result: Result<(), Failure>,
    ) -> Result<(), Failure> {
        let (reason, counted) = match &result {
            Err(Failure::Retry { reason, .. }) => (reason, 1),
            Err(Failure::Wait { reason, .. }) => (reason, 0),
            _ => return result,
        };
        let settings = &self.inner.settings;
        let attempts = item.attempts.saturating_add(counted);
        // Both times by the store's clock (the database's on PostgreSQL).
        let age = Duration::from_millis(
            u64::try_from(item.claimed_at_ms.saturating_sub(item.created_at_ms)).unwrap_or(0),
        );
        let why = if counted > 0 && attempts >= settings.max_attempts {
            ("attempts", format!("gave up after {attempts} attempts"))
        } else if age >= settings.max_age {
            (
                "age",
                format!("gave up after {} s in the outbox", age.as_secs()),
            )
        } else {
            return result;
        };
        metrics::counter!(m::GIVEN_UP, "direction" => direction.to_string(), "limit" => why.0)
            .increment(1);
        Err(Failure::dead(format!("{}; last error: {reason}", why.1)))
    }

    /// How long a write made while holding an item is tried again ([`persist`]): half the
    /// lease. Leases are renewed every third of it, so the item is still this worker's for
    /// that long, and no other claim (not even this worker's own) can start it meanwhile.
    fn store_patience(&self) -> Duration {
        self.inner.settings.lease / 2
    }

    /// One attempt at storing `result` for `item`: false when the lease is no longer ours.
    async fn store_result(
        &self,
        item: &OutboxItem,
        result: &Result<(), Failure>,
    ) -> Result<bool, switchboard_store::StoreError> {
        let (store, worker) = (&self.inner.store, &self.inner.worker_id);
        match result {
            Ok(()) => store.complete(item.id, worker).await,
            Err(Failure::Retry {
                after,
                reason,
                streak,
            }) => {
                store
                    .retry_for(item.id, worker, *after, reason, *streak)
                    .await
            }
            Err(Failure::Wait {
                after,
                reason,
                streak,
            }) => {
                store
                    .postpone(item.id, worker, *after, reason, streak)
                    .await
            }
            Err(Failure::Dead { reason }) => store.dead_letter(item.id, worker, reason).await,
        }
    }

    /// Runs `work` on claimed item `id` while renewing the item's lease every third of it, so
    /// that an item taking longer than the lease (a slow channel, a loaded machine) is not
    /// claimed and repeated by another process while this one still works on it. If this
    /// process dies, the renewals stop and the lease runs out as before.
    ///
    /// Work goes on only while the lease is surely this worker's: `leased` is when the claim
    /// was asked for, so the lease (computed by the database, later) lasts at least until
    /// `leased` + lease by this host's monotonic clock, whatever its wall clock says, and each
    /// renewal moves that bound. When a renewal finds the item taken over, or the store
    /// cannot renew it before the bound is near, the work is dropped where it stands (no
    /// further call to the platform; one in flight is cut off, as a crash would cut it, and
    /// the text's "sending" mark makes its successor check LivePerson's echo first) and the
    /// item is handed back as a retry.
    async fn keeping_lease(
        &self,
        id: i64,
        leased: Instant,
        work: impl std::future::Future<Output = Result<(), Failure>>,
    ) -> Result<(), Failure> {
        tokio::select! {
            output = work => output,
            reason = self.lease_guard(id, leased) => {
                metrics::counter!(m::LEASES_LOST).increment(1);
                tracing::warn!(id, %reason, "stopped working on an item whose lease is not surely ours");
                Err(Failure::retry(Duration::ZERO, reason))
            }
        }
    }

    /// Renews item `id`'s lease until it cannot be kept; then says why.
    async fn lease_guard(&self, id: i64, leased: Instant) -> String {
        let inner = &self.inner;
        let lease = inner.settings.lease;
        let every = (lease / 3).max(Duration::from_millis(100));
        // Stop a little before the bound: the work's next step must not start at its edge.
        let margin = lease / 10;
        let mut confirmed = leased;
        let mut next = leased + every;
        loop {
            let stop_at = later(confirmed, lease.saturating_sub(margin));
            let renewal = async {
                tokio::time::sleep_until(next).await;
                let asked = Instant::now();
                let renewed = inner.store.renew_lease(id, &inner.worker_id, lease).await;
                (asked, renewed)
            };
            tokio::select! {
                () = tokio::time::sleep_until(stop_at) => {
                    return "the store could not renew the lease in time".to_owned();
                }
                (asked, renewed) = renewal => match renewed {
                    Ok(true) => {
                        tracing::debug!(id, "lease renewed");
                        confirmed = asked;
                        next = later(asked, every);
                    }
                    Ok(false) => return "another worker took the item over".to_owned(),
                    Err(e) => {
                        tracing::warn!(id, error = %e, "cannot renew a lease");
                        next = later(Instant::now(), every / 3);
                    }
                },
            }
        }
    }

    /// A channel-side delay: 1 s doubling to 5 minutes, at least the channel's `after`.
    fn channel_backoff(&self, attempts: u32, after: Option<Duration>) -> Duration {
        let exp = Duration::from_secs(1u64 << attempts.min(9)).min(Duration::from_secs(300));
        let hint = after.unwrap_or_default().min(MAX_CHANNEL_RETRY_AFTER);
        scaled(exp.max(hint), self.inner.settings.retry.scale)
    }
}

/// `d` × `scale` (`liveperson.retry_scale`), saturating: `Duration::mul_f64` panics when the
/// product overflows (a `Retry-After: 18446744073709551615` from a channel's platform) or
/// when `scale` is not a finite non-negative number.
pub(crate) fn scaled(d: Duration, scale: f64) -> Duration {
    let scale = if scale.is_finite() {
        scale.max(0.0)
    } else {
        1.0
    };
    Duration::try_from_secs_f64(d.as_secs_f64() * scale).unwrap_or(Duration::MAX)
}

/// `at` + `d`, or a century from now where that overflows (a lease of `u64::MAX` seconds).
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Runs a store write again, with a pause growing from 50 ms to 5 s, while the store fails
/// (SQLite locked by another process beyond its busy timeout, a PostgreSQL failover), for up
/// to `patience`; then gives its last error. For writes made while holding an item, whose
/// loss would cost more than the wait: a result, a progress mark, a sequence for receipts.
pub(crate) async fn persist<T, F, Fut>(
    what: &str,
    patience: Duration,
    mut write: F,
) -> Result<T, switchboard_store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, switchboard_store::StoreError>>,
{
    let give_up = later(Instant::now(), patience);
    let mut pause = Duration::from_millis(50);
    loop {
        match write().await {
            Err(e) if later(Instant::now(), pause) < give_up => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64,
                    "{what}: the store cannot take a write yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Claims and processes items until shutdown, then finishes the items it holds.
///
/// Each claimed item runs as its own task, and the worker claims more while they run (up to
/// `batch` at once): a claim never returns an item of a consumer whose head item is leased,
/// so order per consumer holds, and one slow or stuck delivery holds up only its own
/// consumer, never the others. A task that finished its item goes on with the next item of
/// the same consumer ([`Store::claim_next_of`](switchboard_store::Store::claim_next_of), an
/// index lookup), so a busy consumer's queue drains without searching the whole outbox for
/// every item; while every slot is taken it ends instead, so that the next claim serves the
/// consumers waiting longest (oldest items first) and none starves. An item whose lease ran out while this worker still processes
/// it may come back in a later claim: that claim only renews the lease, the item is not
/// started twice. A task that panics loses nothing: its item stays leased and is claimed
/// again when the lease ends.
async fn run_worker<F, Fut>(
    routing: Routing,
    direction: Direction,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    process: F,
) where
    F: Fn(OutboxItem, Instant) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Failure>> + Send + 'static,
{
    let process = Arc::new(process);
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let inner = &routing.inner;
    let mut in_flight = tokio::task::JoinSet::new();
    let running: Arc<std::sync::Mutex<HashSet<i64>>> = Arc::default();
    loop {
        while let Some(done) = in_flight.try_join_next() {
            log_if_panicked(direction, done);
        }
        if *shutdown.borrow() {
            break;
        }
        let room = inner.settings.batch.saturating_sub(in_flight.len());
        let asked = Instant::now();
        let claimed = if room == 0 {
            Ok(Vec::new())
        } else {
            inner
                .store
                .claim(direction, &inner.worker_id, room, inner.settings.lease)
                .await
        };
        match claimed {
            Ok(items) => {
                // Fewer than asked for: nothing else is claimable now. Claiming again at once
                // would only find nothing (a statement per item for nothing); wait for new
                // work, a finished item (its consumer's next one), or the idle poll.
                let exhausted = items.len() < room || room == 0;
                // Claims return at most one item per consumer: they may run side by side.
                for item in items {
                    let Some(guard) = Running::start(&running, item.id) else {
                        continue; // still being processed here: the claim renewed its lease
                    };
                    let (routing, process) = (routing.clone(), process.clone());
                    let (running, shutdown) = (running.clone(), shutdown.clone());
                    let busy = Busy::enter(&busy);
                    in_flight.spawn(async move {
                        let (mut item, mut guard, mut leased) = (item, guard, asked);
                        loop {
                            // A panic anywhere in the item's processing (not only in the
                            // channel's `deliver`) fails this attempt like a transient error:
                            // counted, retried, and dead-lettered once the attempts run out,
                            // instead of leaving the item to be claimed again forever.
                            let span = spans::attempt(&item);
                            let result = AssertUnwindSafe(process(item.clone(), leased))
                                .catch_unwind()
                                .instrument(span.clone())
                                .await
                                .unwrap_or_else(|panic| {
                                    metrics::counter!(m::ITEM_PANICS, "direction" => direction.to_string())
                                        .increment(1);
                                    let message = panic_message(panic.as_ref());
                                    tracing::error!(id = item.id, %direction, %message, "processing an item panicked");
                                    Err(Failure::retry(
                                        Duration::from_secs(1u64 << item.attempts.min(8)),
                                        format!("processing panicked: {message}"),
                                    ))
                                });
                            // Released before the outcome is recorded: once it is (a retry
                            // makes the item claimable again), a claim must be free to start
                            // it, or the item would stay leased by a worker not working on it.
                            // Until then it is still leased to this worker, so nobody else
                            // takes it meanwhile.
                            drop(guard);
                            routing.finish(&item, direction, result).instrument(span).await;
                            let inner = &routing.inner;
                            if *shutdown.borrow() || busy.count() >= inner.settings.batch {
                                break;
                            }
                            let asked = Instant::now();
                            let next = inner
                                .store
                                .claim_next_of(
                                    direction,
                                    &inner.worker_id,
                                    &item.consumer_key,
                                    inner.settings.lease,
                                )
                                .await;
                            let Ok(Some(next)) = next else { break };
                            let Some(next_guard) = Running::start(&running, next.id) else {
                                break;
                            };
                            (item, guard, leased) = (next, next_guard, asked);
                        }
                        drop(busy);
                    });
                }
                if exhausted {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                        Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                            log_if_panicked(direction, done);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(%direction, error = %e, "cannot claim work from the store");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        log_if_panicked(direction, done);
    }
    tracing::debug!(%direction, "worker stopped");
}

/// An item this worker is processing; forgotten when dropped (also when its task panics).
/// One running task of a worker, counted while it lives.
struct Busy(Arc<std::sync::atomic::AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count.clone())
    }

    /// How many tasks of the worker are running (this one included).
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

struct Running {
    ids: Arc<std::sync::Mutex<HashSet<i64>>>,
    id: i64,
}

impl Running {
    fn start(ids: &Arc<std::sync::Mutex<HashSet<i64>>>, id: i64) -> Option<Self> {
        let fresh = ids.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        fresh.then(|| Self {
            ids: ids.clone(),
            id,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The text of a panic's payload (`panic!` with a literal or a format string).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn log_if_panicked(direction: Direction, done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(%direction, "processing an item panicked; it is claimed again when its lease ends");
    }
}
