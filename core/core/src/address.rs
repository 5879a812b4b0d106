//! Who a conversation is with, on which channel instance.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One consumer on one channel instance: the instance name from the config file plus the
/// platform's own id for that person or chat (a phone number, a Slack DM channel, a Telegram
/// chat id).
///
/// This pair is the stable identity of a consumer inside Switchboard: the LivePerson
/// `ext_consumer_id` is derived from it, and outbound events are addressed to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConsumerAddress {
    /// The channel instance name (the `<instance>` of `[channels.<instance>]`).
    pub instance: String,
    /// The platform's id for the person or chat, as the platform spells it.
    pub id: String,
}

impl ConsumerAddress {
    /// Builds an address from an instance name and a platform id.
    pub fn new(instance: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            id: id.into(),
        }
    }

    /// A single string key for this consumer, used for per-consumer ordering and leases.
    ///
    /// The instance name is length-prefixed so that no two distinct addresses share a key
    /// whatever characters the ids contain.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.instance.len(), self.instance, self.id)
    }
}

impl fmt::Display for ConsumerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.instance, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_collide_across_separators() {
        let a = ConsumerAddress::new("a:b", "c");
        let b = ConsumerAddress::new("a", "b:c");
        assert_ne!(a.key(), b.key());
    }
}
