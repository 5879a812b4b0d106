//! A small Web API client: form-encoded calls with the bot token in `Authorization`, the
//! external upload flow, and `url_private` downloads. The token never reaches a log or an error.

use std::time::Duration;

use serde_json::Value;
use switchboard_core::{Bytes, Secret};

use crate::error::ApiError;

/// Bots may be handed files up to this size (larger ones become a notice).
pub(crate) const MAX_DOWNLOAD_BYTES: usize = 20 * 1024 * 1024;

/// A client for one bot token.
#[derive(Debug, Clone)]
pub struct WebClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl WebClient {
    /// A client for `token` against `base` (`https://slack.com/api`).
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Calls `method` with form-encoded `params` (objects as JSON strings, as Slack expects)
    /// and returns the whole `ok: true` answer.
    pub async fn call(&self, method: &str, params: &[(&str, String)]) -> Result<Value, ApiError> {
        let sent = self
            .http
            .post(format!("{}/{method}", self.base))
            .bearer_auth(self.token.expose())
            .form(params)
            .send()
            .await;
        let response = sent.map_err(ApiError::from_reqwest)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.as_u16() == 429 {
            return Err(ApiError::Refused {
                error: "ratelimited".into(),
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(ApiError::Status(status.as_u16()));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| ApiError::Malformed(e.without_url().to_string()))?;
        if body["ok"].as_bool() == Some(true) {
            Ok(body)
        } else {
            Err(ApiError::Refused {
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
    ) -> Result<String, (ApiError, Option<String>)> {
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
            return Err((ApiError::Malformed("no upload_url or file_id".into()), None));
        };
        // The upload URL is the credential: no token goes there.
        let uploaded = self
            .http
            .post(url)
            .body(data)
            .send()
            .await
            .map_err(|e| (ApiError::from_reqwest(e), None))?;
        if !uploaded.status().is_success() {
            return Err((ApiError::Status(uploaded.status().as_u16()), None));
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

    /// Downloads a user's file from its `url_private`. The bot token is sent only to Slack's
    /// own hosts (or the configured API host), never to a URL elsewhere.
    pub async fn download(&self, url: &str) -> Result<Bytes, ApiError> {
        let host_of = |u: &str| {
            u.split("://")
                .nth(1)
                .and_then(|rest| rest.split(['/', '?']).next())
                .map(|h| h.to_ascii_lowercase())
        };
        let trusted = match (host_of(url), host_of(&self.base)) {
            (Some(host), Some(api)) => {
                host == api || host == "files.slack.com" || host.ends_with(".slack.com")
            }
            _ => false,
        };
        if !trusted {
            return Err(ApiError::Refused {
                error: "file_not_on_slack".into(),
                retry_after: None,
            });
        }
        let response = self
            .http
            .get(url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(ApiError::from_reqwest)?;
        if !response.status().is_success() {
            return Err(ApiError::Status(response.status().as_u16()));
        }
        let bytes = response.bytes().await.map_err(ApiError::from_reqwest)?;
        if bytes.len() > MAX_DOWNLOAD_BYTES {
            return Err(ApiError::Refused {
                error: "file_too_large".into(),
                retry_after: None,
            });
        }
        Ok(bytes)
    }
}
