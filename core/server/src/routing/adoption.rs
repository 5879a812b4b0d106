//! An open conversation LivePerson knows and the map does not ("already has open
//! conversation"): the event waits for the notification that adopts it.

use switchboard_store::OutboxItem;

use super::echo;
use super::failures::store_failure;
use super::{Failure, Routing};

/// The streak of "already has open conversation" answers in a row.
const CONFLICT_STREAK: &str = "open conflict";
/// State scope: per consumer key, `<item id>:<unix ms>` of the first time the event `item id`
/// met an open conversation LivePerson knows and we do not ([`Routing::await_adoption`]).
const OPEN_CONFLICT_SCOPE: &str = "lp-open-conflict";

impl Routing {
    /// LivePerson knows an open conversation of this consumer that we do not: one created by
    /// an attempt whose answer was lost, before a crash, or by an agent. Its
    /// `ExConversationChangeNotification` maps it (the webhook adopts it by participant id),
    /// and that notification is as late as LivePerson's webhook retries allow, exactly like a
    /// text's echo ([`echo::deadline`], counted from the first conflict of this event). So the
    /// event waits, with looks that are not failures, until then, and only then becomes a dead
    /// letter (docs/protocol/liveperson.md §13): giving up earlier would dead-letter a consumer's message that the next
    /// retry of the notification would have let through.
    pub(super) async fn await_adoption(
        &self,
        item: &OutboxItem,
        key: &str,
        reason: String,
    ) -> Failure {
        let store = &self.inner.store;
        let now = item.claimed_at_ms;
        let first = match store.load_state(OPEN_CONFLICT_SCOPE, key).await {
            Ok(Some(v)) => v
                .split_once(':')
                .filter(|(id, _)| *id == item.id.to_string())
                .and_then(|(_, at)| at.parse::<i64>().ok()),
            Ok(None) => None,
            Err(e) => return store_failure(e),
        };
        let since = match first {
            Some(at) => at,
            None => {
                if let Err(e) = store
                    .save_state(OPEN_CONFLICT_SCOPE, key, &format!("{}:{now}", item.id))
                    .await
                {
                    return store_failure(e);
                }
                now
            }
        };
        let scale = self.inner.settings.retry.scale;
        let deadline = self.notification_deadline(since).await;
        if now < deadline {
            return Failure::Wait {
                after: echo::next_look(now, deadline, item.streak_of(CONFLICT_STREAK), scale),
                reason,
                streak: CONFLICT_STREAK,
            };
        }
        Failure::dead(format!(
            "{reason}; LivePerson's notification of that conversation did not come by the time \
             its webhook retries would have brought it"
        ))
    }
}
