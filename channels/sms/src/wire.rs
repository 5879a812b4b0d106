//! Kannel's HTTP interface as it goes over the wire, named as Kannel names it (spec §3.2–3.4).

/// `POST /cgi-bin/sendsms` headers (the text is the `text/plain` body).
pub(crate) mod header {
    pub(crate) const USERNAME: &str = "X-Kannel-Username";
    pub(crate) const PASSWORD: &str = "X-Kannel-Password";
    pub(crate) const FROM: &str = "X-Kannel-From";
    pub(crate) const TO: &str = "X-Kannel-To";
    pub(crate) const CODING: &str = "X-Kannel-Coding";
    pub(crate) const DLR_MASK: &str = "X-Kannel-DLR-Mask";
    pub(crate) const DLR_URL: &str = "X-Kannel-DLR-Url";
}

/// The query of our sms-service `get-url` (Kannel escapes: `%p` sender, `%P` receiver, `%b`
/// the message as sent, byte for byte, `%T` Unix time, `%I` Kannel's message id, `%i` smsc-id,
/// `%c` coding, `%C` charset, `%u` UDH). `%b` rather than `%a`: `%a` re-joins the words with
/// single spaces, which collapses line breaks and corrupts UTF-16 text whose bytes look like
/// white space.
pub(crate) const MO_QUERY: &str =
    "from=%p&to=%P&text=%b&ts=%T&id=%I&smsc=%i&coding=%c&charset=%C&udh=%u";

/// The Kannel escapes of our `dlr-url` (`%d` event type, `%A` SMSC answer, `%T` time, `%i`
/// smsc-id, `%F` the SMSC's message id); `id` and `c` are filled by us.
pub(crate) const DLR_QUERY_ESCAPES: &str = "status=%d&answer=%A&ts=%T&smsc=%i&fid=%F";

/// A mobile-originated message as the get-url delivers it. Values are raw bytes, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KannelMo {
    /// `%p`: the consumer's number.
    pub from: String,
    /// `%P`: our number or short code.
    pub to: Option<String>,
    /// `%b`: the text, decoded by `charset`.
    pub text: String,
    /// `%T`: Unix time in seconds.
    pub ts: Option<i64>,
    /// `%I`: Kannel's id for the message, stable across its retries.
    pub id: String,
    /// `%i`: the SMSC it came through.
    pub smsc: Option<String>,
    /// `%c`: 0 GSM-7, 1 8-bit, 2 UCS-2.
    pub coding: u8,
    /// `%u`: the user data header, if any.
    pub udh: Vec<u8>,
}

/// Kannel's DLR event types (`%d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlrStatus {
    /// 1: delivered to the phone (final).
    Delivered,
    /// 2: not delivered to the phone (final).
    Undelivered,
    /// 4: queued on the SMSC.
    Buffered,
    /// 8: accepted by the SMSC.
    SmscAccepted,
    /// 16: rejected by the SMSC (final).
    SmscRejected,
    /// Anything else.
    Other(u32),
}

impl DlrStatus {
    /// Maps Kannel's `%d`.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => DlrStatus::Delivered,
            2 => DlrStatus::Undelivered,
            4 => DlrStatus::Buffered,
            8 => DlrStatus::SmscAccepted,
            16 => DlrStatus::SmscRejected,
            n => DlrStatus::Other(n),
        }
    }

    /// Kannel's code.
    pub fn code(self) -> u32 {
        match self {
            DlrStatus::Delivered => 1,
            DlrStatus::Undelivered => 2,
            DlrStatus::Buffered => 4,
            DlrStatus::SmscAccepted => 8,
            DlrStatus::SmscRejected => 16,
            DlrStatus::Other(n) => n,
        }
    }
}

/// A delivery report as our dlr-url delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KannelDlr {
    /// Our outbound message id (decoded).
    pub id: String,
    /// The consumer the message went to (decoded).
    pub consumer: String,
    /// The event.
    pub status: DlrStatus,
    /// `%F`: the SMSC's message id, if any.
    pub fid: Option<String>,
}

/// Characters our ids and numbers may carry into a dlr-url as they are. Everything else
/// (notably `%`, which Kannel reads as an escape, `+`, `&`, `=`, `~`) makes us hex-encode.
fn dlr_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'!' | b',')
}

/// Encodes a value for our dlr-url: as is when every byte is safe, else `~` + lowercase hex.
pub fn dlr_encode(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(dlr_safe) {
        value.to_owned()
    } else {
        let mut out = String::with_capacity(1 + value.len() * 2);
        out.push('~');
        for b in value.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// Reverses [`dlr_encode`]. `None` for anything it cannot have produced.
pub fn dlr_decode(value: &str) -> Option<String> {
    match value.strip_prefix('~') {
        Some(hex) => {
            if !hex.len().is_multiple_of(2) {
                return None;
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            String::from_utf8(bytes).ok()
        }
        None if !value.is_empty() && value.bytes().all(dlr_safe) => Some(value.to_owned()),
        None => None,
    }
}
