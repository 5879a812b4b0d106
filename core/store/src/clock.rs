//! Whose clock the outbox's times come from.
//!
//! Leases, retry delays and claims compare times written by one process with the time another
//! process reads. Several instances share a PostgreSQL database, and their hosts' clocks
//! disagree (by milliseconds with NTP, by minutes without): a host whose clock runs ahead would
//! see other instances' leases as expired and take over items they are still working on, and
//! one whose clock runs behind would leave items it retried unclaimable for as long. So on
//! PostgreSQL every such time is computed by the database (`statement_timestamp()`, the start
//! of the statement), one clock for every instance.
//!
//! SQLite serves one process on one host, whose clock writes and reads every time: there the
//! times are the host's, bound as a statement parameter. A wall-clock step on that host (a
//! manual change, NTP correcting a large error) moves every lease with it: a step forward ends
//! leases early (the process itself holds them, and a worker never starts an item it is still
//! processing), a step back keeps items leased and retries waiting for as long as the step.

use crate::Backend;
use crate::db::Arg;

/// The token that statements written for [`HostClock::render`] use for "now", in unix
/// milliseconds.
pub(crate) const NOW: &str = "{now}";

/// PostgreSQL's clock in unix milliseconds: the start of the current statement.
/// `statement_timestamp()` rather than `now()` (the start of the transaction) because writes
/// are grouped into shared transactions ([`crate::group_commit`]): each still reads the time
/// it runs at, as it would alone. Rather than `clock_timestamp()` because it is stable within
/// a statement, so the planner can still use the indexes on time columns.
const POSTGRES_NOW: &str = "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000 AS BIGINT)";

/// The host's wall clock, as this store reads it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostClock {
    /// Added to every reading: a test simulating a host whose clock is wrong.
    pub(crate) offset_ms: i64,
}

impl HostClock {
    /// The current time in unix milliseconds.
    pub(crate) fn now_ms(self) -> i64 {
        crate::db::now_ms().saturating_add(self.offset_ms)
    }

    /// `sql` with every [`NOW`] replaced by the backend's clock: on PostgreSQL the database's
    /// (see the module documentation), on SQLite this host's, appended to `args` as one more
    /// parameter.
    pub(crate) fn render(self, backend: Backend, sql: &str, args: &mut Vec<Arg>) -> String {
        match backend {
            Backend::Postgres => sql.replace(NOW, POSTGRES_NOW),
            Backend::Sqlite if sql.contains(NOW) => {
                args.push(Arg::Int(self.now_ms()));
                sql.replace(NOW, &format!("${}", args.len()))
            }
            Backend::Sqlite => sql.to_owned(),
        }
    }
}

/// A delay or time-to-live in milliseconds for adding to a time, capped at about a century:
/// a hint of `u64::MAX` seconds (a `Retry-After` no platform means) must neither overflow the
/// addition (an error on PostgreSQL, a float on SQLite) nor wrap around into the past.
pub(crate) fn offset_ms(d: std::time::Duration) -> i64 {
    const CENTURY_MS: i64 = 100 * 365 * 24 * 3600 * 1000;
    crate::db::millis(d).min(CENTURY_MS)
}
