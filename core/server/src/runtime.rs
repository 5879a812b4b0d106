//! The channel instances of a deployment: built from the config, started, reached by name,
//! and shut down.

use std::collections::BTreeMap;
use std::sync::Arc;

use switchboard_core::{Channel, ChannelConfig, ChannelContext, EventSink};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ChannelSection, ConfigErrors, LoadedConfig};

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
}

/// All enabled channel instances, by name.
#[derive(Debug, Default)]
pub struct ChannelSet {
    instances: BTreeMap<String, ChannelInstance>,
}

/// `server.public_url` without its trailing slash, as channels join paths to it.
fn public_url(loaded: &LoadedConfig) -> Option<String> {
    loaded
        .config
        .server
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
}

/// The config a channel's builder sees for one `[channels.<name>]` table.
fn channel_config(name: &str, section: &ChannelSection, public_url: Option<&str>) -> ChannelConfig {
    let cfg = ChannelConfig::new(
        name,
        section.kind.clone(),
        serde_json::Value::Object(section.settings.clone()),
    );
    match public_url {
        Some(url) => cfg.with_public_url(url),
        None => cfg,
    }
}

/// The config of the enabled instance `name` (or of the only enabled instance of `kind` when
/// `name` is `None`), as its channel's builder would see it. Used by commands that print
/// set-up for one instance (`switchboard sms kannel-config`).
pub fn instance_config(
    loaded: &LoadedConfig,
    kind: &str,
    name: Option<&str>,
) -> Result<ChannelConfig, String> {
    let mut matching =
        loaded.config.channels.iter().filter(|(n, s)| {
            s.enabled && s.kind == kind && name.is_none_or(|want| want == n.as_str())
        });
    let Some((found, section)) = matching.next() else {
        return Err(match name {
            Some(n) => format!("no enabled `{kind}` channel named `{n}` in [channels]"),
            None => format!("no enabled `{kind}` channel in [channels]"),
        });
    };
    if name.is_none() && matching.next().is_some() {
        return Err(format!(
            "several `{kind}` channels are enabled: name one with --instance"
        ));
    }
    Ok(channel_config(
        found,
        section,
        public_url(loaded).as_deref(),
    ))
}

impl ChannelSet {
    /// Builds every enabled instance of the config. Builders do not touch the network, so this
    /// is also how `switchboard check` validates each channel's own keys. All problems are
    /// reported together, each naming its key and file.
    pub fn build(
        loaded: &LoadedConfig,
        sink: Arc<dyn EventSink>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, ConfigErrors> {
        let public_url = public_url(loaded);
        let mut instances = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, section) in loaded.config.channels.iter().filter(|(_, s)| s.enabled) {
            let Some(reg) = switchboard_core::find_registration(&section.kind) else {
                // Already reported by the config loader; kept for callers that skip it.
                continue;
            };
            let cfg = channel_config(name, section, public_url.as_deref());
            match (reg.build)(&cfg) {
                Ok(channel) => {
                    let ctx = ChannelContext::new(name.as_str(), sink.clone(), shutdown.clone());
                    instances.insert(
                        name.clone(),
                        ChannelInstance {
                            name: name.clone(),
                            kind: section.kind.clone(),
                            channel,
                            ctx,
                        },
                    );
                }
                Err(e) => problems.push(loaded.problem(e)),
            }
        }
        if problems.is_empty() {
            Ok(Self { instances })
        } else {
            Err(ConfigErrors(problems))
        }
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

    /// Runs every instance's `start` as its own task. A failing start is logged and leaves the
    /// other channels running: one channel's trouble never takes down the process.
    pub fn start_all(&self) -> Vec<JoinHandle<()>> {
        self.iter()
            .map(|inst| {
                let inst = inst.clone();
                tokio::spawn(async move {
                    if let Err(err) = inst.channel.start(inst.ctx.clone()).await {
                        tracing::error!(instance = %inst.name, kind = %inst.kind, error = %err, "channel failed to start");
                    }
                })
            })
            .collect()
    }

    /// Calls every instance's `shutdown`.
    pub async fn shutdown_all(&self) {
        for inst in self.iter() {
            inst.channel.shutdown().await;
        }
    }
}
