//! A small Bot API client: JSON calls, multipart uploads and file downloads. The token is part
//! of every URL (`/bot<token>/<method>`), so no URL ever reaches a log or an error.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde::de::DeserializeOwned;
use switchboard_core::{Bytes, Secret};

use crate::error::{BotApiError, transport};
use crate::wire::ApiResponse;

/// A client for one bot.
#[derive(Debug, Clone)]
pub struct BotClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl BotClient {
    /// A client for `token` against `base` (`https://api.telegram.org`).
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

    fn method_url(&self, method: &str) -> String {
        format!("{}/bot{}/{method}", self.base, self.token.expose())
    }

    /// Calls `method` with a JSON body and returns its `result`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<T, BotApiError> {
        let mut request = self.http.post(self.method_url(method)).json(params);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        Self::read(request.send().await).await
    }

    /// Calls `method` with a multipart body (a file upload): `fields` as text parts, the file
    /// as part `file_field`.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        method: &str,
        fields: &[(&str, String)],
        file_field: &str,
        file: (Bytes, String, String),
    ) -> Result<T, BotApiError> {
        let (data, name, mime) = file;
        let part = Part::bytes(data.to_vec())
            .file_name(name)
            .mime_str(&mime)
            .map_err(|e| BotApiError::Malformed(e.without_url().to_string()))?;
        let mut form = Form::new().part(file_field.to_owned(), part);
        for (k, v) in fields {
            form = form.text((*k).to_owned(), v.clone());
        }
        let request = self.http.post(self.method_url(method)).multipart(form);
        Self::read(request.send().await).await
    }

    /// Downloads a file `getFile` returned, refusing it past `max_bytes` (without reading
    /// more than that).
    pub async fn download(&self, file_path: &str, max_bytes: u64) -> Result<Bytes, BotApiError> {
        let url = format!("{}/file/bot{}/{file_path}", self.base, self.token.expose());
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| BotApiError::Network(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(BotApiError::Refused {
                code: status.as_u16(),
                description: "file download failed".into(),
                retry_after: None,
                migrate_to: None,
            });
        }
        let too_large = BotApiError::TooLarge { limit: max_bytes };
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_large);
        }
        let mut data = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| BotApiError::Network(e.without_url().to_string()))?
        {
            if (data.len() + chunk.len()) as u64 > max_bytes {
                return Err(too_large);
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(data))
    }

    async fn read<T: DeserializeOwned>(
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, BotApiError> {
        let response = sent.map_err(transport)?;
        let status = response.status();
        let header_retry = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.map_err(transport)?;
        let parsed: ApiResponse<T> = match serde_json::from_slice(&body) {
            Ok(parsed) => parsed,
            // A proxy in front of the Bot API answering HTML, or garbage.
            Err(_) if !status.is_success() => {
                return Err(BotApiError::Refused {
                    code: status.as_u16(),
                    description: format!("non-JSON answer ({status})"),
                    retry_after: header_retry,
                    migrate_to: None,
                });
            }
            Err(e) => return Err(BotApiError::Malformed(e.to_string())),
        };
        if parsed.ok {
            return parsed
                .result
                .ok_or_else(|| BotApiError::Malformed("`ok` without a `result`".into()));
        }
        let parameters = parsed.parameters;
        Err(BotApiError::Refused {
            code: parsed.error_code.unwrap_or(status.as_u16()),
            description: parsed.description.unwrap_or_default(),
            retry_after: parameters
                .as_ref()
                .and_then(|p| p.retry_after)
                .map(Duration::from_secs)
                .or(header_retry),
            migrate_to: parameters.and_then(|p| p.migrate_to_chat_id),
        })
    }
}
