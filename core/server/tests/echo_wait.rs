//! Issue 21.4: a text whose SEND may have reached LivePerson (its answer late, lost or
//! garbled) is not sent again while LivePerson's echo of it can still come, and is sent
//! again once it cannot. The text carries our `ExternalId`, which the echo carries back.
//!
//! LivePerson's webhooks run in retention mode (`retry.retention_time`, as `switchboard
//! manifest` asks): a notification our endpoint did not take is retried after 2 s, 4 s, 8 s …
//! (developer-center `pages/Documents/MessagingChannels/ConnectorAPI/Webhooks/retry-policy.md`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_lp_sim::{
    FaultRequest, PathClass, RetryConfig, SimConfig, SimHandle, Simulator, WebhooksConfig,
};
use tokio::net::TcpListener;

use crate::support::{liveperson_toml, load_toml};

/// One connector on one simulator whose webhooks pass through a [`FlakyEndpoint`].
struct Rig {
    sim: SimHandle,
    base: String,
    http: reqwest::Client,
    endpoint: FlakyEndpoint,
    _server: tokio::task::JoinHandle<Result<(), switchboard::RunError>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Rig {
    /// `scale` is both the simulator's time scale (its webhook retry gaps) and the
    /// connector's `retry_scale` (its waits, the echo deadline included): one factor, so the
    /// ratio between LivePerson's timings and the connector's stays the real one.
    async fn start(scale: f64) -> Rig {
        let sim = Simulator::start(SimConfig {
            time_scale: scale,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let data = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", data.path().join("sb.db").display());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoint = FlakyEndpoint::start(format!("http://{addr}/webhooks/liveperson")).await;
        sim.set_webhooks(WebhooksConfig {
            retry: RetryConfig {
                retention_time: Some(86_400),
            },
            ..WebhooksConfig::all(&endpoint.url, None)
        });
        let toml = format!(
            "[server]\nlisten = \"{addr}\"\n[store]\nurl = \"{store_url}\"\n{}\
             [channels.sms]\nkind = \"test-recorder\"\n",
            liveperson_toml(&sim, scale),
        );
        let (config_dir, _path, loaded) = load_toml(&toml);
        let server = tokio::spawn(switchboard::serve(
            loaded.unwrap(),
            listener,
            std::future::pending(),
        ));
        Rig {
            sim,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            endpoint,
            _server: server,
            _dirs: (data, config_dir),
        }
    }

    async fn consumer(&self, id: &str, text: &str) {
        let status = self
            .http
            .post(format!("{}/channels/sms/in?from=ana", self.base))
            .header("x-id", id)
            .body(text.to_owned())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    /// Every consumer text LivePerson published, in every conversation, in order.
    fn published(&self) -> Vec<String> {
        self.sim
            .conversations()
            .iter()
            .flat_map(|c| {
                c.consumer_messages()
                    .filter_map(|t| t.event["message"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits (generously) until LivePerson published `text`.
    async fn published_eventually(&self, text: &str, within: Duration) {
        let found = self
            .sim
            .wait_until(within, |_| {
                self.published().iter().any(|t| t == text).then_some(())
            })
            .await;
        assert!(
            found.is_some(),
            "{text:?} never reached LivePerson: {:?}",
            self.published()
        );
    }

    /// Waits until every webhook notification so far was delivered.
    async fn webhooks_delivered(&self) {
        let done = self
            .sim
            .wait_until(Duration::from_secs(60), |s| {
                s.webhook_deliveries()
                    .iter()
                    .all(|d| d.outcome == switchboard_lp_sim::DeliveryOutcome::Delivered)
                    .then_some(())
            })
            .await;
        assert!(done.is_some(), "webhooks were not delivered");
    }
}

/// A webhook endpoint in front of the connector that answers 503 until a chosen time (as a
/// connector behind a failing load balancer would), then passes notifications through.
#[derive(Clone)]
struct FlakyEndpoint {
    url: String,
    /// Failing until this many ms after `epoch`.
    fail_until_ms: Arc<AtomicU64>,
    epoch: tokio::time::Instant,
    refused: Arc<AtomicU64>,
}

impl FlakyEndpoint {
    async fn start(target: String) -> FlakyEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let endpoint = FlakyEndpoint {
            url,
            fail_until_ms: Arc::new(AtomicU64::new(0)),
            epoch: tokio::time::Instant::now(),
            refused: Arc::new(AtomicU64::new(0)),
        };
        let state = (endpoint.clone(), target, reqwest::Client::new());
        let app = axum::Router::new()
            .fallback(axum::routing::post(forward))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        endpoint
    }

    /// Notifications arriving within `d` from now are refused.
    fn fail_for(&self, d: Duration) {
        let until = self.epoch.elapsed() + d;
        self.fail_until_ms
            .store(until.as_millis() as u64, Ordering::SeqCst);
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

async fn forward(
    axum::extract::State((endpoint, target, http)): axum::extract::State<(
        FlakyEndpoint,
        String,
        reqwest::Client,
    )>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> http::StatusCode {
    if (endpoint.epoch.elapsed().as_millis() as u64) < endpoint.fail_until_ms.load(Ordering::SeqCst)
    {
        endpoint.refused.fetch_add(1, Ordering::SeqCst);
        return http::StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut request = http.post(&target).body(body);
    for (name, value) in &headers {
        if name.as_str().starts_with("x-liveperson") || name == http::header::CONTENT_TYPE {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => answer.status(),
        Err(_) => http::StatusCode::BAD_GATEWAY,
    }
}

/// The case of the issue, at LivePerson's real timings (no time scale): the SEND is
/// published but its answer comes too late (the engine gives up after 10 s), webhooks
/// reach the connector 25 s late, and the endpoint refuses the echo's first attempts, so
/// LivePerson backs off (2 s, 4 s, 8 s): the echo comes about 39 s after the send, later
/// than the 1 + 2 + 4 + 8 s the connector used to wait before sending again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_whose_answer_was_lost_is_published_once_although_its_echo_comes_late() {
    let rig = Rig::start(1.0).await;
    rig.consumer("m1", "first").await;
    rig.published_eventually("first", Duration::from_secs(30))
        .await;
    rig.webhooks_delivered().await;

    rig.sim
        .delay_next(PathClass::Send, 1, Duration::from_secs(60));
    rig.sim.apply_faults(FaultRequest {
        webhook_delay_ms: Some(25_000),
        ..FaultRequest::default()
    });
    // The first attempt, 25 s after the send, and the retries 2 s and 6 s after it fail.
    rig.endpoint.fail_for(Duration::from_secs(35));
    rig.consumer("m2", "second").await;
    rig.published_eventually("second", Duration::from_secs(30))
        .await;
    rig.consumer("m3", "third").await;
    // "third" goes only once "second" is settled: after it, nothing more of "second" can come.
    rig.published_eventually("third", Duration::from_secs(150))
        .await;
    assert!(
        rig.endpoint.refused() >= 2,
        "LivePerson's retries were not exercised"
    );
    assert_eq!(
        rig.published(),
        ["first", "second", "third"],
        "each once, in order"
    );
    assert_eq!(rig.sim.conversations().len(), 1);
    // Each text carried the connector's own ExternalId (≤ 64 characters), echoed back.
    let conversation = &rig.sim.conversations()[0];
    for entry in conversation.consumer_messages() {
        let ids: Vec<_> = entry
            .metadata
            .iter()
            .flat_map(|m| m.as_array().cloned().unwrap_or_default())
            .filter(|m| m["type"] == "ExternalId")
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        assert!(
            ids.len() == 1 && ids[0].starts_with("sb-") && ids[0].len() <= 64,
            "{ids:?}"
        );
    }
}

/// The other end: the SEND never reached LivePerson, but the connector cannot know (a 504
/// from a gateway in front of it). No echo comes, and once LivePerson's webhook retries
/// would have brought it (one capped retry gap, 5 minutes, plus a delivery, after the mark,
/// while the connector answers every webhook), the text is sent again, and appears once.
/// Time runs 100 times faster for the simulator's webhook retries and for the connector's
/// waits alike (`scale` = 0.01 for both), so the deadline is 3.15 s here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_that_never_reached_liveperson_is_sent_again_once_its_echo_cannot_come() {
    let rig = Rig::start(0.01).await;
    rig.consumer("m1", "first").await;
    rig.published_eventually("first", Duration::from_secs(30))
        .await;
    rig.sim.fail_next(PathClass::Send, 1, 504, None);
    rig.consumer("m2", "second").await;
    rig.consumer("m3", "third").await;
    rig.published_eventually("third", Duration::from_secs(60))
        .await;
    assert_eq!(
        rig.published(),
        ["first", "second", "third"],
        "each once, in order"
    );
    assert!(rig.sim.faults().scripted.is_empty(), "the 504 was used");
}
