//! Issue 5's durability proofs: many consumers through a failing LivePerson, SIGKILL of the
//! real binary mid-stream, and three instances on one PostgreSQL database with one killed.
//! Each counts what was sent against what arrived: everything, once, in order per consumer.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_lp_sim::{RetryConfig, SimConfig, SimHandle, Simulator, WebhooksConfig};

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

fn config(
    sim: &SimHandle,
    dir: &std::path::Path,
    port: u16,
    store_url: &str,
    retry_scale: f64,
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
{liveperson}[channels.web]
kind = "webchat"
"#,
        liveperson = liveperson_toml(sim, retry_scale),
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn spawn(config: &std::path::Path, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file(dir))
        .spawn()
        .unwrap()
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
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {total} of {wanted} arrived: {:#?}",
            differences(&got, want)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One connector on SQLite, wired to `sim`, up and ready.
struct Single {
    dir: tempfile::TempDir,
    port: u16,
    config: std::path::PathBuf,
    child: Child,
}

async fn single(sim: &SimHandle, http: &reqwest::Client, retry_scale: f64) -> Single {
    let dir = tempfile::tempdir().unwrap();
    eprintln!(
        "connector log: {}",
        dir.path().join("switchboard.log").display()
    );
    let port = free_port();
    webhooks_to(sim, port);
    let store = format!("sqlite://{}", dir.path().join("sb.db").display());
    let config = config(sim, dir.path(), port, &store, retry_scale);
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
    let mut one = single(&sim, &http, 0.01).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_with_one_killed_deliver_everything_once_in_order() {
    const VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";
    let Ok(admin) = std::env::var(VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{VAR} must be set under CI"
        );
        eprintln!("skipping: set {VAR} to run the PostgreSQL tests");
        return;
    };
    use sqlx::Connection as _;
    let schema = format!("sb_three_{}", std::process::id());
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

    let sim = start_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // LivePerson calls one address (a load balancer would spread it; any instance may answer).
    webhooks_to(&sim, ports[0]);
    let http = reqwest::Client::new();
    let mut children: Vec<Child> = ports
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
    wait_for_everything(&sim, &expected(shape.0, shape.1), Duration::from_secs(180)).await;
    one.child.kill().unwrap();
    one.child.wait().unwrap();
}
