//! Channels that misbehave on purpose, named by how (as vector's test components are), for
//! tests of the router and the runtime, which must survive them:
//!
//! - [`FailingChannel`]: its `start` fails, and its deliveries fail (retryably, or for good
//!   with `permanent = true`) while its `failures` last (all of them by default).
//! - [`SlowChannel`]: its deliveries stall until the test calls [`release`].
//! - [`PanickingChannel`]: panics in `start`, on `POST /panic`, and in its first `panics`
//!   deliveries (all of them by default).
//!
//! All three take consumer messages the same way: `POST /in?from=<id>` with the text as the
//! body and `x-id` as the platform id. What they deliver is recorded per instance
//! ([`delivered`]). A test registers the kinds it needs in its own binary:
//!
//! ```ignore
//! switchboard_core::register_channel! {
//!     kind: "test-panicking",
//!     description: "Panics (router tests)",
//!     build: switchboard_testkit::misbehaving::PanickingChannel::build,
//! }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use serde::Deserialize;
use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ChannelError, ConfigError,
    ConsumerAddress, Delivered, DeliveryError, HttpRequest, HttpResponse, Inbound, InboundEvent,
    OutboundEvent, async_trait, http,
};
use tokio::sync::watch;

/// The keys of the misbehaving kinds (each reads the ones about it).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MisbehavingConfig {
    /// [`FailingChannel`]: how many deliveries fail before the rest succeed (default: all).
    #[serde(default)]
    pub failures: Option<u32>,
    /// [`FailingChannel`]: fail for good instead of retryably.
    #[serde(default)]
    pub permanent: bool,
    /// [`PanickingChannel`]: how many deliveries panic before the rest succeed (default: all).
    #[serde(default)]
    pub panics: Option<u32>,
}

#[derive(Debug, Default)]
struct Record {
    delivered: Vec<(ConsumerAddress, OutboundEvent)>,
    stalled: usize,
}

static RECORDS: LazyLock<Mutex<HashMap<String, Record>>> = LazyLock::new(Default::default);
static GATES: LazyLock<Mutex<HashMap<String, watch::Sender<bool>>>> =
    LazyLock::new(Default::default);

fn records() -> std::sync::MutexGuard<'static, HashMap<String, Record>> {
    RECORDS.lock().unwrap_or_else(|p| p.into_inner())
}

fn gate(instance: &str) -> watch::Receiver<bool> {
    GATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(instance.to_owned())
        .or_insert_with(|| watch::channel(false).0)
        .subscribe()
}

/// What the misbehaving instance `instance` delivered, in order.
pub fn delivered(instance: &str) -> Vec<(ConsumerAddress, OutboundEvent)> {
    records()
        .get(instance)
        .map(|r| r.delivered.clone())
        .unwrap_or_default()
}

/// How many deliveries of the [`SlowChannel`] `instance` are stalled right now.
pub fn stalled(instance: &str) -> usize {
    records().get(instance).map(|r| r.stalled).unwrap_or(0)
}

/// Lets the [`SlowChannel`] `instance` finish its stalled deliveries, and every later one.
pub fn release(instance: &str) {
    let _ = gate(instance);
    if let Some(tx) = GATES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(instance)
    {
        tx.send_replace(true);
    }
}

fn record(to: &ConsumerAddress, event: &OutboundEvent) -> Result<Delivered, DeliveryError> {
    records()
        .entry(to.instance.clone())
        .or_default()
        .delivered
        .push((to.clone(), event.clone()));
    Ok(Delivered::default())
}

/// `POST /in?from=<id>` with the text as body and `x-id` as the platform id.
async fn receive(req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
    if req.uri().path() != "/in" {
        return json_error(http::StatusCode::NOT_FOUND, "not_found", "POST /in");
    }
    let from = http_util::query_pairs(&req)
        .into_iter()
        .find(|(k, _)| k == "from")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(req.body()).into_owned();
    let mut event = InboundEvent::new(ctx.consumer(from), Inbound::text(text));
    if let Some(id) = http_util::header_str(&req, "x-id") {
        event = event.with_platform_id(id);
    }
    match ctx.submit(vec![event]).await {
        Ok(()) => http_util::empty(http::StatusCode::OK),
        Err(e) => http_util::submit_failed(&e),
    }
}

/// Takes one from a budget (`None` meaning unlimited); true while it lasts.
fn spend(budget: &Option<AtomicU32>) -> bool {
    match budget {
        None => true,
        Some(left) => left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok(),
    }
}

/// A channel whose `start` fails and whose deliveries fail while its budget lasts.
#[derive(Debug)]
pub struct FailingChannel {
    failures: Option<AtomicU32>,
    permanent: bool,
}

impl FailingChannel {
    /// The registration's `build`.
    pub fn build(config: &ChannelConfig) -> Result<Arc<dyn Channel>, ConfigError> {
        let c: MisbehavingConfig = config.parse()?;
        Ok(Arc::new(Self {
            failures: c.failures.map(AtomicU32::new),
            permanent: c.permanent,
        }))
    }
}

#[async_trait]
impl Channel for FailingChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn start(&self, _ctx: ChannelContext) -> Result<(), ChannelError> {
        Err(ChannelError::Start(
            "the failing channel fails to start".into(),
        ))
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        receive(req, ctx).await
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        if spend(&self.failures) {
            return Err(if self.permanent {
                DeliveryError::permanent("the failing channel refuses everything")
            } else {
                DeliveryError::retryable("the failing channel is down")
            });
        }
        record(to, event)
    }
}

/// A channel whose deliveries stall until [`release`].
#[derive(Debug)]
pub struct SlowChannel {
    instance: String,
}

impl SlowChannel {
    /// The registration's `build`.
    pub fn build(config: &ChannelConfig) -> Result<Arc<dyn Channel>, ConfigError> {
        let _: MisbehavingConfig = config.parse()?;
        Ok(Arc::new(Self {
            instance: config.instance.clone(),
        }))
    }
}

#[async_trait]
impl Channel for SlowChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        receive(req, ctx).await
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        let mut open = gate(&self.instance);
        records().entry(self.instance.clone()).or_default().stalled += 1;
        let _ = open.wait_for(|released| *released).await;
        if let Some(r) = records().get_mut(&self.instance) {
            r.stalled -= 1;
        }
        record(to, event)
    }
}

/// A channel that panics in `start`, on `POST /panic`, and in deliveries while its budget
/// lasts.
#[derive(Debug)]
pub struct PanickingChannel {
    panics: Option<AtomicU32>,
}

impl PanickingChannel {
    /// The registration's `build`.
    pub fn build(config: &ChannelConfig) -> Result<Arc<dyn Channel>, ConfigError> {
        let c: MisbehavingConfig = config.parse()?;
        Ok(Arc::new(Self {
            panics: c.panics.map(AtomicU32::new),
        }))
    }
}

#[async_trait]
impl Channel for PanickingChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
    }

    async fn start(&self, _ctx: ChannelContext) -> Result<(), ChannelError> {
        panic!("the panicking channel panics in start");
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        if req.uri().path() == "/panic" {
            panic!("the panicking channel panics on /panic");
        }
        receive(req, ctx).await
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        if spend(&self.panics) {
            panic!("the panicking channel panics in deliver");
        }
        record(to, event)
    }
}
