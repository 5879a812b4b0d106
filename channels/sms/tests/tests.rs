//! The SMS channel: encoding, config, numbers, keywords, inbound callbacks, delivery against
//! a fake Kannel (the testkit's, which the server's tests use too) and a fake Vonage, and the
//! real Kannel end to end.

// Linked for its `inventory` registration, found by kind.
extern crate switchboard_channel_sms;

mod config;
mod encoding;
mod fake_vonage;
mod inbound;
mod keywords;
mod number;
mod outbound;
mod real_kannel;
mod support;
mod vonage;
