//! Kannel's HTTP interface as it goes over the wire, named as Kannel names it (docs/protocol/channels.md §3.2–3.4).

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

/// The parameter of our `dlr-url` that carries the gateway call's reference
/// ([`crate::tracking::piece_ref`]).
pub(crate) const DLR_REF: &str = "ref";

/// The Kannel escapes of our `dlr-url`, from the user guide's "Parameters (Escape Codes)"
/// table (Kannel `doc/userguide/userguide.xml`; `gw/urltrans.c`
/// `urltrans_fill_escape_codes`): `%d` the report's type (1, 2, 4, 8, 16), `%A` the SMSC's
/// answer, `%F` the SMSC's (foreign) message id. Kannel URL-encodes each value. Nothing
/// else is needed: the reference maps back to our message and consumer.
pub(crate) const DLR_QUERY_ESCAPES: &str = "status=%d&answer=%A&fid=%F";

/// The longest dlr-url Kannel can store: its SQL DLR storages keep it in a `url
/// varchar(255)` column (Kannel's `doc/examples/dlr-mysql.conf`, `dlr-sdb.conf`,
/// `dlr-oracle.conf`); PostgreSQL refuses a longer one (the DLR is then lost), MySQL cuts it.
pub const DLR_URL_MAX: usize = 255;

/// The length of the dlr-url template Kannel stores for a message, for a callback base and
/// token (the reference is always [`crate::tracking::piece_ref`]-sized: 20 hex digits, a dot
/// and up to 3 digits of piece).
pub fn dlr_url_len(callback_base_url: &str, token: &str) -> usize {
    format!("{callback_base_url}/dlr?token={token}&{DLR_REF}=&{DLR_QUERY_ESCAPES}").len() + 24
}

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

    /// Whether no later report follows for the message part: 1 (delivered), 2 (not
    /// delivered) and 16 (SMSC rejected) are final; 4 (buffered) and 8 (SMSC accepted) are
    /// steps on the way (Kannel `gw/dlr.h` `DLR_IS_NOT_FINAL`; `gw/dlr.c` keeps the DLR
    /// entry after a 4 when 1 or 2 was asked for).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DlrStatus::Delivered | DlrStatus::Undelivered | DlrStatus::SmscRejected
        )
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

/// Which message a delivery report is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlrTarget {
    /// `ref=<reference>.<piece>`: a message we keep a record of.
    Reference {
        /// The message's reference.
        reference: String,
        /// The gateway call (piece) of the message.
        piece: usize,
    },
    /// `id=…&c=…`: the dlr-url of earlier releases (our message id and the consumer in the
    /// URL, often longer than Kannel's SQL storages keep), still read for the reports of
    /// messages they sent.
    Legacy {
        /// Our outbound message id (decoded).
        id: String,
        /// The consumer the message went to (decoded).
        consumer: String,
    },
}

/// A delivery report as our dlr-url delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KannelDlr {
    /// The message it is for.
    pub target: DlrTarget,
    /// The event.
    pub status: DlrStatus,
    /// `%A`: the SMSC's answer (an SMPP receipt's `stat:`/`err:` text), if any.
    pub answer: Option<String>,
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
