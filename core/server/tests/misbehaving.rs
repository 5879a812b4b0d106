//! The router with channels that misbehave on purpose (`switchboard_testkit::misbehaving`):
//! a panicking, a stalled and a failing channel each degrade only themselves. The process,
//! the other channels and every accepted event survive.

use std::time::Duration;

use switchboard_core::Outbound;
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::misbehaving::{
    self, FailingChannel, PanickingChannel, SlowChannel, delivered,
};
use tokio::net::TcpListener;

use crate::support::{eventually, load_toml};

switchboard_core::register_channel! {
    kind: "test-failing",
    description: "Test channel: fails to start, fails deliveries (router tests)",
    build: FailingChannel::build,
}

switchboard_core::register_channel! {
    kind: "test-slow",
    description: "Test channel: deliveries stall until released (router tests)",
    build: SlowChannel::build,
}

switchboard_core::register_channel! {
    kind: "test-panicking",
    description: "Test channel: panics in start, on /panic and in deliveries (router tests)",
    build: PanickingChannel::build,
}

/// A connector with the given channel tables, wired to a fresh simulator.
struct Connector {
    sim: SimHandle,
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), switchboard::RunError>>>,
    _dir: tempfile::TempDir,
}

impl Connector {
    async fn start(channels: &str) -> Self {
        let sim = Simulator::start(SimConfig {
            time_scale: 0.01,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        sim.set_webhook_endpoint(&format!("http://{addr}/webhooks/liveperson"));
        let store = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[server]
listen = "{addr}"
[store]
url = "sqlite://{db}"
[liveperson]
mode = "live"
account_id = "{account}"
client_id = "{client}"
client_secret = "{secret}"
domain_api = "{domain}"
retry_scale = 0.001
{channels}
"#,
            db = store.path().join("sb.db").display(),
            account = sim.account_id(),
            client = sim.client_id(),
            secret = sim.client_secret(),
            domain = sim.domain_api(),
        );
        let (dir, _path, loaded) = load_toml(&toml);
        std::mem::forget(dir);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(switchboard::serve(loaded.unwrap(), listener, async {
            let _ = stop_rx.await;
        }));
        Connector {
            sim,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            stop: Some(stop),
            server: Some(server),
            _dir: store,
        }
    }

    async fn say(&self, instance: &str, from: &str, id: &str, text: &str) -> u16 {
        self.http
            .post(format!("{}/channels/{instance}/in?from={from}", self.base))
            .header("x-id", id)
            .body(text.to_owned())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The conversation `text` opened, once LivePerson has it.
    async fn conversation_with(&self, text: &str) -> String {
        let entry = self
            .sim
            .wait_for_consumer_message(text, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("`{text}` never reached LivePerson"));
        self.sim
            .conversations()
            .into_iter()
            .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
            .unwrap()
            .conversation_id
    }

    async fn status(&self, path: &str) -> u16 {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

fn texts(
    list: Vec<(
        switchboard_core::ConsumerAddress,
        switchboard_core::OutboundEvent,
    )>,
) -> Vec<String> {
    list.into_iter()
        .filter_map(|(_, e)| match e.body {
            Outbound::Text { text } => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_channel_loses_nothing_and_stops_nobody() {
    let c = Connector::start(
        "[channels.panicky]\nkind = \"test-panicking\"\npanics = 2\n[channels.calm]\nkind = \"test-recorder\"\n",
    )
    .await;
    // Its start panicked; the process serves on, and a panicking request is a JSON 500.
    assert_eq!(c.status("/healthz").await, 200);
    let resp = c
        .http
        .post(format!("{}/channels/panicky/panic", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal");

    assert_eq!(
        c.say("panicky", "p1", "p-1", "hello from panicky").await,
        200
    );
    assert_eq!(c.say("calm", "c1", "c-1", "hello from calm").await, 200);
    let panicky = c.conversation_with("hello from panicky").await;
    let calm = c.conversation_with("hello from calm").await;
    c.sim.agent_send_text(&panicky, "reply to panicky").unwrap();
    c.sim.agent_send_text(&calm, "reply to calm").unwrap();

    // The calm channel is served, and the panicking one gets its reply once it stops
    // panicking (two panics, each retried).
    eventually("the calm reply", || {
        texts(crate::support::delivered("calm"))
            .contains(&"reply to calm".to_owned())
            .then_some(())
    })
    .await;
    eventually("the reply after two panics", || {
        texts(delivered("panicky"))
            .contains(&"reply to panicky".to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(c.status("/healthz").await, 200);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_channel_holds_up_only_its_own_consumers() {
    let c = Connector::start(
        "[channels.stalled]\nkind = \"test-slow\"\n[channels.calm2]\nkind = \"test-recorder\"\n",
    )
    .await;
    assert_eq!(
        c.say("stalled", "s1", "s-1", "hello from stalled").await,
        200
    );
    assert_eq!(c.say("calm2", "c2", "c-2", "hello from calm2").await, 200);
    let stalled = c.conversation_with("hello from stalled").await;
    let calm = c.conversation_with("hello from calm2").await;

    c.sim.agent_send_text(&stalled, "reply to stalled").unwrap();
    eventually("the stalled delivery", || {
        (misbehaving::stalled("stalled") == 1).then_some(())
    })
    .await;
    // While it hangs, another consumer's reply goes out.
    c.sim.agent_send_text(&calm, "reply to calm2").unwrap();
    eventually("the calm reply while the other stalls", || {
        texts(crate::support::delivered("calm2"))
            .contains(&"reply to calm2".to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(misbehaving::stalled("stalled"), 1, "still stalled");
    assert!(delivered("stalled").is_empty());

    misbehaving::release("stalled");
    eventually("the stalled reply once released", || {
        texts(delivered("stalled"))
            .contains(&"reply to stalled".to_owned())
            .then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_channel_retries_until_it_recovers_and_others_go_on() {
    let c = Connector::start(
        "[channels.flaky]\nkind = \"test-failing\"\nfailures = 3\n[channels.calm3]\nkind = \"test-recorder\"\n",
    )
    .await;
    // Its start failed; it still takes messages and the process is healthy.
    assert_eq!(c.status("/healthz").await, 200);
    assert_eq!(c.say("flaky", "f1", "f-1", "hello from flaky").await, 200);
    assert_eq!(c.say("calm3", "c3", "c-3", "hello from calm3").await, 200);
    let flaky = c.conversation_with("hello from flaky").await;
    let calm = c.conversation_with("hello from calm3").await;
    c.sim
        .agent_send_text(&flaky, "first reply to flaky")
        .unwrap();
    c.sim
        .agent_send_text(&flaky, "second reply to flaky")
        .unwrap();
    c.sim.agent_send_text(&calm, "reply to calm3").unwrap();
    eventually("the calm reply", || {
        texts(crate::support::delivered("calm3"))
            .contains(&"reply to calm3".to_owned())
            .then_some(())
    })
    .await;
    // Three failures later, both replies arrive, in order.
    eventually("both flaky replies", || {
        (texts(delivered("flaky")).len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        texts(delivered("flaky")),
        ["first reply to flaky", "second reply to flaky"]
    );
    c.stop().await;
}
