//! End to end through the router: a test channel, the durable store, the LivePerson engine and
//! the simulator (which follows docs/protocol/liveperson.md), over real HTTP.

use std::time::Duration;

use serde_json::Value;
use switchboard_core::{ClosedBy, Outbound};
use switchboard_lp_sim::{PathClass, SimConfig, SimHandle, Simulator};
use tokio::net::TcpListener;

use crate::support::{delivered, eventually, liveperson_toml, load_toml};

/// A running connector wired to a simulator.
struct Harness {
    sim: SimHandle,
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), switchboard::RunError>>>,
    _dir: tempfile::TempDir,
    store_url: String,
    store_extra: String,
}

/// A started connector: its base URL, what stops it, its task and its config folder.
type Started = (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), switchboard::RunError>>,
    tempfile::TempDir,
);

async fn start_connector(
    sim: &SimHandle,
    instance: &str,
    store_url: &str,
    channel_extra: &str,
) -> Started {
    start_connector_with(sim, instance, store_url, "", channel_extra).await
}

/// The `[server]` keys of an extra: what comes before ` | `, if anything.
fn server_extra(extra: &str) -> &str {
    extra.split_once(" | ").map_or("", |(server, _)| server)
}

/// The `[store]` keys of an extra: what comes after ` | `, or all of it.
fn store_keys(extra: &str) -> &str {
    extra.split_once(" | ").map_or(extra, |(_, store)| store)
}

/// [`start_connector`] with `store_extra` added to the `[store]` table (and, before a
/// ` | `, keys of the `[server]` table).
async fn start_connector_with(
    sim: &SimHandle,
    instance: &str,
    store_url: &str,
    store_extra: &str,
    channel_extra: &str,
) -> Started {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    sim.set_webhook_endpoint(&format!("http://{addr}/webhooks/liveperson"));
    let toml = format!(
        r#"
[server]
listen = "{addr}"
{server_extra}
[store]
url = "{store_url}"
{store_extra}
{liveperson}[channels.{instance}]
kind = "test-recorder"
{channel_extra}
"#,
        liveperson = liveperson_toml(sim, 0.001),
        server_extra = server_extra(store_extra),
        store_extra = store_keys(store_extra),
    );
    let (dir, _path, loaded) = load_toml(&toml);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(switchboard::serve(loaded.unwrap(), listener, async {
        let _ = stop_rx.await;
    }));
    (format!("http://{addr}"), stop_tx, server, dir)
}

impl Harness {
    async fn new(instance: &str, channel_extra: &str) -> Self {
        Self::with_store(instance, channel_extra, "").await
    }

    /// A harness whose `[store]` table also has `store_extra`.
    async fn with_store(instance: &str, channel_extra: &str, store_extra: &str) -> Self {
        let sim = Simulator::start(SimConfig {
            time_scale: 0.01,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("sb.db").display());
        let (base, stop, server, _cfg_dir) =
            start_connector_with(&sim, instance, &store_url, store_extra, channel_extra).await;
        std::mem::forget(_cfg_dir);
        Harness {
            sim,
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
            store_url,
            store_extra: store_extra.to_owned(),
        }
    }

    async fn say(&self, instance: &str, from: &str, id: &str, text: &str) -> reqwest::StatusCode {
        self.http
            .post(format!("{}/channels/{instance}/in?from={from}", self.base))
            .header("x-id", id)
            .body(text.to_owned())
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// Takes SQLite's write lock from another connection, as another process would, and holds
    /// it until [`Harness::unlock_store`].
    async fn lock_store(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection as _;
        let path = self.store_url.trim_start_matches("sqlite://");
        let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut blocker)
            .await
            .unwrap();
        blocker
    }

    async fn unlock_store(mut blocker: sqlx::SqliteConnection) {
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    }

    async fn restart(&mut self, instance: &str) {
        self.stop().await;
        let (base, stop, server, dir) =
            start_connector_with(&self.sim, instance, &self.store_url, &self.store_extra, "").await;
        std::mem::forget(dir);
        self.base = base;
        self.stop = Some(stop);
        self.server = Some(server);
    }

    /// The texts the consumer published in `conversation`, in order.
    fn consumer_texts(&self, conversation: &str) -> Vec<String> {
        self.sim
            .conversation(conversation)
            .map(|c| {
                c.consumer_messages()
                    .filter_map(|t| t.event["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn conversation_with(&self, text: &str) -> String {
        let entry = self
            .sim
            .wait_for_consumer_message(text, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("`{text}` never reached LivePerson"));
        self.sim
            .conversations()
            .into_iter()
            .find(|c| {
                c.transcript.iter().any(|t| {
                    t.dialog_id == entry.dialog_id
                        && t.sequence == entry.sequence
                        && t.event == entry.event
                })
            })
            .map(|c| c.conversation_id)
            .unwrap()
    }
}

fn texts(instance: &str, consumer: &str) -> Vec<String> {
    delivered(instance)
        .into_iter()
        .filter(|(to, _)| to.id == consumer)
        .filter_map(|(_, e)| match e.body {
            Outbound::Text { text } => Some(text),
            _ => None,
        })
        .collect()
}

fn accept_statuses(sim: &SimHandle, conversation: &str) -> Vec<(String, Value)> {
    sim.conversation(conversation)
        .map(|c| {
            c.transcript
                .iter()
                .filter(|t| t.role == "CONSUMER" && t.event["type"] == "AcceptStatusEvent")
                .map(|t| {
                    (
                        t.event["status"].as_str().unwrap_or_default().to_owned(),
                        t.event["sequenceList"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_round_trip_with_receipts_and_dedup() {
    let mut h = Harness::new("rt", "").await;
    assert_eq!(h.say("rt", "alice", "m1", "hello there").await, 200);
    // The platform retries the same message: it must not reach LivePerson twice.
    assert_eq!(h.say("rt", "alice", "m1", "hello there").await, 200);
    let conversation = h.conversation_with("hello there").await;
    h.sim.agent_accept(&conversation).unwrap();
    let sequence = h
        .sim
        .agent_send_text(&conversation, "Hi Alice, how can I help?")
        .unwrap();
    eventually("the agent's text at the channel", || {
        texts("rt", "alice")
            .contains(&"Hi Alice, how can I help?".to_owned())
            .then_some(())
    })
    .await;
    // Delivered, so LivePerson hears ACCEPT and READ (the channel cannot report reads).
    let statuses = eventually("ACCEPT and READ", || {
        let s = accept_statuses(&h.sim, &conversation);
        (s.len() >= 2).then_some(s)
    })
    .await;
    assert_eq!(
        statuses[0],
        ("ACCEPT".to_owned(), serde_json::json!([sequence]))
    );
    assert_eq!(
        statuses[1],
        ("READ".to_owned(), serde_json::json!([sequence]))
    );
    assert_eq!(h.say("rt", "alice", "m2", "my order is late").await, 200);
    eventually("the second message", || {
        (h.consumer_texts(&conversation).len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        h.consumer_texts(&conversation),
        vec!["hello there", "my order is late"]
    );
    assert_eq!(
        h.sim.conversations().len(),
        1,
        "one conversation for one consumer"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_announced_and_the_next_message_opens_a_new_conversation() {
    let mut h = Harness::new("cl", "").await;
    h.say("cl", "bob", "b1", "first question").await;
    let first = h.conversation_with("first question").await;
    h.sim.agent_accept(&first).unwrap();
    h.sim.agent_close(&first, false).unwrap();
    eventually("the close notice", || {
        delivered("cl")
            .iter()
            .any(|(to, e)| {
                to.id == "bob"
                    && e.body
                        == Outbound::Closed {
                            by: ClosedBy::Agent,
                        }
            })
            .then_some(())
    })
    .await;
    h.say("cl", "bob", "b2", "second question").await;
    let second = h.conversation_with("second question").await;
    assert_ne!(first, second);
    assert_eq!(h.consumer_texts(&second), vec!["second question"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveperson_failures_are_retried_in_order_and_nothing_is_lost() {
    let mut h = Harness::new("fl", "").await;
    h.sim.fail_next(PathClass::Send, 3, 503, None);
    h.sim.fail_next(PathClass::Idp, 1, 429, Some(1));
    for i in 0..6 {
        assert_eq!(
            h.say("fl", "carol", &format!("c{i}"), &format!("message {i}"))
                .await,
            200
        );
    }
    let conversation = h.conversation_with("message 0").await;
    eventually("all six messages", || {
        (h.consumer_texts(&conversation).len() >= 6).then_some(())
    })
    .await;
    let expected: Vec<String> = (0..6).map(|i| format!("message {i}")).collect();
    assert_eq!(
        h.consumer_texts(&conversation),
        expected,
        "in order, none lost or doubled"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_failures_are_retried_and_accepted_work_survives_a_restart() {
    let mut h = Harness::new("rs", "fail_first = 2").await;
    h.say("rs", "dave", "d1", "are you there?").await;
    let conversation = h.conversation_with("are you there?").await;
    h.sim.agent_accept(&conversation).unwrap();
    h.sim
        .agent_send_text(&conversation, "yes, one moment")
        .unwrap();
    eventually("delivery after two channel failures", || {
        texts("rs", "dave")
            .contains(&"yes, one moment".to_owned())
            .then_some(())
    })
    .await;
    // LivePerson is down: the message is accepted (200) and waits in the store.
    h.sim.outage(Duration::from_secs(3600));
    assert_eq!(h.say("rs", "dave", "d2", "still waiting").await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.restart("rs").await;
    h.sim.clear_faults();
    eventually("the message kept across the restart", || {
        h.consumer_texts(&conversation)
            .contains(&"still waiting".to_owned())
            .then_some(())
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_are_refused_with_json() {
    let mut h = Harness::new("fw", "").await;
    let body =
        r#"{"kind":"notification","type":"ms.MessagingEventNotification","body":{"changes":[]}}"#;
    let response = h
        .http
        .post(format!("{}/webhooks/liveperson", h.base))
        .header("x-liveperson-account-id", h.sim.account_id())
        .header("x-liveperson-client-id", h.sim.client_id())
        .header(
            "x-liveperson-signature",
            "sha1=AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"]["code"], "unauthorized");
    let signed =
        switchboard_liveperson::webhook::sign_sha1(&h.sim.client_secret(), body.as_bytes());
    let response = h
        .http
        .post(format!("{}/webhooks/liveperson", h.base))
        .header("x-liveperson-account-id", h.sim.account_id())
        .header("x-liveperson-client-id", h.sim.client_id())
        .header("x-liveperson-signature", signed)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Every part of the authentication is checked before the body is parsed: a wrong account
    // or client id, or no signature, is 401 even for a body that is not JSON at all.
    let post = |account: String, client: String, signature: Option<String>, body: Vec<u8>| {
        let mut request = h
            .http
            .post(format!("{}/webhooks/liveperson", h.base))
            .header("x-liveperson-account-id", account)
            .header("x-liveperson-client-id", client)
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-liveperson-signature", signature);
        }
        request.send()
    };
    let secret = h.sim.client_secret();
    let garbage = b"\xff not json {".to_vec();
    let garbage_signed = switchboard_liveperson::webhook::sign_sha1(&secret, &garbage);
    for (account, client, signature) in [
        (
            "999".to_owned(),
            h.sim.client_id(),
            Some(garbage_signed.clone()),
        ),
        (
            h.sim.account_id(),
            "another-client".to_owned(),
            Some(garbage_signed.clone()),
        ),
        (h.sim.account_id(), h.sim.client_id(), None),
    ] {
        let response = post(account, client, signature, garbage.clone())
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let json: Value = response.json().await.unwrap();
        assert_eq!(json["error"]["code"], "unauthorized");
    }
    // Authentic but malformed: 200 after the signature check (recorded as unusable): any
    // other answer would make LivePerson hold the app's other events (issue #17, item 7).
    let response = post(
        h.sim.account_id(),
        h.sim.client_id(),
        Some(garbage_signed),
        garbage,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    // Authentic and non-ASCII: the signature is over the raw bytes, and it passes.
    let unicode = r#"{"kind":"notification","type":"ms.MessagingEventNotification","body":{"changes":[{"conversationId":"nobody","dialogId":"nobody","sequence":1,"originatorMetadata":{"role":"ASSIGNED_AGENT"},"event":{"type":"ContentEvent","contentType":"text/plain","message":"Grüße, Привет 👋"}}]}}"#;
    let signed = switchboard_liveperson::webhook::sign_sha1(&secret, unicode.as_bytes());
    let response = post(
        h.sim.account_id(),
        h.sim.client_id(),
        Some(signed),
        unicode.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    h.stop().await;
}

/// A fresh schema in the test PostgreSQL database, dropped at the end; `None` (skip) when
/// `SWITCHBOARD_TEST_POSTGRES_URL` is unset outside CI.
async fn postgres_schema() -> Option<(String, String, String)> {
    const VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";
    let Ok(admin) = std::env::var(VAR) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{VAR} must be set under CI (the PostgreSQL tests may not be skipped)"
        );
        eprintln!("skipping: set {VAR} to run the PostgreSQL tests");
        return None;
    };
    use sqlx::Connection as _;
    let schema = format!("sb_e2e_{}", uuid_like());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let separator = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
    Some((admin, schema, url))
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgres_store_without_losing_or_reordering() {
    let Some((admin, schema, url)) = postgres_schema().await else {
        return;
    };
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // Instance A receives LivePerson's webhooks; both take channel traffic and both work the
    // shared outboxes.
    let (base_b, stop_b, server_b, _db) = start_connector(&sim, "pg", &url, "").await;
    let (base_a, stop_a, server_a, _da) = start_connector(&sim, "pg", &url, "").await;
    let http = reqwest::Client::new();
    let consumers = ["p1", "p2", "p3", "p4"];
    for round in 0..5 {
        for (i, consumer) in consumers.iter().enumerate() {
            let base = if (round + i) % 2 == 0 {
                &base_a
            } else {
                &base_b
            };
            let status = http
                .post(format!("{base}/channels/pg/in?from={consumer}"))
                .header("x-id", format!("{consumer}-{round}"))
                .body(format!("{consumer} says {round}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
    }
    for consumer in consumers {
        let entry = sim
            .wait_for_consumer_message(&format!("{consumer} says 4"), Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{consumer}'s last message never arrived"));
        let conversation = sim
            .conversations()
            .into_iter()
            .find(|c| c.transcript.iter().any(|t| t.event == entry.event))
            .unwrap();
        let texts: Vec<String> = conversation
            .consumer_messages()
            .filter_map(|t| t.event["message"].as_str().map(str::to_owned))
            .collect();
        let expected: Vec<String> = (0..5).map(|r| format!("{consumer} says {r}")).collect();
        assert_eq!(texts, expected, "{consumer}: all, once, in order");
        sim.agent_send_text(&conversation.conversation_id, &format!("hello {consumer}"))
            .unwrap();
    }
    assert_eq!(
        sim.conversations().len(),
        consumers.len(),
        "one conversation per consumer"
    );
    for consumer in consumers {
        eventually("the agent's reply", || {
            texts("pg", consumer)
                .contains(&format!("hello {consumer}"))
                .then_some(())
        })
        .await;
    }
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    server_a.await.unwrap().unwrap();
    server_b.await.unwrap().unwrap();
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_webhooks_produce_one_channel_message() {
    let mut h = Harness::new("dw", "").await;
    h.say("dw", "erin", "e1", "hi").await;
    let conversation = h.conversation_with("hi").await;
    h.sim.set_duplicate_webhooks(true);
    h.sim.agent_accept(&conversation).unwrap();
    for i in 0..3 {
        h.sim
            .agent_send_text(&conversation, &format!("answer {i}"))
            .unwrap();
    }
    eventually("all three answers", || {
        (texts("dw", "erin").len() >= 3).then_some(())
    })
    .await;
    // Give the duplicates time to arrive, then count.
    h.sim.wait_for_deliveries(8, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        texts("dw", "erin"),
        vec!["answer 0", "answer 1", "answer 2"]
    );
    h.stop().await;
}

/// LivePerson's webhooks arriving shuffled (and twice): the consumer still gets each agent
/// message once, in the order the agent sent them (by sequence within the dialog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_duplicated_webhooks_reach_the_consumer_once_in_sequence_order() {
    let mut h = Harness::new("ro", "").await;
    h.say("ro", "rita", "r1", "hello").await;
    let conversation = h.conversation_with("hello").await;
    h.sim.agent_accept(&conversation).unwrap();
    h.sim.set_reorder_webhooks(true);
    h.sim.set_duplicate_webhooks(true);
    let sent: Vec<String> = (0..12).map(|i| format!("step {i:02}")).collect();
    for text in &sent {
        h.sim.agent_send_text(&conversation, text).unwrap();
    }
    eventually("all twelve answers", || {
        (texts("ro", "rita").len() >= sent.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(texts("ro", "rita"), sent);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_become_visible_retryable_dead_letters() {
    let mut h = Harness::new("dl", "").await;
    // A click on a button nobody ever sent cannot be told to LivePerson.
    let choice = r#"{"type":"choice","message":"lp:nope:nope:1","choice":"b9"}"#;
    assert_eq!(h.say("dl", "frank", "f1", choice).await, 200);
    // The consumer's next message is not held up behind it.
    h.say("dl", "frank", "f2", "hello anyway").await;
    h.conversation_with("hello anyway").await;
    let store = switchboard_store::Store::connect(&h.store_url)
        .await
        .unwrap();
    let letters = eventually_async(&store).await;
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("b9"), "{}", letters[0].reason);
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_delivery_failures_total"),
        "{metrics}"
    );
    h.stop().await;
    // The CLI lists and requeues it.
    let config = h._dir.path().join("cli.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{}\"\n", h.store_url)).unwrap();
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let out = std::process::Command::new(bin)
        .args(["deadletters", "list", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["id"], letters[0].id);
    assert_eq!(line["direction"], "to_lp");
    let out = std::process::Command::new(bin)
        .args(["deadletters", "retry", "--config"])
        .arg(&config)
        .arg(letters[0].id.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);
    assert_eq!(
        store
            .pending(switchboard_store::Direction::ToLivePerson)
            .await
            .unwrap(),
        1
    );
    let out = std::process::Command::new(bin)
        .args(["deadletters", "retry", "--config"])
        .arg(&config)
        .arg("999999")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dead letter with id 999999"));
}

async fn eventually_async(store: &switchboard_store::Store) -> Vec<switchboard_store::DeadLetter> {
    for _ in 0..500 {
        let letters = store.dead_letters(10).await.unwrap();
        if !letters.is_empty() {
            return letters;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no dead letter appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_reply_clicks_reach_liveperson_as_action_and_text_with_metadata() {
    let mut h = Harness::new("qr", "rich = true").await;
    h.say("qr", "gina", "g1", "need help").await;
    let conversation = h.conversation_with("need help").await;
    h.sim.agent_accept(&conversation).unwrap();
    let replies = serde_json::json!({ "type": "quickReplies", "itemsPerRow": 8, "replies": [
        { "type": "button", "title": "yes", "click": { "actions": [ { "type": "publishText", "text": "yep" } ],
          "metadata": [ { "type": "ExternalId", "id": "Yes-1234" } ] } },
        { "type": "button", "title": "No!", "click": { "actions": [ { "type": "publishText", "text": "No!" } ] } } ] });
    let sequence = h
        .sim
        .agent_send_quick_replies(&conversation, "Did that help?", replies)
        .unwrap();
    let (id, button) = eventually("the quick replies at the channel", || {
        delivered("qr").into_iter().find_map(|(_, e)| match e.body {
            Outbound::Rich { content } => Some((
                e.id.as_str().to_owned(),
                content.quick_replies[0].id.clone(),
            )),
            _ => None,
        })
    })
    .await;
    let choice =
        serde_json::json!({ "type": "choice", "message": id, "choice": button }).to_string();
    assert_eq!(h.say("qr", "gina", "g2", &choice).await, 200);
    let entry = h
        .sim
        .wait_for_consumer_message("yep", Duration::from_secs(20))
        .await
        .expect("the published text");
    assert_eq!(
        entry.metadata,
        Some(serde_json::json!([ { "type": "ExternalId", "id": "Yes-1234" } ]))
    );
    let actions: Vec<_> = accept_statuses(&h.sim, &conversation)
        .into_iter()
        .filter(|(status, _)| status == "ACTION")
        .collect();
    assert_eq!(
        actions,
        vec![("ACTION".to_owned(), serde_json::json!([sequence]))]
    );
    h.stop().await;
}

async fn send_json(h: &Harness, instance: &str, from: &str, id: &str, body: Value) {
    let status = h
        .http
        .post(format!("{}/channels/{instance}/in?from={from}", h.base))
        .header("x-id", id)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "{body}");
}

fn consumer_events(sim: &SimHandle, conversation: &str) -> Vec<Value> {
    sim.conversation(conversation)
        .map(|c| {
            c.transcript
                .iter()
                .filter(|t| t.role == "CONSUMER")
                .map(|t| t.event.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 4's end-to-end: SDEs, every consumer-side event kind, every webhook kind, and
/// injected 401/429/503 without duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_both_ways_through_injected_faults() {
    let mut h = Harness::new("all", "rich = true").await;
    let sim = &h.sim;
    // Text with a profile: the conversation is created with SDEs. A 429 and a 503 burst on the
    // way, and every token revoked.
    sim.fail_next(PathClass::Conversation, 1, 429, Some(1));
    sim.fail_next(PathClass::Send, 2, 503, None);
    let profile = serde_json::json!({ "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com" });
    let status = h
        .http
        .post(format!("{}/channels/all/in?from=ada", h.base))
        .header("x-id", "a1")
        .header("x-profile", profile.to_string())
        .body("I need help with my order")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let conversation = h.conversation_with("I need help with my order").await;
    let sdes = sim.conversation(&conversation).unwrap().sdes;
    assert!(sdes.to_string().contains("Lovelace"), "SDEs stored: {sdes}");
    sim.revoke_tokens();
    sim.agent_accept(&conversation).unwrap();

    // Agent side: text, typing, rich card, quick replies, file, receipt, transfer.
    sim.agent_typing(&conversation, "COMPOSING").unwrap();
    sim.agent_send_text(&conversation, "Let me look").unwrap();
    let card = serde_json::json!({ "type": "vertical", "elements": [
        { "type": "image", "url": "https://img.example/parcel.png" },
        { "type": "text", "text": "Parcel 42" },
        { "type": "button", "title": "Track", "click": { "actions": [ { "type": "link", "uri": "https://track.example/42" } ] } } ] });
    sim.agent_send_rich(&conversation, card, Some("CARD-42"))
        .unwrap();
    let replies = serde_json::json!({ "type": "quickReplies", "itemsPerRow": 8, "replies": [
        { "type": "button", "title": "Resend it", "click": { "actions": [ { "type": "publishText", "text": "Resend it" } ], "metadata": [ { "type": "ExternalId", "id": "resend" } ] } } ] });
    sim.agent_send_quick_replies(&conversation, "What should we do?", replies)
        .unwrap();
    sim.agent_send_file(&conversation, "label", "PNG", b"\x89PNG fake".to_vec())
        .unwrap();
    sim.agent_receipt(&conversation, "READ", &[0]).unwrap();
    let seen = eventually("every agent event kind at the channel", || {
        let kinds: Vec<&'static str> = delivered("all")
            .iter()
            .map(|(_, e)| e.body.kind())
            .collect();
        ["chat_state", "text", "rich", "file", "receipt"]
            .iter()
            .all(|k| kinds.contains(k))
            .then_some(delivered("all"))
    })
    .await;
    let receipt = seen.iter().find_map(|(_, e)| match &e.body {
        Outbound::Receipt { messages, .. } => Some(messages.clone()),
        _ => None,
    });
    assert_eq!(
        receipt,
        Some(vec!["a1".to_owned()]),
        "agent READ names the consumer's message"
    );
    let card_seen = seen.iter().any(|(_, e)| matches!(&e.body, Outbound::Rich { content }
        if content.cards.first().and_then(|c| c.image_url.as_deref()) == Some("https://img.example/parcel.png")));
    assert!(card_seen);
    let (rich_id, button) = seen
        .iter()
        .find_map(|(_, e)| match &e.body {
            Outbound::Rich { content } if !content.quick_replies.is_empty() => Some((
                e.id.as_str().to_owned(),
                content.quick_replies[0].id.clone(),
            )),
            _ => None,
        })
        .unwrap();
    let agent_text = seen
        .iter()
        .find(|(_, e)| e.body == Outbound::text("Let me look"))
        .map(|(_, e)| e.id.as_str().to_owned())
        .unwrap();

    // Consumer side: typing, read receipt, image, click, profile update.
    send_json(
        &h,
        "all",
        "ada",
        "a2",
        serde_json::json!({ "type": "chat_state", "state": "composing" }),
    )
    .await;
    send_json(
        &h,
        "all",
        "ada",
        "a3",
        serde_json::json!({ "type": "receipt", "status": "read", "messages": [agent_text] }),
    )
    .await;
    let png = base64_png();
    send_json(
        &h,
        "all",
        "ada",
        "a4",
        serde_json::json!({ "type": "file", "file": {
        "name": "photo.png", "mime": "image/png", "body": { "kind": "inline", "data": png } } }),
    )
    .await;
    send_json(
        &h,
        "all",
        "ada",
        "a5",
        serde_json::json!({ "type": "choice", "message": rich_id, "choice": button }),
    )
    .await;
    send_json(
        &h,
        "all",
        "ada",
        "a6",
        serde_json::json!({ "type": "profile_update" }),
    )
    .await;
    sim.wait_for_consumer_message("Resend it", Duration::from_secs(20))
        .await
        .expect("click text");
    let events = eventually("the consumer's events in LivePerson", || {
        let events = consumer_events(sim, &conversation);
        let has = |f: &dyn Fn(&Value) -> bool| events.iter().any(f);
        (has(&|e| e["type"] == "ChatStateEvent" && e["chatState"] == "COMPOSING")
            && has(&|e| e["type"] == "AcceptStatusEvent" && e["status"] == "READ")
            && has(&|e| e["type"] == "AcceptStatusEvent" && e["status"] == "ACTION")
            && has(&|e| e["contentType"] == "hosted/file"))
        .then_some(events)
    })
    .await;
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(
        texts,
        vec!["I need help with my order", "Resend it"],
        "no duplicates through the faults"
    );

    // Transfer, then the consumer closes and rates the conversation.
    sim.transfer(&conversation, "billing").unwrap();
    eventually("the transfer notice", || {
        delivered("all")
            .iter()
            .any(|(_, e)| matches!(e.body, Outbound::Transferred { .. }))
            .then_some(())
    })
    .await;
    send_json(
        &h,
        "all",
        "ada",
        "a7",
        serde_json::json!({ "type": "close" }),
    )
    .await;
    eventually("the close notice", || {
        delivered("all")
            .iter()
            .any(|(_, e)| {
                e.body
                    == Outbound::Closed {
                        by: ClosedBy::Consumer,
                    }
            })
            .then_some(())
    })
    .await;
    send_json(
        &h,
        "all",
        "ada",
        "a8",
        serde_json::json!({ "type": "survey", "answer": { "csat": 5, "resolved": true } }),
    )
    .await;
    let rated = sim
        .wait_for_conversation(&conversation, Duration::from_secs(20), |c| c.csat.is_some())
        .await
        .expect("CSAT recorded");
    assert_eq!(rated.csat.unwrap()["csatRate"], 5);
    assert_eq!(rated.close_reason.as_deref(), Some("CONSUMER"));
    assert_eq!(sim.conversations().len(), 1, "one conversation throughout");
    h.stop().await;
}

fn base64_png() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nconsumer photo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_keep_up_gets_503_with_retry_after_and_loses_nothing() {
    let mut h = Harness::new("bp", "").await;
    h.say("bp", "hank", "h1", "before the lock").await;
    h.conversation_with("before the lock").await;
    // Another process holds SQLite's write lock longer than the store waits for it.
    let blocker = h.lock_store().await;
    let response = h
        .http
        .post(format!("{}/channels/bp/in?from=hank", h.base))
        .header("x-id", "h2")
        .body("during the lock")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["code"].is_string(), "{body}");
    Harness::unlock_store(blocker).await;
    // The platform retries, as platforms do after a 503: accepted once, delivered once.
    assert_eq!(h.say("bp", "hank", "h2", "during the lock").await, 200);
    let conversation = h.conversation_with("during the lock").await;
    eventually("both messages", || {
        (h.consumer_texts(&conversation).len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        h.consumer_texts(&conversation),
        vec!["before the lock", "during the lock"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_store_cannot_record_yet_is_recorded_once_it_can() {
    use switchboard_store::Direction;
    let mut h = Harness::new("rr", "").await;
    h.say("rr", "iris", "r1", "warm up").await;
    let conversation = h.conversation_with("warm up").await;
    let store = switchboard_store::Store::connect(&h.store_url)
        .await
        .unwrap();
    for _ in 0..1000 {
        if store.pending(Direction::ToLivePerson).await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.pending(Direction::ToLivePerson).await.unwrap(), 0);
    store.close().await;
    // LivePerson takes the message at once but answers a second late; meanwhile another
    // process takes SQLite's write lock and keeps it longer than the store waits. The writes
    // that follow a send queue behind each other, each failing after the 5 s busy timeout, so
    // by 16 s the delivery has failed to be recorded at least once.
    h.sim.delay_next(PathClass::Send, 1, Duration::from_secs(1));
    assert_eq!(h.say("rr", "iris", "r2", "slow send").await, 200);
    h.conversation_with("slow send").await;
    let blocker = h.lock_store().await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    Harness::unlock_store(blocker).await;
    // Recorded once the lock is gone: the consumer is not held up until the lease runs out,
    // and the delivered message is not sent a second time.
    assert_eq!(h.say("rr", "iris", "r3", "after the lock").await, 200);
    eventually("all three messages", || {
        (h.consumer_texts(&conversation).len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.consumer_texts(&conversation),
        vec!["warm up", "slow send", "after the lock"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_conversation_survey_is_asked_answered_and_closed() {
    let mut h = Harness::new("sv", "rich = true").await;
    h.say("sv", "ivy", "i1", "thanks for the help").await;
    let conversation = h.conversation_with("thanks for the help").await;
    h.sim.agent_accept(&conversation).unwrap();
    h.sim.agent_close(&conversation, true).unwrap();
    let (id, five) = eventually("the survey question", || {
        delivered("sv").into_iter().find_map(|(_, e)| match e.body {
            Outbound::SurveyQuestion { question } => question
                .quick_replies
                .iter()
                .find(|b| b.title == "5")
                .map(|b| (e.id.as_str().to_owned(), b.id.clone())),
            _ => None,
        })
    })
    .await;
    let choice = serde_json::json!({ "type": "choice", "message": id, "choice": five }).to_string();
    assert_eq!(h.say("sv", "ivy", "i2", &choice).await, 200);
    let rated = h
        .sim
        .wait_for_conversation(&conversation, Duration::from_secs(20), |c| c.csat.is_some())
        .await
        .expect("the answer reached the survey");
    assert_eq!(rated.csat.unwrap()["csatRate"], 5);
    eventually("the close notice after the survey", || {
        delivered("sv")
            .iter()
            .any(|(to, e)| to.id == "ivy" && matches!(e.body, Outbound::Closed { .. }))
            .then_some(())
    })
    .await;
    // The consumer's next message opens a new conversation.
    h.say("sv", "ivy", "i3", "one more thing").await;
    let next = h.conversation_with("one more thing").await;
    assert_ne!(next, conversation);
    h.stop().await;
}

/// Posts a notification to the connector, signed as LivePerson signs it.
async fn post_notification(h: &Harness, body: &str) -> reqwest::Response {
    let signed =
        switchboard_liveperson::webhook::sign_sha1(&h.sim.client_secret(), body.as_bytes());
    h.http
        .post(format!("{}/webhooks/liveperson", h.base))
        .header("x-liveperson-account-id", h.sim.account_id())
        .header("x-liveperson-client-id", h.sim.client_id())
        .header("x-liveperson-signature", signed)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// A notification with several changes whose last one cannot be stored is answered 503 after
/// the earlier ones were queued; LivePerson retries the whole notification, and nothing
/// reaches the consumer twice: not the sequenced text (its dedup key), and not the chat state,
/// which LivePerson does not number (it repeats the last chat state queued at the same place
/// in the dialog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_failing_partway_is_retried_without_applying_anything_twice() {
    use sqlx::Connection as _;
    let mut h = Harness::new("hw", "rich = true").await;
    h.say("hw", "hugo", "h1", "hello").await;
    let conversation = h.conversation_with("hello").await;
    // A row the store cannot read (an unknown conversation state) makes the third change fail.
    let path = h.store_url.trim_start_matches("sqlite://").to_owned();
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO consumers (key, conversation_id, dialog_id, state, updated_at)
         VALUES ('2:zz:broken', 'conv-broken', 'conv-broken', 'bogus', 0)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let change = |conversation: &str, sequence: Option<i64>, event: Value| {
        let mut change = serde_json::json!({
            "conversationId": conversation, "dialogId": conversation,
            "originatorId": "agent-7", "originatorMetadata": { "role": "ASSIGNED_AGENT" },
            "serverTimestamp": 1_700_000_000_123_i64, "event": event,
        });
        if let Some(sequence) = sequence {
            change["sequence"] = sequence.into();
        }
        change
    };
    // The agent's text takes the dialog's next sequence, once the connector has seen the echo
    // of the consumer's "hello" (sequence 0).
    let mut next = 0;
    for _ in 0..500 {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM channel_state WHERE scope = 'lp-next' AND key = $1")
                .bind(format!("{conversation}:{conversation}"))
                .fetch_optional(&mut db)
                .await
                .unwrap();
        if let Some((value,)) = row {
            next = value.parse().unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        next > 0,
        "the echo of the consumer's message was never seen"
    );
    let text = serde_json::json!({ "type": "ContentEvent", "contentType": "text/plain", "message": "typed before the failure" });
    let typing = serde_json::json!({ "type": "ChatStateEvent", "chatState": "COMPOSING" });
    let body = serde_json::json!({
        "kind": "notification", "type": "ms.MessagingEventNotification",
        "body": { "changes": [
            change(&conversation, Some(next), text.clone()),
            change(&conversation, None, typing),
            change("conv-broken", Some(0), text),
        ] },
    })
    .to_string();
    let first = post_notification(&h, &body).await;
    assert_eq!(
        first.status(),
        503,
        "the failing change refuses the notification"
    );
    assert!(first.headers().contains_key("retry-after"));
    let typing_of_hugo = || {
        delivered("hw")
            .iter()
            .filter(|(to, e)| {
                to.id == "hugo"
                    && e.body
                        == Outbound::ChatState {
                            state: switchboard_core::ChatState::Composing,
                        }
            })
            .count()
    };
    eventually("the chat state queued before the failure", || {
        (typing_of_hugo() == 1).then_some(())
    })
    .await;
    // The cause goes away; LivePerson retries the same notification, twice even.
    sqlx::query("DELETE FROM consumers WHERE key = '2:zz:broken'")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(post_notification(&h, &body).await.status(), 200);
    assert_eq!(post_notification(&h, &body).await.status(), 200);
    eventually("the text", || {
        texts("hw", "hugo")
            .contains(&"typed before the failure".to_owned())
            .then_some(())
    })
    .await;
    // Time for a duplicate to show up (the worker delivers within milliseconds).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        typing_of_hugo(),
        1,
        "the chat state reached the consumer once"
    );
    assert_eq!(
        texts("hw", "hugo")
            .iter()
            .filter(|t| *t == "typed before the failure")
            .count(),
        1,
        "the text reached the consumer once"
    );
    h.stop().await;
}

/// Chat states carry no number and no timestamp, so a redelivery looks like a repeat: a state
/// equal to the last one queued at the same place in the dialog is dropped, every other one
/// goes. `COMPOSING`, `COMPOSING` (again), `PAUSE`, `COMPOSING`, the agent's text, `COMPOSING`
/// reach the consumer as `COMPOSING`, `PAUSE`, `COMPOSING`, the text, `COMPOSING`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_chat_states_are_dropped_and_new_ones_delivered() {
    let mut h = Harness::new("cs", "rich = true").await;
    h.say("cs", "cleo", "c1", "hello").await;
    let conversation = h.conversation_with("hello").await;
    // Let LivePerson's notifications about the consumer's message settle first: a sequenced
    // event in between would rightly let a repeated state through.
    eventually("the echo of the consumer's message", || {
        h.sim
            .webhook_deliveries()
            .iter()
            .filter(|d| d.conversation_id.as_deref() == Some(conversation.as_str()))
            .all(|d| d.outcome == switchboard_lp_sim::DeliveryOutcome::Delivered)
            .then_some(())
    })
    .await;
    let typing = |state: &str| {
        serde_json::json!({
            "kind": "notification", "type": "ms.MessagingEventNotification",
            "body": { "changes": [{
                "conversationId": conversation, "dialogId": conversation,
                "originatorId": "agent-9", "originatorMetadata": { "role": "ASSIGNED_AGENT" },
                "event": { "type": "ChatStateEvent", "chatState": state } }] },
        })
        .to_string()
    };
    let states = || {
        delivered("cs")
            .into_iter()
            .filter_map(|(_, e)| match e.body {
                Outbound::ChatState { state } => Some(format!("{state:?}")),
                Outbound::Text { text } => Some(text),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    for state in ["COMPOSING", "COMPOSING", "PAUSE", "COMPOSING"] {
        assert_eq!(post_notification(&h, &typing(state)).await.status(), 200);
    }
    eventually("three chat states", || (states().len() == 3).then_some(())).await;
    h.sim.agent_send_text(&conversation, "here it is").unwrap();
    eventually("the text", || (states().len() == 4).then_some(())).await;
    assert_eq!(
        post_notification(&h, &typing("COMPOSING")).await.status(),
        200
    );
    eventually("typing after the text", || {
        (states().len() == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        states(),
        [
            "Composing",
            "Paused",
            "Composing",
            "here it is",
            "Composing"
        ]
    );
    h.stop().await;
}

/// Failures on `/metrics` name the channel instance they happened on (and the direction and
/// outcome), so one failing channel shows as itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_failures_are_counted_per_channel_instance() {
    let mut h = Harness::new("mfail", "fail_first = 1").await;
    h.say("mfail", "mona", "mo1", "hello").await;
    let conversation = h.conversation_with("hello").await;
    h.sim.agent_accept(&conversation).unwrap();
    h.sim.agent_send_text(&conversation, "answer").unwrap();
    eventually("the answer after one failure", || {
        texts("mfail", "mona")
            .contains(&"answer".to_owned())
            .then_some(())
    })
    .await;
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchboard_delivery_failures_total{")
                && l.contains(r#"channel="mfail""#)
        })
        .unwrap_or_else(|| panic!("no failure counted for the instance:\n{metrics}"));
    assert!(
        line.contains(r#"direction="to_channel""#) && line.contains(r#"outcome="retry""#),
        "{line}"
    );
    h.stop().await;
}

/// Runs `sql` on the store file of `h` from a connection of its own, as an operator would.
async fn on_store(h: &Harness, sql: &str) {
    use sqlx::Connection as _;
    let path = h.store_url.trim_start_matches("sqlite://");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    conn.close().await.ok();
}

/// The `attempts` of the outbox items waiting, read from the store file of `h`.
async fn outbox_attempts(h: &Harness) -> Vec<i64> {
    use sqlx::Connection as _;
    let path = h.store_url.trim_start_matches("sqlite://");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT attempts FROM outbox ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    rows.into_iter().map(|(n,)| n).collect()
}

/// A text's "sending" mark is what makes a crash in the middle of its send safe (the next
/// attempt checks LivePerson's echo before sending again). When the store refuses to write
/// it, the text must not be sent: here a trigger makes the database refuse exactly those
/// writes, as a full disk or a failing device would refuse them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_whose_sending_mark_cannot_be_written_is_not_sent_until_it_can() {
    let mut h = Harness::with_store("mk", "", "lease_secs = 2").await;
    assert_eq!(h.say("mk", "ann", "m-1", "first").await, 200);
    let conversation = h.conversation_with("first").await;
    on_store(
        &h,
        "CREATE TRIGGER refuse_marks BEFORE UPDATE OF payload ON outbox
         WHEN NEW.payload LIKE '%\"sending\":%'
         BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END",
    )
    .await;
    assert_eq!(h.say("mk", "ann", "m-2", "second").await, 200);
    // The worker tried, could not mark the send, and put the item back for later.
    for _ in 0..400 {
        if outbox_attempts(&h).await.first().is_some_and(|&n| n >= 1) {
            break;
        }
        assert!(
            !h.consumer_texts(&conversation)
                .contains(&"second".to_owned()),
            "sent although its sending mark was refused"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        outbox_attempts(&h).await.first().is_some_and(|&n| n >= 1),
        "the refused mark was never recorded as a failed attempt"
    );
    assert_eq!(h.consumer_texts(&conversation), ["first"]);
    on_store(&h, "DROP TRIGGER refuse_marks").await;
    eventually("the text once the store takes the mark", || {
        (h.consumer_texts(&conversation).len() == 2).then_some(())
    })
    .await;
    assert_eq!(h.consumer_texts(&conversation), ["first", "second"]);
    h.stop().await;
}

/// A channel whose platform asks to be retried after `u64::MAX` seconds (`Retry-After:
/// 18446744073709551615`) once overflowed the router's backoff: the item's task panicked,
/// and the item was claimed again every lease, never counted, never dead-lettered, its
/// consumer stalled for ever. Now the hint is capped, every failure is an attempt, and after
/// `store.max_attempts` the event is a dead letter that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_neither_stalls_the_queue_nor_retries_for_ever() {
    let h = Harness::with_store(
        "ra",
        "fail_first = 1000\nretry_after = \"18446744073709551615\"",
        "max_attempts = 2",
    )
    .await;
    assert_eq!(h.say("ra", "bob", "ra-1", "hello").await, 200);
    let conversation = h.conversation_with("hello").await;
    h.sim
        .agent_send_text(&conversation, "never delivered")
        .unwrap();
    let store = switchboard_store::Store::connect(&h.store_url)
        .await
        .unwrap();
    let letters = eventually_async(&store).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.direction, switchboard_store::Direction::ToChannel);
    assert!(
        letter.reason.contains("gave up after 2 attempts")
            && letter.reason.contains("recorder told to fail"),
        "{}",
        letter.reason
    );
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchboard_events_given_up_total")
                && l.contains("direction=\"to_channel\"")
                && l.contains("limit=\"attempts\"")),
        "no given-up metric in:\n{metrics}"
    );
    store.close().await;
}

/// A store slower than the request timeout: the timeout used to drop the handler in the middle
/// of its write and answer 503, the write committed anyway, and the sender's retry stored the
/// event a second time (a message without a platform id has no dedup key). Now a write in
/// flight runs to its end and the sender hears 200: the message reaches LivePerson once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_store_write_outlasts_the_request_timeout_reaches_liveperson_once() {
    let mut h = Harness::with_store("to", "", "request_timeout_secs = 1 | ").await;
    assert_eq!(h.say("to", "tim", "t-1", "first").await, 200);
    let conversation = h.conversation_with("first").await;
    let blocker = h.lock_store().await;
    // A platform that retries until it hears 200, without an id of its own.
    let sender = {
        let (http, url) = (
            h.http.clone(),
            format!("{}/channels/to/in?from=tim", h.base),
        );
        tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let status = http
                    .post(&url)
                    .body("slow one")
                    .send()
                    .await
                    .unwrap()
                    .status();
                answers.push(status.as_u16());
                if status == 200 {
                    return answers;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Longer than the request timeout, shorter than SQLite's busy timeout (5 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    Harness::unlock_store(blocker).await;
    let answers = sender.await.unwrap();
    eventually("the slow message at LivePerson", || {
        h.consumer_texts(&conversation)
            .contains(&"slow one".to_owned())
            .then_some(())
    })
    .await;
    // Everything queued was sent: a second copy would be in LivePerson by now.
    let store = switchboard_store::Store::connect(&h.store_url)
        .await
        .unwrap();
    for _ in 0..400 {
        if store
            .pending(switchboard_store::Direction::ToLivePerson)
            .await
            .unwrap()
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    store.close().await;
    assert_eq!(
        h.consumer_texts(&conversation),
        ["first", "slow one"],
        "the sender heard {answers:?}"
    );
    h.stop().await;
}
