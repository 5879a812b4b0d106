//! How far an agent event got: after each of its Telegram messages is sent, the channel
//! records it, so that a retry of the event (after a failure of a later message, a lost
//! answer, or a crash before the runtime recorded the delivery) sends only what has not gone.
//!
//! `sendMessage` and the other send methods take no idempotency key
//! (https://core.telegram.org/bots/api#sendmessage); what they give is the sent `Message` and
//! its `message_id`, the handle recorded here. The runtime sends one event per consumer at a
//! time, in order (docs/routing.md), so one record per chat suffices: it names the event it
//! belongs to, and an event with another id starts afresh.
//!
//! What remains at-least-once: a message whose answer never came (a timeout, a connection cut
//! after the request went out) may have been sent; it is sent again, and the consumer may see
//! it twice. Telegram offers a bot no way to look up what it sent in a private chat.

use serde::{Deserialize, Serialize};
use switchboard_core::{ChannelContext, Delivered, DeliveryError};

/// The channel-state key of a chat's record.
fn key(chat: i64) -> String {
    format!("sent:{chat}")
}

/// The messages of one event that went out.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// The event's id.
    event: String,
    /// How many of its messages went out, in order.
    parts: usize,
    /// The `message_id` of the last one.
    last: Option<i64>,
}

impl Progress {
    /// The record of `event` in `chat`: what an earlier attempt sent, or nothing yet.
    pub(crate) async fn load(
        ctx: &ChannelContext,
        chat: i64,
        event: &str,
    ) -> Result<Self, DeliveryError> {
        let saved = ctx.load_state(&key(chat)).await.map_err(|e| {
            DeliveryError::retryable(format!("cannot read how far the event got: {e}"))
        })?;
        Ok(saved
            .and_then(|json| serde_json::from_str::<Progress>(&json).ok())
            .filter(|p| p.event == event)
            .unwrap_or_else(|| Progress {
                event: event.to_owned(),
                ..Progress::default()
            }))
    }

    /// How many messages already went.
    pub(crate) fn sent(&self) -> usize {
        self.parts
    }

    /// Records that the next message went out as `message_id`. Best effort: if the store
    /// cannot take it, a retry of this event repeats that message.
    pub(crate) async fn record(
        &mut self,
        ctx: &ChannelContext,
        chat: i64,
        message_id: Option<i64>,
    ) {
        self.parts += 1;
        if message_id.is_some() {
            self.last = message_id;
        }
        let json = serde_json::to_string(self).unwrap_or_default();
        if let Err(e) = ctx.save_state(&key(chat), &json).await {
            tracing::warn!(error = %e, "cannot record a sent Telegram message; a retry may repeat it");
        }
    }

    /// What the delivery reports: the last message's id.
    pub(crate) fn delivered(&self) -> Delivered {
        self.last
            .map(|id| Delivered::with_id(id.to_string()))
            .unwrap_or_default()
    }
}
