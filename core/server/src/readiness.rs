//! What `/readyz` reports: each component the process needs, and whether it is ready; and the
//! store's periodic check.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use switchboard_store::Store;
use tokio::sync::watch;

/// How often [`watch_store`] checks the store in the running connector.
pub const STORE_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long one check may take before the store counts as not ready (SQLite waits up to 5 s
/// for a write lock another process holds).
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// One component's state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ComponentState {
    /// Whether it can do its work now.
    pub ready: bool,
    /// Why not, or a short note.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Shared readiness registry. Components (the store, the LivePerson engine, each channel)
/// report themselves; the process is ready when every registered component is.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<Mutex<BTreeMap<String, ComponentState>>>,
}

impl Readiness {
    /// Records a component's state.
    pub fn set(&self, component: &str, ready: bool, detail: impl Into<String>) {
        self.lock().insert(
            component.to_string(),
            ComponentState {
                ready,
                detail: detail.into(),
            },
        );
    }

    /// Every component's state, and whether all are ready (false when none registered).
    pub fn snapshot(&self) -> (bool, BTreeMap<String, ComponentState>) {
        let map = self.lock().clone();
        let ready = !map.is_empty() && map.values().all(|c| c.ready);
        (ready, map)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ComponentState>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keeps `/readyz`'s `store` component current until `shutdown` turns true: checks the store
/// ([`Store::ping`]: it answers and could take a write) at once and then every `every`, and
/// reports it not ready while a check fails or takes longer than [`STORE_CHECK_TIMEOUT`]
/// (unreachable, locked, out of connections), ready again when a check passes.
pub async fn watch_store(
    store: Store,
    readiness: Readiness,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let backend = format!("{:?}", store.backend());
    loop {
        match tokio::time::timeout(STORE_CHECK_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => readiness.set("store", true, backend.clone()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the store failed its readiness check");
                readiness.set("store", false, e.to_string());
            }
            Err(_) => {
                tracing::warn!(timeout = ?STORE_CHECK_TIMEOUT, "the store did not answer its readiness check");
                readiness.set(
                    "store",
                    false,
                    format!("no answer within {} s", STORE_CHECK_TIMEOUT.as_secs()),
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
