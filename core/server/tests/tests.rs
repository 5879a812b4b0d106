//! Integration tests of the runtime: configuration, the HTTP app, channel dispatch and the
//! `switchboard` binary.

mod support;
// The browser test's WebDriver client.
mod webdriver;

mod app;
mod binary;
mod browser;
mod config;
mod defaults;
mod durability;
mod echo_wait;
mod layering;
mod liveperson_faults;
mod liveperson_fidelity;
mod media;
mod misbehaving;
mod observability;
mod plugins;
mod power_loss;
mod references;
mod registry;
// The relay plugin's conformance test, which lives in the plugin's own crate (the file
// docs/writing-a-channel.md shows whole); its harness serves plugins.rs too.
#[path = "../../../plugins/dynamic-example/tests/conformance.rs"]
mod relay;
mod routing;
mod secrets;
mod slack;
mod sms;
mod telegram;
mod telemetry;
mod trace;
