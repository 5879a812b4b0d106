//! The Vonage (Nexmo) SMS API gateway (docs/protocol/channels.md §3.7).
//!
//! - Agent messages go to `POST {api_base_url}/sms/json` as a form (`api_key`, `api_secret`,
//!   `from`, `to`, `text`, `type=unicode` when the text is not GSM-7, `callback` = our DLR
//!   URL, `client-ref` = our message id); the answer's per-part `status` is classified
//!   ([`wire::SendStatus::retry`]).
//! - Inbound messages arrive at `/channels/{instance}/inbound`, delivery receipts at
//!   `/channels/{instance}/dlr`, as GET query, POST form or POST JSON. Each must carry a
//!   valid signature (`sig`, [`signature`]), a `timestamp` at most 25 hours old (Vonage
//!   resends the time of its first push for 24 hours) and a `nonce`
//!   not seen before; anything else is a 401 before any parameter is interpreted.
//! - Long inbound messages arrive as parts (`concat-*`, Vonage does not reassemble them):
//!   each part is a row in the runtime's store, the instance that stores the last one submits
//!   the message, and a message missing parts is delivered with a notice after
//!   `concat_wait_secs` ([`inbound::deliver_expired_parts`]).
//! - [`config`] validates the Vonage keys.

pub mod client;
pub mod config;
pub mod inbound;
pub mod signature;
pub mod wire;

pub use client::VonageClient;
pub use config::{DEFAULT_CONCAT_WAIT_SECS, VONAGE_API_BASE_URL, VonageKeys, VonageSettings};
pub use signature::{ReplayGuard, SignatureError, SignatureMethod};
