//! Agent events in sequence order per dialog, whatever order their webhooks arrive in.
//!
//! LivePerson numbers every event of a dialog from 0 (the consumer's messages, the agent's, the
//! accept statuses) and notifies the app of each. Webhooks can still arrive out of order:
//! count-based retries have no ordering guarantee, and TTL mode gives up ordering for a
//! conversation after its 4 s drain wait (docs/protocol/liveperson.md §7.5); §13 asks to "order by sequence within a
//! dialog if delivery is out of order".
//!
//! The next expected sequence of each dialog is kept in the store (shared by every instance). An
//! event whose predecessors have not all been seen is *parked* in the store, one row per event
//! (so concurrent instances never overwrite each other's), and released when the gap closes, or
//! after [`HOLD`] at the latest: a gap may never close (an event LivePerson dropped after its
//! retries, or one the app is not notified of). Releasing goes through the to-channel outbox with
//! the event's dedup key, so a release repeated after a crash or by two instances queues it once.
//!
//! Several instances: any instance may take any webhook, so one dialog's events may be handled by
//! several processes at once (the lock here is per process). Order still holds: an event is
//! queued only when every predecessor was queued first (the next expected sequence is saved
//! after them, and only ever raised, [`switchboard_store::Store::raise_state`]) or given up
//! after [`HOLD`]; each process queues a dialog's events in ascending order, and one queued
//! twice is dropped by its dedup key. A race can only make an event wait [`HOLD`] for a release.
//! Every process sweeps the store for parked events whose wait is over every [`SWEEP`],
//! whoever parked them: the process that parked an event may have died with its timer.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::failures::store_failure;
use super::jobs::ToChannelJob;
use super::{Failure, Routing};

/// State scope: the next expected sequence per dialog.
pub(super) const NEXT_SCOPE: &str = "lp-next";
/// State scope: parked events, keyed `{dialog}:{sequence:020}`.
pub(super) const PARK_SCOPE: &str = "lp-park";
/// The longest an event waits for its predecessors.
pub(super) const HOLD: Duration = Duration::from_secs(2);
/// Locks striping the dialogs of this process (one dialog's events are ordered one at a time).
pub(super) const LOCK_STRIPES: usize = 64;
/// How often each process looks for parked events whose wait is over.
pub(super) const SWEEP: Duration = Duration::from_secs(2);

/// What a sequenced event of a known consumer's dialog turned into: work for the consumer's
/// channel, or nothing (an echo, a status the channel does not show) that still takes its place
/// in the sequence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Planned {
    /// The consumer's outbox queue.
    pub consumer_key: String,
    /// The job, if the event is delivered.
    pub job: Option<ToChannelJob>,
    /// Its webhook dedup key.
    pub dedup: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ParkedRow {
    /// When it was parked (ms since the epoch).
    at_ms: i64,
    planned: Planned,
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn park_key(dialog: &str, sequence: i64) -> String {
    format!("{dialog}:{sequence:020}")
}

impl Routing {
    pub(super) fn dialog_lock(&self, dialog: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        dialog.hash(&mut hasher);
        &self.inner.dialog_locks[(hasher.finish() as usize) % LOCK_STRIPES]
    }

    /// Takes the event with `sequence` of `dialog` (a [`super::jobs::dialog_key`]) through the
    /// sequence order: forwards it now if every predecessor was seen, else parks it.
    pub(super) async fn in_order(
        &self,
        dialog: &str,
        sequence: i64,
        planned: Planned,
    ) -> Result<(), Failure> {
        let _turn = self.dialog_lock(dialog).lock().await;
        let store = &self.inner.store;
        // The next expected sequence and what is parked, in one round trip: most events come
        // in order, and their release needs both.
        let (next, parked) = store
            .state_and_prefixed(NEXT_SCOPE, dialog, PARK_SCOPE, &format!("{dialog}:"))
            .await
            .map_err(store_failure)?;
        let next = next
            .and_then(|v| v.parse::<i64>().ok())
            // Every dialog counts from 0 (docs/protocol/liveperson.md §5.3 and §6). Where the docs claim sequences
            // "double" (docs/protocol/liveperson.md §12.5, [CONFLICT]) the gaps would only cost each event HOLD.
            .unwrap_or(0);
        match next {
            // Late (its place was given up) or a duplicate (the dedup key drops it).
            next if sequence < next => self.forward(&planned, None).await,
            next if sequence > next => {
                let row = ParkedRow {
                    at_ms: now_ms(),
                    planned,
                };
                let value =
                    serde_json::to_string(&row).map_err(|e| Failure::dead(e.to_string()))?;
                store
                    .save_state(PARK_SCOPE, &park_key(dialog, sequence), &value)
                    .await
                    .map_err(store_failure)?;
                metrics::counter!(crate::metrics::LP_WEBHOOKS, "outcome" => "parked").increment(1);
                self.release_later(dialog.to_owned());
                Ok(())
            }
            // The expected one with nothing parked behind it (most events): stored with the
            // dialog's new next sequence in one transaction.
            _ if parked.is_empty() => {
                self.forward(&planned, Some((NEXT_SCOPE, dialog, sequence + 1)))
                    .await
            }
            // The expected one, then what it lets through.
            _ => {
                self.forward(&planned, None).await?;
                self.release(dialog, sequence + 1, Some(parked)).await
            }
        }
    }

    /// Forwards the parked events that follow `next` without a gap, and those whose wait is
    /// over (giving up the gap before them), then saves the new next expected sequence.
    /// `parked`: the dialog's parked rows when the caller just read them under the dialog's
    /// lock (one parked meanwhile by another instance waits for the sweep).
    async fn release(
        &self,
        dialog: &str,
        mut next: i64,
        parked: Option<Vec<(String, String)>>,
    ) -> Result<(), Failure> {
        let store = &self.inner.store;
        let prefix = format!("{dialog}:");
        let parked = match parked {
            Some(parked) => parked,
            None => store
                .states_with_prefix(PARK_SCOPE, &prefix)
                .await
                .map_err(store_failure)?,
        };
        let hold = i64::try_from(HOLD.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        for (key, value) in parked {
            let Some(sequence) = key
                .strip_prefix(&prefix)
                .and_then(|s| s.parse::<i64>().ok())
            else {
                continue;
            };
            let row = serde_json::from_str::<ParkedRow>(&value).ok();
            let expired = row
                .as_ref()
                .is_none_or(|r| now.saturating_sub(r.at_ms) >= hold);
            if sequence > next && !expired {
                break;
            }
            if sequence > next {
                tracing::warn!(
                    dialog,
                    missing_from = next,
                    missing_to = sequence - 1,
                    "LivePerson events never arrived; forwarding the later ones"
                );
            }
            if let Some(row) = row {
                self.forward(&row.planned, None).await?;
            }
            store
                .delete_state(PARK_SCOPE, &key)
                .await
                .map_err(store_failure)?;
            next = next.max(sequence + 1);
        }
        // Raised, never lowered: another instance may have moved it further meanwhile.
        store
            .raise_state(NEXT_SCOPE, dialog, next)
            .await
            .map(|_| ())
            .map_err(store_failure)
    }

    /// Releases what is parked for `dialog` once its wait is over, in the background.
    fn release_later(&self, dialog: String) {
        let routing = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(HOLD + Duration::from_millis(50)).await;
            routing.release_expired(&dialog).await;
        });
    }

    /// Releases the parked events of `dialog` that waited long enough.
    async fn release_expired(&self, dialog: &str) {
        let _turn = self.dialog_lock(dialog).lock().await;
        let next = match self.inner.store.load_state(NEXT_SCOPE, dialog).await {
            Ok(next) => next.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, dialog, "cannot release parked LivePerson events yet");
                return self.release_later(dialog.to_owned());
            }
        };
        if let Err(failure) = self.release(dialog, next, None).await {
            let reason = failure.into_reason();
            tracing::warn!(%reason, dialog, "cannot release parked LivePerson events yet");
            self.release_later(dialog.to_owned());
        }
    }

    /// Until shutdown, every [`SWEEP`] (and at start, for events parked before a restart):
    /// releases the dialogs with a parked event whose wait is over, whichever process parked
    /// it.
    pub(super) async fn sweep_parked(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.release_overdue().await;
            tokio::select! {
                _ = tokio::time::sleep(SWEEP) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn release_overdue(&self) {
        let rows = match self.inner.store.states_with_prefix(PARK_SCOPE, "").await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list parked LivePerson events");
                return;
            }
        };
        let hold = i64::try_from(HOLD.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let dialogs: std::collections::BTreeSet<String> = rows
            .into_iter()
            .filter(|(_, value)| {
                serde_json::from_str::<ParkedRow>(value)
                    .map_or(true, |row| now.saturating_sub(row.at_ms) >= hold)
            })
            .filter_map(|(key, _)| key.rsplit_once(':').map(|(d, _)| d.to_owned()))
            .collect();
        for dialog in dialogs {
            self.release_expired(&dialog).await;
        }
    }

    /// Stores the planned event for its channel, and with `raise` the state raised in the
    /// same transaction (raised alone when the event has nothing to send).
    async fn forward(
        &self,
        planned: &Planned,
        raise: Option<(&str, &str, i64)>,
    ) -> Result<(), Failure> {
        let Some(job) = &planned.job else {
            if let Some((scope, key, value)) = raise {
                self.inner
                    .store
                    .raise_state(scope, key, value)
                    .await
                    .map_err(store_failure)?;
            }
            return Ok(());
        };
        let stored = self
            .enqueue_for_channel(&planned.consumer_key, job, planned.dedup.as_deref(), raise)
            .await?;
        metrics::counter!(
            crate::metrics::LP_WEBHOOKS,
            "outcome" => if stored { "accepted" } else { "duplicate" }
        )
        .increment(1);
        Ok(())
    }
}
