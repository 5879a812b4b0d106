//! The keys of a `webchat` instance (`[channels.<name>]`).

use serde::Deserialize;

/// `[channels.<name>]` settings of kind `webchat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebchatConfig {
    /// Title shown on the page.
    #[serde(default = "default_title")]
    pub title: String,
    /// How long `GET events` waits for something new, in seconds.
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    /// Events kept per session until a browser fetches them.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
}

fn default_title() -> String {
    "Switchboard web chat".into()
}
/// `poll_secs` when it is not set. The runtime checks it against its request timeout: a poll
/// that outlasts the timeout is answered 503 instead of "nothing new".
pub const DEFAULT_POLL_SECS: u64 = 25;

fn default_poll_secs() -> u64 {
    DEFAULT_POLL_SECS
}
fn default_buffer() -> usize {
    500
}
