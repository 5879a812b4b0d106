//! The `PAUSE` LivePerson needs after a consumer's `COMPOSING`: without it the agent sees
//! "typing" until the next chat state (docs/protocol/liveperson.md §5.5).

use std::time::Duration;

use switchboard_liveperson::{ConsumerIdentity, DialogRef, SendRequest};

use super::Routing;

/// State scope: the consumer whose `COMPOSING` awaits a `PAUSE` (value: a marker naming the
/// latest `COMPOSING`), see [`TYPING_TIMEOUT`].
const TYPING_SCOPE: &str = "lp-typing";
/// After `COMPOSING`, LivePerson shows the agent "typing" until another chat state arrives;
/// a text does not clear it (docs/protocol/liveperson.md §5.5). When the channel reports nothing else for this long, the
/// router publishes `PAUSE` itself (docs/protocol/liveperson.md §13 "then a non-COMPOSING state … after a timeout").
/// Scaled like the retry delays (`liveperson.retry_scale`).
const TYPING_TIMEOUT: Duration = Duration::from_secs(10);

impl Routing {
    /// After a `COMPOSING` was published, schedules a `PAUSE` in [`TYPING_TIMEOUT`] unless the
    /// consumer's channel reports another chat state (or another `COMPOSING`) first; any
    /// other chat state cancels the pending one. The marker lives in the store, so instances
    /// sharing one see each other's chat states. Chat states are last-writer-wins and safe to
    /// lose (docs/protocol/liveperson.md §7.5): the timer is not durable.
    pub(super) async fn follow_typing(
        &self,
        consumer_key: &str,
        to: &DialogRef,
        state: &str,
        identity: &ConsumerIdentity,
    ) {
        let store = &self.inner.store;
        if state != "COMPOSING" {
            if let Err(e) = store.delete_state(TYPING_SCOPE, consumer_key).await {
                tracing::debug!(error = %e, "cannot clear the typing marker");
            }
            return;
        }
        let marker = uuid::Uuid::new_v4().to_string();
        if let Err(e) = store.save_state(TYPING_SCOPE, consumer_key, &marker).await {
            tracing::debug!(error = %e, "cannot record the typing marker; no automatic PAUSE");
            return;
        }
        let routing = self.clone();
        let key = consumer_key.to_owned();
        let to = to.clone();
        let mut identity = identity.clone();
        let wait = super::scaled(TYPING_TIMEOUT, self.inner.settings.retry.scale);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let store = &routing.inner.store;
            let current = store.load_state(TYPING_SCOPE, &key).await.ok().flatten();
            if current.as_deref() != Some(marker.as_str()) {
                return;
            }
            let _ = store.delete_state(TYPING_SCOPE, &key).await;
            let request = SendRequest::ChatState { to, state: "PAUSE" };
            match routing.inner.engine.send(&mut identity, &request).await {
                Ok(_) => routing.count_sent(&request),
                Err(e) => {
                    tracing::debug!(error = %e, "the automatic PAUSE after COMPOSING failed; dropped")
                }
            }
        });
    }
}
