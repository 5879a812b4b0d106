//! The channel instances of a deployment built from the config, and the channel kinds it can
//! name. The running set itself is [`crate::instances`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use switchboard_core::{Channel, ChannelConfig, ChannelContext, EventSink};
use tokio::sync::watch;

use crate::config::{ChannelSection, ConfigErrors, LoadedConfig};
/// Re-exported where the set is built, the path the routing code and embedders name it by.
pub use crate::instances::{ChannelInstance, ChannelSet};

/// Where a channel kind comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindOrigin {
    /// Compiled into the stock `switchboard` binary ([`crate::BUILTIN_KINDS`]).
    BuiltIn {
        /// The crate that registers it.
        package: &'static str,
    },
    /// Registered by a crate linked into this binary (a brand's own binary, or a test).
    Linked {
        /// The crate that registers it.
        package: &'static str,
    },
    /// Provided by a dynamic plugin library from `[plugins] paths`.
    Library {
        /// The library.
        path: PathBuf,
        /// The switchboard-core version it was built against.
        core_version: String,
        /// Its compiler, target and profile.
        build_info: String,
    },
}

impl fmt::Display for KindOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KindOrigin::BuiltIn { .. } => f.write_str("built in"),
            KindOrigin::Linked { package } => write!(f, "linked crate {package}"),
            KindOrigin::Library { path, .. } => write!(f, "library {}", path.display()),
        }
    }
}

/// One channel kind this binary (and configuration) can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind name.
    pub kind: String,
    /// One line about it.
    pub description: String,
    /// Where it comes from.
    pub origin: KindOrigin,
}

/// Every kind: the linked ones (built in or from a linked crate), then those of the dynamic
/// plugins `loaded` names, each sorted by name.
pub fn kinds(loaded: Option<&LoadedConfig>) -> Vec<KindInfo> {
    let mut all: Vec<KindInfo> = switchboard_core::registrations()
        .into_iter()
        .map(|r| KindInfo {
            kind: r.kind.to_owned(),
            description: r.description.to_owned(),
            origin: if crate::BUILTIN_KINDS.contains(&r.kind) {
                KindOrigin::BuiltIn { package: r.package }
            } else {
                KindOrigin::Linked { package: r.package }
            },
        })
        .collect();
    let mut dynamic: Vec<KindInfo> = loaded
        .map(|l| l.plugins())
        .unwrap_or_default()
        .iter()
        .flat_map(|p| {
            p.kinds().iter().map(|k| KindInfo {
                kind: k.name.clone(),
                description: k.description.clone(),
                origin: KindOrigin::Library {
                    path: p.path().to_path_buf(),
                    core_version: p.core_version().to_owned(),
                    build_info: p.build_info().to_owned(),
                },
            })
        })
        .collect();
    dynamic.sort_by(|a, b| a.kind.cmp(&b.kind));
    all.extend(dynamic);
    all
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
            let cfg = channel_config(name, section, public_url.as_deref());
            let built = if let Some(reg) = switchboard_core::find_registration(&section.kind) {
                (reg.build)(&cfg).map(|channel| (channel, None))
            } else if let Some(plugin) = loaded.dynamic_kind(&section.kind) {
                let options = loaded.config.plugins.call_options();
                plugin.build(&cfg, options).map(|channel| {
                    let health = channel.health();
                    (Arc::new(channel) as Arc<dyn Channel>, Some(health))
                })
            } else {
                // Already reported by the config loader; kept for callers that skip it.
                continue;
            };
            match built {
                Ok((channel, health)) => {
                    let ctx = ChannelContext::new(name.as_str(), sink.clone(), shutdown.clone());
                    instances.insert(
                        name.clone(),
                        ChannelInstance {
                            name: name.clone(),
                            kind: section.kind.clone(),
                            channel,
                            ctx,
                            health,
                        },
                    );
                }
                Err(e) => problems.push(loaded.problem(e)),
            }
        }
        if problems.is_empty() {
            Ok(Self::from_map(instances))
        } else {
            Err(ConfigErrors(problems))
        }
    }
}
