//! AppJWT: the connector's own OAuth 2.0 client-credentials token from Sentinel (§2).

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
struct ExpClaim {
    exp: Option<u64>,
}

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

/// `POST /sentinel/api/account/{acc}/app/token?v=1.0&grant_type=client_credentials`, with
/// `grant_type`, `client_id` and `client_secret` in the form body (§2.1 [CONFLICT]: the spec's
/// chosen form; LivePerson accepts the fields in either place). Credentials never go in the URL.
async fn fetch(
    http: &reqwest::Client,
    config: &EngineConfig,
    sentinel: &str,
) -> Result<Cached, EngineError> {
    let url = format!(
        "{sentinel}/sentinel/api/account/{}/app/token?v=1.0&grant_type=client_credentials",
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

/// The token's lifetime: the JWT `exp` claim (LivePerson sends no `expires_in`), or
/// `expires_in` when present, whichever is shorter.
fn lifetime(body: &TokenResponse) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let from_exp = crate::jwt::claims::<ExpClaim>(&body.access_token)
        .and_then(|c| c.exp)
        .map(|exp| Duration::from_secs(exp.saturating_sub(now)));
    let from_expires_in = body.expires_in.map(Duration::from_secs);
    match (from_exp, from_expires_in) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => DEFAULT_LIFETIME,
    }
}
