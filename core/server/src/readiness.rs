//! What `/readyz` reports: each component the process needs, and whether it is ready.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

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
