//! What a Switchboard channel needs in its tests.
//!
//! - [`conformance`]: the suite that checks a channel against `docs/channel-spec.md` (verify
//!   before parse, acknowledge only after submit, map every outbound kind, classify delivery
//!   errors, keep secrets out of logs). Every built-in channel and the example plugins run it.
//! - [`RecordingSink`]: an [`EventSink`](switchboard_core::EventSink) that records what a
//!   channel submits, keeps its state in memory, and can be told to fail or to hold submits.
//! - [`LogCapture`]: every log line (all levels) written while it is installed, to assert
//!   secrets never appear.
//! - [`fake_slack`]: a fake Slack (Web API, files, signed events and button presses).
//! - [`fake_telegram`]: a fake Telegram Bot API (polling and webhook).
//! - [`kannel`]: the real Kannel SMS gateway (bearerbox, smsbox and the `fakesmsc` SMSC from
//!   Debian's `kannel` and `kannel-extras`) on loopback, for end-to-end SMS tests.
//! - [`misbehaving`]: channels that fail, stall or panic on purpose, for router tests.

pub mod conformance;
pub mod fake_kannel;
pub mod fake_slack;
pub mod fake_telegram;
pub mod kannel;
mod logs;
pub mod misbehaving;
mod sink;

pub use logs::LogCapture;
pub use sink::RecordingSink;

use std::time::Duration;

/// Waits until `cond` holds, checking every 20 ms, for up to `secs` seconds. Returns whether it
/// held: tests assert on the result, so a slow machine only makes them slower, never red.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback TCP port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// True when running under CI (`CI=true`), where a missing service is a failure, never a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}
