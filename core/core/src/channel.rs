//! The `Channel` trait a platform adapter implements, and the context it works in.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::address::ConsumerAddress;
use crate::capabilities::Capabilities;
use crate::error::{ChannelError, DeliveryError, SubmitError};
use crate::event::{InboundEvent, OutboundEvent};
use crate::http_util::{self, HttpRequest, HttpResponse};

/// What a successful delivery reports back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The platform's id for the sent message, when it gives one (Slack `ts`, Telegram
    /// `message_id`, Kannel's reply). Kept for troubleshooting.
    pub platform_id: Option<String>,
}

impl Delivered {
    /// A delivery with the platform's message id.
    pub fn with_id(id: impl Into<String>) -> Self {
        Self {
            platform_id: Some(id.into()),
        }
    }
}

/// A messaging platform adapter.
///
/// One value serves one channel instance (one `[channels.<instance>]` table). The runtime
/// calls it from many tasks at once, so it is `Send + Sync` and keeps its own state behind
/// interior mutability.
///
/// The contract (see `docs/channel-spec.md`):
/// - verify a request's authenticity before parsing it, and answer forged ones with 401;
/// - acknowledge the platform only after [`ChannelContext::submit`] returned `Ok`;
/// - map every [`Outbound`](crate::Outbound) kind or degrade it (rich content to its text);
/// - classify every delivery failure as retryable or permanent;
/// - never log secrets.
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug + 'static {
    /// What this channel can render and report.
    fn capabilities(&self) -> Capabilities;

    /// Called once when the runtime starts, with the context the channel submits through.
    ///
    /// Webhook channels register their URL with the platform here; polling channels run their
    /// poll loop here until [`ChannelContext::shutdown_requested`] resolves. The runtime runs
    /// it as its own task, so it may run for the life of the process. The default does
    /// nothing.
    async fn start(&self, ctx: ChannelContext) -> Result<(), ChannelError> {
        let _ = ctx;
        Ok(())
    }

    /// Handles a request the platform sent to `/channels/{instance}/...`.
    ///
    /// The default answers 404 for channels that receive nothing over HTTP.
    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let _ = (req, ctx);
        http_util::json_error(
            http::StatusCode::NOT_FOUND,
            "not_found",
            "this channel has no HTTP endpoints",
        )
    }

    /// Sends one event to a consumer.
    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError>;

    /// Completes a submitted event just before the runtime sends it to LivePerson, outside the
    /// platform's request.
    ///
    /// A channel whose platform wants a quick acknowledgement (Slack: three seconds) submits a
    /// small reference (a file's link, a user id) and does the slow part here: look-ups and
    /// file downloads. What this returns is sent and then dropped, never written back to the
    /// outbox, so large payloads stay out of it; the stored event is handed to this method
    /// again on every attempt. An `Err` is handled like a failed send: `Retryable` waits and
    /// tries again, `Permanent` dead-letters the event. Return a notice for the agent rather
    /// than an error when the platform refused a part for good (a file that cannot be
    /// fetched). The default passes the event through unchanged, as dynamic plugins do.
    async fn prepare(&self, event: InboundEvent) -> Result<InboundEvent, DeliveryError> {
        Ok(event)
    }

    /// Called once at shutdown, after the runtime stopped handing it work. The default does
    /// nothing.
    async fn shutdown(&self) {}
}

/// Where submitted events go: the runtime's durable inbox. Implemented by the runtime (and by
/// test kits); channels only see it through [`ChannelContext`].
#[async_trait]
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Accepts events durably. Returns once they are stored (or found to be duplicates of
    /// stored ones, by [`InboundEvent::platform_id`]).
    async fn submit(&self, instance: &str, events: Vec<InboundEvent>) -> Result<(), SubmitError>;

    /// Reads a small durable value a channel keeps (a polling offset).
    async fn load_state(&self, instance: &str, key: &str) -> Result<Option<String>, SubmitError>;

    /// Stores a small durable value a channel keeps.
    async fn save_state(&self, instance: &str, key: &str, value: &str) -> Result<(), SubmitError>;

    /// Keeps part `part` of `total` (platform id `id`) of the message `group` (see
    /// [`ChannelContext::add_part`]). The default keeps nothing and says so: a sink without
    /// durable parts.
    async fn add_part(
        &self,
        instance: &str,
        group: &str,
        (part, total, id): (u32, u32, &str),
        body: &str,
        wait: std::time::Duration,
    ) -> Result<crate::PartAdded, SubmitError> {
        let _ = (instance, group, part, total, id, body, wait);
        Err(SubmitError::Rejected(
            "this runtime keeps no message parts".into(),
        ))
    }

    /// Ends a claim [`EventSink::add_part`] or [`EventSink::expired_parts`] gave.
    async fn finish_parts(
        &self,
        instance: &str,
        group: &str,
        submitted: bool,
    ) -> Result<(), SubmitError> {
        let _ = (instance, group, submitted);
        Ok(())
    }

    /// Messages of `instance` given up with parts missing, each claimed for the caller.
    async fn expired_parts(&self, instance: &str) -> Result<Vec<crate::ExpiredParts>, SubmitError> {
        let _ = instance;
        Ok(Vec::new())
    }
}

/// A channel's handle on the runtime: where it submits events, keeps small state, and learns
/// that the process is shutting down. Cheap to clone.
#[derive(Clone)]
pub struct ChannelContext {
    instance: Arc<str>,
    sink: Arc<dyn EventSink>,
    shutdown: watch::Receiver<bool>,
}

impl fmt::Debug for ChannelContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelContext")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl ChannelContext {
    /// Builds a context. The runtime does this; tests use it with a test sink.
    pub fn new(
        instance: impl Into<Arc<str>>,
        sink: Arc<dyn EventSink>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            instance: instance.into(),
            sink,
            shutdown,
        }
    }

    /// This channel instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The address of a consumer on this instance.
    pub fn consumer(&self, platform_id: impl Into<String>) -> ConsumerAddress {
        ConsumerAddress::new(self.instance.as_ref(), platform_id)
    }

    /// Hands events to the runtime. Returns once they are durably accepted; only then may the
    /// channel acknowledge its platform. Events must be addressed to this instance.
    pub async fn submit(&self, events: Vec<InboundEvent>) -> Result<(), SubmitError> {
        if let Some(e) = events
            .iter()
            .find(|e| e.consumer.instance != *self.instance)
        {
            return Err(SubmitError::Rejected(format!(
                "event for instance `{}` submitted by instance `{}`",
                e.consumer.instance, self.instance
            )));
        }
        if events.is_empty() {
            return Ok(());
        }
        self.sink.submit(&self.instance, events).await
    }

    /// Reads a value this instance saved with [`ChannelContext::save_state`].
    pub async fn load_state(&self, key: &str) -> Result<Option<String>, SubmitError> {
        self.sink.load_state(&self.instance, key).await
    }

    /// Saves a small value durably (a polling offset, a cursor).
    pub async fn save_state(&self, key: &str, value: &str) -> Result<(), SubmitError> {
        self.sink.save_state(&self.instance, key, value).await
    }

    /// Keeps one part (`part` of `total`, from 1; `id` its platform id, the same on the
    /// platform's retries) of a message that arrives in several, so that whichever instance
    /// receives the last part gets the whole message, once ([`crate::PartAdded::Complete`]).
    /// A message still missing parts `wait` after its first part is handed out by
    /// [`ChannelContext::expired_parts`].
    pub async fn add_part(
        &self,
        group: &str,
        (part, total, id): (u32, u32, &str),
        body: &str,
        wait: std::time::Duration,
    ) -> Result<crate::PartAdded, SubmitError> {
        self.sink
            .add_part(&self.instance, group, (part, total, id), body, wait)
            .await
    }

    /// Ends the claim of a complete or expired message: `submitted` when it was submitted
    /// (later repeats of its parts are then known), else released for a retry.
    pub async fn finish_parts(&self, group: &str, submitted: bool) -> Result<(), SubmitError> {
        self.sink
            .finish_parts(&self.instance, group, submitted)
            .await
    }

    /// Messages whose wait is over with parts missing, each claimed for the caller, with the
    /// parts that came.
    pub async fn expired_parts(&self) -> Result<Vec<crate::ExpiredParts>, SubmitError> {
        self.sink.expired_parts(&self.instance).await
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown begins (at once if it already has).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which also means shutdown.
        let _ = rx.wait_for(|down| *down).await;
    }
}
