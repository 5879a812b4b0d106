//! End to end: Acme's own binary (the stock runtime with the `webhook` crate linked in) runs
//! with the dynamic example plugin (`relay`) loaded from its config file. Each channel carries a
//! real message both ways, consumer to agent and agent to consumer, through the LivePerson
//! simulator; `channels` lists both kinds with where they came from.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use switchboard_core::Secret;
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_plugin_webhook::{SIGNATURE_HEADER, sign};
use switchboard_testkit::webhook_receiver::WebhookReceiver;
use switchboard_testkit::{eventually, free_port, plugin_library};

const SECRET: &str = "acme-webhook-secret-42";
const TOKEN: &str = "acme-relay-token-42";

/// The brand's binary, built by cargo for this test.
const BINARY: &str = env!("CARGO_BIN_EXE_acme-switchboard");

fn relay_library() -> PathBuf {
    plugin_library("switchboard-plugin-dynamic-example")
}

struct Running {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("stderr.log"));
            eprintln!(
                "--- acme-switchboard's log ---\n{}",
                log.unwrap_or_default()
            );
        }
    }
}

fn config(sim: &SimHandle, receiver: &WebhookReceiver, port: u16, dir: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[store]
url = "sqlite://{db}"
[liveperson]
mode = "live"
account_id = "{account}"
client_id = "{client}"
client_secret = "{secret}"
domain_api = "{domain}"
retry_scale = 0.001
[plugins]
paths = ["{library}"]
[channels.hooks]
kind = "webhook"
secret = "{SECRET}"
outbound_url = "{hooks}"
[channels.relay]
kind = "relay"
token = "{TOKEN}"
deliver_url = "{relay}"
"#,
        db = dir.join("sb.db").display(),
        account = sim.account_id(),
        client = sim.client_id(),
        secret = sim.client_secret(),
        domain = sim.domain_api(),
        library = relay_library().display(),
        hooks = receiver.url("/hooks"),
        relay = receiver.url("/relay"),
    )
}

async fn start(sim: &SimHandle, receiver: &WebhookReceiver) -> (u16, Running) {
    let port = free_port();
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.toml");
    std::fs::write(&path, config(sim, receiver, port, dir.path())).unwrap();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = Command::new(BINARY)
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let running = Running { child, dir };
    assert!(
        eventually(60, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "acme-switchboard did not start"
    );
    (port, running)
}

async fn conversation_with(sim: &SimHandle, text: &str) -> String {
    let entry = sim
        .wait_for_consumer_message(text, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("`{text}` never reached LivePerson"));
    sim.conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .unwrap()
        .conversation_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_linked_and_the_dynamic_channel_each_carry_a_message_both_ways() {
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let receiver = WebhookReceiver::start().await;
    let (port, running) = start(&sim, &receiver).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    // The statically linked `webhook` kind: consumer → agent, signed.
    let body =
        json!({ "id": "w-1", "from": "alice", "text": "Hi from the webhook", "name": "Alice" })
            .to_string();
    let resp = http
        .post(format!("{base}/channels/hooks/inbound"))
        .header(
            SIGNATURE_HEADER,
            sign(&Secret::new(SECRET), body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let hooks = conversation_with(&sim, "Hi from the webhook").await;

    // The dynamic `relay` kind: consumer → agent, with its bearer token.
    let resp = http
        .post(format!("{base}/channels/relay/messages"))
        .bearer_auth(TOKEN)
        .json(&json!({ "id": "r-1", "from": "bob", "text": "Hi from the relay" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let relay = conversation_with(&sim, "Hi from the relay").await;
    assert_ne!(hooks, relay);

    // Agent → consumer on both.
    sim.agent_send_text(&hooks, "Hello Alice, webhook here")
        .unwrap();
    sim.agent_send_text(&relay, "Hello Bob, relay here")
        .unwrap();
    let delivered = |path: &str, text: &str| {
        receiver
            .received_at(path)
            .into_iter()
            .find(|r| r.json()["text"] == text)
    };
    assert!(
        eventually(60, || delivered("/hooks", "Hello Alice, webhook here")
            .is_some())
        .await,
        "the webhook reply never arrived: {:?}",
        receiver.received()
    );
    let hook = delivered("/hooks", "Hello Alice, webhook here").unwrap();
    assert_eq!(hook.json()["to"], "alice");
    assert_eq!(
        hook.header(SIGNATURE_HEADER),
        Some(sign(&Secret::new(SECRET), &hook.body).as_str())
    );
    assert!(
        eventually(60, || delivered("/relay", "Hello Bob, relay here")
            .is_some())
        .await,
        "the relay reply never arrived: {:?}",
        receiver.received()
    );
    let relayed = delivered("/relay", "Hello Bob, relay here").unwrap();
    assert_eq!(relayed.json()["to"], "bob");
    assert_eq!(
        relayed.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // The dynamic instance reports its health in /readyz.
    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["components"]["channel:relay"]["ready"], true,
        "{ready}"
    );
    drop(running);
}

#[test]
fn channels_lists_built_in_linked_and_dynamic_kinds_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.toml");
    std::fs::write(
        &path,
        format!("[plugins]\npaths = [\"{}\"]\n", relay_library().display()),
    )
    .unwrap();
    let out = Command::new(BINARY)
        .args(["channels", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |kind: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .unwrap_or_else(|| panic!("no `{kind}` in:\n{text}"))
            .to_owned()
    };
    assert!(line("sms").contains("built in"), "{text}");
    assert!(
        line("webhook").contains("linked crate switchboard-plugin-webhook"),
        "{text}"
    );
    assert!(
        line("relay").contains(&format!("library {}", relay_library().display())),
        "{text}"
    );
    // Every stock command is there.
    let out = Command::new(BINARY).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "run",
        "check",
        "channels",
        "demo",
        "manifest",
        "deadletters",
        "sim",
    ] {
        assert!(help.contains(command), "{help}");
    }
}
