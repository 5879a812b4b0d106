//! `sms`: consumers on SMS through an SMS gateway: Kannel's HTTP interface or Vonage's SMS
//! API (`gateway = "kannel" | "vonage"`).
//!
//! - Kannel ([`kannel`]): agent messages go to Kannel's `POST /cgi-bin/sendsms` (text/plain
//!   body, `X-Kannel-*` headers: credentials and text never in a URL), `coding=2` (UCS-2)
//!   when the text is not GSM-7, with a `dlr-url` carrying the message's short reference
//!   ([`tracking`]: mapped to the message in the store). Consumer messages come from
//!   Kannel's `sms-service` get-url to `GET /channels/{instance}/mo?token=...`, delivery
//!   reports to `GET /channels/{instance}/dlr?token=...`; the token is checked in constant
//!   time before anything else.
//! - Vonage ([`vonage`]): agent messages go to `POST /sms/json` (form body with the
//!   credentials, `type=unicode` when not GSM-7, `client-ref` = the same reference); inbound
//!   messages and delivery receipts arrive signed at `/channels/{instance}/inbound` and
//!   `/channels/{instance}/dlr`, and are verified (signature, a timestamp at most 25 hours
//!   old, nonce not reused) before anything else; long messages are put together in the
//!   store, across instances.
//! - Either way the answer is `200` with an empty body only after the runtime stored the
//!   event (else `503`, and the gateway retries with the same message id, which the runtime
//!   dedups).
//! - Numbers are normalised to E.164 ([`number`]), so one person is one consumer whatever
//!   form the gateway used.
//! - STOP / START / HELP ([`keywords`]): opt-outs are kept in the channel state and
//!   confirmed once; nothing is sent to an opted-out consumer.
//! - Texts longer than `max_parts` concatenated parts are split at word boundaries into
//!   several gateway calls, each within the cap, so the gateway never truncates silently.
//! - Rich content is sent as numbered text; a consumer answering the number of a reply
//!   button of the last agent message becomes a choice.
//!
//! Each gateway is a module of its own ([`kannel`], [`vonage`]: client, settings, callbacks,
//! wire format); what they share is at the top: the gateway interface ([`SmsGateway`]), the
//! gateway-independent settings ([`SmsConfig`], [`Settings`]), [`encoding`], [`number`],
//! [`keywords`], [`tracking`], the callbacks' common handling ([`callbacks`]) and the channel.
//!
//! [`kannel_config_snippet`] prints the kannel.conf groups for an instance.

pub mod callbacks;
mod chars;
mod config;
pub mod encoding;
mod error;
mod gateway;
pub mod kannel;
pub mod keywords;
pub mod number;
mod outbound;
pub mod tracking;
pub mod vonage;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ChannelError, ConfigError,
    ConsumerAddress, Delivered, DeliveryError, HttpRequest, HttpResponse, OutboundEvent,
    SubmitError, Support, async_trait, http,
};

pub use callbacks::{DELIVERY_REPORTS, NOT_DELIVERED};
pub use config::{
    DEFAULT_REPORT_WAIT_SECS, GatewayKind, GatewaySettings, MAX_PARTS_LIMIT, Settings, SmsConfig,
};
pub use error::InboundError;
pub use gateway::{OutgoingSms, SendError, SmsGateway};
/// Kannel's callbacks under the path earlier releases gave them
/// (`switchboard_channel_sms::inbound::parse_mo`, used by the benchmarks and fuzz targets).
pub use kannel::inbound;
pub use kannel::{
    CALLBACK_RETRIES, CALLBACK_RETRY_DELAY_SECS, DEFAULT_DLR_MASK, DLR_URL_MAX, DlrStatus,
    DlrTarget, KannelClient, KannelDlr, KannelMo, KannelSettings, classify, dlr_decode, dlr_encode,
    dlr_url_len,
};
pub use keywords::{Keyword, Keywords, KeywordsConfig};
pub use outbound::render;
pub use vonage::{
    DEFAULT_CONCAT_WAIT_SECS, SignatureMethod, VONAGE_API_BASE_URL, VonageClient, VonageSettings,
};

/// The kannel.conf groups for an instance with `gateway = "kannel"` ([`kannel::conf::snippet`]):
/// what `switchboard sms kannel-config` prints. An error for an invalid config or another
/// gateway.
pub fn kannel_config_snippet(config: &ChannelConfig) -> Result<String, ConfigError> {
    let settings = SmsConfig::from_channel_config(config)?;
    let GatewaySettings::Kannel(k) = &settings.gateway else {
        return Err(config.error(
            "gateway",
            "the kannel.conf groups are for gateway = \"kannel\" only",
        ));
    };
    Ok(kannel::conf::snippet(
        &config.instance,
        k,
        &settings.callback_base_url,
        settings.max_parts,
    ))
}

/// The SMS channel for one instance.
#[derive(Debug)]
pub struct SmsChannel {
    settings: Settings,
    gateway: Arc<dyn SmsGateway>,
    /// The runtime context, kept from `start` (or the first callback) for state `deliver` keeps.
    ctx: OnceLock<ChannelContext>,
    /// Nonces of accepted Vonage webhooks.
    replay: vonage::ReplayGuard,
    /// The task delivering long Vonage messages whose parts stopped coming.
    sweeper: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SmsChannel {
    /// Builds the channel from an instance's config. Touches no network.
    pub fn from_config(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let settings = SmsConfig::from_channel_config(config)?;
        let gateway: Arc<dyn SmsGateway> = match &settings.gateway {
            GatewaySettings::Kannel(k) => Arc::new(
                KannelClient::new(
                    k.clone(),
                    settings.from.clone(),
                    &settings.callback_base_url,
                    k.callback_token.expose(),
                    settings.timeout,
                )
                .map_err(|e| config.error("sendsms_url", e))?,
            ),
            GatewaySettings::Vonage(v) => Arc::new(
                VonageClient::new(
                    v.clone(),
                    &settings.from,
                    &settings.callback_base_url,
                    settings.timeout,
                )
                .map_err(|e| config.error("api_base_url", e))?,
            ),
        };
        Ok(Self {
            settings,
            gateway,
            ctx: OnceLock::new(),
            replay: vonage::ReplayGuard::default(),
            sweeper: std::sync::Mutex::new(None),
        })
    }

    /// True when the consumer opted out (STOP) and did not opt in again.
    pub(crate) async fn load_opt_out(
        &self,
        ctx: &ChannelContext,
        number: &str,
    ) -> Result<bool, SubmitError> {
        Ok(self.load_opt_state(ctx, number).await?.opted_out)
    }

    /// The consumer's opt-out state and when it was set.
    pub(crate) async fn load_opt_state(
        &self,
        ctx: &ChannelContext,
        number: &str,
    ) -> Result<keywords::OptState, SubmitError> {
        Ok(ctx
            .load_state(&keywords::opt_out_key(number))
            .await?
            .map(|v| keywords::OptState::parse(&v))
            .unwrap_or_default())
    }

    /// Sends one of the channel's own texts (a keyword reply) to a consumer, without delivery
    /// reports. Best effort: a failure is logged, the consumer's message is still accepted.
    pub(crate) async fn send_reply(&self, ctx: &ChannelContext, number: &str, text: &str) {
        for piece in encoding::split(text, self.settings.max_parts as usize) {
            let mt = OutgoingSms {
                to: number,
                text: &piece,
                coding: encoding::coding_for(&piece),
                reference: "",
                report: false,
            };
            if let Err(e) = self.gateway.send(&mt).await {
                tracing::warn!(
                    instance = ctx.instance(),
                    error = %e.error,
                    "cannot send an SMS keyword reply"
                );
                return;
            }
        }
    }

    /// A channel value for a background task of this one: the same settings and gateway
    /// client, its own (unused) replay memory.
    fn clone_for_sweep(&self) -> SmsChannel {
        let ctx = OnceLock::new();
        if let Some(c) = self.ctx.get() {
            let _ = ctx.set(c.clone());
        }
        SmsChannel {
            settings: self.settings.clone(),
            gateway: self.gateway.clone(),
            ctx,
            replay: vonage::ReplayGuard::default(),
            sweeper: std::sync::Mutex::new(None),
        }
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the gateway reports delivery to the handset (Kannel's DLR bit 1; Vonage always,
    /// as every message asks for receipts): then the runtime leaves the agent's ACCEPT to that
    /// report instead of sending it when the gateway takes the message.
    fn reports_delivery(&self) -> bool {
        match &self.settings.gateway {
            GatewaySettings::Kannel(k) => k.dlr_mask & 1 != 0,
            GatewaySettings::Vonage(_) => true,
        }
    }

    /// The longest text one SMS call may carry in GSM-7 (informative).
    fn max_text_chars(&self) -> usize {
        let parts = self.settings.max_parts as usize;
        if parts == 1 { 160 } else { 153 * parts }
    }
}

switchboard_core::register_channel! {
    kind: "sms",
    description: "SMS through a Kannel gateway or Vonage's SMS API",
    build: |config: &ChannelConfig| Ok(Arc::new(SmsChannel::from_config(config)?) as Arc<dyn Channel>),
}

#[async_trait]
impl Channel for SmsChannel {
    fn capabilities(&self) -> Capabilities {
        Capabilities::text_only()
            .with_rich_content(Support::Fallback)
            .with_images(Support::Unsupported)
            .with_files(Support::Unsupported)
            .with_typing(Support::Unsupported)
            .with_delivery_receipts(self.reports_delivery())
            .with_read_receipts(false)
            .with_max_text_chars(self.max_text_chars())
    }

    async fn start(&self, ctx: ChannelContext) -> Result<(), ChannelError> {
        let _ = self.ctx.set(ctx.clone());
        if let GatewaySettings::Vonage(v) = &self.settings.gateway {
            // Every instance sweeps; the store hands each expired message to one of them.
            let every = (v.concat_wait / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
            let channel = self.clone_for_sweep();
            let task = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = ctx.shutdown_requested() => break,
                        () = tokio::time::sleep(every) => {}
                    }
                    vonage::inbound::deliver_expired_parts(&channel, &ctx).await;
                }
            });
            if let Ok(mut slot) = self.sweeper.lock() {
                *slot = Some(task);
            }
        }
        Ok(())
    }

    async fn shutdown(&self) {
        if let Ok(mut slot) = self.sweeper.lock()
            && let Some(task) = slot.take()
        {
            task.abort();
        }
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let _ = self.ctx.get_or_init(|| ctx.clone());
        match &self.settings.gateway {
            GatewaySettings::Kannel(k) => kannel::inbound::handle(self, k, req, ctx).await,
            GatewaySettings::Vonage(v) => self.handle_vonage(v, req, ctx).await,
        }
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        outbound::deliver(self, to, event).await
    }
}

impl SmsChannel {
    /// Vonage's `/inbound` and `/dlr` (GET, POST form, POST JSON), the signature, timestamp
    /// and nonce checked first.
    async fn handle_vonage(
        &self,
        settings: &VonageSettings,
        req: HttpRequest,
        ctx: &ChannelContext,
    ) -> HttpResponse {
        let path = req.uri().path().trim_end_matches('/');
        let endpoint = match path {
            "/inbound" | "/dlr" => path,
            _ => return InboundError::NotFound.to_response(),
        };
        if req.method() != http::Method::GET && req.method() != http::Method::POST {
            return InboundError::MethodNotAllowed.to_response();
        }
        let now = unix_now();
        let (pairs, nonce) = match vonage::inbound::authenticate(self, settings, &req, now) {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(instance = ctx.instance(), reason = %e, "refused a Vonage webhook");
                return vonage::inbound::refused(e).to_response();
            }
        };
        match vonage::inbound::handle(self, settings, endpoint, &pairs, ctx).await {
            Ok(resp) => resp,
            Err(e) => {
                // Not accepted: Vonage retries, possibly with the same nonce.
                self.replay.release(&nonce);
                if !matches!(e, InboundError::Submit(_)) {
                    tracing::info!(instance = ctx.instance(), error = %e, "refused a Vonage webhook");
                }
                e.to_response()
            }
        }
    }
}
