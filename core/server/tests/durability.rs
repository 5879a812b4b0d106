//! Issue 5's durability proofs: many consumers through a failing LivePerson, SIGKILL of the
//! real binary mid-stream, and three instances on one PostgreSQL database with one killed.
//! Each counts what was sent against what arrived: everything, once, in order per consumer.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_lp_sim::{RetryConfig, SimConfig, SimHandle, Simulator, WebhooksConfig};
use switchboard_testkit::fake_kannel::FakeKannel;
use switchboard_testkit::fake_slack::{FAKE_BOT_TOKEN, FakeSlack};

use crate::support::liveperson_toml;

/// Texts LivePerson received from each webchat session, in order.
fn received(sim: &SimHandle) -> BTreeMap<String, Vec<String>> {
    let mut by_session: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for conversation in sim.conversations() {
        for entry in conversation.consumer_messages() {
            if let Some(text) = entry.event["message"].as_str()
                && let Some((session, _)) = text.split_once(' ')
            {
                by_session
                    .entry(session.to_owned())
                    .or_default()
                    .push(text.to_owned());
            }
        }
    }
    by_session
}

/// The conversations each webchat session's messages went to (issue 5: a new consumer's
/// conversation is created exactly once, even when many of their messages arrive at once).
fn conversations_by_session(sim: &SimHandle) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_session: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for conversation in sim.conversations() {
        for entry in conversation.consumer_messages() {
            if let Some((session, _)) = entry.event["message"]
                .as_str()
                .and_then(|text| text.split_once(' '))
            {
                by_session
                    .entry(session.to_owned())
                    .or_default()
                    .insert(conversation.conversation_id.clone());
            }
        }
    }
    by_session
}

/// Every session had exactly one conversation, and LivePerson holds no other (an empty one
/// would be a second conversation opened for a consumer whose messages all went to the first).
fn assert_one_conversation_per_session(sim: &SimHandle, sessions: usize) {
    let by_session = conversations_by_session(sim);
    let several: Vec<_> = by_session.iter().filter(|(_, c)| c.len() != 1).collect();
    assert!(
        several.is_empty(),
        "conversations opened more than once: {several:#?}"
    );
    let all = sim.conversations();
    assert_eq!(
        all.len(),
        sessions,
        "one conversation per consumer; LivePerson has {} for {sessions} consumers",
        all.len()
    );
}

fn expected(sessions: usize, messages: usize) -> BTreeMap<String, Vec<String>> {
    (0..sessions)
        .map(|s| {
            let session = session(s);
            let texts = (0..messages)
                .map(|m| format!("{session} message-{m:04}"))
                .collect();
            (session, texts)
        })
        .collect()
}

fn session(s: usize) -> String {
    format!("session-{s:04}")
}

async fn start_sim() -> SimHandle {
    Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// LivePerson's TTL retries (as `switchboard manifest` asks for), so nothing is lost while
/// the webhook endpoint is down.
fn webhooks_to(sim: &SimHandle, port: u16) {
    sim.set_webhooks(WebhooksConfig {
        retry: RetryConfig {
            retention_time: Some(3600),
        },
        ..WebhooksConfig::all(
            &format!("http://127.0.0.1:{port}/webhooks/liveperson"),
            None,
        )
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The channel table of the webchat tests (consumers are webchat sessions).
const WEBCHAT: &str = "[channels.web]\nkind = \"webchat\"\n";

fn config(
    sim: &SimHandle,
    dir: &std::path::Path,
    port: u16,
    store_url: &str,
    retry_scale: f64,
) -> std::path::PathBuf {
    config_with(sim, dir, port, store_url, retry_scale, WEBCHAT)
}

/// A connector's configuration file with `channels` as its channel tables.
fn config_with(
    sim: &SimHandle,
    dir: &std::path::Path,
    port: u16,
    store_url: &str,
    retry_scale: f64,
    channels: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("sb-{port}.toml"));
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace_secs = 5
[store]
url = "{store_url}"
lease_secs = 2
{liveperson}{channels}"#,
        liveperson = liveperson_toml(sim, retry_scale),
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// A connector process, killed when dropped (a failing test leaves none behind).
struct Connector(Child);

impl std::ops::Deref for Connector {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Connector {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &std::path::Path, dir: &std::path::Path) -> Connector {
    Connector(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file(dir))
            .spawn()
            .unwrap(),
    )
}

/// A temporary folder for a test's connectors (configurations, SQLite, logs); kept when
/// `SWITCHBOARD_TEST_KEEP` is set.
fn test_dir() -> tempfile::TempDir {
    let mut dir = tempfile::tempdir().unwrap();
    if std::env::var_os("SWITCHBOARD_TEST_KEEP").is_some() {
        dir.disable_cleanup(true);
    }
    dir
}

/// The connector's log, appended to `switchboard.log` in the test's folder (kept when
/// `SWITCHBOARD_TEST_KEEP` is set, for looking into a failure).
fn log_file(dir: &std::path::Path) -> Stdio {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("switchboard.log"))
        .unwrap();
    Stdio::from(file)
}

async fn wait_healthy(http: &reqwest::Client, port: u16) {
    for _ in 0..600 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("switchboard on port {port} did not become ready");
}

/// Sends one session's messages in order, each until some instance answers 200 (what a
/// platform does when its webhook call fails), rotating over `ports`.
async fn send_session(
    http: reqwest::Client,
    ports: Arc<std::sync::Mutex<Vec<u16>>>,
    s: usize,
    messages: usize,
    acked: Arc<AtomicUsize>,
) {
    let session = session(s);
    for m in 0..messages {
        let body = serde_json::json!({ "session": session, "id": format!("{session}-m{m:04}"), "text": format!("{session} message-{m:04}") });
        let mut attempt = 0usize;
        loop {
            let port = {
                let ports = ports.lock().unwrap();
                ports[(s + m + attempt) % ports.len()]
            };
            let sent = http
                .post(format!("http://127.0.0.1:{port}/channels/web/messages"))
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if matches!(&sent, Ok(r) if r.status() == 200) {
                acked.fetch_add(1, Ordering::SeqCst);
                break;
            }
            attempt += 1;
            assert!(attempt < 2000, "{session} message {m} never accepted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Per session, what differs from the expected sequence (compact, for failure messages).
fn differences(
    got: &BTreeMap<String, Vec<String>>,
    want: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (session, expected) in want {
        let actual = got.get(session).cloned().unwrap_or_default();
        if &actual == expected {
            continue;
        }
        let missing: Vec<_> = expected.iter().filter(|m| !actual.contains(m)).collect();
        let mut seen = std::collections::HashSet::new();
        let duplicated: Vec<_> = actual.iter().filter(|m| !seen.insert(*m)).collect();
        problems.push(format!(
            "{session}: {} received, missing {missing:?}, duplicated {duplicated:?}, order ok: {}",
            actual.len(),
            actual.windows(2).all(|w| w[0] <= w[1])
        ));
    }
    problems
}

async fn wait_for_everything(
    sim: &SimHandle,
    want: &BTreeMap<String, Vec<String>>,
    within: Duration,
) {
    wait_for_everything_or_explain(sim, want, within, String::new).await;
}

/// [`wait_for_everything`], adding `explain()` (what the connector said about it) to the
/// failure's message.
async fn wait_for_everything_or_explain(
    sim: &SimHandle,
    want: &BTreeMap<String, Vec<String>>,
    within: Duration,
    explain: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = received(sim);
        let total: usize = got.values().map(Vec::len).sum();
        let wanted: usize = want.values().map(Vec::len).sum();
        if total >= wanted {
            // Give a possible duplicate time to show up before comparing.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let problems = differences(&received(sim), want);
            assert!(
                problems.is_empty(),
                "not everything exactly once in order: {problems:#?}"
            );
            assert_one_conversation_per_session(sim, want.len());
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {total} of {wanted} arrived: {:#?}\n{}",
            differences(&got, want),
            explain()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lines of a connector's log that tell why an event went missing (dead letters, open
/// conversations LivePerson knows and we do not, errors), the last 40 of them.
fn connector_findings(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("dead") || l.contains("already has open") || l.contains("error")
        })
        .collect();
    let from = lines.len().saturating_sub(40);
    format!(
        "connector log ({} such lines, the last {}):\n{}",
        lines.len(),
        lines.len() - from,
        lines[from..].join("\n")
    )
}

/// One connector on SQLite, wired to `sim`, up and ready.
struct Single {
    dir: tempfile::TempDir,
    port: u16,
    config: std::path::PathBuf,
    child: Connector,
}

async fn single(sim: &SimHandle, http: &reqwest::Client, retry_scale: f64) -> Single {
    single_with_lease(sim, http, retry_scale, 2).await
}

/// [`single`] with a lease of `lease_secs`.
async fn single_with_lease(
    sim: &SimHandle,
    http: &reqwest::Client,
    retry_scale: f64,
    lease_secs: u64,
) -> Single {
    let dir = test_dir();
    eprintln!(
        "connector log: {}",
        dir.path().join("switchboard.log").display()
    );
    let port = free_port();
    webhooks_to(sim, port);
    let store = format!("sqlite://{}", dir.path().join("sb.db").display());
    let config = config(sim, dir.path(), port, &store, retry_scale);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("lease_secs = 2\n"),
        "the test config sets the lease"
    );
    let text = text.replace("lease_secs = 2\n", &format!("lease_secs = {lease_secs}\n"));
    std::fs::write(&config, text).unwrap();
    let child = spawn(&config, dir.path());
    wait_healthy(http, port).await;
    Single {
        dir,
        port,
        config,
        child,
    }
}

/// Starts one sender task per session.
fn senders(
    http: &reqwest::Client,
    ports: &Arc<std::sync::Mutex<Vec<u16>>>,
    (sessions, messages): (usize, usize),
    acked: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..sessions)
        .map(|s| {
            tokio::spawn(send_session(
                http.clone(),
                ports.clone(),
                s,
                messages,
                acked.clone(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_and_duplicates_nothing() {
    let sim = start_sim().await;
    let http = reqwest::Client::new();
    // Unscaled enough that the wait for LivePerson's echo after the crash is realistic.
    let mut one = single(&sim, &http, 0.2).await;
    let shape = (10, 30);
    let acked = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(std::sync::Mutex::new(vec![one.port]));
    let tasks = senders(&http, &ports, shape, &acked);
    while acked.load(Ordering::SeqCst) < shape.0 * shape.1 / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    one.child.kill().unwrap(); // SIGKILL
    one.child.wait().unwrap();
    let mut child = spawn(&one.config, one.dir.path());
    for task in tasks {
        task.await.unwrap();
    }
    wait_for_everything(&sim, &expected(shape.0, shape.1), Duration::from_secs(90)).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_through_a_failing_liveperson_arrive_once_in_order() {
    let sim = start_sim().await;
    sim.set_error_rate(0.3);
    let http = reqwest::Client::new();
    // A 10 s lease, not the 2 s of the tests that kill instances: nothing is killed here, and
    // with both cores busy a 2 s lease ran out while a send was in flight. That send's echo is
    // then awaited until the deadline, scaled here to 3.15 s while the echo waits in real time
    // behind its conversation's earlier notifications: the text went again and arrived twice.
    let mut one = single_with_lease(&sim, &http, 0.01, 10).await;
    let shape = (500, 20);
    let acked = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(std::sync::Mutex::new(vec![one.port]));
    for task in senders(&http, &ports, shape, &acked) {
        task.await.unwrap();
    }
    wait_for_everything(&sim, &expected(shape.0, shape.1), Duration::from_secs(300)).await;
    one.child.kill().unwrap();
    one.child.wait().unwrap();
}

/// A fresh schema `{prefix}_{pid}` in the PostgreSQL database of the tests: the admin
/// connection (to drop it at the end), its name and the store URL using it. `None` (skip)
/// when `SWITCHBOARD_TEST_POSTGRES_URL` is unset outside CI.
async fn postgres_schema(prefix: &str) -> Option<(sqlx::PgConnection, String, String)> {
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
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let separator = if admin.contains('?') { '&' } else { '?' };
    let store = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
    Some((conn, schema, store))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_with_one_killed_deliver_everything_once_in_order() {
    let Some((mut conn, schema, store)) = postgres_schema("sb_three").await else {
        return;
    };
    let sim = start_sim().await;
    let dir = test_dir();
    eprintln!(
        "connector logs: {}",
        dir.path().join("switchboard.log").display()
    );
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // LivePerson calls one address, a load balancer spreading its webhooks over the
    // instances: any instance may take any webhook (the echoes of the consumers' messages).
    let balancer = Proxy::start(ports.clone(), None).await;
    webhooks_to(&sim, balancer.port);
    let http = reqwest::Client::new();
    let mut children: Vec<Connector> = ports
        .iter()
        .map(|&p| spawn(&config(&sim, dir.path(), p, &store, 0.2), dir.path()))
        .collect();
    for &p in &ports {
        wait_healthy(&http, p).await;
    }
    let (sessions, messages) = (12, 25);
    let acked = Arc::new(AtomicUsize::new(0));
    let live = Arc::new(std::sync::Mutex::new(ports.clone()));
    let tasks = senders(&http, &live, (sessions, messages), &acked);
    while acked.load(Ordering::SeqCst) < sessions * messages / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The third instance dies mid-stream; its leases expire and the others take over.
    children[2].kill().unwrap();
    children[2].wait().unwrap();
    live.lock().unwrap().truncate(2);
    balancer.set_targets(ports[..2].to_vec());
    for task in tasks {
        task.await.unwrap();
    }
    wait_for_everything(
        &sim,
        &expected(sessions, messages),
        Duration::from_secs(120),
    )
    .await;
    for child in children.iter_mut().take(2) {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// SIGTERM while consumers are sending: the connector stops taking requests, finishes or keeps
/// in the store what it accepted, and exits cleanly; after a restart everything arrives once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_everything_accepted() {
    let sim = start_sim().await;
    let http = reqwest::Client::new();
    let mut one = single(&sim, &http, 0.05).await;
    let shape = (10, 30);
    let acked = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(std::sync::Mutex::new(vec![one.port]));
    let tasks = senders(&http, &ports, shape, &acked);
    while acked.load(Ordering::SeqCst) < shape.0 * shape.1 / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &one.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = one.child.wait().unwrap();
    assert!(exit.success(), "switchboard exited with {exit} on SIGTERM");
    let mut child = spawn(&one.config, one.dir.path());
    for task in tasks {
        task.await.unwrap();
    }
    wait_for_everything(&sim, &expected(shape.0, shape.1), Duration::from_secs(90)).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// LivePerson is down for a whole minute in the middle of the traffic: consumers' messages are
/// still accepted (they are stored), and once LivePerson is back every one arrives once, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_minute_liveperson_outage_loses_nothing() {
    let sim = start_sim().await;
    let http = reqwest::Client::new();
    let mut one = single(&sim, &http, 0.05).await;
    let shape = (20, 10);
    let acked = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(std::sync::Mutex::new(vec![one.port]));
    let tasks = senders(&http, &ports, shape, &acked);
    while acked.load(Ordering::SeqCst) < shape.0 * shape.1 / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.outage(Duration::from_secs(60));
    for task in tasks {
        task.await.unwrap();
    }
    // Everything was accepted during the outage; LivePerson got at most what came before it.
    let before: usize = received(&sim).values().map(Vec::len).sum();
    assert!(before < shape.0 * shape.1, "the outage hid nothing");
    // An event that never arrives has either become a dead letter or is still waiting: the
    // connector's log says which, and why.
    let log = one.dir.path().join("switchboard.log");
    wait_for_everything_or_explain(
        &sim,
        &expected(shape.0, shape.1),
        Duration::from_secs(180),
        || connector_findings(&log),
    )
    .await;
    one.child.kill().unwrap();
    one.child.wait().unwrap();
}

// ---------------------------------------------------------------------------------------------
// LivePerson → channel: agents answering SMS consumers through the testkit's fake Kannel,
// whose record of sendsms calls outlives any connector process.

/// The short code consumers write to.
const SHORT_CODE: &str = "1000";

/// An `sms` channel on Kannel: sendsms on `127.0.0.1:{sendsms}`, callbacks at `callbacks`
/// (`http://host:port`, a connector or a load balancer in front of several).
/// `report_wait_secs = 10`: a gateway call cut off by a
/// SIGKILL before it reached the fake Kannel has no report to wait for, so it is sent again
/// once the wait is over; the default 2 minutes would outlast the tests' budget (the fake
/// reports the SMSC's acceptance at once, as Kannel does with an SMSC connected).
fn sms_table(callbacks: &str, sendsms: u16) -> String {
    format!(
        r#"[channels.sms]
kind = "sms"
gateway = "kannel"
from = "{SHORT_CODE}"
callback_token = "kannel-callback-token-0123456789"
callback_base_url = "{callbacks}/channels/sms"
sendsms_url = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms"
username = "switchboard"
password = "sendsms-password-42"
report_wait_secs = 10
"#
    )
}

/// The fake Kannel, set up from the groups `switchboard sms kannel-config` prints for `config`.
async fn start_fake_kannel(config: &std::path::Path, sendsms: u16) -> FakeKannel {
    let snippet = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sms", "kannel-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        snippet.status.success(),
        "{}",
        String::from_utf8_lossy(&snippet.stderr)
    );
    FakeKannel::start(&String::from_utf8(snippet.stdout).unwrap(), sendsms)
        .await
        .unwrap()
}

fn phone(i: usize) -> String {
    format!("+1555010{i:04}")
}

fn answer(k: usize, phone: &str) -> String {
    format!("answer {k:03} to {phone}")
}

/// Each phone writes first (which opens its conversation) and an agent accepts; returns each
/// phone's conversation.
async fn open_sms_conversations(
    sim: &SimHandle,
    kannel: &FakeKannel,
    phones: &[String],
) -> Vec<(String, String)> {
    for phone in phones {
        kannel
            .send_mo(phone, SHORT_CODE, &format!("hello from {phone}"))
            .await
            .unwrap();
    }
    let mut conversations = Vec::new();
    for phone in phones {
        let entry = sim
            .wait_for_consumer_message(&format!("hello from {phone}"), Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("{phone}'s first SMS never reached LivePerson"));
        let conversation = sim
            .conversations()
            .into_iter()
            .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
            .unwrap()
            .conversation_id;
        sim.agent_accept(&conversation).unwrap();
        conversations.push((conversation, phone.clone()));
    }
    conversations
}

/// Agents answer every conversation `n` times, round after round, `pause` apart.
fn agents_answer(
    sim: &SimHandle,
    conversations: Vec<(String, String)>,
    n: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let sim = sim.state().clone();
    tokio::spawn(async move {
        for k in 0..n {
            for (conversation, phone) in &conversations {
                sim.agent_send_text(conversation, &answer(k, phone))
                    .unwrap();
            }
            tokio::time::sleep(pause).await;
        }
    })
}

/// How many agents' answers the gateway took, all phones together.
fn answer_count(kannel: &FakeKannel) -> usize {
    answers_carried(kannel).values().map(Vec::len).sum()
}

/// Waits (up to 30 s) until the gateway took at least `count` answers; whether it did.
async fn answers_reach(kannel: &FakeKannel, count: usize) -> bool {
    for _ in 0..1200 {
        if answer_count(kannel) >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    answer_count(kannel) >= count
}

/// The agents' answers the gateway took for each phone, in the order it took them.
fn answers_carried(kannel: &FakeKannel) -> BTreeMap<String, Vec<String>> {
    let mut by_phone: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in kannel.requests() {
        if request.status != 202 {
            continue;
        }
        if let (Some(to), Some(text)) = (request.params.get("to"), request.params.get("text"))
            && text.starts_with("answer ")
        {
            by_phone.entry(to.clone()).or_default().push(text.clone());
        }
    }
    by_phone
}

fn expected_answers(phones: &[String], n: usize) -> BTreeMap<String, Vec<String>> {
    phones
        .iter()
        .map(|p| (p.clone(), (0..n).map(|k| answer(k, p)).collect()))
        .collect()
}

/// `texts` with every immediate repeat dropped, and how many there were.
fn without_immediate_repeats(texts: &[String]) -> (Vec<String>, usize) {
    let mut kept: Vec<String> = Vec::new();
    let mut repeats = 0;
    for text in texts {
        if kept.last() == Some(text) {
            repeats += 1;
        } else {
            kept.push(text.clone());
        }
    }
    (kept, repeats)
}

/// Waits until every answer reached its phone, then requires each phone's answers in the order
/// the agent sent them, each once, except for at most `repeats_allowed` immediate repeats in
/// all: a delivery the gateway took just before a SIGKILL, before the store recorded it, is
/// made again after the restart (sendsms has no idempotency key), right after itself since
/// the consumer's later events wait behind it. Returns the repeats.
async fn wait_for_answers(
    kannel: &FakeKannel,
    want: &BTreeMap<String, Vec<String>>,
    within: Duration,
    repeats_allowed: usize,
) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let all_there = |got: &BTreeMap<String, Vec<String>>| {
        want.iter().all(|(phone, texts)| {
            let carried = got.get(phone).cloned().unwrap_or_default();
            texts.iter().all(|t| carried.contains(t))
        })
    };
    loop {
        let got = answers_carried(kannel);
        if all_there(&got) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every answer arrived: {:#?}",
            want.iter()
                .map(|(phone, texts)| {
                    let carried = got.get(phone).cloned().unwrap_or_default();
                    let missing: Vec<_> = texts.iter().filter(|t| !carried.contains(t)).collect();
                    (phone, missing)
                })
                .filter(|(_, missing)| !missing.is_empty())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a possible duplicate time to show up before comparing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = answers_carried(kannel);
    let mut repeats = 0;
    for (phone, texts) in want {
        let carried = got.get(phone).cloned().unwrap_or_default();
        let (once, repeated) = without_immediate_repeats(&carried);
        assert_eq!(
            &once, texts,
            "{phone}: every answer once, in the order sent (carried: {carried:?})"
        );
        repeats += repeated;
    }
    assert!(
        repeats <= repeats_allowed,
        "{repeats} answers repeated, at most {repeats_allowed} allowed: {got:#?}"
    );
    repeats
}

/// A reverse proxy where LivePerson (and the gateway) call: it spreads requests over the
/// connectors in `targets`, round robin, as a load balancer does (a target that does not
/// answer gets the caller `502`, and the caller retries), and it may hold back the answer to
/// every other new request, as a connector slower than its caller's timeout would.
#[derive(Clone)]
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    targets: std::sync::Mutex<Vec<u16>>,
    next: AtomicUsize,
    hold: Option<Duration>,
    seen: std::sync::Mutex<HashSet<u64>>,
    new_requests: AtomicUsize,
    held: AtomicUsize,
    http: reqwest::Client,
}

impl Proxy {
    async fn start(targets: Vec<u16>, hold: Option<Duration>) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            targets: std::sync::Mutex::new(targets),
            next: AtomicUsize::new(0),
            hold,
            seen: std::sync::Mutex::new(HashSet::new()),
            new_requests: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(proxy_forward)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { port, state }
    }

    /// Where requests go from now on (a load balancer taking a dead instance out).
    fn set_targets(&self, targets: Vec<u16>) {
        *self.state.targets.lock().unwrap() = targets;
    }

    /// How many answers were held back.
    fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }
}

async fn proxy_forward(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use std::hash::{Hash, Hasher};
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let hold = state.hold.filter(|_| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        parts.uri.hash(&mut hasher);
        body.hash(&mut hasher);
        let new = state.seen.lock().unwrap().insert(hasher.finish());
        new && state.new_requests.fetch_add(1, Ordering::SeqCst) % 2 == 0
    });
    let port = {
        let targets = state.targets.lock().unwrap();
        targets[state.next.fetch_add(1, Ordering::SeqCst) % targets.len()]
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut forwarded = state
        .http
        .request(
            parts.method.clone(),
            format!("http://127.0.0.1:{port}{path}"),
        )
        .timeout(Duration::from_secs(30))
        .body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            forwarded = forwarded.header(name, value);
        }
    }
    // Forwarded in a task of its own: the connector gets the whole request even when the
    // caller gives up waiting.
    let answer = tokio::spawn(async move {
        let response = forwarded.send().await.ok()?;
        let status = response.status();
        Some((status, response.bytes().await.unwrap_or_default()))
    })
    .await
    .ok()
    .flatten();
    if let Some(hold) = hold {
        state.held.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(hold).await;
    }
    use axum::response::IntoResponse as _;
    match answer {
        Some((status, body)) => (status, body).into_response(),
        None => http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Issue 5 (b) in the other direction: agents answer eight SMS consumers while the connector
/// is killed with SIGKILL and restarted. LivePerson's webhooks wait for it (LivePerson retries
/// them), what was accepted waits in the store, and every answer reaches its phone, in the
/// order the agent sent it. The one thing a crash can do is repeat a delivery the gateway took
/// just before it (see [`wait_for_answers`]): at most one per consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_answers_through_a_sigkill_reach_every_sms_consumer_once_in_order() {
    let sim = start_sim().await;
    let http = reqwest::Client::new();
    let dir = test_dir();
    eprintln!(
        "connector log: {}",
        dir.path().join("switchboard.log").display()
    );
    let (port, sendsms) = (free_port(), free_port());
    webhooks_to(&sim, port);
    let store = format!("sqlite://{}", dir.path().join("sb.db").display());
    let channels = sms_table(&format!("http://127.0.0.1:{port}"), sendsms);
    let config = config_with(&sim, dir.path(), port, &store, 0.05, &channels);
    let kannel = start_fake_kannel(&config, sendsms).await;
    let mut child = spawn(&config, dir.path());
    wait_healthy(&http, port).await;

    let phones: Vec<String> = (0..8).map(phone).collect();
    let conversations = open_sms_conversations(&sim, &kannel, &phones).await;
    let n = 25;
    let agents = agents_answer(&sim, conversations, n, Duration::from_millis(60));
    let total = phones.len() * n;
    assert!(
        answers_reach(&kannel, total / 3).await,
        "the answers did not start flowing"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        answer_count(&kannel) < total,
        "the connector was killed after everything was delivered"
    );
    // LivePerson meets a dead endpoint for a while, and retries.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut child = spawn(&config, dir.path());
    agents.await.unwrap();
    let repeats = wait_for_answers(
        &kannel,
        &expected_answers(&phones, n),
        Duration::from_secs(120),
        phones.len(),
    )
    .await;
    eprintln!("{repeats} deliveries made again after the SIGKILL");
    assert_eq!(
        sim.conversations().len(),
        phones.len(),
        "one conversation per consumer"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue 10's slow webhook handling: the connector answers LivePerson later than LivePerson
/// waits for an answer (its delivery timeout, here 250 ms), so LivePerson counts the delivery
/// failed and makes it again. A proxy in front of the connector holds back the answer to every
/// other notification for 700 ms (the connector has handled it by then, as a slow one would
/// have). Every agent answer reaches its consumer once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_answered_slower_than_liveperson_waits_deliver_once_in_order() {
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        webhook_timeout_ms: 250,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let dir = test_dir();
    eprintln!(
        "connector log: {}",
        dir.path().join("switchboard.log").display()
    );
    let (port, sendsms) = (free_port(), free_port());
    let slow = Proxy::start(vec![port], Some(Duration::from_millis(700))).await;
    webhooks_to(&sim, slow.port);
    let store = format!("sqlite://{}", dir.path().join("sb.db").display());
    let channels = sms_table(&format!("http://127.0.0.1:{port}"), sendsms);
    let config = config_with(&sim, dir.path(), port, &store, 0.05, &channels);
    let kannel = start_fake_kannel(&config, sendsms).await;
    let mut child = spawn(&config, dir.path());
    wait_healthy(&http, port).await;

    let phones: Vec<String> = (0..5).map(phone).collect();
    let conversations = open_sms_conversations(&sim, &kannel, &phones).await;
    let n = 8;
    agents_answer(&sim, conversations, n, Duration::from_millis(20))
        .await
        .unwrap();
    wait_for_answers(
        &kannel,
        &expected_answers(&phones, n),
        Duration::from_secs(120),
        0,
    )
    .await;
    assert_eq!(
        sim.conversations().len(),
        phones.len(),
        "one conversation per consumer"
    );
    assert!(slow.held() > 0, "no answer was held back");
    eprintln!("held {} answers", slow.held());
    let delivered_again = sim
        .webhook_deliveries()
        .iter()
        .filter(|d| {
            d.statuses.first() == Some(&None)
                && d.outcome == switchboard_lp_sim::DeliveryOutcome::Delivered
        })
        .count();
    eprintln!("{delivered_again} notifications delivered again after a timeout");
    assert!(
        delivered_again > 0,
        "LivePerson never timed out on a held answer and delivered again"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Issue 5 (c) for LivePerson's webhooks: three instances on one PostgreSQL database behind a
/// load balancer that spreads LivePerson's webhooks (each delivered twice, the copies to other
/// instances) and the gateway's callbacks over all of them; one instance is killed mid-stream
/// and taken out. Any instance takes any webhook, and every consumer gets the agents' answers
/// in the order they were sent, each once but for a delivery the killed instance had in flight
/// (see [`wait_for_answers`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_a_load_balancer_deliver_agent_answers_once_in_order() {
    let Some((mut conn, schema, store)) = postgres_schema("sb_three_lb").await else {
        return;
    };
    let sim = start_sim().await;
    let dir = test_dir();
    eprintln!(
        "connector logs: {}",
        dir.path().join("switchboard.log").display()
    );
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let sendsms = free_port();
    let balancer = Proxy::start(ports.clone(), None).await;
    webhooks_to(&sim, balancer.port);
    sim.set_duplicate_webhooks(true);
    let channels = sms_table(&format!("http://127.0.0.1:{}", balancer.port), sendsms);
    let configs: Vec<_> = ports
        .iter()
        .map(|&p| config_with(&sim, dir.path(), p, &store, 0.05, &channels))
        .collect();
    let kannel = start_fake_kannel(&configs[0], sendsms).await;
    let mut children: Vec<Connector> = configs.iter().map(|c| spawn(c, dir.path())).collect();
    let http = reqwest::Client::new();
    for &p in &ports {
        wait_healthy(&http, p).await;
    }

    let phones: Vec<String> = (0..9).map(phone).collect();
    let conversations = open_sms_conversations(&sim, &kannel, &phones).await;
    let n = 20;
    let agents = agents_answer(&sim, conversations, n, Duration::from_millis(50));
    let total = phones.len() * n;
    // Killed a third of the way through, or later if the answers are slow to start.
    answers_reach(&kannel, total / 3).await;
    children[2].kill().unwrap(); // SIGKILL
    children[2].wait().unwrap();
    balancer.set_targets(ports[..2].to_vec());
    agents.await.unwrap();
    let repeats = wait_for_answers(
        &kannel,
        &expected_answers(&phones, n),
        Duration::from_secs(120),
        phones.len(),
    )
    .await;
    eprintln!("{repeats} deliveries made again after the SIGKILL");
    assert_eq!(
        sim.conversations().len(),
        phones.len(),
        "one conversation per consumer"
    );
    drop(children);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// An event one instance parked (it came before its predecessors) and then died, its release
/// timer with it, is released by another instance: every process sweeps the shared store for
/// parked events whose wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_parked_by_a_killed_instance_is_released_by_another() {
    let Some((mut conn, schema, store)) = postgres_schema("sb_parked").await else {
        return;
    };
    let sim = start_sim().await;
    let dir = test_dir();
    let (a, b, sendsms) = (free_port(), free_port(), free_port());
    webhooks_to(&sim, b);
    let channels = sms_table(&format!("http://127.0.0.1:{b}"), sendsms);
    let config_a = config_with(&sim, dir.path(), a, &store, 0.05, &channels);
    let config_b = config_with(&sim, dir.path(), b, &store, 0.05, &channels);
    let kannel = start_fake_kannel(&config_b, sendsms).await;
    let mut instance_a = spawn(&config_a, dir.path());
    let instance_b = spawn(&config_b, dir.path());
    let http = reqwest::Client::new();
    wait_healthy(&http, a).await;
    wait_healthy(&http, b).await;
    let phones = [phone(0)];
    let (conversation, _) = open_sms_conversations(&sim, &kannel, &phones)
        .await
        .remove(0);

    // An agent event far ahead in the dialog's sequence (its predecessors never come), taken
    // by instance A, which parks it and is killed before its wait is over.
    let body = serde_json::json!({
        "kind": "notification", "type": "ms.MessagingEventNotification",
        "body": { "changes": [ {
            "conversationId": conversation, "dialogId": conversation, "sequence": 10_000,
            "originatorId": "agent-1", "originatorMetadata": { "role": "ASSIGNED_AGENT" },
            "serverTimestamp": 1_700_000_000_000_i64,
            "event": { "type": "ContentEvent", "contentType": "text/plain", "message": "answer 000 parked then orphaned" },
        } ] },
    })
    .to_string();
    let signature =
        switchboard_liveperson::webhook::sign_sha1(&sim.client_secret(), body.as_bytes());
    let status = http
        .post(format!("http://127.0.0.1:{a}/webhooks/liveperson"))
        .header("x-liveperson-account-id", sim.account_id())
        .header("x-liveperson-client-id", sim.client_id())
        .header("x-liveperson-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    instance_a.kill().unwrap(); // SIGKILL, well within the 2 s wait
    instance_a.wait().unwrap();
    let arrived = switchboard_testkit::eventually(60, || {
        answers_carried(&kannel)
            .get(&phones[0])
            .is_some_and(|texts| texts.contains(&"answer 000 parked then orphaned".to_owned()))
    })
    .await;
    assert!(
        arrived,
        "the event parked by the dead instance was never released"
    );
    drop(instance_b);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The Slack signing secret of the paused-instance test.
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// Stops (`true`) or resumes a process, as a stalled host or a long pause would.
fn pause(child: &Child, stop: bool) {
    let signal = if stop { "-STOP" } else { "-CONT" };
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

/// The words `w0000`… that LivePerson received from consumers, in order.
fn words_received(sim: &SimHandle) -> Vec<String> {
    sim.conversations()
        .iter()
        .flat_map(|c| c.consumer_messages().collect::<Vec<_>>())
        .filter_map(|entry| entry.event["message"].as_str().map(str::to_owned))
        .flat_map(|text| {
            text.split_whitespace()
                .filter(|w| w.len() == 5 && w.starts_with('w'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An instance that stalls in the middle of a long text (several Send API requests) past its
/// lease comes back to find the item taken over and finished by another: it must not send
/// the rest again. Two instances share one PostgreSQL database; the first is paused with
/// SIGSTOP after its first request and resumed once the second has delivered everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_paused_past_its_lease_sends_nothing_more_when_it_wakes() {
    let Some((mut conn, schema, store)) = postgres_schema("sb_pause").await else {
        return;
    };
    let sim = start_sim().await;
    let dir = test_dir();
    eprintln!(
        "connector logs: {}",
        dir.path().join("switchboard.log").display()
    );
    let (a, b) = (free_port(), free_port());
    webhooks_to(&sim, b);
    let http = reqwest::Client::new();
    // Slack carries texts long enough to take several Send API requests (webchat's are
    // shorter than one).
    let slack = FakeSlack::start().await;
    let channels = format!(
        "[channels.sl]\nkind = \"slack\"\napi_base_url = \"{}\"\nbot_token = \"{FAKE_BOT_TOKEN}\"\n\
         signing_secret = \"{SLACK_SECRET}\"\n",
        slack.api_base
    );
    let mut first = spawn(
        &config_with(&sim, dir.path(), a, &store, 0.2, &channels),
        dir.path(),
    );
    wait_healthy(&http, a).await;
    // Every word once, long enough for four Send API requests.
    let words: Vec<String> = (0..3000).map(|i| format!("w{i:04}")).collect();
    sim.set_latency(Duration::from_millis(700));
    let event = FakeSlack::envelope(
        "EvPause1",
        FakeSlack::dm(
            "U2147483697",
            "D024BE91L",
            &words.join(" "),
            "1795384800.000100",
        ),
    );
    let events = format!("http://127.0.0.1:{a}/channels/sl/events");
    assert_eq!(slack.send_event(&events, SLACK_SECRET, &event).await, 200);
    for _ in 0..1000 {
        if !words_received(&sim).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !words_received(&sim).is_empty(),
        "the first request never arrived"
    );
    pause(&first, true);
    let mut second = spawn(
        &config_with(&sim, dir.path(), b, &store, 0.2, &channels),
        dir.path(),
    );
    wait_healthy(&http, b).await;
    let mut complete = false;
    for _ in 0..1200 {
        let got = words_received(&sim);
        if got.len() >= words.len() {
            complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pause(&first, false);
    assert!(complete, "the second instance never finished the text");
    // The first instance wakes into the middle of its work: give it the time its next
    // requests would take (700 ms each) to make them, were it to go on.
    wait_healthy(&http, a).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = words_received(&sim);
    let repeated = got.len().saturating_sub(words.len());
    assert!(
        got == words,
        "every word once, in order: {} received for {} sent ({repeated} repeated)",
        got.len(),
        words.len()
    );
    for child in [&mut first, &mut second] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}
