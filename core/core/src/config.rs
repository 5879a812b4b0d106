//! A channel instance's own configuration, as the runtime hands it to the channel's builder.

use serde::de::DeserializeOwned;

use crate::error::ConfigError;

/// The `[channels.<instance>]` table of the config file, minus the runtime's own keys (`kind`,
/// `enabled`), plus the deployment facts a channel may need.
///
/// A channel deserializes `settings` into its own config struct with [`ChannelConfig::parse`];
/// use `#[serde(deny_unknown_fields)]` on it so that a misspelt key is an error.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The instance name (`<instance>`).
    pub instance: String,
    /// The registered kind (`kind = "..."`).
    pub kind: String,
    /// The channel's own keys, as JSON.
    pub settings: serde_json::Value,
    /// `server.public_url`: where the platform reaches this deployment, when configured.
    pub public_url: Option<String>,
}

impl ChannelConfig {
    /// Builds a config for an instance.
    pub fn new(
        instance: impl Into<String>,
        kind: impl Into<String>,
        settings: serde_json::Value,
    ) -> Self {
        Self {
            instance: instance.into(),
            kind: kind.into(),
            settings,
            public_url: None,
        }
    }

    /// Sets the public URL.
    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Deserializes the settings into the channel's config type. Errors name the full key
    /// (`channels.<instance>.<key>`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let de = self.settings.clone();
        serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
            let mut key = self.key_prefix();
            let path = err.path().to_string();
            if path != "." && !path.is_empty() {
                key = format!("{key}.{path}");
            }
            let message = err.into_inner().to_string();
            // serde reports an unknown key at its parent's path; name the key itself.
            if let Some(field) = unknown_field(&message).or_else(|| missing_field(&message))
                && !path.ends_with(field)
            {
                key = format!("{key}.{field}");
            }
            ConfigError::new(key, message)
        })
    }

    /// An error about one of this channel's keys.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(format!("{}.{key}", self.key_prefix()), message)
    }

    /// The public URL joined with a path below this instance
    /// (`{public_url}/channels/{instance}{path}`), or an error naming `server.public_url`.
    pub fn public_endpoint(&self, path: &str) -> Result<String, ConfigError> {
        let base = self.public_url.as_deref().ok_or_else(|| {
            ConfigError::new(
                "server.public_url",
                format!("channel `{}` needs it", self.instance),
            )
        })?;
        Ok(format!(
            "{}/channels/{}{}",
            base.trim_end_matches('/'),
            self.instance,
            path
        ))
    }

    fn key_prefix(&self) -> String {
        format!("channels.{}", self.instance)
    }
}

/// The field name in serde's "missing field `x`" message (reported at the parent's path too).
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The field name in serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        url: String,
        #[serde(default)]
        nested: Nested,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn errors_name_the_full_key() {
        let c = ChannelConfig::new(
            "sms1",
            "sms",
            serde_json::json!({"url":"x","nested":{"n":"no"}}),
        );
        let e = c.parse::<Cfg>().unwrap_err();
        assert_eq!(e.key, "channels.sms1.nested.n");
        let c = ChannelConfig::new("sms1", "sms", serde_json::json!({"url":"x","urll":1}));
        let e = c.parse::<Cfg>().unwrap_err();
        assert!(e.message.contains("unknown field `urll`"), "{e}");
        assert_eq!(e.key, "channels.sms1.urll");
        let c = ChannelConfig::new("sms1", "sms", serde_json::json!({}));
        let e = c.parse::<Cfg>().unwrap_err();
        assert!(e.message.contains("missing field `url`"), "{e}");
        assert_eq!(e.key, "channels.sms1.url");
    }

    #[test]
    fn public_endpoint_needs_public_url() {
        let c = ChannelConfig::new("tg", "telegram", serde_json::json!({}));
        assert_eq!(
            c.public_endpoint("/webhook").unwrap_err().key,
            "server.public_url"
        );
        let c = c.with_public_url("https://cx.example/");
        assert_eq!(
            c.public_endpoint("/webhook").unwrap(),
            "https://cx.example/channels/tg/webhook"
        );
    }
}
