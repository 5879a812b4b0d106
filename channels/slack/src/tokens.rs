//! The bot token in use, and its rotation.
//!
//! With token rotation on (docs.slack.dev/authentication/using-token-rotation) the bot token
//! is `xoxe.xoxb-…` and expires 12 hours after it was issued; `oauth.v2.access` with
//! `grant_type=refresh_token` exchanges the refresh token (`xoxe-1-…`) for a new pair, and the
//! refresh token used is revoked. So the newest pair is the only one that works: it is kept in
//! the channel's durable state (`slack-token`) the moment Slack returns it, and a process that
//! starts (or a second instance) takes it from there rather than from the config.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_core::{ChannelContext, Secret};

use crate::config::Rotation;

/// State key of the newest token pair.
pub(crate) const TOKEN_STATE_KEY: &str = "slack-token";
/// A token this close to its expiry (seconds) is refreshed before it is used.
pub(crate) const REFRESH_MARGIN_SECS: i64 = 15 * 60;

/// The newest token pair, as kept in the channel's state.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct TokenPair {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    /// Unix seconds.
    pub(crate) expires_at: i64,
    /// SHA-256 (hex) of the config's refresh token this pair descends from: when the config
    /// gets a new one (the app was reinstalled), the config wins over the stored pair.
    pub(crate) origin: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The fingerprint of a config refresh token (never the token itself in the pair's `origin`).
pub(crate) fn origin_of(refresh_token: &Secret) -> String {
    hex::encode(Sha256::digest(refresh_token.expose().as_bytes()))
}

/// What the process knows of a rotating token.
#[derive(Debug)]
pub(crate) struct RotatingState {
    pub(crate) refresh_token: Secret,
    /// Unix seconds; `None` until the first refresh (a token from the config has an unknown
    /// age, so it is refreshed at once).
    pub(crate) expires_at: Option<i64>,
}

/// The rotation settings and the mutable pair behind one lock, so that one refresh runs at a
/// time.
#[derive(Debug)]
pub(crate) struct Rotator {
    pub(crate) settings: Rotation,
    pub(crate) state: tokio::sync::Mutex<RotatingState>,
}

impl Rotator {
    pub(crate) fn new(settings: Rotation) -> Self {
        let state = RotatingState {
            refresh_token: settings.refresh_token.clone(),
            expires_at: None,
        };
        Self {
            settings,
            state: tokio::sync::Mutex::new(state),
        }
    }

    /// The stored pair, if it descends from the configured refresh token.
    pub(crate) async fn stored(&self, ctx: &ChannelContext) -> Option<TokenPair> {
        let raw = match ctx.load_state(TOKEN_STATE_KEY).await {
            Ok(raw) => raw?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored Slack token; using the configured one");
                return None;
            }
        };
        let pair: TokenPair = serde_json::from_str(&raw).ok()?;
        (pair.origin == origin_of(&self.settings.refresh_token)).then_some(pair)
    }
}
