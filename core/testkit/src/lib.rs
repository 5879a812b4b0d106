//! What a Switchboard channel needs in its tests.
//!
//! - [`conformance`]: the suite that checks a channel against `docs/channel-spec.md` (verify
//!   before parse, acknowledge only after submit, map every outbound kind, classify delivery
//!   errors, keep secrets out of logs). Every built-in channel and the example plugins run it.
//! - [`RecordingSink`]: an [`EventSink`](switchboard_core::EventSink) that records what a
//!   channel submits, keeps its state in memory, and can be told to fail or to hold submits.
//! - [`LogCapture`]: every log line (all levels) written while it is installed, to assert
//!   secrets never appear.
//! - [`fake_slack`]: a fake Slack (Web API, files, signed events and button presses, token
//!   rotation) that enforces Slack's published rules, with [`fake_slack_socket`], its Socket
//!   Mode WebSocket server.
//! - [`fake_telegram`]: a fake Telegram Bot API (polling and webhook).
//! - [`json_shapes`]: proptest strategies for platform JSON with fields added one day.
//! - [`fake_kannel`]: the fake Kannel (smsbox's sendsms, its DLR and MO engines and their
//!   retries, as Kannel documents them), configured from the same kannel.conf groups as the
//!   real one; the server's and the SMS channel's tests use it.
//! - [`fake_vonage`]: the fake Vonage SMS API (`/sms/json`, signed delivery receipts and
//!   inbound messages in every webhook format and signature method, Vonage's retries); the
//!   SMS channel's tests use it.
//! - [`kannel`]: the real Kannel SMS gateway (bearerbox, smsbox and the `fakesmsc` SMSC from
//!   Debian's `kannel` and `kannel-extras`) on loopback, for end-to-end SMS tests.
//! - [`misbehaving`]: channels that fail, stall or panic on purpose, for router tests.
//! - [`webhook_receiver`]: a generic HTTP endpoint that records what channels deliver to it.
//! - [`plugin_library`]: where cargo put a dynamic plugin library, for tests that load one.

pub mod conformance;
pub mod fake_kannel;
pub mod fake_slack;
pub mod fake_slack_socket;
pub mod fake_telegram;
pub mod fake_vonage;
pub mod json_shapes;
pub mod kannel;
mod logs;
pub mod misbehaving;
mod sink;
pub mod webhook_receiver;

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

/// The dynamic library (`cdylib`) cargo built for the workspace package `package`, found next
/// to the running test executable (`<target>/<profile>/deps/`, or the profile directory
/// itself), so that it works whatever the target directory and profile.
///
/// A test crate lists the plugin package as a dev-dependency so that cargo builds the library
/// before its tests run. Panics naming the command that builds it when it is missing.
pub fn plugin_library(package: &str) -> std::path::PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    let candidates = [Some(deps.join(&file)), deps.parent().map(|p| p.join(&file))];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return found;
    }
    panic!(
        "the plugin library `{file}` is not built next to {}: run `cargo build -p {package}` \
         (or list `{package}` as a dev-dependency of this test's crate, so that cargo builds it \
         before the tests)",
        deps.display()
    )
}
