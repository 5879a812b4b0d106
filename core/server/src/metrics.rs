//! Prometheus metrics: one process-wide recorder, rendered at `GET /metrics`.
//!
//! Metric names are constants here so that every place that counts uses the same name, and
//! [`FAMILIES`] lists every one with its type and help text, so that each is described (a
//! `# HELP` line) from the first scrape on. Label vocabulary, the same in every family:
//!
//! - `channel`: the channel instance (the `<instance>` of `[channels.<instance>]`). Not
//!   `instance`, which Prometheus sets on every series to the scraped target.
//! - `direction`: `to_lp` (a consumer's event on its way to LivePerson) or `to_channel` (an
//!   agent's event on its way to a channel), as the store's `Direction` spells it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests served, by route and status.
pub const HTTP_REQUESTS: &str = "switchboard_http_requests_total";
/// Inbound events accepted from channels, by channel and kind.
pub const EVENTS_IN: &str = "switchboard_events_in_total";
/// Inbound events dropped as duplicates of accepted ones, by channel.
pub const EVENTS_DUPLICATE: &str = "switchboard_events_duplicate_total";
/// Outbound events delivered to channels, by channel and kind.
pub const EVENTS_OUT: &str = "switchboard_events_out_total";
/// Delivery failures, by direction, channel (of the consumer the event is for or from) and
/// outcome (`retry`, `dead_letter`).
pub const DELIVERY_FAILURES: &str = "switchboard_delivery_failures_total";
/// Events waiting in a queue, by queue (`inbox`, and the outboxes by direction).
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
/// Seconds spent handling one `POST /webhooks/liveperson`, verification to answer.
pub const LP_WEBHOOK_SECONDS: &str = "switchboard_liveperson_webhook_duration_seconds";
/// Seconds a channel instance took to handle one request to its endpoints (a platform's
/// webhook; for a web chat, also its polls), by channel.
pub const CHANNEL_WEBHOOK_SECONDS: &str = "switchboard_channel_webhook_duration_seconds";
/// Seconds one request to LivePerson took (a Send API request or a conversation request),
/// by request (`text`, `file`, `chat_state`, `accept_status`, `create_conversation`, ...).
pub const LP_SEND_SECONDS: &str = "switchboard_liveperson_send_duration_seconds";
/// Seconds one delivery to a channel took (the channel's `deliver`), by channel.
pub const CHANNEL_SEND_SECONDS: &str = "switchboard_channel_send_duration_seconds";
/// Always 1, labelled with the version (and the commit, when the build was told it): which
/// build each process runs.
pub const BUILD_INFO: &str = "switchboard_build_info";

/// The buckets of every latency histogram, in seconds: from a few milliseconds (a webhook
/// stored in SQLite) to 30 s (the default request timeout, and a web chat's long poll).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The commit the binary was built from, when `SWITCHBOARD_BUILD_COMMIT` was set at build
/// time (packagers set it); `unknown` otherwise.
pub const BUILD_COMMIT: &str = match option_env!("SWITCHBOARD_BUILD_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A latency distribution, in [`LATENCY_BUCKETS`].
    Histogram,
}

/// Every metric family Switchboard emits: its name, kind and help text. Tests check that
/// whatever a scrape shows is listed here, with a `# HELP` and a `# TYPE` line.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        HTTP_REQUESTS,
        Kind::Counter,
        "HTTP requests served, by route and status",
    ),
    (
        EVENTS_IN,
        Kind::Counter,
        "Inbound events accepted from channels, by channel and kind",
    ),
    (
        EVENTS_DUPLICATE,
        Kind::Counter,
        "Inbound events dropped as duplicates of accepted ones, by channel",
    ),
    (
        EVENTS_OUT,
        Kind::Counter,
        "Outbound events delivered to channels, by channel and kind",
    ),
    (
        DELIVERY_FAILURES,
        Kind::Counter,
        "Delivery failures by direction (to_lp, to_channel), channel and outcome (retry, dead_letter)",
    ),
    (
        QUEUE_DEPTH,
        Kind::Gauge,
        "Events waiting in a queue (inbox, to_lp, to_channel)",
    ),
    (
        DEAD_LETTERS,
        Kind::Gauge,
        "Events refused for good, kept in the dead-letter table",
    ),
    (
        LP_SENT,
        Kind::Counter,
        "Requests made to LivePerson, by kind",
    ),
    (
        LP_WEBHOOKS,
        Kind::Counter,
        "LivePerson webhook events, by outcome",
    ),
    (
        BACKPRESSURE,
        Kind::Counter,
        "Events refused because a queue was full, by queue",
    ),
    (
        MEDIA_REFUSED,
        Kind::Counter,
        "Media link requests refused because their client address failed too often",
    ),
    (
        LEASES_LOST,
        Kind::Counter,
        "Items whose work stopped because their lease could not be kept",
    ),
    (
        GIVEN_UP,
        Kind::Counter,
        "Events dead-lettered after too many attempts or too long in the outbox, by direction and limit",
    ),
    (
        ITEM_PANICS,
        Kind::Counter,
        "Attempts at an event that panicked, by direction",
    ),
    (
        switchboard_channel_sms::DELIVERY_REPORTS,
        Kind::Counter,
        "Final SMS delivery reports, by channel, gateway and outcome (delivered, not_delivered)",
    ),
    (
        LP_WEBHOOK_SECONDS,
        Kind::Histogram,
        "Seconds spent handling one LivePerson webhook request",
    ),
    (
        CHANNEL_WEBHOOK_SECONDS,
        Kind::Histogram,
        "Seconds a channel took to handle one request to its endpoints, by channel",
    ),
    (
        LP_SEND_SECONDS,
        Kind::Histogram,
        "Seconds one request to LivePerson took, by request",
    ),
    (
        CHANNEL_SEND_SECONDS,
        Kind::Histogram,
        "Seconds one delivery to a channel took, by channel",
    ),
    (
        BUILD_INFO,
        Kind::Gauge,
        "Always 1: the version and commit of the running build",
    ),
];

/// The process's Prometheus handle, installing the recorder on first use.
///
/// The recorder is global (the `metrics` facade has one per process), so tests that build
/// several apps in one process share it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!(
                BUILD_INFO,
                "version" => env!("CARGO_PKG_VERSION"),
                "commit" => BUILD_COMMIT
            )
            .set(1.0);
            handle
        })
        .clone()
}

/// The exporter, with [`LATENCY_BUCKETS`] for every histogram family.
fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for (name, kind, _) in FAMILIES {
        if *kind == Kind::Histogram {
            builder = builder
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), LATENCY_BUCKETS)
                .expect("fails only for an empty bucket list, and LATENCY_BUCKETS is not");
        }
    }
    builder
}

fn describe() {
    for (name, kind, help) in FAMILIES {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_listed_once_and_histograms_have_buckets() {
        let mut names: Vec<_> = FAMILIES.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a family listed twice");
        assert!(names.iter().all(|n| n.starts_with("switchboard_")));
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
