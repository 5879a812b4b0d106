//! What one load phase measured, and how it is summarised: rate, latency percentiles, and the
//! counts that prove nothing was lost, repeated or reordered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Every message of a phase: when it was sent and when (how often) it arrived.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    sent: HashMap<u64, Instant>,
    arrived: HashMap<u64, Vec<Instant>>,
    /// Per consumer, the sequence numbers in arrival order.
    order: HashMap<u32, Vec<u32>>,
    /// Sends the connector refused (non-2xx) before a retry got through.
    pub(crate) refusals: u64,
}

impl Ledger {
    /// Records a send.
    pub(crate) fn sent(&mut self, key: MessageKey, at: Instant) {
        self.sent.insert(key.pack(), at);
    }

    /// Records an arrival.
    pub(crate) fn arrived(&mut self, key: MessageKey, at: Instant) {
        let packed = key.pack();
        let copies = self.arrived.entry(packed).or_default();
        copies.push(at);
        if copies.len() == 1 {
            self.order.entry(key.consumer).or_default().push(key.seq);
        }
    }

    /// How many distinct sent messages arrived.
    pub(crate) fn delivered(&self) -> usize {
        self.sent
            .keys()
            .filter(|k| self.arrived.contains_key(k))
            .count()
    }

    /// How many were sent.
    pub(crate) fn sent_count(&self) -> usize {
        self.sent.len()
    }

    /// Summarises the phase.
    pub(crate) fn summary(&self, name: &str) -> Summary {
        let mut latencies: Vec<Duration> = Vec::with_capacity(self.sent.len());
        let mut first_send: Option<Instant> = None;
        let mut last_arrival: Option<Instant> = None;
        let mut duplicated = 0;
        for (key, sent) in &self.sent {
            first_send = Some(first_send.map_or(*sent, |f| f.min(*sent)));
            if let Some(copies) = self.arrived.get(key) {
                let first = copies.iter().min().copied().unwrap_or(*sent);
                latencies.push(first.saturating_duration_since(*sent));
                last_arrival = Some(last_arrival.map_or(first, |l| l.max(first)));
                duplicated += copies.len() - 1;
            }
        }
        let unexpected = self
            .arrived
            .keys()
            .filter(|k| !self.sent.contains_key(k))
            .count();
        latencies.sort_unstable();
        let reordered = self
            .order
            .values()
            .map(|seqs| seqs.windows(2).filter(|w| w[1] < w[0]).count())
            .sum();
        let wall = match (first_send, last_arrival) {
            (Some(f), Some(l)) => l.saturating_duration_since(f),
            _ => Duration::ZERO,
        };
        let delivered = latencies.len();
        Summary {
            phase: name.to_owned(),
            sent: self.sent.len(),
            delivered,
            lost: self.sent.len() - delivered,
            duplicated: duplicated + unexpected,
            reordered,
            refusals: self.refusals,
            seconds: wall.as_secs_f64(),
            rate: if wall.is_zero() {
                0.0
            } else {
                delivered as f64 / wall.as_secs_f64()
            },
            p50_ms: percentile(&latencies, 50.0),
            p99_ms: percentile(&latencies, 99.0),
            p999_ms: percentile(&latencies, 99.9),
            max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            cpu_percent: None,
            rss_mib: None,
            peak_rss_mib: None,
        }
    }
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// Which message a text carries: phase, consumer and sequence, packed into the text as
/// `#LT` + 16 hex digits so either end can recognise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MessageKey {
    /// The phase (so a late arrival of an earlier phase is not counted).
    pub(crate) phase: u8,
    /// The consumer's index.
    pub(crate) consumer: u32,
    /// The message's index in that consumer's stream.
    pub(crate) seq: u32,
}

impl MessageKey {
    fn pack(self) -> u64 {
        (u64::from(self.phase) << 56) | (u64::from(self.consumer) << 28) | u64::from(self.seq)
    }

    fn unpack(v: u64) -> Self {
        Self {
            phase: (v >> 56) as u8,
            consumer: ((v >> 28) & 0x0fff_ffff) as u32,
            seq: (v & 0x0fff_ffff) as u32,
        }
    }

    /// The message text: the marker and a realistic sentence.
    pub(crate) fn text(self) -> String {
        format!(
            "#LT{:016x} Hello, I ordered a blue kettle last week and it has not arrived yet.",
            self.pack()
        )
    }

    /// The key a text carries, if any.
    pub(crate) fn find(text: &str) -> Option<Self> {
        let at = text.find("#LT")?;
        let hex = text.get(at + 3..at + 19)?;
        u64::from_str_radix(hex, 16).ok().map(Self::unpack)
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// What was measured.
    pub(crate) phase: String,
    /// Messages sent.
    pub(crate) sent: usize,
    /// Messages that arrived (once or more).
    pub(crate) delivered: usize,
    /// Messages that never arrived.
    pub(crate) lost: usize,
    /// Extra copies that arrived.
    pub(crate) duplicated: usize,
    /// Arrivals out of order within one consumer's stream.
    pub(crate) reordered: usize,
    /// Refused sends that were retried.
    pub(crate) refusals: u64,
    /// From the first send to the last arrival.
    pub(crate) seconds: f64,
    /// Messages per second over that time.
    pub(crate) rate: f64,
    /// Median end-to-end latency (ms).
    pub(crate) p50_ms: f64,
    /// 99th percentile (ms).
    pub(crate) p99_ms: f64,
    /// 99.9th percentile (ms).
    pub(crate) p999_ms: f64,
    /// Worst (ms).
    pub(crate) max_ms: f64,
    /// The process's CPU time over the phase, as % of one core.
    pub(crate) cpu_percent: Option<f64>,
    /// Its resident memory at the end (MiB).
    pub(crate) rss_mib: Option<f64>,
    /// Its peak resident memory (MiB).
    pub(crate) peak_rss_mib: Option<f64>,
}

/// The summaries as a Markdown table.
pub(crate) fn markdown(rows: &[Summary]) -> String {
    let mut out = String::from(
        "| phase | sent | delivered | lost | dup | reordered | msg/s | p50 ms | p99 ms | p99.9 ms | max ms | CPU % | RSS MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |\n",
            r.phase,
            r.sent,
            r.delivered,
            r.lost,
            r.duplicated,
            r.reordered,
            r.rate,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            opt(r.cpu_percent),
            r.peak_rss_mib
                .or(r.rss_mib)
                .map_or("–".to_owned(), |v| format!("{v:.1}")),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_text() {
        let key = MessageKey {
            phase: 3,
            consumer: 99_999,
            seq: 12,
        };
        assert_eq!(MessageKey::find(&key.text()), Some(key));
        assert_eq!(MessageKey::find("no marker"), None);
    }

    #[test]
    fn the_ledger_counts_losses_copies_and_disorder() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let k = |seq| MessageKey {
            phase: 1,
            consumer: 7,
            seq,
        };
        for seq in 0..4 {
            l.sent(k(seq), t0);
        }
        l.arrived(k(1), t0 + Duration::from_millis(2));
        l.arrived(k(0), t0 + Duration::from_millis(3));
        l.arrived(k(0), t0 + Duration::from_millis(4));
        l.arrived(k(2), t0 + Duration::from_millis(5));
        let s = l.summary("x");
        assert_eq!((s.sent, s.delivered, s.lost), (4, 3, 1));
        assert_eq!((s.duplicated, s.reordered), (1, 1));
        assert_eq!(s.max_ms, 5.0);
        assert_eq!(percentile(&[Duration::from_millis(1)], 99.9), 1.0);
    }
}
