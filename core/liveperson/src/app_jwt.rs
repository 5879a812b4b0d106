//! AppJWT: the connector's own OAuth 2.0 client-credentials token from Sentinel (docs/protocol/liveperson.md §2).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use switchboard_core::Secret;
use tokio::time::Instant;

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::transport;

/// Renew this long before `exp`, as LivePerson's guide advises.
const RENEW_EARLY: Duration = Duration::from_secs(5 * 60);
/// Used when neither `exp` nor `expires_in` says anything (LivePerson documents one hour).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TimeClaims {
    exp: Option<u64>,
    iat: Option<u64>,
}

/// The shortest lifetime assumed for a token that looks expired on arrival (this machine's
/// clock ahead of LivePerson's, and no `iat` to measure by): used that long, or until a
/// `40102` replaces it, rather than fetched again for every call.
const MIN_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    renew_at: Instant,
}

/// Holds the current AppJWT; fetches a new one when missing, due for renewal, or refused.
#[derive(Debug)]
pub(crate) struct AppJwtCache {
    current: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl AppJwtCache {
    pub(crate) fn new() -> Self {
        Self {
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn usable(&self) -> Option<Secret> {
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|c| Instant::now() < c.renew_at)
            .map(|c| c.token.clone())
    }

    /// How many tokens were fetched so far (tests and metrics).
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current token, fetching one if needed. Concurrent callers share one fetch.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        config: &EngineConfig,
        sentinel: &str,
    ) -> Result<Secret, EngineError> {
        if let Some(token) = self.usable() {
            return Ok(token);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(token) = self.usable() {
            return Ok(token);
        }
        let fetched = fetch(http, config, sentinel).await?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = fetched.token.clone();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(fetched);
        Ok(token)
    }

    /// Drops `refused` (if it is still the current token) after a `401`, so the next
    /// [`get`](Self::get) fetches a new one. A token another task already replaced is kept.
    pub(crate) fn invalidate(&self, refused: &Secret) {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if guard
            .as_ref()
            .is_some_and(|c| c.token.expose() == refused.expose())
        {
            *guard = None;
        }
    }
}

/// `POST /sentinel/api/account/{acc}/app/token?v=1.0` with `grant_type`, `client_id` and
/// `client_secret` in the form body, each once: the request of LivePerson's OAuth 2.0 page
/// (developer-center `pages/Documents/APIGuidelines/oauth-2-0-client-credentials.md`, "API V1")
/// and of the how-to guide (LivePersonInc/lp-devassist-connectors, `gh-pages` `index.html`,
/// "Authentication"). RFC 6749 §3.2: request parameters "MUST NOT be included more than once",
/// so `grant_type` is not repeated in the query (docs/protocol/liveperson.md §2.1 [CONFLICT]: older pages put it there).
/// Credentials never go in the URL.
async fn fetch(
    http: &reqwest::Client,
    config: &EngineConfig,
    sentinel: &str,
) -> Result<Cached, EngineError> {
    let url = format!(
        "{sentinel}/sentinel/api/account/{}/app/token?v=1.0",
        config.account_id
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", config.client_id.as_str()),
        ("client_secret", config.client_secret.expose()),
    ];
    let response = http
        .post(url)
        .form(&form)
        .send()
        .await
        .map_err(|e| transport::transport_error("AppJWT request", &e))?;
    let status = response.status();
    if let Some(e) = transport::generic_failure("AppJWT request", status, &response) {
        return Err(e);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(EngineError::Unauthorized {
            reason: format!(
                "Sentinel refused client_id `{}` (HTTP {}): check liveperson.client_id and client_secret",
                config.client_id,
                status.as_u16()
            ),
        });
    }
    if !status.is_success() {
        let body = transport::body_excerpt(response).await;
        return Err(EngineError::permanent(format!(
            "AppJWT request answered HTTP {}: {body}",
            status.as_u16()
        )));
    }
    let body: TokenResponse = response.json().await.map_err(|e| {
        EngineError::retry(format!("AppJWT answer unreadable: {}", e.without_url()))
    })?;
    let lifetime = lifetime(&body);
    let renew_in = if lifetime > RENEW_EARLY * 2 {
        lifetime - RENEW_EARLY
    } else {
        lifetime / 2
    };
    tracing::debug!(lifetime_s = lifetime.as_secs(), "fetched a new AppJWT");
    Ok(Cached {
        token: Secret::new(body.access_token),
        renew_at: Instant::now() + renew_in,
    })
}

/// The token's lifetime: from the JWT claims (LivePerson sends no `expires_in`), or
/// `expires_in` when present, whichever is shorter.
///
/// [INFERRED] `exp - iat` is preferred to `exp - now`: both claims come from Sentinel's clock,
/// so the difference holds however far this machine's clock is from LivePerson's (the spec
/// documents `exp - iat = 3600`). Without `iat`, `exp` is compared with the local clock.
fn lifetime(body: &TokenResponse) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    lifetime_at(body, now)
}

fn lifetime_at(body: &TokenResponse, now: u64) -> Duration {
    let from_claims = crate::jwt::claims::<TimeClaims>(&body.access_token).and_then(|c| {
        match (c.exp, c.iat) {
            (Some(exp), Some(iat)) if exp > iat => Some(Duration::from_secs(exp - iat)),
            (Some(exp), _) => {
                let left = Duration::from_secs(exp.saturating_sub(now));
                if left < MIN_LIFETIME {
                    tracing::warn!(
                        left_s = left.as_secs(),
                        "the AppJWT expires (by this machine's clock) almost as it arrives; is the clock right?"
                    );
                }
                Some(left.max(MIN_LIFETIME))
            }
            (None, _) => None,
        }
    });
    let from_expires_in = body.expires_in.map(Duration::from_secs);
    match (from_claims, from_expires_in) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => DEFAULT_LIFETIME,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn token(claims: serde_json::Value) -> TokenResponse {
        let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        TokenResponse {
            access_token: format!(
                "{}.{}.sig",
                part(serde_json::json!({"alg": "RS256"})),
                part(claims)
            ),
            expires_in: None,
        }
    }

    #[test]
    fn lifetime_is_measured_on_sentinels_clock() {
        let now = 1_700_000_000;
        // LivePerson's clock an hour and a bit behind ours: by our clock the token expired
        // before it was issued, but it is good for an hour.
        let behind = token(serde_json::json!({"iat": now - 4000, "exp": now - 400}));
        assert_eq!(lifetime_at(&behind, now), Duration::from_secs(3600));
        let ahead = token(serde_json::json!({"iat": now + 4000, "exp": now + 7600}));
        assert_eq!(lifetime_at(&ahead, now), Duration::from_secs(3600));
        // No iat: our clock decides, with a floor for tokens that look expired.
        let no_iat = token(serde_json::json!({"exp": now + 1800}));
        assert_eq!(lifetime_at(&no_iat, now), Duration::from_secs(1800));
        let stale = token(serde_json::json!({"exp": now - 10}));
        assert_eq!(lifetime_at(&stale, now), MIN_LIFETIME);
        // expires_in shortens it; no claims at all: one hour.
        let mut short = token(serde_json::json!({"iat": now, "exp": now + 3600}));
        short.expires_in = Some(600);
        assert_eq!(lifetime_at(&short, now), Duration::from_secs(600));
        let opaque = TokenResponse {
            access_token: "not-a-jwt".into(),
            expires_in: None,
        };
        assert_eq!(lifetime_at(&opaque, now), DEFAULT_LIFETIME);
    }
}
