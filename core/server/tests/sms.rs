//! The SMS channel end to end, the whole product: a consumer's SMS enters Kannel's SMSC, reaches
//! LivePerson (the simulator) as a message, the agent's answer leaves through Kannel to the
//! handset, and the handset's delivery report becomes an ACCEPT of that message in LivePerson.
//!
//! The same scenario runs against the real Kannel 1.4.5 (bearerbox + smsbox + fakesmsc, set up
//! with the groups `switchboard sms kannel-config` prints) and against the testkit's fake
//! Kannel; a recording proxy between Kannel and the connector captures every callback, and the
//! two runs must agree (the differential test docs/protocol/channels.md §3.10 asks for).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::fake_kannel::FakeKannel;
use switchboard_testkit::kannel::RealKannel;
use switchboard_testkit::{eventually, free_port};
use tokio::net::TcpListener;

use crate::support::{liveperson_toml, load_toml};

/// The conversation in LivePerson of the consumer message containing `text`, once it arrived.
pub(crate) async fn conversation_of(sim: &SimHandle, text: &str) -> Option<String> {
    let entry = sim
        .wait_for_consumer_message(text, Duration::from_secs(30))
        .await?;
    sim.conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .map(|c| c.conversation_id)
}

/// What `switchboard sms kannel-config --config <config>` prints (the operator's kannel.conf
/// groups), from the binary.
pub(crate) fn kannel_config_of(config: &std::path::Path) -> String {
    let out = crate::support::switchboard_command()
        .args(["sms", "kannel-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The `[channels.sms]` table of a connector on `port` whose Kannel listens for sendsms on
/// `sendsms`: the tests' short code, callback token and sendsms login.
pub(crate) fn kannel_channel_table(port: u16, sendsms: u16) -> String {
    format!(
        r#"[channels.sms]
kind = "sms"
gateway = "kannel"
from = "{SHORT_CODE}"
callback_token = "{TOKEN}"
callback_base_url = "http://127.0.0.1:{port}/channels/sms"
sendsms_url = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms"
username = "switchboard"
password = "sendsms-password-42"
"#
    )
}

const CONSUMER: &str = "+15551234567";
const SHORT_CODE: &str = "1000";
const TOKEN: &str = "kannel-callback-token-0123456789";
const CONSUMER_TEXT: &str = "Привет 👋 my parcel\nis late";
const AGENT_TEXT: &str = "Здравствуйте! It ships today.";

/// The gateway a run uses.
enum Gateway {
    Real(RealKannel),
    Fake(FakeKannel),
}

impl Gateway {
    async fn send_mo(&self, text: &str) {
        match self {
            Gateway::Real(k) => k.send_mo_ucs2(CONSUMER, SHORT_CODE, text).await.unwrap(),
            Gateway::Fake(k) => k.send_mo(CONSUMER, SHORT_CODE, text).await.unwrap(),
        }
    }

    /// How many messages left the gateway towards the handset.
    fn mts(&self) -> usize {
        match self {
            Gateway::Real(k) => k.mt_lines().len(),
            Gateway::Fake(k) => k.requests().iter().filter(|r| r.status == 202).count(),
        }
    }

    fn logs(&self) -> String {
        match self {
            Gateway::Real(k) => k.logs(),
            Gateway::Fake(k) => format!("{:?}", k.requests()),
        }
    }
}

/// One callback as the connector received it, normalised for comparison: the endpoint, the
/// parameter names, and the values that do not vary between runs.
type Exchange = (String, Vec<String>, BTreeMap<String, String>, u16);

#[derive(Clone, Default)]
struct Recorder {
    target: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<Exchange>>>,
    /// While set, delivery reports are answered 503 (the connector is down), so Kannel
    /// keeps them and retries.
    hold_reports: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    /// Starts the proxy on a free port and returns its address.
    async fn start(&self) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(proxy).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn reports(&self) -> Vec<Exchange> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0.ends_with("/dlr"))
            .cloned()
            .collect()
    }
}

/// Forwards Kannel's callbacks to the connector and records them.
async fn proxy(State(rec): State<Recorder>, req: http::Request<Body>) -> http::Response<Body> {
    let uri = req.uri().clone();
    if uri.path().ends_with("/dlr") && rec.hold_reports.load(std::sync::atomic::Ordering::SeqCst) {
        rec.seen
            .lock()
            .unwrap()
            .push((uri.path().to_owned(), Vec::new(), BTreeMap::new(), 503));
        return http::Response::builder()
            .status(503)
            .body(Body::empty())
            .unwrap();
    }
    let target = format!("{}{}", rec.target.lock().unwrap(), uri);
    let resp = reqwest::get(&target).await;
    let status = resp.as_ref().map(|r| r.status().as_u16()).unwrap_or(502);
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let names: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let stable: BTreeMap<String, String> = pairs
        .into_iter()
        .filter(|(k, _)| ["from", "to", "coding", "charset", "status", "udh"].contains(&k.as_str()))
        .collect();
    rec.seen
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), names, stable, status));
    let body = match resp {
        Ok(r) => r.bytes().await.unwrap_or_default(),
        Err(_) => Default::default(),
    };
    http::Response::builder()
        .status(status)
        .body(Body::from(body))
        .unwrap()
}

/// Runs the scenario with the real Kannel (`real`) or the fake; returns the callbacks seen, or
/// `None` when the real Kannel is not installed outside CI.
async fn scenario(real: bool) -> Option<Vec<Exchange>> {
    let sim: SimHandle = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    sim.set_webhook_endpoint(&format!("http://{addr}/webhooks/liveperson"));

    let recorder = Recorder::default();
    *recorder.target.lock().unwrap() = format!("http://{addr}");
    let proxy_addr = recorder.start().await;

    let sendsms = free_port();
    let store = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[server]
listen = "{addr}"
[store]
url = "sqlite://{db}"
{liveperson}[channels.sms]
kind = "sms"
gateway = "kannel"
from = "{SHORT_CODE}"
callback_token = "{TOKEN}"
callback_base_url = "http://{proxy_addr}/channels/sms"
sendsms_url = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms"
username = "switchboard"
password = "sendsms-password-42"
max_parts = 3
"#,
        db = store.path().join("sb.db").display(),
        liveperson = liveperson_toml(&sim, 0.001),
    );
    let (_dir, _path, loaded) = load_toml(&toml);
    let loaded = loaded.unwrap();
    // The operator's kannel.conf groups, as `switchboard sms kannel-config` prints them.
    let snippet = switchboard::kannel_config(&loaded, None).unwrap();
    let gateway = if real {
        Gateway::Real(
            RealKannel::start_or_skip(&snippet, sendsms)
                .await
                .unwrap()?,
        )
    } else {
        Gateway::Fake(FakeKannel::start(&snippet, sendsms).await.unwrap())
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(switchboard::serve(loaded, listener, async {
        let _ = stop_rx.await;
    }));

    // Consumer → LivePerson, Unicode with a line break (UCS-2 on the air).
    gateway.send_mo(CONSUMER_TEXT).await;
    let arrived = sim
        .wait_for_consumer_message("my parcel", Duration::from_secs(30))
        .await;
    let Some(entry) = arrived else {
        panic!(
            "the SMS never reached LivePerson; callbacks {:?}\n{}",
            recorder.seen.lock().unwrap(),
            gateway.logs()
        );
    };
    assert_eq!(entry.event["message"], CONSUMER_TEXT);
    let conversation = sim
        .conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .unwrap();
    let id = conversation.conversation_id.clone();

    // Agent → handset, then the handset's delivery report → ACCEPT of that sequence.
    sim.agent_accept(&id).unwrap();
    let sequence = sim.agent_send_text(&id, AGENT_TEXT).unwrap();
    let accepted = sim
        .wait_for_conversation(&id, Duration::from_secs(30), |c| {
            c.transcript.iter().any(|t| {
                t.role == "CONSUMER"
                    && t.event["type"] == "AcceptStatusEvent"
                    && t.event["status"] == "ACCEPT"
                    && t.event["sequenceList"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|s| s.as_u64() == Some(sequence)))
            })
        })
        .await;
    assert!(
        accepted.is_some(),
        "no ACCEPT for the agent's message; callbacks {:?}\n{}",
        recorder.seen.lock().unwrap(),
        gateway.logs()
    );
    assert!(eventually(10, || gateway.mts() >= 1).await);
    if let Gateway::Fake(k) = &gateway {
        let mt = &k.requests()[0];
        assert_eq!(mt.params["text"], AGENT_TEXT);
        assert_eq!(mt.params["coding"], "2");
        assert_eq!(mt.params["to"], CONSUMER);
    }

    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    Some(seen)
}

/// The MO, and the DLRs 8 (SMSC ack) and 1 (delivered), each answered 200. Kannel makes the
/// two report calls at once (on separate connections), so their order is not kept: the
/// exchanges are compared sorted.
fn check_exchanges(seen: &mut [Exchange]) {
    seen.sort_by(|a, b| (&a.0, a.2.get("status")).cmp(&(&b.0, b.2.get("status"))));
    let mo: Vec<_> = seen.iter().filter(|e| e.0 == "/channels/sms/mo").collect();
    assert_eq!(mo.len(), 1, "{seen:?}");
    assert_eq!(mo[0].3, 200);
    assert_eq!(mo[0].2["from"], CONSUMER);
    assert_eq!(mo[0].2["charset"], "UTF-16BE");
    let dlr_statuses: Vec<_> = seen
        .iter()
        .filter(|e| e.0 == "/channels/sms/dlr")
        .map(|e| (e.2["status"].clone(), e.3))
        .collect();
    assert_eq!(
        dlr_statuses,
        vec![("1".to_owned(), 200), ("8".to_owned(), 200)],
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_round_trip_through_the_real_kannel_and_the_fake_agree() {
    let mut fake = scenario(false).await.expect("the fake always runs");
    check_exchanges(&mut fake);
    let Some(mut real) = scenario(true).await else {
        return;
    };
    check_exchanges(&mut real);
    assert_eq!(
        real, fake,
        "the fake Kannel's callbacks differ from the real Kannel's"
    );
}

/// The SMS gateway is down (Kannel answers 503) while agents answer five consumers: the
/// released binary keeps every answer in its outbox, retries, and once Kannel is back each
/// consumer gets each answer once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_outage_delays_agent_messages_but_loses_none() {
    let sim: SimHandle = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let port = free_port();
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
    let sendsms = free_port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
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
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    assert!(
        eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok())
        .await,
        "switchboard did not start"
    );
    let _ = http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await;

    let phones: Vec<String> = (0..5).map(|i| format!("+1555000{i:04}")).collect();
    let mut conversations = Vec::new();
    for phone in &phones {
        kannel
            .send_mo(phone, SHORT_CODE, &format!("hello from {phone}"))
            .await
            .unwrap();
        let conversation = conversation_of(&sim, &format!("hello from {phone}"))
            .await
            .expect("the consumer's SMS reached LivePerson");
        sim.agent_accept(&conversation).unwrap();
        conversations.push(conversation);
    }

    kannel.set_unavailable(true);
    for (n, conversation) in conversations.iter().enumerate() {
        for k in 0..4 {
            sim.agent_send_text(conversation, &format!("answer {k} to consumer {n}"))
                .unwrap();
        }
    }
    // The connector hits the outage (and retries) before the gateway comes back.
    assert!(
        eventually(30, || kannel
            .requests()
            .iter()
            .filter(|r| r.status == 503)
            .count()
            >= 10)
        .await
    );
    kannel.set_unavailable(false);

    let delivered = |phone: &str| -> Vec<String> {
        kannel
            .requests()
            .into_iter()
            .filter(|r| r.status == 202 && r.params.get("to").map(String::as_str) == Some(phone))
            .map(|r| r.params["text"].clone())
            .collect()
    };
    let all_there = eventually(60, || phones.iter().all(|p| delivered(p).len() >= 4)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        all_there,
        "not everything arrived: {:?}",
        phones.iter().map(|p| delivered(p)).collect::<Vec<_>>()
    );
    for (n, phone) in phones.iter().enumerate() {
        let want: Vec<String> = (0..4)
            .map(|k| format!("answer {k} to consumer {n}"))
            .collect();
        assert_eq!(delivered(phone), want, "{phone}: once each, in order");
    }
}

/// An agent's image cannot travel by SMS: the consumer gets its caption and a link that
/// Switchboard serves, fetching the file from LivePerson when the link is opened. A link
/// someone altered or made up is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_image_reaches_an_sms_consumer_as_a_link_switchboard_serves() {
    use crate::support::TINY_PNG;
    let crate::media::AgentFileBySms {
        running, sms, link, ..
    } = &crate::media::agent_file_by_sms(CONSUMER).await;
    let (caption, link_line) = sms.split_once('\n').expect("caption, then the link");
    assert_eq!(caption, "your label");
    assert_eq!(link_line, link);
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/media/", running.port)),
        "{link}"
    );

    let http = reqwest::Client::new();
    let file = http.get(link.as_str()).send().await.unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "image/png");
    assert_eq!(file.bytes().await.unwrap().as_ref(), TINY_PNG);

    // One character of the token changed, or a token made up: not found.
    let token_start = link.find("/media/").unwrap() + "/media/".len();
    let mut altered = link.to_owned().into_bytes();
    altered[token_start + 3] = if altered[token_start + 3] == b'A' {
        b'B'
    } else {
        b'A'
    };
    for forged in [
        String::from_utf8(altered).unwrap(),
        format!(
            "http://127.0.0.1:{}/media/eyJjIjoiMyJ9.AAAA/x.png",
            running.port
        ),
    ] {
        let refused = http.get(&forged).send().await.unwrap();
        assert_eq!(refused.status(), 404, "{forged}");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

/// A fresh schema in the tests' PostgreSQL database: the admin URL and the schema's name.
/// `None` (skip) when `SWITCHBOARD_TEST_POSTGRES_URL` is unset outside CI.
pub(crate) async fn postgres_schema(prefix: &str) -> Option<(String, String)> {
    const VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";
    let Ok(admin) = std::env::var(VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{VAR} must be set under CI"
        );
        eprintln!("skipping: set {VAR} to run the PostgreSQL tests");
        return None;
    };
    use sqlx::Connection as _;
    let schema = format!("{prefix}_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    for sql in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    Some((admin, schema))
}

pub(crate) async fn drop_schema(admin: &str, schema: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The released binary on a config file of its own, stopped and started again by the test
/// (its store survives).
struct Connector {
    config: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl Connector {
    async fn start(&mut self) {
        let child = crate::support::switchboard_command()
            .args(["run", "--config"])
            .arg(&self.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        assert!(
            eventually(30, || std::net::TcpStream::connect(("127.0.0.1", port))
                .is_ok())
            .await,
            "switchboard did not start"
        );
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether LivePerson shows the consumer's ACCEPT of the agent's message `sequence`.
async fn accepted(sim: &SimHandle, conversation: &str, sequence: u64, secs: u64) -> bool {
    sim.wait_for_conversation(conversation, Duration::from_secs(secs), |c| {
        c.transcript.iter().any(|t| {
            t.role == "CONSUMER"
                && t.event["type"] == "AcceptStatusEvent"
                && t.event["status"] == "ACCEPT"
                && t.event["sequenceList"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|s| s.as_u64() == Some(sequence)))
        })
    })
    .await
    .is_some()
}

/// Issue #18, through the released binary and the real Kannel, set up as in production: a
/// token as `openssl rand -hex 32` makes, and bearerbox keeping the reports it waits for in
/// PostgreSQL (Kannel's example DLR table: `url varchar(255)`), so that they survive a
/// bearerbox restart. The handset's delivery report of each agent message becomes LivePerson's
/// ACCEPT of that message's sequence, also when the connector restarted between the send and
/// the report (Kannel retries the report; the connector finds the message in its store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handsets_report_through_the_real_kannel_is_the_agents_accept_even_after_a_restart() {
    use switchboard_testkit::kannel::{DlrStorage, POSTGRES_DLR_TABLE, PostgresDlr};
    let Some((admin, schema)) = postgres_schema("sb_kannel_dlr").await else {
        return;
    };
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let table = POSTGRES_DLR_TABLE.replacen("dlr", &format!("{schema}.dlr"), 1);
        sqlx::query(&table).execute(&mut conn).await.unwrap();
    }
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let (port, sendsms) = (free_port(), free_port());
    sim.set_webhook_endpoint(&format!("http://127.0.0.1:{port}/webhooks/liveperson"));
    let recorder = Recorder::default();
    *recorder.target.lock().unwrap() = format!("http://127.0.0.1:{port}");
    let proxy = recorder.start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = "3f9c2a7be41d05c6a8f3e9d2b7c4015e6a9d3f8c2b1e7a4d5c6f9e0a1b2c3d4e";
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[store]
url = "sqlite://{db}"
{liveperson}[channels.sms-main]
kind = "sms"
gateway = "kannel"
from = "+15550001111"
callback_token = "{token}"
callback_base_url = "http://{proxy}/channels/sms-main"
sendsms_url = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms"
username = "switchboard"
password = "sendsms-password-42"
"#,
        db = dir.path().join("sb.db").display(),
        liveperson = liveperson_toml(&sim, 0.001),
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, &toml).unwrap();
    let snippet = kannel_config_of(&config);
    let storage = DlrStorage::Postgres(PostgresDlr::from_url(&admin, &schema).unwrap());
    let Some(kannel) = RealKannel::start_or_skip_with(&snippet, sendsms, &storage)
        .await
        .unwrap()
    else {
        drop_schema(&admin, &schema).await;
        return;
    };
    let mut connector = Connector {
        config,
        port,
        child: None,
    };
    connector.start().await;

    kannel
        .send_mo(CONSUMER, "+15550001111", "where is my parcel")
        .await
        .unwrap();
    let conversation = conversation_of(&sim, "where is my parcel")
        .await
        .unwrap_or_else(|| panic!("the SMS never reached LivePerson\n{}", kannel.logs()));
    sim.agent_accept(&conversation).unwrap();

    // The handset's report reaches the connector at once.
    let first = sim
        .agent_send_text(&conversation, "It ships today.")
        .unwrap();
    assert!(
        accepted(&sim, &conversation, first, 60).await,
        "no ACCEPT of the agent's message; reports {:?}\n{}",
        recorder.reports(),
        kannel.logs()
    );

    // The connector is down when the report of the next message comes: Kannel keeps it and
    // retries (`http-request-retry`), and the restarted connector maps it to its message.
    recorder
        .hold_reports
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let second = sim
        .agent_send_text(&conversation, "Tracking: 1Z999AA10123456784")
        .unwrap();
    let held = || recorder.reports().iter().filter(|r| r.3 == 503).count();
    assert!(
        eventually(30, || kannel.mt_lines().len() >= 2 && held() >= 1).await,
        "the second message did not leave Kannel: {:?}\n{}",
        kannel.mt_lines(),
        kannel.logs()
    );
    connector.stop();
    connector.start().await;
    recorder
        .hold_reports
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(
        accepted(&sim, &conversation, second, 90).await,
        "no ACCEPT after the restart; reports {:?}\n{}",
        recorder.reports(),
        kannel.logs()
    );
    assert!(
        held() >= 1,
        "the report was held while the connector was down"
    );
    assert_eq!(kannel.mt_lines().len(), 2, "each message once");
    connector.stop();
    drop(kannel);
    drop_schema(&admin, &schema).await;
}

/// A Vonage inbound webhook as Vonage signs it (HMAC-SHA256 here), as a form body.
fn vonage_inbound(secret: &str, fields: &[(&str, String)]) -> String {
    use switchboard_channel_sms::vonage::signature::{SignatureMethod, sign};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut params: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    params.push(("timestamp".into(), now.to_string()));
    params.push(("nonce".into(), uuid_like(&params)));
    let raw: Vec<(Vec<u8>, Vec<u8>)> = params
        .iter()
        .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
        .collect();
    params.push(("sig".into(), sign(SignatureMethod::Sha256, secret, &raw)));
    serde_urlencoded::to_string(&params).unwrap()
}

/// A nonce that differs for every webhook of a test.
fn uuid_like(params: &[(String, String)]) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!(
        "{n:08x}-{:04x}-4000-8000-{:012x}",
        params.len(),
        std::process::id()
    )
}

/// Issue #21 item 2, through the released binary: three connector instances share one
/// PostgreSQL store behind a load balancer, and the parts of each long Vonage message reach
/// different instances at once. Every message reaches LivePerson exactly once, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_put_each_long_vonage_sms_together_once() {
    const SECRET: &str = "sig-s3cret-0123456789abcdef";
    let Some((admin, schema)) = postgres_schema("sb_vonage_parts").await else {
        return;
    };
    let separator = if admin.contains('?') { '&' } else { '?' };
    let store = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    sim.set_webhook_endpoint(&format!(
        "http://127.0.0.1:{}/webhooks/liveperson",
        ports[0]
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[store]
url = "{store}"
{liveperson}[channels.sms-vonage]
kind = "sms"
gateway = "vonage"
from = "+447700900000"
api_key = "abcd1234"
api_secret = "api-s3cret-XYZ"
signature_secret = "{SECRET}"
signature_method = "sha256"
api_base_url = "http://127.0.0.1:9"
"#,
            liveperson = liveperson_toml(&sim, 0.001),
        );
        let config = dir.path().join(format!("switchboard-{i}.toml"));
        std::fs::write(&config, toml).unwrap();
        let mut connector = Connector {
            config,
            port: *port,
            child: None,
        };
        connector.start().await;
        instances.push(connector);
    }
    let http = reqwest::Client::new();
    let post = |port: u16, body: String| {
        let http = http.clone();
        async move {
            http.post(format!(
                "http://127.0.0.1:{port}/channels/sms-vonage/inbound"
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
        }
    };
    let fields = |id: &str, text: &str| {
        vec![
            ("api-key", "abcd1234".to_owned()),
            ("msisdn", "447700900001".to_owned()),
            ("to", "447700900000".to_owned()),
            ("messageId", id.to_owned()),
            ("text", text.to_owned()),
            ("type", "text".to_owned()),
            (
                "keyword",
                text.split_whitespace().next().unwrap_or("").to_uppercase(),
            ),
            ("message-timestamp", "2026-01-01 12:00:00".to_owned()),
        ]
    };
    let messages = 6;
    for m in 0..messages {
        let parts: Vec<String> = (1..=3).map(|p| format!("message {m} part {p}; ")).collect();
        // Every part at once, each at another instance (the balancer's choice).
        let calls = (1..=3u32).map(|p| {
            let mut f = fields(&format!("0A{m:02}{p}"), &parts[(p - 1) as usize]);
            f.push(("concat", "true".into()));
            f.push(("concat-ref", format!("{}", 17 + m)));
            f.push(("concat-total", "3".into()));
            f.push(("concat-part", p.to_string()));
            post(ports[(m + p as usize) % 3], vonage_inbound(SECRET, &f))
        });
        let answers = futures::future::join_all(calls).await;
        assert_eq!(answers, [200, 200, 200], "message {m}");
    }
    // A last, single message from the same consumer: once it is in LivePerson, everything
    // before it is too (one consumer's events reach LivePerson in order).
    assert_eq!(
        post(
            ports[0],
            vonage_inbound(SECRET, &fields("0AFF", "that is all"))
        )
        .await,
        200
    );
    let conversation = conversation_of(&sim, "that is all")
        .await
        .expect("the messages reached LivePerson");
    let texts: Vec<String> = sim
        .conversation(&conversation)
        .unwrap()
        .consumer_messages()
        .filter_map(|t| t.event["message"].as_str().map(str::to_owned))
        .collect();
    let mut expected: Vec<String> = (0..messages)
        .map(|m| {
            (1..=3)
                .map(|p| format!("message {m} part {p}; "))
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .collect();
    expected.push("that is all".to_owned());
    let mut sorted = texts.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "each long message once, whole: {texts:?}");
    for mut instance in instances {
        instance.stop();
    }
    drop_schema(&admin, &schema).await;
}
