//! Integration tests of the runtime: configuration, the HTTP app, channel dispatch and the
//! `switchboard` binary.

mod support;

mod app;
mod binary;
mod browser;
mod config;
mod durability;
mod echo_wait;
mod liveperson_faults;
mod misbehaving;
mod plugins;
mod power_loss;
mod registry;
mod relay;
mod routing;
mod secrets;
mod slack;
mod sms;
mod telegram;
