//! Health of a dynamic instance: a panic in the plugin marks it failed, as `/readyz` reports.

use std::sync::{Arc, Mutex};

use crate::readiness::Readiness;

use super::*;

/// Whether a dynamic instance is healthy: a panic inside the plugin marks it failed for the
/// rest of the process, shown in `/readyz` as component `channel:<instance>`.
#[derive(Debug, Clone)]
pub struct InstanceHealth {
    pub(super) inner: Arc<Mutex<HealthState>>,
}

#[derive(Debug)]
pub(super) struct HealthState {
    pub(super) library: String,
    pub(super) failure: Option<String>,
    pub(super) report: Option<(Readiness, String)>,
}

impl InstanceHealth {
    pub(super) fn new(library: String) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HealthState {
                library,
                failure: None,
                report: None,
            })),
        }
    }

    /// Why the instance failed, if it did.
    pub fn failure(&self) -> Option<String> {
        lock(&self.inner).failure.clone()
    }

    /// Reports the state to `readiness` as `component`, now and on every change.
    pub fn attach(&self, readiness: Readiness, component: impl Into<String>) {
        let mut state = lock(&self.inner);
        state.report = Some((readiness, component.into()));
        Self::publish(&state);
    }

    pub(super) fn panicked(&self, call: &str, message: &str) {
        let mut state = lock(&self.inner);
        state.failure = Some(format!("the plugin panicked in {call}: {message}"));
        Self::publish(&state);
    }

    fn publish(state: &HealthState) {
        if let Some((readiness, component)) = &state.report {
            match &state.failure {
                None => readiness.set(component, true, format!("plugin {}", state.library)),
                Some(failure) => readiness.set(component, false, failure.clone()),
            }
        }
    }
}
