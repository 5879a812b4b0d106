//! Shared helpers: a recording sink, channel set-up, and an HTTP server that forwards gateway
//! callbacks to `Channel::handle_http` as the runtime does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use switchboard_core::{
    Bytes, Channel, ChannelConfig, ChannelContext, EventSink, ExpiredParts, InboundEvent,
    PartAdded, SubmitError, async_trait, find_registration, http,
};
use switchboard_testkit::fake_kannel::FakeKannel;

pub(crate) const INSTANCE: &str = "sms-main";
pub(crate) const TOKEN: &str = "T0K-0123456789abcdef";
/// The `sendsms-user` of [`settings`].
pub(crate) const USER: &str = "sb";
/// Its password.
pub(crate) const PASS: &str = "s3cret-pass";

/// Records submitted events and keeps state in memory; can be told to fail submits. Like the
/// runtime, it drops an event whose platform id it already took (a gateway's retry, a
/// replayed request): what reaches `events` is what would reach LivePerson.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) events: Mutex<Vec<InboundEvent>>,
    pub(crate) state: Mutex<HashMap<String, String>>,
    pub(crate) fail: Mutex<bool>,
    /// Submits still to fail, before `fail` is looked at.
    pub(crate) fail_next: Mutex<usize>,
    /// The runtime's own store (in memory) for the parts of long messages.
    parts: tokio::sync::OnceCell<switchboard_store::Store>,
}

impl Sink {
    /// The store keeping message parts, opened on first use.
    pub(crate) async fn parts_store(&self) -> &switchboard_store::Store {
        self.parts
            .get_or_init(|| async {
                switchboard_store::Store::connect("sqlite::memory:")
                    .await
                    .expect("in-memory store")
            })
            .await
    }

    pub(crate) fn events(&self) -> Vec<InboundEvent> {
        self.events.lock().unwrap().clone()
    }
    pub(crate) fn set_failing(&self, fail: bool) {
        *self.fail.lock().unwrap() = fail;
    }
    /// Fails the next `n` submits.
    pub(crate) fn fail_next(&self, n: usize) {
        *self.fail_next.lock().unwrap() = n;
    }
}

#[async_trait]
impl EventSink for Sink {
    async fn submit(&self, _instance: &str, events: Vec<InboundEvent>) -> Result<(), SubmitError> {
        let forced = {
            let mut n = self.fail_next.lock().unwrap();
            let forced = *n > 0;
            *n = n.saturating_sub(1);
            forced
        };
        if forced || *self.fail.lock().unwrap() {
            return Err(SubmitError::Unavailable {
                reason: "store down".into(),
                retry_after: Some(Duration::from_secs(7)),
            });
        }
        let mut taken = self.events.lock().unwrap();
        for event in events {
            let seen = event.platform_id.is_some()
                && taken.iter().any(|e| e.platform_id == event.platform_id);
            if !seen {
                taken.push(event);
            }
        }
        Ok(())
    }
    async fn load_state(&self, _: &str, key: &str) -> Result<Option<String>, SubmitError> {
        Ok(self.state.lock().unwrap().get(key).cloned())
    }
    async fn save_state(&self, _: &str, key: &str, value: &str) -> Result<(), SubmitError> {
        self.state
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn add_part(
        &self,
        instance: &str,
        group: &str,
        (part, total, id): (u32, u32, &str),
        body: &str,
        wait: Duration,
    ) -> Result<PartAdded, SubmitError> {
        let added = self
            .parts_store()
            .await
            .add_part(&switchboard_store::NewPart {
                instance,
                group,
                part,
                id,
                total,
                body,
                wait,
            })
            .await
            .map_err(|e| SubmitError::Rejected(e.to_string()))?;
        Ok(match added {
            switchboard_store::PartAdded::Waiting => PartAdded::Waiting,
            switchboard_store::PartAdded::Complete { parts, id } => {
                PartAdded::Complete { parts, id }
            }
            switchboard_store::PartAdded::Late => PartAdded::Late,
        })
    }

    async fn finish_parts(
        &self,
        instance: &str,
        group: &str,
        submitted: bool,
    ) -> Result<(), SubmitError> {
        self.parts_store()
            .await
            .finish_parts(instance, group, submitted)
            .await
            .map_err(|e| SubmitError::Rejected(e.to_string()))
    }

    async fn expired_parts(&self, instance: &str) -> Result<Vec<ExpiredParts>, SubmitError> {
        let expired = self
            .parts_store()
            .await
            .take_expired_parts(instance, 50)
            .await
            .map_err(|e| SubmitError::Rejected(e.to_string()))?;
        Ok(expired
            .into_iter()
            .map(|e| ExpiredParts {
                group: e.group,
                total: e.total,
                parts: e.parts,
                id: e.id,
            })
            .collect())
    }
}

/// A typical Kannel config, with overrides.
pub(crate) fn settings(
    sendsms_url: &str,
    callback_base: &str,
    extra: serde_json::Value,
) -> ChannelConfig {
    let mut v = serde_json::json!({
        "gateway": "kannel",
        "from": "1000",
        "callback_base_url": callback_base,
        "callback_token": TOKEN,
        "sendsms_url": sendsms_url,
        "username": USER,
        "password": PASS,
    });
    if let (Some(map), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            map.insert(k.clone(), val.clone());
        }
    }
    ChannelConfig::new(INSTANCE, "sms", v)
}

/// The testkit's fake Kannel, configured from the kannel.conf groups of a typical config
/// ([`settings`] with `max_parts = max_messages`: the `sendsms-user` [`USER`], its
/// `max-messages`), listening on a free port; configs for it name
/// [`FakeKannel::sendsms_url`].
pub(crate) async fn fake_kannel(max_messages: u32) -> FakeKannel {
    let port = free_port();
    let config = settings(
        &format!("http://127.0.0.1:{port}/cgi-bin/sendsms"),
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "max_parts": max_messages }),
    );
    let snippet = switchboard_channel_sms::kannel_config_snippet(&config).expect("a Kannel config");
    FakeKannel::start(&snippet, port)
        .await
        .expect("the fake Kannel starts")
}

pub(crate) struct Setup {
    pub(crate) channel: Arc<dyn Channel>,
    pub(crate) ctx: ChannelContext,
    pub(crate) sink: Arc<Sink>,
}

/// A typical Vonage config, with overrides.
pub(crate) fn vonage_settings(
    api_base_url: &str,
    callback_base: &str,
    extra: serde_json::Value,
) -> ChannelConfig {
    let mut v = serde_json::json!({
        "gateway": "vonage",
        "from": format!("+{}", switchboard_testkit::fake_vonage::OUR_NUMBER),
        "callback_base_url": callback_base,
        "api_key": switchboard_testkit::fake_vonage::API_KEY,
        "api_secret": switchboard_testkit::fake_vonage::API_SECRET,
        "signature_secret": switchboard_testkit::fake_vonage::SIG_SECRET,
        "api_base_url": api_base_url,
    });
    if let (Some(map), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            map.insert(k.clone(), val.clone());
        }
    }
    ChannelConfig::new(INSTANCE, "sms", v)
}

/// Builds the channel through its registration and starts it with a recording sink.
pub(crate) async fn setup(config: &ChannelConfig) -> Setup {
    setup_with_sink(config, Arc::new(Sink::default())).await
}

/// Builds the channel and starts it on an existing sink (its state survives, as the
/// runtime's store does across restarts).
pub(crate) async fn setup_with_sink(config: &ChannelConfig, sink: Arc<Sink>) -> Setup {
    let reg = find_registration("sms").expect("registered");
    let channel = (reg.build)(config).expect("valid config");
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    let ctx = ChannelContext::new(INSTANCE, sink.clone(), rx);
    channel.start(ctx.clone()).await.unwrap();
    Setup { channel, ctx, sink }
}

/// The JSON error code of a response.
pub(crate) fn error_code(r: &switchboard_core::HttpResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(r.body()).expect("JSON error body");
    v["error"]["code"].as_str().unwrap().to_owned()
}

pub(crate) fn get(uri: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .method("GET")
        .uri(uri)
        .body(Bytes::new())
        .unwrap()
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where the forwarding server finds the channel once it is built.
type Slot = Arc<Mutex<Option<(Arc<dyn Channel>, ChannelContext)>>>;

#[derive(Clone)]
struct Fwd {
    channel: Slot,
}

/// A server that forwards `/channels/{instance}/{rest}` to the channel, like the runtime.
/// Returns its callback base (`http://127.0.0.1:P/channels/sms-main`) and a setter for the
/// channel (so that the channel's config can name the base first).
pub(crate) struct CallbackServer {
    pub(crate) base: String,
    slot: Slot,
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl CallbackServer {
    pub(crate) async fn start() -> Self {
        let slot = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = (
            Fwd {
                channel: slot.clone(),
            },
            log.clone(),
        );
        let app = axum::Router::new()
            .route("/channels/{instance}/{*rest}", axum::routing::any(forward))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base: format!("http://127.0.0.1:{port}/channels/{INSTANCE}"),
            slot,
            log,
        }
    }

    pub(crate) fn attach(&self, s: &Setup) {
        *self.slot.lock().unwrap() = Some((s.channel.clone(), s.ctx.clone()));
    }

    pub(crate) fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

async fn forward(
    State((fwd, log)): State<(Fwd, Arc<Mutex<Vec<String>>>)>,
    Path((instance, rest)): Path<(String, String)>,
    req: http::Request<Body>,
) -> http::Response<Body> {
    let target = fwd.channel.lock().unwrap().clone();
    let Some((channel, ctx)) = target.filter(|_| instance == INSTANCE) else {
        return http::Response::builder()
            .status(404)
            .body(Body::empty())
            .unwrap();
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri = format!("/{rest}{query}");
    log.lock().unwrap().push(uri.clone());
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut inner = http::Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(bytes)
        .unwrap();
    *inner.headers_mut() = parts.headers;
    let resp = channel.handle_http(inner, &ctx).await;
    resp.map(Body::from)
}

/// Waits until `cond` holds, up to `secs`.
pub(crate) async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// Percent-encodes every byte (for building gateway queries by hand).
pub(crate) fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}
