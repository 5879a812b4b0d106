//! Vonage's `POST /sms/json`: a form body with the credentials (never in the URL), the
//! answer's per-part `status` classified.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use sha2::{Digest, Sha256};
use switchboard_core::{ChannelContext, Delivered, DeliveryError, async_trait};

use crate::client::{Mt, SmsGateway};
use crate::config::VonageSettings;
use crate::encoding::Coding;
use crate::vonage::wire::{Retry, SendResponse, SendStatus};

/// Vonage's cap on `client-ref`.
pub const CLIENT_REF_MAX: usize = 40;

/// The `client-ref` for one of our message ids: the id itself when it fits in 40 printable
/// ASCII characters (and does not start with `~`), else `~` and 39 hex digits of its SHA-256,
/// mapped back through the channel state (key `vonage-ref:<client-ref>`).
pub fn client_ref(message_id: &str) -> String {
    let plain = !message_id.is_empty()
        && message_id.len() <= CLIENT_REF_MAX
        && !message_id.starts_with('~')
        && message_id.bytes().all(|b| b.is_ascii_graphic());
    if plain {
        message_id.to_owned()
    } else {
        let digest = hex::encode(Sha256::digest(message_id.as_bytes()));
        format!("~{}", &digest[..CLIENT_REF_MAX - 1])
    }
}

/// The channel-state key that maps a hashed `client-ref` back to our message id.
pub(crate) fn client_ref_key(client_ref: &str) -> String {
    format!("vonage-ref:{client_ref}")
}

/// Vonage's SMS API client for one instance.
#[derive(Debug)]
pub struct VonageClient {
    http: reqwest::Client,
    settings: VonageSettings,
    /// Our sender as Vonage wants it: digits without `+`, or the alphanumeric id.
    from: String,
    /// `{callback base}/dlr`.
    dlr_url: String,
    endpoint: String,
}

impl VonageClient {
    /// Builds a client; touches no network.
    pub fn new(
        settings: VonageSettings,
        from: &str,
        callback_base_url: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let endpoint = format!(
            "{}/sms/json",
            settings.api_base_url.as_str().trim_end_matches('/')
        );
        Ok(Self {
            http,
            from: from.strip_prefix('+').unwrap_or(from).to_owned(),
            dlr_url: format!("{callback_base_url}/dlr"),
            endpoint,
            settings,
        })
    }

    /// The form fields of one submission (the secret included: the body is the only place
    /// it goes).
    fn form(&self, mt: &Mt<'_>) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("api_key", self.settings.api_key.clone()),
            ("api_secret", self.settings.api_secret.expose().to_owned()),
            ("from", self.from.clone()),
            ("to", mt.to.strip_prefix('+').unwrap_or(mt.to).to_owned()),
            ("text", mt.text.to_owned()),
            (
                "type",
                match mt.coding {
                    Coding::Gsm7 => "text",
                    Coding::Ucs2 => "unicode",
                }
                .to_owned(),
            ),
        ];
        if mt.report {
            f.push(("status-report-req", "1".to_owned()));
            f.push(("callback", self.dlr_url.clone()));
            f.push(("client-ref", client_ref(mt.message_id)));
        }
        f
    }
}

/// Classifies Vonage's answer to `POST /sms/json`: the HTTP status first (429 and 5xx are
/// transient, other non-2xx permanent), then each part's `status` (see [`SendStatus::retry`]).
/// On success, the first part's `message-id`.
pub fn classify(
    http_status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<Option<String>, DeliveryError> {
    let snippet: String = body.trim().chars().take(200).collect();
    match http_status {
        200..=299 => {}
        429 | 500..=599 => {
            return Err(DeliveryError::Retryable {
                reason: format!("Vonage answered HTTP {http_status}: {snippet}"),
                after: retry_after,
            });
        }
        401 | 403 => {
            return Err(DeliveryError::permanent(format!(
                "Vonage refused the credentials (HTTP {http_status}): check api_key and api_secret"
            )));
        }
        _ => {
            return Err(DeliveryError::permanent(format!(
                "Vonage refused the request (HTTP {http_status}): {snippet}"
            )));
        }
    }
    // A 200 we cannot read leaves us not knowing whether the SMS went: retry (at least once).
    let resp: SendResponse = serde_json::from_str(body).map_err(|e| {
        DeliveryError::retryable(format!("Vonage's answer is unreadable ({e}): {snippet}"))
    })?;
    if resp.messages.is_empty() {
        return Err(DeliveryError::retryable(
            "Vonage's answer lists no message".to_owned(),
        ));
    }
    let mut worst: Option<(Retry, SendStatus, String)> = None;
    let mut accepted = 0usize;
    for m in &resp.messages {
        let code = SendStatus(m.status.trim().parse().unwrap_or(u32::MAX));
        let retry = code.retry();
        if retry == Retry::Accepted {
            accepted += 1;
            continue;
        }
        let text = m.error_text.clone().unwrap_or_default();
        let replace = match &worst {
            None => true,
            Some((w, _, _)) => *w == Retry::Retryable && retry == Retry::Permanent,
        };
        if replace {
            worst = Some((retry, code, text));
        }
    }
    let Some((retry, code, text)) = worst else {
        return Ok(resp.messages[0].message_id.clone());
    };
    let mut reason = format!(
        "Vonage status {} ({}){}",
        code.0,
        code.name(),
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", text.chars().take(200).collect::<String>())
        }
    );
    if let Some(hint) = code.hint() {
        reason.push_str(&format!(" — {hint}"));
    }
    if accepted > 0 {
        reason.push_str(&format!(
            " ({accepted} of {} parts were accepted)",
            resp.messages.len()
        ));
    }
    Err(match retry {
        Retry::Retryable => DeliveryError::Retryable {
            reason,
            // Throttling: Vonage's limit is per second.
            after: retry_after.or((code.0 == 1).then(|| Duration::from_secs(1))),
        },
        _ => DeliveryError::permanent(reason),
    })
}

#[async_trait]
impl SmsGateway for VonageClient {
    async fn prepare(
        &self,
        ctx: &ChannelContext,
        _to: &str,
        message_id: &str,
    ) -> Result<(), DeliveryError> {
        let reference = client_ref(message_id);
        if reference == message_id {
            return Ok(());
        }
        ctx.save_state(&client_ref_key(&reference), message_id)
            .await
            .map_err(|e| DeliveryError::retryable(format!("channel state: {e}")))
    }

    async fn send(&self, mt: &Mt<'_>) -> Result<Delivered, DeliveryError> {
        let resp = self
            .http
            .post(&self.endpoint)
            .form(&self.form(mt))
            .send()
            .await
            .map_err(|e| {
                DeliveryError::retryable(format!("cannot reach Vonage: {}", e.without_url()))
            })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.text().await.unwrap_or_else(|e| {
            tracing::debug!(error = %e.without_url(), "Vonage's answer body was unreadable");
            String::new()
        });
        let id = classify(status, &body, retry_after)?;
        Ok(Delivered { platform_id: id })
    }
}
