//! Kannel's smsbox `sendsms` client (docs/protocol/channels.md §3.2), and the classification
//! of its answers.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use switchboard_core::{Delivered, DeliveryError, Secret, async_trait};

use super::config::KannelSettings;
use super::wire::{self, header};
use crate::gateway::{OutgoingSms, SendError, SmsGateway, read_answer};

/// Kannel's smsbox `sendsms` interface, used with `POST` + `X-Kannel-*` headers so that
/// credentials and text stay out of URLs and access logs.
#[derive(Debug)]
pub struct KannelClient {
    http: reqwest::Client,
    settings: KannelSettings,
    from: String,
    /// `<callback base>/dlr?token=T&` without our per-message parameters (it holds the
    /// callback token, so it never shows in `Debug`).
    dlr_prefix: Secret,
}

impl KannelClient {
    /// Builds a client; touches no network.
    pub fn new(
        settings: KannelSettings,
        from: String,
        callback_base_url: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            settings,
            from,
            dlr_prefix: Secret::new(format!("{callback_base_url}/dlr?token={token}&")),
        })
    }

    /// The dlr-url for one gateway call (our reference and Kannel's escapes).
    fn dlr_url(&self, mt: &OutgoingSms<'_>) -> String {
        format!(
            "{}{}={}&{}",
            self.dlr_prefix.expose(),
            wire::DLR_REF,
            mt.reference,
            wire::DLR_QUERY_ESCAPES
        )
    }

    fn headers(&self, mt: &OutgoingSms<'_>) -> Result<HeaderMap, DeliveryError> {
        let value = |v: &str, what: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| DeliveryError::permanent(format!("{what} cannot go into a header")))
        };
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        h.insert(
            header::USERNAME,
            value(&self.settings.username, "username")?,
        );
        let mut password = value(self.settings.password.expose(), "password")?;
        password.set_sensitive(true);
        h.insert(header::PASSWORD, password);
        h.insert(header::FROM, value(&self.from, "from")?);
        h.insert(header::TO, value(mt.to, "the consumer's number")?);
        h.insert(
            header::CODING,
            HeaderValue::from(u16::from(mt.coding.kannel_value())),
        );
        if self.settings.dlr_mask != 0 && mt.report {
            h.insert(
                header::DLR_MASK,
                HeaderValue::from(u16::from(self.settings.dlr_mask)),
            );
            let mut url = value(&self.dlr_url(mt), "the dlr-url")?;
            url.set_sensitive(true);
            h.insert(header::DLR_URL, url);
        }
        Ok(h)
    }
}

/// Classifies Kannel's answer to `sendsms` (docs/protocol/channels.md §3.2; Kannel `gw/smsbox.c`): `202` with
/// `0: Accepted for delivery` or `3: Queued for later delivery` is taken; `403` is either
/// `Authorization failed for sendsms` or bearerbox's `Not routable. Do not try again.`, both
/// permanent; `503 Temporal failure, try again later.` and `500 Sending failed.` (smsbox lost
/// bearerbox) are retried; other `4xx` (`… rejected`, `Invalid content-type`) are permanent.
pub fn classify(
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<(), DeliveryError> {
    let body: String = body.trim().chars().take(200).collect();
    match status {
        200..=299 => Ok(()),
        403 if body.starts_with("Not routable") => Err(DeliveryError::permanent(format!(
            "Kannel has no route (SMSC) for the message: {body}"
        ))),
        403 => Err(DeliveryError::permanent(format!(
            "Kannel refused the credentials: {body}"
        ))),
        429 | 503 => Err(DeliveryError::Retryable {
            reason: format!("Kannel answered {status}: {body}"),
            after: retry_after,
        }),
        500..=599 => Err(DeliveryError::Retryable {
            reason: format!("Kannel answered {status}: {body}"),
            after: retry_after,
        }),
        _ => Err(DeliveryError::permanent(format!(
            "Kannel refused the message ({status}): {body}"
        ))),
    }
}

#[async_trait]
impl SmsGateway for KannelClient {
    fn reports(&self) -> bool {
        self.settings.dlr_mask & (8 | 16) != 0
    }

    async fn send(&self, mt: &OutgoingSms<'_>) -> Result<Delivered, SendError> {
        let headers = self.headers(mt)?;
        let resp = self
            .http
            .post(self.settings.sendsms_url.clone())
            .headers(headers)
            .body(mt.text.to_owned())
            .send()
            .await
            .map_err(|e| SendError::transport(e, "Kannel"))?;
        let (status, body, retry_after) = read_answer(resp, "Kannel").await;
        classify(status, &body, retry_after)?;
        if body.trim_start().starts_with("3:") {
            tracing::info!("Kannel queued the SMS for later delivery (no SMSC connected)");
        }
        Ok(Delivered::default())
    }
}
