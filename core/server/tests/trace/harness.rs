//! The set-up the `switchboard trace` tests share: the command itself, its `--json` events
//! polled until a step shows, and connectors (`switchboard run`) with an SMS channel on a fake
//! Kannel.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::eventually;
use switchboard_testkit::fake_kannel::FakeKannel;
use tempfile::TempDir;

use crate::sms::{kannel_channel_table, kannel_config_of};
use crate::support::{liveperson_toml, switchboard_command};

/// A simulator running a hundred times faster than LivePerson (its retries, its echoes).
pub(super) async fn fast_simulator() -> SimHandle {
    Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// `switchboard trace --config <config> [--json] <key>`: (exit status, stdout, stderr).
pub(super) fn trace(config: &Path, key: &str, json: bool) -> (i32, String, String) {
    let mut cmd = switchboard_command();
    cmd.args(["trace", "--config"]).arg(config);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.arg(key).output().expect("run switchboard trace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The events of `trace --json` once `done` holds for them (rows are written a moment after
/// the step they describe).
pub(super) async fn events_when(
    config: &Path,
    key: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = trace(config, key, true);
        if code == 0 {
            let parsed: Value = serde_json::from_str(&out).expect("trace --json prints JSON");
            let events = parsed["events"].as_array().cloned().unwrap_or_default();
            if done(&events) {
                return events;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trace of `{key}` never completed: exit {code}\n{out}\n{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stages of the events going `direction`, in their order.
pub(super) fn stages<'a>(events: &'a [Value], direction: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["direction"] == direction)
        .filter_map(|e| e["stage"].as_str())
        .collect()
}

/// The first event going `direction` at `stage`.
pub(super) fn event<'a>(events: &'a [Value], direction: &str, stage: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["direction"] == direction && e["stage"] == stage)
}

/// A config in `dir` with the `[store]` table `store` (its lines) and the embedded simulator:
/// enough for the commands that only read the store.
pub(super) fn store_only_config(dir: &TempDir, store: &str) -> PathBuf {
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!("[store]\n{store}\n[liveperson]\nmode = \"simulator\"\n"),
    )
    .unwrap();
    config
}

/// A `switchboard run` process with an SMS channel; killed when dropped.
pub(super) struct Connector {
    child: Child,
    pub(super) config: PathBuf,
    _dir: TempDir,
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Connector {
    /// Its trace rows' instance ends with `:{pid}`.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The config of a connector on `port` with an `sms` channel whose Kannel's sendsms listens
/// on `sendsms`, on store `store` (`None`: an SQLite file beside the config).
pub(super) fn sms_config(
    sim: &SimHandle,
    port: u16,
    sendsms: u16,
    store: Option<&str>,
) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = store.map_or_else(
        || format!("sqlite://{}", dir.path().join("sb.db").display()),
        str::to_owned,
    );
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"{store}\"\n{}{}",
        liveperson_toml(sim, 0.001),
        kannel_channel_table(port, sendsms),
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, &toml).unwrap();
    (dir, config)
}

/// A fake Kannel on `sendsms`, configured with the groups `switchboard sms kannel-config`
/// prints for `config`.
pub(super) async fn kannel_for(config: &Path, sendsms: u16) -> FakeKannel {
    FakeKannel::start(&kannel_config_of(config), sendsms)
        .await
        .unwrap()
}

/// Starts `switchboard run` on `config` (listening on `port`).
pub(super) async fn start_connector((dir, config): (TempDir, PathBuf), port: u16) -> Connector {
    let child = switchboard_command()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let connector = Connector {
        child,
        config,
        _dir: dir,
    };
    assert!(
        eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "switchboard did not start"
    );
    connector
}
