//! Messages that arrive in parts a platform does not put together (an SMS gateway's
//! concatenated messages), kept by the runtime so that every instance sees every part:
//! [`ChannelContext::add_part`](crate::ChannelContext::add_part) and its companions.

/// What keeping one part of a message gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartAdded {
    /// Parts are still missing, or the part was one already kept: nothing to do.
    Waiting,
    /// The message is complete and claimed for this caller (no other caller, on any instance,
    /// gets it while the claim lasts). Submit the message, then call
    /// [`finish_parts`](crate::ChannelContext::finish_parts).
    Complete {
        /// Every part's text, in order.
        parts: Vec<String>,
        /// The first part's platform id: the message's, whoever claims it.
        id: String,
    },
    /// The message was already submitted, complete or given up without this part: it came
    /// too late to join it.
    Late,
}

/// A message given up with parts missing, claimed for the caller of
/// [`expired_parts`](crate::ChannelContext::expired_parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredParts {
    /// The message, as the channel named it.
    pub group: String,
    /// How many parts it should have had.
    pub total: u32,
    /// The parts that came: (number from 1, text), in order.
    pub parts: Vec<(u32, String)>,
    /// The platform id of the first part that came: the message's.
    pub id: String,
}
