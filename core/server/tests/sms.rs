//! The SMS channel end to end, the whole product: a consumer's SMS enters Kannel's SMSC, reaches
//! LivePerson (the simulator) as a message, the agent's answer leaves through Kannel to the
//! handset, and the handset's delivery report becomes an ACCEPT of that message in LivePerson.
//!
//! The same scenario runs against the real Kannel 1.4.5 (bearerbox + smsbox + fakesmsc, set up
//! with the groups `switchboard sms kannel-config` prints) and against the testkit's fake
//! Kannel; a recording proxy between Kannel and the connector captures every callback, and the
//! two runs must agree (the differential test spec/channels.md §3.10 asks for).

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
}

/// Forwards Kannel's callbacks to the connector and records them.
async fn proxy(State(rec): State<Recorder>, req: http::Request<Body>) -> http::Response<Body> {
    let uri = req.uri().clone();
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
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(proxy)
        .with_state(recorder.clone());
    tokio::spawn(async move { axum::serve(proxy_listener, app).await });

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

/// The MO, and the DLRs 8 (SMSC ack) and 1 (delivered), each answered 200.
fn check_exchanges(seen: &[Exchange]) {
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
        vec![("8".to_owned(), 200), ("1".to_owned(), 200)],
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_round_trip_through_the_real_kannel_and_the_fake_agree() {
    let fake = scenario(false).await.expect("the fake always runs");
    check_exchanges(&fake);
    let Some(real) = scenario(true).await else {
        return;
    };
    check_exchanges(&real);
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
{liveperson}[channels.sms]
kind = "sms"
gateway = "kannel"
from = "{SHORT_CODE}"
callback_token = "{TOKEN}"
callback_base_url = "http://127.0.0.1:{port}/channels/sms"
sendsms_url = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms"
username = "switchboard"
password = "sendsms-password-42"
"#,
        db = dir.path().join("sb.db").display(),
        liveperson = liveperson_toml(&sim, 0.001),
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, &toml).unwrap();
    let snippet = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sms", "kannel-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(snippet.status.success());
    let kannel = FakeKannel::start(&String::from_utf8(snippet.stdout).unwrap(), sendsms)
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
        let entry = sim
            .wait_for_consumer_message(&format!("hello from {phone}"), Duration::from_secs(30))
            .await
            .expect("the consumer's SMS reached LivePerson");
        let conversation = sim
            .conversations()
            .into_iter()
            .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
            .unwrap();
        sim.agent_accept(&conversation.conversation_id).unwrap();
        conversations.push(conversation.conversation_id);
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
