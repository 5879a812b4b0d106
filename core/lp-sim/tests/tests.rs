//! Integration tests: drive the simulator over real HTTP as a connector would.

mod common;

mod auth;
mod control;
mod conversation;
mod faults;
mod fidelity;
mod files;
mod injection;
mod webhooks;
