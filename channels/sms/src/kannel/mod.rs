//! The Kannel gateway: smsbox's HTTP interface (docs/protocol/channels.md §3.2–3.6).
//!
//! - Agent messages go to `POST /cgi-bin/sendsms` ([`client`]: text/plain body, `X-Kannel-*`
//!   headers, so credentials and text never go into a URL), `coding=2` (UCS-2) when the text
//!   is not GSM-7, with a `dlr-url` carrying the message's short reference
//!   ([`crate::tracking`]: mapped to the message in the store).
//! - Consumer messages come from Kannel's `sms-service` get-url to
//!   `GET /channels/{instance}/mo?token=...`, delivery reports from the `dlr-url` to
//!   `GET /channels/{instance}/dlr?token=...` ([`inbound`]); the token is checked in constant
//!   time before anything else.
//! - [`config`] validates the Kannel keys; [`conf`] prints the kannel.conf groups an
//!   instance needs; [`wire`] names Kannel's parameters, headers and escapes.

pub mod client;
pub mod conf;
pub mod config;
pub mod inbound;
pub mod wire;

pub use client::{KannelClient, classify};
pub use conf::{CALLBACK_RETRIES, CALLBACK_RETRY_DELAY_SECS};
pub use config::{DEFAULT_DLR_MASK, KannelKeys, KannelSettings};
pub use wire::{
    DLR_URL_MAX, DlrStatus, DlrTarget, KannelDlr, KannelMo, dlr_decode, dlr_encode, dlr_url_len,
};
