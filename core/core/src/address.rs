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

    /// The address as a warning or an error may log it: the instance and [`mask_id`] of the
    /// id. Log lines are read and kept by more people than the store is; the consumer's own
    /// id (a phone number on SMS) stays out of them.
    pub fn masked(&self) -> String {
        format!("{}/{}", self.instance, mask_id(&self.id))
    }
}

/// A platform id as logs may show it: its last four characters after `***` when it has at
/// least eight (enough to tell consumers apart while reading a log, not to text one), else
/// `***` alone.
pub fn mask_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() < 8 {
        return "***".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("***{tail}")
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

    #[test]
    fn a_masked_address_keeps_the_instance_and_hides_the_id() {
        let a = ConsumerAddress::new("sms-main", "+14155550123");
        assert_eq!(a.masked(), "sms-main/***0123");
        assert_eq!(mask_id("U123"), "***");
        assert_eq!(mask_id("ünïcödé!"), "***ödé!");
    }
}
