//! Prometheus metrics: one process-wide recorder, rendered at `GET /metrics`.
//!
//! Metric names are constants here so that every place that counts uses the same name.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// HTTP requests served, by route and status.
pub const HTTP_REQUESTS: &str = "switchboard_http_requests_total";
/// Inbound events accepted from channels, by instance and kind.
pub const EVENTS_IN: &str = "switchboard_events_in_total";
/// Inbound events dropped as duplicates of accepted ones, by instance.
pub const EVENTS_DUPLICATE: &str = "switchboard_events_duplicate_total";
/// Outbound events delivered to channels, by instance and kind.
pub const EVENTS_OUT: &str = "switchboard_events_out_total";
/// Delivery failures, by direction (`to_lp`, `to_channel`), channel instance (of the consumer
/// the event is for or from) and outcome (`retry`, `dead_letter`).
pub const DELIVERY_FAILURES: &str = "switchboard_delivery_failures_total";
/// Events waiting in a queue, by queue.
pub const QUEUE_DEPTH: &str = "switchboard_queue_depth";
/// Events kept in the dead-letter table.
pub const DEAD_LETTERS: &str = "switchboard_dead_letters";
/// Events sent to LivePerson, by kind of request.
pub const LP_SENT: &str = "switchboard_liveperson_requests_total";
/// LivePerson webhook events, by outcome (`accepted`, `duplicate`, `rejected`, `ignored`,
/// `stale`, `parked`, `orphaned`: waiting for its conversation, `unusable`: authentic but
/// unreadable, answered 200).
pub const LP_WEBHOOKS: &str = "switchboard_liveperson_webhooks_total";
/// Events refused because a queue was full, by queue.
pub const BACKPRESSURE: &str = "switchboard_backpressure_total";
/// `/media/…` requests refused with 429 because their client address failed too often.
pub const MEDIA_REFUSED: &str = "switchboard_media_rate_limited_total";
/// Items whose work was stopped because their lease could not be kept (taken over by another
/// worker, or not renewable in time): the item is retried, by whoever holds it.
pub const LEASES_LOST: &str = "switchboard_leases_lost_total";
/// Events given up (dead-lettered) because they failed `store.max_attempts` times or grew
/// older than `store.max_age_secs`, by direction and limit (`attempts`, `age`).
pub const GIVEN_UP: &str = "switchboard_events_given_up_total";
/// Attempts at an event that panicked (and were retried), by direction.
pub const ITEM_PANICS: &str = "switchboard_event_panics_total";

/// The process's Prometheus handle, installing the recorder on first use.
///
/// The recorder is global (the `metrics` facade has one per process), so tests that build
/// several apps in one process share it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests served, by route and status");
    metrics::describe_counter!(EVENTS_IN, "Inbound events accepted from channels");
    metrics::describe_counter!(EVENTS_DUPLICATE, "Inbound events dropped as duplicates");
    metrics::describe_counter!(EVENTS_OUT, "Outbound events delivered to channels");
    metrics::describe_counter!(
        DELIVERY_FAILURES,
        "Delivery failures by direction, channel instance and outcome"
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Events waiting in a queue");
    metrics::describe_counter!(BACKPRESSURE, "Events refused because a queue was full");
    metrics::describe_counter!(
        MEDIA_REFUSED,
        "Media link requests refused because their client address failed too often"
    );
    metrics::describe_counter!(
        LEASES_LOST,
        "Items whose work stopped because their lease could not be kept"
    );
    metrics::describe_counter!(
        GIVEN_UP,
        "Events dead-lettered after too many attempts or too long in the outbox"
    );
    metrics::describe_counter!(ITEM_PANICS, "Attempts at an event that panicked");
}
