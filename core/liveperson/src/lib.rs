//! The LivePerson engine: everything a connector owes Conversational Cloud's Connector API.
//!
//! - [`Engine`]: Domain API look-ups (cached), the AppJWT (single-flight, renewed 5 minutes
//!   early, re-fetched once on a `401`), ConsumerJWS per consumer, the Messaging Send API
//!   (CONVERSATION and SEND) and file upload/download.
//! - [`webhook`]: signature and header checks on the raw body, then lenient parsing.
//! - [`translate`]: canonical events to Send API requests and LivePerson's events to canonical
//!   ones, without I/O ([`agent_event`] and [`structured`] for the agent's side).
//! - [`RetryPolicy`]: LivePerson's retry recommendations as delays.
//! - [`manifest`]: the App Install Manifest for a deployment.
//!
//! The wire protocol is documented in `docs/protocol/liveperson.md`; comments tagged [CONFLICT] or
//! [INFERRED] mark where this crate picked one reading of an ambiguous point.

mod app_jwt;
mod config;
mod domain;
mod engine;
mod error;
mod jwt;
mod manifest;
mod retry;
mod send_api;
pub mod structured;
pub mod translate;
mod transport;
pub mod webhook;

pub use config::{
    ConversationRouting, DEFAULT_DOMAIN_API, DEFAULT_FEATURES, EngineConfig, KNOWN_FEATURES,
    WebhookSettings, default_features, validate_features,
};
pub use domain::Services;
pub use engine::{ConsumerIdentity, Engine, ext_consumer_id, profile_body};
pub use error::{EngineError, MAY_HAVE_ARRIVED, PlanError, WebhookAuthError, WebhookParseError};
pub use manifest::{
    DEFAULT_LOGO_URI, ManifestOptions, WEBHOOK_TYPES, default_engagement, manifest,
};
pub use retry::RetryPolicy;
pub use send_api::{
    AcceptStatus, DialogRef, MAX_SEND_CHARS, SendOutcome, SendRequest, split_for_send, utf16_len,
};
pub use translate::{
    AgentEvent, MAX_UPLOAD_BYTES, agent_event, mime_of_file_type, upload_file_type,
};
