//! How long to wait for LivePerson's echo of a text whose send may have arrived, before
//! sending it again.
//!
//! The Send API has no idempotency key (docs/protocol/liveperson.md §8): after a SEND whose answer was late, lost or
//! garbled, only the webhook notification of the consumer's own message (its echo) tells
//! whether LivePerson published it. Sending again before the echo could still come shows the
//! agent the message twice; waiting after it can no longer come stalls the consumer's later
//! messages, which queue behind this one.
//!
//! How late an echo can be follows from LivePerson's webhook retries in the mode the manifest
//! asks for (`retry.retention_time`, which `switchboard manifest` always sets, and which takes
//! precedence over `max_retries`; docs/protocol/liveperson.md §7.5 (b), developer-center
//! `pages/Documents/MessagingChannels/ConnectorAPI/Webhooks/retry-policy.md`): a notification
//! our endpoint did not take (an answer other than 200/201, none within 10 s, the connector
//! down) is retried after 2 s, 4 s, 8 s …, the gap capped at 5 minutes, until the retention
//! window ends, when it is dropped. So:
//!
//! - while our endpoint takes every notification, an echo is delivered at its first attempt,
//!   and a failure LivePerson saw (a request that timed out on its side) is retried within
//!   one capped gap: the echo is in by the last time webhooks failed here (or this instance
//!   started: while it was down they failed), or the mark, whichever is later, plus one
//!   capped gap and one delivery (LivePerson's read timeout);
//! - never later than the mark plus the retention window: past it LivePerson has dropped the
//!   notification and no echo will ever come.
//!
//! An installation made from another manifest that retries by count (`max_retries` without
//! `retention_time`: at most 5 retries 30 s apart, each allowed 10 s) is covered too: its
//! last retry comes within 200 s, inside the first bound.
//!
//! At the deadline the text is sent again. By then either LivePerson never published it (the
//! answer that never came was a request that never arrived), and sending it is the only way
//! the agent sees it, or LivePerson itself lost the echo, and a duplicate is the lesser harm:
//! the agent sees a message twice rather than never, and the consumer's next messages no
//! longer wait. What the deadline cannot see: webhook failures before the connector (a load
//! balancer or proxy that refused notifications while the connector was up) that outlast the
//! deadline, and a recovering installation's replay of stored events (IN TRANSITION), which
//! LivePerson does not bound.

use std::time::Duration;

use super::Routing;

/// The longest gap between two of LivePerson's webhook retries in retention mode.
pub(super) const MAX_RETRY_GAP: Duration = Duration::from_secs(5 * 60);
/// How long one delivery attempt may take before LivePerson counts it as failed: a 5 s
/// connect plus the 10 s within which the retry policy page wants an answer (docs/protocol/liveperson.md §7.2 [CONFLICT]:
/// the current delivery page says 5 s; the longer is assumed).
pub(super) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest pause between two looks for the echo: it is in the store as soon as the
/// webhook brings it, and the worker notices it at its next look.
const MAX_POLL: Duration = Duration::from_secs(60);

/// An answer to a LivePerson webhook taking this long counts as failed there (the retry
/// policy page: endpoints must "accept data within 10 seconds").
pub(super) const SLOW_ANSWER: Duration = Duration::from_secs(10);

/// State scope and key: the last time (unix ms, the store's clock) webhooks failed here, or
/// an instance started (while it was down they failed), shared by every instance.
pub(super) const HEALTH_SCOPE: &str = "lp-webhooks";
/// See [`HEALTH_SCOPE`].
pub(super) const FAILING_UNTIL: &str = "failing-until";

/// Unix milliseconds, by the store's clock (the database's on PostgreSQL).
pub(super) type Millis = i64;

/// Records that LivePerson's webhooks failed here until now (an instance started, or a
/// notification was answered with an error or too late): echoes of texts sent before may
/// come one retry gap later (see the module's doc). Best effort: a failure to record it is
/// logged.
pub(super) async fn webhooks_failed(store: &switchboard_store::Store) {
    if let Err(e) = store.raise_state_to_now(HEALTH_SCOPE, FAILING_UNTIL).await {
        tracing::warn!(error = %e, "cannot record that LivePerson's webhooks failed; echoes are awaited for less long");
    }
}

/// When to give up waiting for the echo of a text marked as sending at `marked_at`, given
/// that webhooks were last seen failing here at `failing_until` (see the module's doc), in
/// LivePerson's retention window `retention`. Durations are multiplied by `scale`
/// (`liveperson.retry_scale`), as every LivePerson-related wait is, so a test that scales the
/// simulator's webhook retries by the same factor keeps the real ratio.
pub(super) fn deadline(
    marked_at: Millis,
    failing_until: Millis,
    retention: Duration,
    scale: f64,
) -> Millis {
    let millis =
        |d: Duration| i64::try_from(super::scaled(d, scale).as_millis()).unwrap_or(i64::MAX);
    let after_health = marked_at
        .max(failing_until)
        .saturating_add(millis(MAX_RETRY_GAP + DELIVERY_TIMEOUT));
    let window_end = marked_at.saturating_add(millis(retention));
    after_health.min(window_end)
}

/// How long to wait before looking again, at `now`, after `looks` looks in a row: 1 s,
/// 2 s, 4 s … (scaled), at most [`MAX_POLL`], never past the deadline.
pub(super) fn next_look(now: Millis, deadline: Millis, looks: u32, scale: f64) -> Duration {
    let backoff = Duration::from_secs(1u64 << looks.min(16)).min(MAX_POLL);
    let left = Duration::from_millis(u64::try_from(deadline.saturating_sub(now)).unwrap_or(0));
    super::scaled(backoff, scale).min(left)
}

impl Routing {
    /// When a notification that LivePerson may owe us since `since` (a text's echo, a
    /// conversation's `ExConversationChangeNotification`) can no longer come:
    /// [`deadline`] with the last time webhooks failed here, shared by all instances.
    pub(super) async fn notification_deadline(&self, since: Millis) -> Millis {
        let failing_until = self
            .inner
            .store
            .load_state(HEALTH_SCOPE, FAILING_UNTIL)
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let settings = &self.inner.settings;
        deadline(
            since,
            failing_until,
            settings.webhook_retention,
            settings.retry.scale,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn with_healthy_webhooks_the_echo_is_awaited_one_capped_retry_gap_after_the_mark() {
        assert_eq!(deadline(1_000, 0, DAY, 1.0), 1_000 + 315_000);
    }

    #[test]
    fn webhooks_failing_after_the_mark_extend_the_wait_from_their_last_failure() {
        assert_eq!(deadline(1_000, 600_000, DAY, 1.0), 600_000 + 315_000);
    }

    #[test]
    fn the_wait_never_outlasts_the_retention_window() {
        let retention = Duration::from_secs(120);
        assert_eq!(deadline(1_000, 10_000_000, retention, 1.0), 1_000 + 120_000);
    }

    #[test]
    fn the_deadline_scales_with_the_retry_scale() {
        assert_eq!(deadline(0, 0, DAY, 0.01), 3_150);
    }

    #[test]
    fn looks_back_off_and_stop_at_the_deadline() {
        assert_eq!(next_look(0, 1_000_000, 0, 1.0), Duration::from_secs(1));
        assert_eq!(next_look(0, 1_000_000, 3, 1.0), Duration::from_secs(8));
        assert_eq!(next_look(0, 1_000_000, 40, 1.0), MAX_POLL);
        assert_eq!(
            next_look(990_000, 1_000_000, 40, 1.0),
            Duration::from_secs(10)
        );
    }
}
