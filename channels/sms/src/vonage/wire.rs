//! Vonage's SMS API as it goes over the wire, named as Vonage names it (docs/protocol/channels.md §3.7,
//! `Nexmo/api-specification` `definitions/sms.yml`: `NewMessage`, `SMS`, `InboundMessage`,
//! `DeliveryReceipt`).

use serde::{Deserialize, Deserializer};

/// The answer to `POST /sms/json` (always HTTP 200): one element per SMS part.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendResponse {
    /// `message-count`: how many parts the text became.
    #[serde(rename = "message-count", default, deserialize_with = "lenient_string")]
    pub message_count: String,
    /// One element per part.
    #[serde(default)]
    pub messages: Vec<SendMessage>,
}

/// One part's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendMessage {
    /// `status`: `"0"` accepted, anything else an error (see [`SendStatus`]).
    #[serde(deserialize_with = "lenient_string")]
    pub status: String,
    /// `message-id`: Vonage's id of this part (on success).
    #[serde(rename = "message-id", default)]
    pub message_id: Option<String>,
    /// `error-text` (on failure).
    #[serde(rename = "error-text", default)]
    pub error_text: Option<String>,
    /// `to`: the number, without `+`.
    #[serde(default)]
    pub to: Option<String>,
    /// `client-ref`, as we sent it.
    #[serde(rename = "client-ref", default)]
    pub client_ref: Option<String>,
}

/// A string or a number, as a string (Vonage's numbers are strings in JSON, but be lenient).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Null => Ok(String::new()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}

/// Whether a failed submission may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Accepted (status 0).
    Accepted,
    /// Try again later.
    Retryable,
    /// Retrying cannot help.
    Permanent,
}

/// Vonage's `status` codes for `POST /sms/json` (developer.vonage.com, "SMS API error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendStatus(pub u32);

impl SendStatus {
    /// Vonage's name for the code.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "Success",
            1 => "Throttled",
            2 => "Missing Parameters",
            3 => "Invalid Parameters",
            4 => "Invalid Credentials",
            5 => "Internal Error",
            6 => "Invalid Message",
            7 => "Number Barred",
            8 => "Partner Account Barred",
            9 => "Partner Quota Violation",
            10 => "Too Many Existing Binds",
            11 => "Account Not Enabled For HTTP",
            12 => "Message Too Long",
            14 => "Invalid Signature",
            15 => "Invalid Sender Address",
            22 => "Invalid Network Code",
            23 => "Invalid Callback URL",
            29 => "Non-Whitelisted Destination",
            32 => "Signature And API Secret Disallowed",
            33 => "Number De-activated",
            _ => "Unknown Status",
        }
    }

    /// What the code means for a retry: 1 (throttled), 5 (internal error) and 10 (too many
    /// binds, "back off and retry") are transient; every other error, including 9 (partner
    /// quota: no credit left, which needs a top-up by a person) and unknown codes, is
    /// permanent.
    pub fn retry(self) -> Retry {
        match self.0 {
            0 => Retry::Accepted,
            1 | 5 | 10 => Retry::Retryable,
            _ => Retry::Permanent,
        }
    }

    /// A hint for the operator, for the codes that need one.
    pub fn hint(self) -> Option<&'static str> {
        match self.0 {
            4 => Some("check api_key and api_secret"),
            8 => Some("the Vonage account is suspended: contact Vonage support"),
            9 => Some("the Vonage account has too little credit: top it up"),
            11 => Some("the account is not enabled for the HTTP SMS API"),
            15 => Some("check `from`: Vonage refuses it as a sender"),
            29 => Some("trial accounts may only send to whitelisted numbers"),
            _ => None,
        }
    }
}

/// The `type` of an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundType {
    /// `text`: GSM-7 text.
    Text,
    /// `unicode`: UCS-2 text.
    Unicode,
    /// `binary`: `data` and `udh`, no text.
    Binary,
}

/// One part of a concatenated inbound message (Vonage does not reassemble them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcatPart {
    /// `concat-ref`: the sender's reference, shared by the parts.
    pub reference: String,
    /// `concat-total`: how many parts.
    pub total: u8,
    /// `concat-part`: this part's number, from 1.
    pub part: u8,
}

/// An inbound message webhook (`InboundMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VonageInbound {
    /// `msisdn`: the consumer's number (without `+`).
    pub msisdn: String,
    /// `to`: our number.
    pub to: Option<String>,
    /// `messageId`: Vonage's id, the same on every retry.
    pub message_id: String,
    /// `type`.
    pub kind: InboundType,
    /// `text` (empty for binary messages).
    pub text: String,
    /// `keyword`: the first word, upper-cased.
    pub keyword: Option<String>,
    /// `message-timestamp` (`YYYY-MM-DD HH:MM:SS`, UTC), as Unix milliseconds.
    pub message_timestamp_ms: Option<i64>,
    /// The `concat-*` fields, for one part of a long message.
    pub concat: Option<ConcatPart>,
}

/// A delivery receipt's `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlrStatus {
    /// `delivered` (final).
    Delivered,
    /// `expired` (final).
    Expired,
    /// `failed` (final).
    Failed,
    /// `rejected` (final).
    Rejected,
    /// `accepted` by the network.
    Accepted,
    /// `buffered` by the network.
    Buffered,
    /// `unknown`.
    Unknown,
    /// Anything else.
    Other(String),
}

impl DlrStatus {
    /// Parses Vonage's status word.
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "delivered" => DlrStatus::Delivered,
            "expired" => DlrStatus::Expired,
            "failed" => DlrStatus::Failed,
            "rejected" => DlrStatus::Rejected,
            "accepted" => DlrStatus::Accepted,
            "buffered" => DlrStatus::Buffered,
            "unknown" => DlrStatus::Unknown,
            other => DlrStatus::Other(other.to_owned()),
        }
    }

    /// Vonage's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            DlrStatus::Delivered => "delivered",
            DlrStatus::Expired => "expired",
            DlrStatus::Failed => "failed",
            DlrStatus::Rejected => "rejected",
            DlrStatus::Accepted => "accepted",
            DlrStatus::Buffered => "buffered",
            DlrStatus::Unknown => "unknown",
            DlrStatus::Other(s) => s,
        }
    }

    /// True for the final failures: `failed`, `rejected`, `expired`.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            DlrStatus::Failed | DlrStatus::Rejected | DlrStatus::Expired
        )
    }
}

/// A delivery receipt webhook (`DeliveryReceipt`), one per SMS part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VonageDlr {
    /// `msisdn`: the consumer's number the message went to.
    pub msisdn: String,
    /// `to`: our sender.
    pub to: Option<String>,
    /// `messageId`: Vonage's id of the part.
    pub message_id: Option<String>,
    /// `status`.
    pub status: DlrStatus,
    /// `err-code`: `0` on success, else the network's reason.
    pub err_code: Option<String>,
    /// `client-ref`: what we sent, identifying our message.
    pub client_ref: Option<String>,
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS` (UTC) into Unix milliseconds.
pub fn parse_message_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..=60).contains(&sec)
    {
        return None;
    }
    let days = days_from_civil(y, mo, day);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000)
}
