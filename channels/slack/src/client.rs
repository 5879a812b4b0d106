//! A small Web API client: form-encoded calls with the bot token in `Authorization` (Slack's
//! Web API conventions, docs.slack.dev/apis/web-api), the external upload flow, `url_private`
//! downloads, token rotation and `apps.connections.open`. The tokens never reach a log or an
//! error.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use backon::{ConstantBuilder, Retryable as _};
use reqwest::Url;
use serde_json::Value;
use switchboard_core::{Bytes, ChannelContext, Secret};

use crate::config::Rotation;
use crate::error::SlackApiError;
use crate::tokens::{REFRESH_MARGIN_SECS, Rotator, TOKEN_STATE_KEY, TokenPair, origin_of};

/// Bots may be handed files up to this size (larger ones become a notice).
pub(crate) const MAX_DOWNLOAD_BYTES: usize = 20 * 1024 * 1024;

/// A client for one bot token (which may rotate).
#[derive(Debug, Clone)]
pub struct WebClient {
    http: reqwest::Client,
    /// For `url_private` downloads: follows redirects only to Slack's own hosts, so that the
    /// token never goes elsewhere.
    files: reqwest::Client,
    base: String,
    token: Arc<RwLock<Secret>>,
    rotator: Option<Arc<Rotator>>,
    ctx: Arc<OnceLock<ChannelContext>>,
}

/// How a call authenticates.
enum Auth<'a> {
    /// `Authorization: Bearer …`.
    Bearer(&'a str),
    /// No header (`oauth.v2.access` takes the client credentials as parameters).
    None,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Whether the bot token may be sent to `url`: only over https (or plain http to the
/// configured API host, for local fakes) and only to Slack's file hosts or the configured
/// API host, compared exactly on the parsed host. Parsing with `url` (as the HTTP client
/// does) is what makes `#`, `\` and `user@host` tricks land on the host the request really
/// goes to.
pub(crate) fn may_carry_token(url: &Url, api: &Url) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let api_host = api.host_str().map(str::to_ascii_lowercase);
    let same_as_api = Some(&host) == api_host.as_ref()
        && url.port_or_known_default() == api.port_or_known_default();
    match url.scheme() {
        "https" => same_as_api || host == "slack.com" || host.ends_with(".slack.com"),
        "http" => same_as_api && api.scheme() == "http",
        _ => false,
    }
}

impl WebClient {
    /// A client for `token` against `base` (`https://slack.com/api`); `rotation` when the
    /// token expires and is refreshed.
    pub fn new(
        base: &str,
        token: Secret,
        timeout: Duration,
        rotation: Option<Rotation>,
    ) -> Result<Self, String> {
        let api = Url::parse(base).map_err(|e| format!("not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        let trusted = api.clone();
        let files = reqwest::Client::builder()
            .timeout(timeout.max(Duration::from_secs(30)))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() < 5 && may_carry_token(attempt.url(), &trusted) {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Self {
            http,
            files,
            base: base.trim_end_matches('/').to_owned(),
            token: Arc::new(RwLock::new(token)),
            rotator: rotation.map(|r| Arc::new(Rotator::new(r))),
            ctx: Arc::new(OnceLock::new()),
        })
    }

    fn current_token(&self) -> Secret {
        self.token.read().expect("token lock").clone()
    }

    /// Gives the client the channel's state, where a rotating token pair is kept, and takes
    /// the stored pair when it is newer than the configured one.
    pub(crate) async fn attach(&self, ctx: &ChannelContext) {
        let _ = self.ctx.set(ctx.clone());
        let Some(rotator) = &self.rotator else {
            return;
        };
        if let Some(pair) = rotator.stored(ctx).await {
            let mut state = rotator.state.lock().await;
            *self.token.write().expect("token lock") = Secret::new(pair.access_token);
            state.refresh_token = Secret::new(pair.refresh_token);
            state.expires_at = Some(pair.expires_at);
        }
    }

    /// Refreshes a rotating token that expires within the margin (or whose age is unknown).
    pub(crate) async fn ensure_fresh(&self) -> Result<(), SlackApiError> {
        let Some(rotator) = &self.rotator else {
            return Ok(());
        };
        let due = |expires_at: Option<i64>| {
            expires_at.is_none_or(|at| at - unix_now() < REFRESH_MARGIN_SECS)
        };
        if !due(rotator.state.lock().await.expires_at) {
            return Ok(());
        }
        self.refresh(None).await
    }

    /// Exchanges the refresh token for a new pair (`oauth.v2.access`, `grant_type =
    /// refresh_token`) and keeps it in the state before using it. With `stale`, only if the
    /// token in use is still that one (another task may have refreshed meanwhile). Another
    /// instance sharing the store may have refreshed too: its pair is taken instead.
    async fn refresh(&self, stale: Option<&str>) -> Result<(), SlackApiError> {
        let Some(rotator) = &self.rotator else {
            return Ok(());
        };
        let mut state = rotator.state.lock().await;
        if let Some(stale) = stale
            && self.current_token().expose() != stale
        {
            return Ok(());
        }
        if stale.is_none()
            && state
                .expires_at
                .is_some_and(|at| at - unix_now() >= REFRESH_MARGIN_SECS)
        {
            return Ok(());
        }
        let ctx = self.ctx.get();
        if let Some(ctx) = ctx
            && let Some(pair) = rotator.stored(ctx).await
            && Some(pair.expires_at) > state.expires_at
            && pair.access_token != self.current_token().expose()
            && pair.expires_at - unix_now() >= REFRESH_MARGIN_SECS
        {
            *self.token.write().expect("token lock") = Secret::new(pair.access_token);
            state.refresh_token = Secret::new(pair.refresh_token);
            state.expires_at = Some(pair.expires_at);
            return Ok(());
        }
        let settings = &rotator.settings;
        let answer = self
            .raw_call(
                "oauth.v2.access",
                &[
                    ("client_id", settings.client_id.clone()),
                    ("client_secret", settings.client_secret.expose().to_owned()),
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", state.refresh_token.expose().to_owned()),
                ],
                Auth::None,
            )
            .await
            .inspect_err(
                |e| tracing::error!(error = %e, "cannot refresh the rotating Slack bot token"),
            )?;
        let (Some(access), Some(refresh)) = (
            answer["access_token"].as_str(),
            answer["refresh_token"].as_str(),
        ) else {
            return Err(SlackApiError::Malformed(
                "oauth.v2.access gave no token pair".into(),
            ));
        };
        let expires_at = unix_now() + answer["expires_in"].as_i64().unwrap_or(43_200);
        let pair = TokenPair {
            access_token: access.to_owned(),
            refresh_token: refresh.to_owned(),
            expires_at,
            origin: origin_of(&settings.refresh_token),
        };
        // The old refresh token is revoked now: the new pair must be kept before anything else.
        if let Some(ctx) = ctx {
            let json = serde_json::to_string(&pair).unwrap_or_default();
            // Five more tries, 200 ms apart (jittered), while the store is unavailable.
            let saved = (|| ctx.save_state(TOKEN_STATE_KEY, &json))
                .retry(
                    ConstantBuilder::new()
                        .with_delay(Duration::from_millis(200))
                        .with_max_times(5)
                        .with_jitter(),
                )
                .await;
            if let Err(e) = saved {
                tracing::error!(error = %e, "cannot store the refreshed Slack token; it lives in this process only until the store is back");
            }
        }
        *self.token.write().expect("token lock") = Secret::new(pair.access_token);
        state.refresh_token = Secret::new(pair.refresh_token);
        state.expires_at = Some(expires_at);
        tracing::info!(expires_at, "refreshed the rotating Slack bot token");
        Ok(())
    }

    /// Calls `method` with form-encoded `params` (objects as JSON strings, as Slack expects)
    /// and the bot token, and returns the whole `ok: true` answer. A rotating token that
    /// expired is refreshed and the call made once more.
    pub async fn call(
        &self,
        method: &str,
        params: &[(&str, String)],
    ) -> Result<Value, SlackApiError> {
        self.ensure_fresh().await?;
        let token = self.current_token();
        let first = self
            .raw_call(method, params, Auth::Bearer(token.expose()))
            .await;
        match first {
            Err(SlackApiError::Refused { error, .. })
                if self.rotator.is_some()
                    && matches!(error.as_str(), "token_expired" | "invalid_auth") =>
            {
                self.refresh(Some(token.expose())).await?;
                let token = self.current_token();
                self.raw_call(method, params, Auth::Bearer(token.expose()))
                    .await
            }
            other => other,
        }
    }

    /// `apps.connections.open` with the app-level token (Bearer only; Slack refuses it as a
    /// parameter): the single-use WebSocket URL of a Socket Mode connection.
    pub async fn open_connection(&self, app_token: &Secret) -> Result<String, SlackApiError> {
        let answer = self
            .raw_call(
                "apps.connections.open",
                &[],
                Auth::Bearer(app_token.expose()),
            )
            .await?;
        answer["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackApiError::Malformed("apps.connections.open gave no url".into()))
    }

    async fn raw_call(
        &self,
        method: &str,
        params: &[(&str, String)],
        auth: Auth<'_>,
    ) -> Result<Value, SlackApiError> {
        let mut request = self
            .http
            .post(format!("{}/{method}", self.base))
            .form(params);
        if let Auth::Bearer(token) = auth {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(SlackApiError::from_reqwest)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.as_u16() == 429 {
            return Err(SlackApiError::Refused {
                error: "ratelimited".into(),
                retry_after: Some(retry_after.unwrap_or(Duration::from_secs(60))),
            });
        }
        if !status.is_success() {
            return Err(SlackApiError::Status(status.as_u16()));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| SlackApiError::Malformed(e.without_url().to_string()))?;
        if body["ok"].as_bool() == Some(true) {
            Ok(body)
        } else {
            Err(SlackApiError::Refused {
                error: body["error"].as_str().unwrap_or("unknown_error").to_owned(),
                retry_after,
            })
        }
    }

    /// Uploads a file to a conversation: `files.getUploadURLExternal`, the bytes to the upload
    /// URL, then `files.completeUploadExternal` shares it with `initial_comment`. Returns the
    /// file id; a failure carries the file id when the failed step was the sharing (so a retry
    /// can look for the shared file before uploading again).
    pub async fn upload(
        &self,
        channel: &str,
        name: &str,
        data: Bytes,
        comment: Option<&str>,
    ) -> Result<String, (SlackApiError, Option<String>)> {
        let ticket = self
            .call(
                "files.getUploadURLExternal",
                &[
                    ("filename", name.to_owned()),
                    ("length", data.len().to_string()),
                ],
            )
            .await
            .map_err(|e| (e, None))?;
        let (Some(url), Some(file_id)) =
            (ticket["upload_url"].as_str(), ticket["file_id"].as_str())
        else {
            return Err((
                SlackApiError::Malformed("no upload_url or file_id".into()),
                None,
            ));
        };
        // The upload URL is the credential: no token goes there.
        let uploaded = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(|e| (SlackApiError::from_reqwest(e), None))?;
        if !uploaded.status().is_success() {
            return Err((SlackApiError::Status(uploaded.status().as_u16()), None));
        }
        let files = serde_json::json!([{ "id": file_id, "title": name }]).to_string();
        let mut params = vec![("files", files), ("channel_id", channel.to_owned())];
        if let Some(c) = comment {
            params.push(("initial_comment", c.to_owned()));
        }
        self.call("files.completeUploadExternal", &params)
            .await
            .map_err(|e| (e, Some(file_id.to_owned())))?;
        Ok(file_id.to_owned())
    }

    /// Downloads a user's file from its `url_private(_download)` with the bot token, which is
    /// sent only where [`may_carry_token`] allows. At most [`MAX_DOWNLOAD_BYTES`] are read.
    /// Slack answers a request it does not authorise (no `files:read` scope, a file the bot
    /// cannot see) with its HTML sign-in page and status 200: that is refused as
    /// `file_sign_in_page`, never handed on as the file.
    pub async fn download(&self, url: &str, expected_mime: &str) -> Result<Bytes, SlackApiError> {
        let refused = |error: &str| SlackApiError::Refused {
            error: error.into(),
            retry_after: None,
        };
        let (Ok(parsed), Ok(api)) = (Url::parse(url), Url::parse(&self.base)) else {
            return Err(refused("file_not_on_slack"));
        };
        if !may_carry_token(&parsed, &api) {
            return Err(refused("file_not_on_slack"));
        }
        self.ensure_fresh().await?;
        let mut response = self
            .files
            .get(parsed)
            .bearer_auth(self.current_token().expose())
            .send()
            .await
            .map_err(SlackApiError::from_reqwest)?;
        let status = response.status();
        if status.is_redirection() {
            // A redirect the policy refused to follow: somewhere the token must not go.
            return Err(refused("file_not_on_slack"));
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(SlackApiError::Status(status.as_u16()));
        }
        if !status.is_success() {
            return Err(refused(&format!("file_http_{}", status.as_u16())));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/html") && !expected_mime.starts_with("text/html") {
            return Err(refused("file_sign_in_page"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOWNLOAD_BYTES as u64)
        {
            return Err(refused("file_too_large"));
        }
        let mut data = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(SlackApiError::from_reqwest)?
        {
            if data.len() + chunk.len() > MAX_DOWNLOAD_BYTES {
                return Err(refused("file_too_large"));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(url: &str) -> bool {
        let api = Url::parse("https://slack.com/api").unwrap();
        Url::parse(url).is_ok_and(|u| may_carry_token(&u, &api))
    }

    #[test]
    fn the_token_goes_only_to_slack_hosts_compared_exactly() {
        assert!(allowed("https://files.slack.com/files-pri/T1-F1/a.png"));
        assert!(allowed("https://slack.com/api/files.info"));
        // A fragment, a backslash, user info or a look-alike suffix never make another host
        // Slack's: the parsed host is what the request goes to.
        for forged in [
            "https://evil.example/#.files.slack.com/x",
            "https://evil.example\\@files.slack.com/x",
            "https://evil.example\\.slack.com/x",
            "https://files.slack.com@evil.example/x",
            "https://files.slack.com.evil.example/x",
            "https://evilslack.com/x",
            "http://files.slack.com/x",
            "ftp://files.slack.com/x",
            "https://user:pw@files.slack.com/x",
        ] {
            assert!(!allowed(forged), "{forged}");
        }
    }
}
