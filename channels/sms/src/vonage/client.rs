//! Vonage's `POST /sms/json`: a form body with the credentials (never in the URL), the
//! answer's per-part `status` classified.

use std::time::Duration;

use switchboard_core::{Delivered, DeliveryError, async_trait};

use super::config::VonageSettings;
use super::wire::{Retry, SendResponse, SendStatus};
use crate::encoding::Coding;
use crate::gateway::{OutgoingSms, SendError, SmsGateway, read_answer};

/// Vonage's cap on `client-ref` (`definitions/sms.yml`: "up to 40 characters"). Ours is a
/// [`crate::tracking::piece_ref`], at most 24.
pub const CLIENT_REF_MAX: usize = 40;

/// The channel-state key under which earlier releases mapped a hashed `client-ref`
/// (`~` + 39 hex digits) back to our message id; still read for their messages' receipts.
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
    fn form(&self, mt: &OutgoingSms<'_>) -> Vec<(&'static str, String)> {
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
            f.push(("client-ref", mt.reference.to_owned()));
        }
        f
    }
}

/// Classifies Vonage's answer to `POST /sms/json`: the HTTP status first (429 and 5xx are
/// transient, other non-2xx permanent), then each part's `status` (see [`SendStatus::retry`]).
/// On success, the first part's `message-id`. A 200 that cannot be read is an uncertain
/// outcome: Vonage may have taken the message.
pub fn classify(
    http_status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> Result<Option<String>, SendError> {
    let snippet: String = body.trim().chars().take(200).collect();
    match http_status {
        200..=299 => {}
        429 | 500..=599 => {
            return Err(SendError::known(DeliveryError::Retryable {
                reason: format!("Vonage answered HTTP {http_status}: {snippet}"),
                after: retry_after,
            }));
        }
        401 | 403 => {
            return Err(SendError::known(DeliveryError::permanent(format!(
                "Vonage refused the credentials (HTTP {http_status}): check api_key and api_secret"
            ))));
        }
        _ => {
            return Err(SendError::known(DeliveryError::permanent(format!(
                "Vonage refused the request (HTTP {http_status}): {snippet}"
            ))));
        }
    }
    // A 200 we cannot read leaves us not knowing whether the SMS went.
    let resp: SendResponse = serde_json::from_str(body).map_err(|e| {
        SendError::uncertain(DeliveryError::retryable(format!(
            "Vonage's answer is unreadable ({e}): {snippet}"
        )))
    })?;
    if resp.messages.is_empty() {
        return Err(SendError::uncertain(DeliveryError::retryable(
            "Vonage's answer lists no message".to_owned(),
        )));
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
    // Parts already accepted went: the retry sends them again (Vonage gives no way to send
    // only the rest of a text), which the reason says.
    Err(SendError::known(match retry {
        Retry::Retryable => DeliveryError::Retryable {
            reason,
            // Throttling: Vonage's limit is per second.
            after: retry_after.or((code.0 == 1).then(|| Duration::from_secs(1))),
        },
        _ => DeliveryError::permanent(reason),
    }))
}

#[async_trait]
impl SmsGateway for VonageClient {
    fn reports(&self) -> bool {
        true
    }

    async fn send(&self, mt: &OutgoingSms<'_>) -> Result<Delivered, SendError> {
        // `definitions/sms.yml`, NewMessage.to: `\d{7,15}` (E.164 without `+`): anything else
        // is refused by Vonage (status 3), so it is refused here without a call.
        let digits = mt.to.strip_prefix('+').unwrap_or(mt.to);
        if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SendError::known(DeliveryError::permanent(
                "not sent: Vonage takes only E.164 numbers of 7 to 15 digits as `to` (see \
                 default_country_code for national numbers)",
            )));
        }
        let resp = self
            .http
            .post(&self.endpoint)
            .form(&self.form(mt))
            .send()
            .await
            .map_err(|e| SendError::transport(e, "Vonage"))?;
        let (status, body, retry_after) = read_answer(resp, "Vonage").await;
        let id = classify(status, &body, retry_after)?;
        Ok(Delivered { platform_id: id })
    }
}
