//! Channel kinds, registered by the crates that implement them and collected at link time.

use std::sync::Arc;

use crate::channel::Channel;
use crate::config::ChannelConfig;
use crate::error::ConfigError;

/// One channel kind: the name used as `kind = "..."` in the config file and how to build an
/// instance of it.
///
/// A channel crate registers its kind with [`register_channel!`](crate::register_channel); the
/// registration is collected with `inventory` when the crate is linked into the binary (which
/// must reference the crate, e.g. `use switchboard_channel_sms as _;`).
#[derive(Debug)]
pub struct ChannelRegistration {
    /// The kind name (`sms`, `slack`, ...). Lowercase, unique.
    pub kind: &'static str,
    /// One line for `switchboard channels`.
    pub description: &'static str,
    /// The package that registered the kind (filled in by
    /// [`register_channel!`](crate::register_channel) with `CARGO_PKG_NAME`), shown by
    /// `switchboard channels` as where the kind came from.
    pub package: &'static str,
    /// Builds an instance from its config. Must not touch the network: `switchboard check`
    /// calls it to validate configs offline. Network set-up belongs in
    /// [`Channel::start`](crate::Channel::start).
    pub build: fn(&ChannelConfig) -> Result<Arc<dyn Channel>, ConfigError>,
}

inventory::collect!(ChannelRegistration);

/// Every registered kind, sorted by name.
pub fn registrations() -> Vec<&'static ChannelRegistration> {
    let mut all: Vec<_> = inventory::iter::<ChannelRegistration>.into_iter().collect();
    all.sort_by_key(|r| r.kind);
    all
}

/// The registration of a kind, if linked.
pub fn find_registration(kind: &str) -> Option<&'static ChannelRegistration> {
    inventory::iter::<ChannelRegistration>
        .into_iter()
        .find(|r| r.kind == kind)
}

/// Registers a channel kind with the runtime.
///
/// ```ignore
/// switchboard_core::register_channel! {
///     kind: "console",
///     description: "Prints agent messages to stdout",
///     build: |config| Ok(std::sync::Arc::new(ConsoleChannel::new(config)?)),
/// }
/// ```
#[macro_export]
macro_rules! register_channel {
    (kind: $kind:expr, description: $desc:expr, build: $build:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::ChannelRegistration {
                kind: $kind,
                description: $desc,
                package: env!("CARGO_PKG_NAME"),
                build: $build,
            }
        }
    };
}
