//! `sms`: consumers on SMS through an SMS gateway. The first gateway is Kannel's HTTP interface.
//!
//! - Agent messages go to Kannel's `POST /cgi-bin/sendsms` (text/plain body, `X-Kannel-*`
//!   headers: credentials and text never in a URL), `coding=2` (UCS-2) when the text is not
//!   GSM-7, with a `dlr-url` carrying our message id.
//! - Consumer messages come from Kannel's `sms-service` get-url to
//!   `GET /channels/{instance}/mo?token=...`, delivery reports to
//!   `GET /channels/{instance}/dlr?token=...`. The token is checked in constant time before
//!   anything else; the answer is `200` with an empty body only after the runtime stored the
//!   event (else `503`, and Kannel retries with the same message id, which the runtime dedups).
//! - Texts longer than `max_parts` concatenated parts are split at word boundaries into
//!   several sendsms calls, each within the cap, so Kannel never truncates silently.
//! - Rich content is sent as numbered text; a consumer answering the number of a reply
//!   button of the last agent message becomes a choice.
//!
//! [`kannel_config_snippet`] prints the kannel.conf groups for an instance.

mod client;
mod config;
pub mod encoding;
mod error;
pub mod inbound;
mod kannel_conf;
mod outbound;
mod wire;

use std::sync::{Arc, OnceLock};

use switchboard_core::{
    Capabilities, Channel, ChannelConfig, ChannelContext, ChannelError, ConfigError,
    ConsumerAddress, Delivered, DeliveryError, HttpRequest, HttpResponse, OutboundEvent, Support,
    async_trait, http, http_util,
};

pub use client::{KannelClient, Mt, SmsGateway, classify};
pub use config::{
    GatewayKind, GatewaySettings, KannelSettings, MAX_PARTS_LIMIT, Settings, SmsConfig,
};
pub use error::InboundError;
pub use kannel_conf::kannel_config_snippet;
pub use outbound::render;
pub use wire::{DlrStatus, KannelDlr, KannelMo, dlr_decode, dlr_encode};

/// The SMS channel for one instance.
#[derive(Debug)]
pub struct SmsChannel {
    settings: Settings,
    gateway: Arc<dyn SmsGateway>,
    /// The runtime context, kept from `start` (or the first callback) for state `deliver` keeps.
    ctx: OnceLock<ChannelContext>,
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
                    settings.callback_token.expose(),
                    settings.timeout,
                )
                .map_err(|e| config.error("sendsms_url", e))?,
            ),
        };
        Ok(Self {
            settings,
            gateway,
            ctx: OnceLock::new(),
        })
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the gateway reports delivery to the handset (Kannel's DLR bit 1): then the
    /// runtime leaves the agent's ACCEPT to that report instead of sending it when the gateway
    /// takes the message.
    fn reports_delivery(&self) -> bool {
        match &self.settings.gateway {
            GatewaySettings::Kannel(k) => k.dlr_mask & 1 != 0,
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
    description: "SMS through a Kannel gateway (sendsms, sms-service get-url, DLRs)",
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
        let _ = self.ctx.set(ctx);
        Ok(())
    }

    async fn handle_http(&self, req: HttpRequest, ctx: &ChannelContext) -> HttpResponse {
        let _ = self.ctx.get_or_init(|| ctx.clone());
        let path = req.uri().path().trim_end_matches('/');
        let endpoint = match path {
            "/mo" | "/dlr" => path,
            _ => return InboundError::NotFound.to_response(),
        };
        if req.method() != http::Method::GET {
            return InboundError::MethodNotAllowed.to_response();
        }
        let pairs = http_util::query_pairs_raw(&req);
        if let Err(e) = inbound::check_token(&pairs, &self.settings.callback_token) {
            return e.to_response();
        }
        let result = if endpoint == "/mo" {
            inbound::handle_mo(&pairs, ctx).await
        } else {
            inbound::handle_dlr(&pairs, ctx).await
        };
        result.unwrap_or_else(|e| {
            if !matches!(e, InboundError::Submit(_)) {
                tracing::info!(instance = ctx.instance(), error = %e, "refused an SMS callback");
            }
            e.to_response()
        })
    }

    async fn deliver(
        &self,
        to: &ConsumerAddress,
        event: &OutboundEvent,
    ) -> Result<Delivered, DeliveryError> {
        outbound::deliver(
            self.gateway.as_ref(),
            self.ctx.get(),
            self.settings.max_parts,
            to,
            event,
        )
        .await
    }
}
