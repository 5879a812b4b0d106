//! The SMS channel: encoding, config, numbers, keywords, inbound callbacks, delivery against
//! the testkit's fake Kannel (which the server's tests use too) and fake Vonage, and the real
//! Kannel end to end.

// Linked for its `inventory` registration, found by kind.
extern crate switchboard_channel_sms;

mod config;
mod encoding;
mod inbound;
mod keywords;
mod number;
mod outbound;
mod real_kannel;
mod support;
mod vonage;
