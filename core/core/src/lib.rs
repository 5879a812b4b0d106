//! The contract between the Switchboard runtime and its channels.
//!
//! A *channel* connects one messaging platform (an SMS gateway, Slack, Telegram, a brand's own)
//! to Switchboard. It turns what the platform sends into canonical [`InboundEvent`]s and hands
//! them to the runtime with [`ChannelContext::submit`]; the runtime hands it canonical
//! [`OutboundEvent`]s to [`Channel::deliver`]. Channels never see LivePerson, and the LivePerson
//! engine never sees a channel's wire format.
//!
//! This crate is deliberately small and stable: no HTTP server or client, no storage, no
//! LivePerson types. It is the only dependency a third-party channel needs, whether it is
//! linked into a binary ([`register_channel!`]) or built as a dynamic plugin
//! ([`export_plugin!`] with the `dynamic-plugin` feature; see [`plugin`]).
//!
//! ```
//! use switchboard_core::{InboundEvent, Inbound, ConsumerAddress};
//! let event = InboundEvent::new(ConsumerAddress::new("sms-main", "+15551234567"), Inbound::text("hi"));
//! assert_eq!(event.consumer.instance, "sms-main");
//! ```

mod address;
mod capabilities;
mod channel;
mod config;
mod error;
pub mod event;
pub mod http_util;
mod parts;
pub mod plugin;
mod registry;
pub mod rich;
mod secret;

pub use address::{ConsumerAddress, mask_id};
pub use capabilities::{Capabilities, Support};
pub use channel::{Channel, ChannelContext, Delivered, EventSink};
pub use config::ChannelConfig;
pub use error::{ChannelError, ConfigError, DeliveryError, SubmitError};
pub use event::{
    Attachment, AttachmentBody, ChatState, ClosedBy, ConsumerProfile, Inbound, InboundEvent,
    MessageRef, Outbound, OutboundEvent, ReceiptStatus, SurveyAnswer,
};
pub use http_util::{HttpRequest, HttpResponse};
pub use parts::{ExpiredParts, PartAdded};
pub use registry::{ChannelRegistration, find_registration, registrations};
pub use rich::{Button, ButtonAction, Card, RichContent};
pub use secret::Secret;

// Re-exported so that plugin crates use the exact versions the runtime was built with.
pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use http;
pub use inventory;

/// The version of this crate, compared by the dynamic plugin loader (same major, and for 0.x
/// the same minor).
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");
