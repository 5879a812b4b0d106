//! Open-load ingest: channel webhooks (Kannel's MO get-url) arrive at a fixed rate whatever
//! the answers, as wrk or a busy gateway sends them, and each request is timed from the moment
//! it was due to its 2xx. This is what a gateway sees of the connector's durable ingest (an
//! MO is answered 200 only once it is stored). The closed loops of [`crate::drive`] measure
//! the drain rate instead: a slow answer there slows the next send, so they cannot show
//! queueing at the door (coordinated omission); here a slow answer cannot hold back the next
//! arrival, so queueing shows in the latencies.
//!
//! The messages also reach LivePerson (the board checks them for loss, copies and order), so
//! the connector drains while it ingests, as in production.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::drive::{Board, Inbound};
use crate::stats::{MessageKey, percentile};

/// What one open-load run at one offered rate measured at the door.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IngestRow {
    /// The target (relay or connector) and the store.
    pub(crate) target: String,
    /// Requests per second offered.
    pub(crate) offered: f64,
    /// Requests made (one per message; a refused one is retried, as Kannel does).
    pub(crate) sent: u64,
    /// Messages answered 2xx, over the whole window.
    pub(crate) accepted: u64,
    /// Non-2xx answers and connection errors before a retry got through.
    pub(crate) refusals: u64,
    /// Accepted messages per second, from the first due time to the last 2xx.
    pub(crate) achieved: f64,
    /// Latency from the due time to the 2xx: median, 99th, 99.9th percentile, worst (ms).
    pub(crate) p50_ms: f64,
    /// 99th percentile (ms).
    pub(crate) p99_ms: f64,
    /// 99.9th percentile (ms).
    pub(crate) p999_ms: f64,
    /// Worst (ms).
    pub(crate) max_ms: f64,
    /// Accepted messages that never reached LivePerson (filled in once the phase settled).
    pub(crate) lost: usize,
    /// Extra copies that reached LivePerson.
    pub(crate) duplicated: usize,
}

impl IngestRow {
    /// True when the target kept up: nearly every message accepted at the offered rate, the
    /// 99th percentile under 100 ms (past that, requests queue at the door), nothing lost.
    pub(crate) fn sustained(&self) -> bool {
        self.achieved >= 0.95 * self.offered && self.p99_ms < 100.0 && self.lost == 0
    }
}

/// Offers `rate` MO requests per second for `secs` seconds, round robin over `consumers`
/// (message `k` is consumer `k % consumers`'s number `k / consumers`), each in its own task:
/// no request waits for another's answer.
pub(crate) async fn open_load(
    inbound: &Inbound,
    board: &Arc<Board>,
    phase: u8,
    consumers: u32,
    rate: f64,
    secs: f64,
    target: &str,
) -> IngestRow {
    let total = (rate * secs).round().max(1.0) as u32;
    let refusals = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    let mut n = 0u32;
    while n < total {
        let due_now = ((start.elapsed().as_secs_f64() * rate) as u32 + 1).min(total);
        while n < due_now {
            let due = start + Duration::from_secs_f64(f64::from(n) / rate);
            let key = MessageKey {
                phase,
                consumer: n % consumers,
                seq: n / consumers,
            };
            let (inbound, board, refusals) = (inbound.clone(), board.clone(), refusals.clone());
            tasks.push(tokio::spawn(async move {
                let tries = inbound.send(&board, key).await;
                refusals.fetch_add(u64::from(tries.saturating_sub(1)), Ordering::Relaxed);
                (tries > 0).then(|| Instant::now().saturating_duration_since(due))
            }));
            n += 1;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(Some(l)) = t.await {
            latencies.push(l);
        }
    }
    let wall = start.elapsed();
    latencies.sort_unstable();
    let accepted = latencies.len() as u64;
    IngestRow {
        target: target.to_owned(),
        offered: rate,
        sent: u64::from(total),
        accepted,
        refusals: refusals.load(Ordering::Relaxed),
        achieved: accepted as f64 / wall.as_secs_f64().max(1e-9),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        p999_ms: percentile(&latencies, 99.9),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        lost: 0,
        duplicated: 0,
    }
}

/// The rows as a Markdown table, then the highest sustained rate of each target.
pub(crate) fn markdown(rows: &[IngestRow]) -> String {
    let mut out = String::from(
        "| target | offered/s | sent | accepted | refused | accepted/s | p50 ms | p99 ms | p99.9 ms | max ms | lost | dup | kept up |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} |\n",
            r.target,
            r.offered,
            r.sent,
            r.accepted,
            r.refusals,
            r.achieved,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            r.lost,
            r.duplicated,
            if r.sustained() { "yes" } else { "no" },
        ));
    }
    out
}

/// The highest offered rate `target` sustained, if any.
pub(crate) fn highest_sustained(rows: &[IngestRow], target: &str) -> Option<f64> {
    rows.iter()
        .filter(|r| r.target == target && r.sustained())
        .map(|r| r.offered)
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, offered: f64, achieved: f64, p99_ms: f64) -> IngestRow {
        IngestRow {
            target: target.into(),
            offered,
            sent: 10,
            accepted: 10,
            refusals: 0,
            achieved,
            p50_ms: 1.0,
            p99_ms,
            p999_ms: p99_ms,
            max_ms: p99_ms,
            lost: 0,
            duplicated: 0,
        }
    }

    #[test]
    fn the_highest_sustained_rate_needs_the_rate_and_a_short_queue() {
        let rows = [
            row("relay", 1000.0, 1000.0, 2.0),
            row("relay", 2000.0, 1990.0, 5.0),
            row("relay", 4000.0, 2500.0, 900.0),
            row("sb", 1000.0, 999.0, 150.0),
        ];
        assert_eq!(highest_sustained(&rows, "relay"), Some(2000.0));
        assert_eq!(highest_sustained(&rows, "sb"), None);
        assert!(markdown(&rows).contains("| relay | 4000 |"));
    }
}
