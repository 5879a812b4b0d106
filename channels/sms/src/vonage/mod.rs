//! The Vonage (Nexmo) SMS API gateway (spec §3.7).
//!
//! - Agent messages go to `POST {api_base_url}/sms/json` as a form (`api_key`, `api_secret`,
//!   `from`, `to`, `text`, `type=unicode` when the text is not GSM-7, `callback` = our DLR
//!   URL, `client-ref` = our message id); the answer's per-part `status` is classified
//!   ([`wire::SendStatus::retry`]).
//! - Inbound messages arrive at `/channels/{instance}/inbound`, delivery receipts at
//!   `/channels/{instance}/dlr`, as GET query, POST form or POST JSON. Each must carry a
//!   valid signature (`sig`, [`signature`]), a `timestamp` within 5 minutes and a `nonce`
//!   not seen before; anything else is a 401 before any parameter is interpreted.
//! - Long inbound messages arrive as parts (`concat-*`, Vonage does not reassemble them):
//!   the parts are kept in the channel state and the message is submitted once complete.

pub mod client;
pub mod inbound;
pub mod signature;
pub mod wire;

pub use client::VonageClient;
pub use signature::{ReplayGuard, SignatureError, SignatureMethod};
