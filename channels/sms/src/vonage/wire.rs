//! Vonage's SMS API as it goes over the wire, named as Vonage names it (docs/protocol/channels.md §3.7,
//! `Nexmo/api-specification` `definitions/sms.yml`: `NewMessage`, `SMS`, `InboundMessage`,
//! `DeliveryReceipt`).

use serde::{Deserialize, Deserializer};
use time::PrimitiveDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::parsing::Parsed;

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

/// `message-timestamp` as Vonage writes it: `YYYY-MM-DD HH:MM:SS`, UTC
/// (docs/protocol/channels.md §3.7; `definitions/sms.yml` gives it only by example,
/// `2020-01-01 12:00:00`). Also accepted,
/// as before the `time` crate parsed it: `T` for the space, and the month, day and time fields
/// without their leading zero.
const MESSAGE_TIMESTAMP: &[BorrowedFormatItem<'static>] = format_description!(
    version = 2,
    "[year]-[month padding:none]-[day padding:none][first [ ][T]]\
     [hour padding:none]:[minute padding:none]:[second padding:none]"
);

/// Parses `message-timestamp` (`YYYY-MM-DD HH:MM:SS`, UTC, surrounding whitespace ignored) into
/// Unix milliseconds. `None` for anything else: an impossible date (`2023-02-29`), a year
/// before 1970, trailing text. A leap second (`23:59:60`) counts as the next minute's first,
/// as Unix time counts it.
pub fn parse_message_timestamp(s: &str) -> Option<i64> {
    let mut parsed = Parsed::new();
    let rest = parsed
        .parse_items(s.trim().as_bytes(), MESSAGE_TIMESTAMP)
        .ok()?;
    if !rest.is_empty() {
        return None;
    }
    // `Parsed` holds a second of 60, a `PrimitiveDateTime` does not.
    let leap = parsed.second() == Some(60);
    if leap {
        parsed = parsed.with_second(59)?;
    }
    let at = PrimitiveDateTime::try_from(parsed).ok()?.assume_utc();
    if at.year() < 1970 {
        return None;
    }
    Some((at.unix_timestamp() + i64::from(leap)) * 1000)
}

#[cfg(test)]
mod tests {
    use super::parse_message_timestamp as parse;

    #[test]
    fn message_timestamps_are_utc_unix_milliseconds() {
        assert_eq!(parse("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse("2020-01-01 12:00:00"), Some(1_577_880_000_000));
        assert_eq!(parse("9999-12-31 23:59:59"), Some(253_402_300_799_000));
    }

    #[test]
    fn leap_days_are_dates() {
        assert_eq!(parse("2024-02-29 23:59:59"), Some(1_709_251_199_000));
        // Divisible by 400: a leap year although a century.
        assert_eq!(parse("2000-02-29 11:59:59"), Some(951_825_599_000));
    }

    #[test]
    fn a_leap_second_is_the_next_minutes_first() {
        assert_eq!(parse("2016-12-31 23:59:60"), Some(1_483_228_800_000));
        assert_eq!(parse("2016-12-31 23:59:60"), parse("2017-01-01 00:00:00"));
    }

    #[test]
    fn the_lenient_forms_read_the_same() {
        let at = Some(1_577_880_000_000);
        assert_eq!(parse("2020-01-01T12:00:00"), at);
        assert_eq!(parse("2020-1-1 12:0:0"), at);
        assert_eq!(parse(" 2020-01-01 12:00:00\n"), at);
    }

    #[test]
    fn impossible_dates_are_refused() {
        // Before the `time` crate, these rolled over into the next month.
        for s in [
            "2023-02-29 12:00:00",
            "2100-02-29 12:00:00",
            "2024-02-30 12:00:00",
            "2023-04-31 12:00:00",
            "2020-00-01 12:00:00",
            "2020-13-01 12:00:00",
            "2020-01-00 12:00:00",
            "2020-01-32 12:00:00",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    #[test]
    fn out_of_range_times_are_refused() {
        for s in [
            "2020-01-01 24:00:00",
            "2020-01-01 12:60:00",
            "2020-01-01 12:00:61",
            "2020-01-01 -1:00:00",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    #[test]
    fn years_before_1970_are_refused() {
        assert_eq!(parse("1969-12-31 23:59:59"), None);
        assert_eq!(parse("1969-12-31 23:59:60"), None);
        assert_eq!(parse("10000-01-01 00:00:00"), None);
    }

    #[test]
    fn anything_more_or_less_is_refused() {
        for s in [
            "",
            " ",
            "2020-01-01",
            "2020-01-01 12:00",
            "2020-01-01 12:00:00Z",
            "2020-01-01 12:00:00.5",
            "2020-01-01 12:00:00:00",
            "2020-01-01 12:00:00 x",
            "2020-01-01  12:00:00",
            "2020-01-01T 12:00:00",
            "2020-01-01\t12:00:00",
            "2020/01/01 12:00:00",
            "1577880000",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
    }
}
