//! Acme's own Switchboard: the stock runtime with every command (`run`, `check`, `channels`,
//! `demo`, ...), plus the `webhook` channel kind from a third-party crate.
//!
//! Run with `cargo run -p example-01-brand-binary -- channels`.

use switchboard_plugin_webhook as _; // linked: its `register_channel!` comes along

fn main() -> std::process::ExitCode {
    switchboard::cli::main()
}
