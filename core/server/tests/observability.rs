//! What operators see of a running connector: every metric family on `/metrics` has a `# HELP`
//! and a `# TYPE` line, the latency histograms and `switchboard_build_info` are there, labels
//! say `channel` (never Prometheus's own `instance`), and a failing SMS gateway's warnings do
//! not show the consumer's phone number.

use std::collections::BTreeSet;

use switchboard::metrics::{FAMILIES, Kind};
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::fake_kannel::FakeKannel;
use switchboard_testkit::{eventually, free_port};

use crate::sms::{conversation_of, kannel_channel_table, kannel_config_of};
use crate::support::liveperson_toml;

const PHONE: &str = "+15557654321";

/// The family a sample line belongs to: its name without labels, and without a histogram's
/// `_bucket` / `_sum` / `_count`.
fn family(line: &str) -> &str {
    let name = line.split(['{', ' ']).next().unwrap_or(line);
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && FAMILIES
                .iter()
                .any(|(n, k, _)| *n == base && *k == Kind::Histogram)
        {
            return base;
        }
    }
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_described_and_a_failing_gateway_logs_no_phone_number() {
    let sim: SimHandle = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let port = free_port();
    let admin = free_port();
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
    let sendsms = free_port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
[store]
url = "sqlite://{db}"
{liveperson}{sms}"#,
        db = dir.path().join("sb.db").display(),
        liveperson = liveperson_toml(&sim, 0.001),
        sms = kannel_channel_table(port, sendsms),
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, &toml).unwrap();
    let kannel = FakeKannel::start(&kannel_config_of(&config), sendsms)
        .await
        .unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    assert!(
        eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "switchboard did not start"
    );

    // A consumer writes, the agent answers while the gateway is down, then it is back.
    kannel
        .send_mo(PHONE, "1000", "where is my parcel")
        .await
        .unwrap();
    let conversation = conversation_of(&sim, "where is my parcel")
        .await
        .expect("the consumer's SMS reached LivePerson");
    sim.agent_accept(&conversation).unwrap();
    kannel.set_unavailable(true);
    sim.agent_send_text(&conversation, "it ships today")
        .unwrap();
    assert!(
        eventually(30, || kannel.requests().iter().any(|r| r.status == 503)).await,
        "the connector never met the outage"
    );
    kannel.set_unavailable(false);
    let delivered = || {
        kannel
            .requests()
            .iter()
            .any(|r| r.status == 202 && r.params.get("to").map(String::as_str) == Some(PHONE))
    };
    assert!(eventually(60, delivered).await, "the answer never arrived");

    let http = reqwest::Client::new();
    let text = http
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();

    let families: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("switchboard_"))
        .map(family)
        .collect();
    for name in &families {
        let listed = FAMILIES.iter().find(|(n, _, _)| n == name);
        assert!(
            listed.is_some(),
            "{name} is not in metrics::FAMILIES:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} "))),
            "no HELP for {name}:\n{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "no TYPE for {name}:\n{text}"
        );
    }
    for histogram in [
        "switchboard_liveperson_webhook_duration_seconds",
        "switchboard_channel_webhook_duration_seconds",
        "switchboard_liveperson_send_duration_seconds",
        "switchboard_channel_send_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram} is not a histogram:\n{text}"
        );
        assert!(
            text.contains(&format!("{histogram}_bucket{{"))
                || text.contains(&format!("{histogram}_bucket ")),
            "{histogram} has no buckets:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("switchboard_build_info{")
                && l.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
                && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.contains(r#"switchboard_delivery_failures_total{direction="to_channel",channel="sms",outcome="retry"}"#),
        "{text}"
    );
    for line in text.lines().filter(|l| l.starts_with("switchboard_")) {
        assert!(
            !line.contains("instance="),
            "Prometheus's own label: {line}"
        );
        assert!(
            !line.contains("to_liveperson"),
            "one spelling per direction: {line}"
        );
    }

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("to_channel: will retry") && log.contains("sms/***4321"),
        "the retry was logged, with the consumer masked:\n{log}"
    );
    for shown in [PHONE, &PHONE[1..], &PHONE[2..]] {
        assert!(!log.contains(shown), "`{shown}` in the log:\n{log}");
    }
}
