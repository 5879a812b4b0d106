//! The running channel instances of a deployment, reached by name, started and shut down.
//! Building them from the configuration is [`crate::runtime`].

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;
use switchboard_core::{Channel, ChannelContext};
use tokio::task::JoinHandle;

use crate::plugins::InstanceHealth;
use crate::readiness::Readiness;

/// One running channel instance.
#[derive(Debug, Clone)]
pub struct ChannelInstance {
    /// The instance name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// The adapter.
    pub channel: Arc<dyn Channel>,
    /// Its handle on the runtime.
    pub ctx: ChannelContext,
    /// For an instance of a dynamic kind: its health, which a panic in the plugin marks
    /// failed (reported in `/readyz`). `None` for linked kinds.
    pub health: Option<InstanceHealth>,
}

/// All enabled channel instances, by name.
#[derive(Debug, Default)]
pub struct ChannelSet {
    instances: BTreeMap<String, ChannelInstance>,
}

impl ChannelSet {
    /// A set of the instances in `instances`, keyed by their names.
    pub(crate) fn from_map(instances: BTreeMap<String, ChannelInstance>) -> Self {
        Self { instances }
    }

    /// Builds a set from ready instances (tests, embedding).
    pub fn from_instances(list: Vec<ChannelInstance>) -> Self {
        Self {
            instances: list.into_iter().map(|i| (i.name.clone(), i)).collect(),
        }
    }

    /// The instance called `name`.
    pub fn get(&self, name: &str) -> Option<&ChannelInstance> {
        self.instances.get(name)
    }

    /// Every instance, by name.
    pub fn iter(&self) -> impl Iterator<Item = &ChannelInstance> {
        self.instances.values()
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// True when no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Runs every instance's `start` as its own task. A failing (or panicking) start is
    /// logged and leaves the other channels running: one channel's trouble never takes down
    /// the process.
    pub fn start_all(&self) -> Vec<JoinHandle<()>> {
        self.iter()
            .map(|inst| {
                let inst = inst.clone();
                tokio::spawn(async move {
                    let started = AssertUnwindSafe(inst.channel.start(inst.ctx.clone()))
                        .catch_unwind()
                        .await;
                    match started {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            tracing::error!(instance = %inst.name, kind = %inst.kind, error = %err, "channel failed to start")
                        }
                        Err(_) => {
                            tracing::error!(instance = %inst.name, kind = %inst.kind, "channel panicked in start")
                        }
                    }
                })
            })
            .collect()
    }

    /// Calls every instance's `shutdown`; a panicking one is logged and the others still run.
    pub async fn shutdown_all(&self) {
        for inst in self.iter() {
            if AssertUnwindSafe(inst.channel.shutdown())
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(instance = %inst.name, kind = %inst.kind, "channel panicked in shutdown");
            }
        }
    }

    /// Reports every dynamic instance's health to `readiness`, as component
    /// `channel:<instance>`.
    pub fn report_health(&self, readiness: &Readiness) {
        for inst in self.iter() {
            if let Some(health) = &inst.health {
                health.attach(readiness.clone(), format!("channel:{}", inst.name));
            }
        }
    }
}
