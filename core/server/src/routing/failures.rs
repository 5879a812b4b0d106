//! Failures of the LivePerson side and of the store, as outbox outcomes: what the worker does
//! with the item next.

use std::time::Duration;

use switchboard_liveperson::EngineError;
use switchboard_store::OutboxItem;

use super::{Failure, Routing};

impl Routing {
    /// A LivePerson error on `item`, after its attempts so far (see [`Self::engine_failure`]).
    pub(super) fn lp_failure(&self, item: &OutboxItem, e: EngineError) -> Failure {
        self.engine_failure(item.attempts, e)
    }

    /// A LivePerson error after `attempts` attempts: retried, after the delay LivePerson's
    /// retry policy gives, when retrying may help; a dead letter otherwise.
    pub(super) fn engine_failure(&self, attempts: u32, e: EngineError) -> Failure {
        if e.is_retryable() {
            Failure::retry(
                self.inner
                    .settings
                    .retry
                    .delay(attempts.saturating_add(1), &e),
                e.to_string(),
            )
        } else {
            Failure::dead(e.to_string())
        }
    }
}

/// A store failure: retry soon, the event is still safe in the outbox.
pub(super) fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::retry(Duration::from_secs(1), format!("store: {e}"))
}
