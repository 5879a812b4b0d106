//! Integration tests of the runtime: configuration, the HTTP app, channel dispatch and the
//! `switchboard` binary.

mod support;

mod app;
mod binary;
mod config;
mod registry;
mod routing;
