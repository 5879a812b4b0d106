//! The look for LivePerson's echo of a text whose send was started and not confirmed (a crash,
//! a timeout, a lease that ran out in between): it arrived, it is to be sent again, or the
//! item waits for the echo until [`echo::deadline`].

use switchboard_store::OutboxItem;

use super::echo;
use super::jobs::{self, DialogWire};
use super::{Failure, Routing};

/// Why an event waits: its previous send may have reached LivePerson, whose echo is awaited.
const ECHO_WAIT: &str = "waiting for LivePerson's echo of a send that was interrupted";
/// The streak of echo waits in a row (see [`switchboard_store::Streak`]).
const ECHO_WAIT_STREAK: &str = "echo wait";

/// What [`Routing::unconfirmed_send`] looks for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unconfirmed<'a> {
    /// The text sent.
    pub(super) text: &'a str,
    /// The channel's id of the consumer's message.
    pub(super) platform_id: Option<&'a str>,
    /// The `ExternalId` the text carries, if ours.
    pub(super) external_id: Option<&'a str>,
    /// When the send was marked as started (by the store's clock), if the mark says.
    pub(super) marked_at_ms: Option<i64>,
}

impl Routing {
    /// A text whose previous send was started but not confirmed: `Some(sequence)` when
    /// LivePerson's echo shows it arrived, `None` when it is to be sent again (its echo can no
    /// longer come, see [`echo`]); until then the item waits (a [`Failure::Wait`]), looking
    /// for the echo again and again.
    ///
    /// The echo is the consumer's latest echoed text in the dialog. It is this send's when it
    /// carries this send's `ExternalId`. Without one on either side (a clicked button's text,
    /// or an echo without metadata: LivePerson documents consumer metadata on notifications,
    /// `change.metadata`, but not for every text [INFERRED], so that form is accepted too) it
    /// is recognised by its content: the same text, at a sequence that no other message of
    /// ours was confirmed at.
    pub(super) async fn unconfirmed_send(
        &self,
        item: &OutboxItem,
        dialog: &DialogWire,
        sent: Unconfirmed<'_>,
    ) -> Result<Option<i64>, Failure> {
        let store = &self.inner.store;
        let echo = store
            .load_state(jobs::ECHO_SCOPE, &jobs::dialog_key(dialog))
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok());
        if let Some(echo) = echo
            && let Some(sequence) = echo["sequence"].as_i64()
        {
            let arrived = match (sent.external_id, echo["external_id"].as_str()) {
                (Some(ours), Some(echoed)) => ours == echoed,
                _ => {
                    let confirmed = store
                        .load_state(jobs::SEQUENCE_SCOPE, &jobs::sequence_key(dialog, sequence))
                        .await
                        .ok()
                        .flatten();
                    echo["text"].as_str() == Some(jobs::text_digest(sent.text).as_str())
                        // Confirmed as this very message: the crash came between the answer
                        // and the end.
                        && (confirmed.is_none() || confirmed.as_deref() == sent.platform_id)
                }
            };
            if arrived {
                tracing::info!(
                    id = item.id,
                    sequence,
                    "a message sent before an interruption reached LivePerson; not sending it again"
                );
                return Ok(Some(sequence));
            }
        }
        // The send marked as started may have arrived: its outcome was never recorded (a
        // crash, a lease that ran out while it was in flight) or was unknown (a timeout, a
        // garbled answer; a send known to have failed clears its marker). Its echo comes
        // through LivePerson's webhooks, which retry for as long as `echo::deadline` says.
        // A mark from before marks had times is counted from now.
        let now = item.claimed_at_ms;
        let marked_at = sent.marked_at_ms.unwrap_or(now);
        let scale = self.inner.settings.retry.scale;
        let deadline = self.notification_deadline(marked_at).await;
        if now < deadline {
            let looks = item.streak_of(ECHO_WAIT_STREAK);
            return Err(Failure::Wait {
                reason: ECHO_WAIT.to_owned(),
                after: echo::next_look(now, deadline, looks, scale),
                streak: ECHO_WAIT_STREAK,
            });
        }
        tracing::warn!(
            id = item.id,
            waited_ms = now.saturating_sub(marked_at),
            "no echo of an interrupted send by the time LivePerson's webhook retries would have brought it; sending it again"
        );
        Ok(None)
    }
}
