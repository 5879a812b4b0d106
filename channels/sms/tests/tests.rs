//! The SMS channel: encoding, config, inbound callbacks, delivery against a fake Kannel, and
//! the real Kannel end to end.

// Linked for its `inventory` registration, found by kind.
extern crate switchboard_channel_sms;

mod config;
mod encoding;
mod fake_kannel;
mod inbound;
mod outbound;
mod real_kannel;
mod support;
