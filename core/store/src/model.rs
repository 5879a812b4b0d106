//! The values the store reads and writes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Which way an outbox item travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// From a channel's consumer to LivePerson (stored as `to_lp`).
    #[serde(rename = "to_lp")]
    ToLivePerson,
    /// From LivePerson to a channel's consumer (stored as `to_channel`).
    #[serde(rename = "to_channel")]
    ToChannel,
}

impl Direction {
    /// The value stored in the `direction` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToLivePerson => "to_lp",
            Direction::ToChannel => "to_channel",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when parsing a [`Direction`] from anything but `to_lp` or `to_channel`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outbox direction `{0}` (expected `to_lp` or `to_channel`)")]
pub struct UnknownDirection(pub String);

impl FromStr for Direction {
    type Err = UnknownDirection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "to_lp" => Ok(Direction::ToLivePerson),
            "to_channel" => Ok(Direction::ToChannel),
            other => Err(UnknownDirection(other.to_owned())),
        }
    }
}

/// An item to put into an outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    /// The queue it joins: items of one consumer key are delivered one at a time, in order.
    pub consumer_key: String,
    /// What to deliver, as JSON.
    pub payload: serde_json::Value,
    /// The trace it belongs to (W3C Trace Context, opaque here), so that whichever process
    /// sends it continues the trace of the one that stored it.
    pub trace_context: Option<String>,
}

impl NewItem {
    /// An item for `consumer_key` carrying `payload`.
    pub fn new(consumer_key: impl Into<String>, payload: serde_json::Value) -> Self {
        NewItem {
            consumer_key: consumer_key.into(),
            payload,
            trace_context: None,
        }
    }
}

/// The outcome of [`Store::enqueue`](crate::Store::enqueue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// The items were stored, with these ids (in the order given).
    Stored(Vec<i64>),
    /// The dedup key was already known: nothing was stored.
    Duplicate,
}

/// An outbox item leased to a worker by [`Store::claim`](crate::Store::claim).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Its id, increasing in insertion order.
    pub id: i64,
    /// Its outbox.
    pub direction: Direction,
    /// Its queue.
    pub consumer_key: String,
    /// What to deliver.
    pub payload: serde_json::Value,
    /// The trace context it was stored with ([`NewItem::trace_context`]).
    pub trace_context: Option<String>,
    /// How many times delivery failed transiently so far.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// The condition its last attempts failed for, when the worker named one, and how many
    /// attempts in a row did (see [`Store::retry_for`](crate::Store::retry_for)).
    pub streak: Option<Streak>,
    /// When it was enqueued (unix milliseconds).
    pub created_at_ms: i64,
    /// When this claim leased it (unix milliseconds), by the same clock as `created_at_ms`
    /// and the lease: the database's on PostgreSQL. A worker measures the item's age and its
    /// own waits from here, never by its host's clock.
    pub claimed_at_ms: i64,
}

/// A condition that the last attempts of an item met one after another, e.g. "LivePerson knows
/// an open conversation we do not": a worker that gives up after so many in a row counts
/// them here, apart from `attempts`, which counts every failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streak {
    /// The worker's name for the condition.
    pub kind: String,
    /// How many attempts in a row met it (at least 1).
    pub count: u32,
}

impl OutboxItem {
    /// How many attempts in a row met the condition `kind` (0 when the last one did not).
    pub fn streak_of(&self, kind: &str) -> u32 {
        self.streak
            .as_ref()
            .filter(|s| s.kind == kind)
            .map_or(0, |s| s.count)
    }
}

/// An item that was permanently rejected, kept in the dead-letter table.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id in the dead-letter table (not its former outbox id).
    pub id: i64,
    /// The outbox it came from.
    pub direction: Direction,
    /// Its queue.
    pub consumer_key: String,
    /// What could not be delivered.
    pub payload: serde_json::Value,
    /// How many transient failures preceded the permanent one.
    pub attempts: u32,
    /// Why it was rejected.
    pub reason: String,
    /// When it was dead-lettered (unix milliseconds).
    pub failed_at_ms: i64,
}

/// The LivePerson identity of a channel consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The consumer id we gave LivePerson (`ext_consumer_id` of the ConsumerJWS request).
    pub ext_consumer_id: String,
    /// The consumer id LivePerson assigned.
    pub lp_consumer_id: String,
    /// The consumer's JWS for the Send API.
    pub jws: String,
}

/// Where a consumer's conversation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationState {
    /// No conversation was ever opened.
    None,
    /// The conversation in [`ConsumerRecord::conversation_id`] is open.
    Open,
    /// The conversation in [`ConsumerRecord::conversation_id`] was closed.
    Closed,
}

impl ConversationState {
    /// The value stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationState::None => "none",
            ConversationState::Open => "open",
            ConversationState::Closed => "closed",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(ConversationState::None),
            "open" => Some(ConversationState::Open),
            "closed" => Some(ConversationState::Closed),
            _ => None,
        }
    }
}

/// What the store knows about one channel consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The consumer key (as used in the outboxes).
    pub key: String,
    /// Its LivePerson identity, once saved.
    pub identity: Option<Identity>,
    /// Its current (or last) conversation.
    pub conversation_id: Option<String>,
    /// The dialog of that conversation messages go to.
    pub dialog_id: Option<String>,
    /// Whether that conversation is open.
    pub state: ConversationState,
}

/// A stored direction, or [`StoreError::Corrupt`] naming the table it came from.
pub(crate) fn parse_direction(s: String, table: &'static str) -> Result<Direction, StoreError> {
    s.parse()
        .map_err(|e: UnknownDirection| StoreError::Corrupt {
            table,
            detail: e.to_string(),
        })
}

/// A stored JSON payload, or [`StoreError::Corrupt`] naming the table it came from.
pub(crate) fn parse_payload(
    s: String,
    table: &'static str,
) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
        table,
        detail: format!("payload is not JSON: {e}"),
    })
}
