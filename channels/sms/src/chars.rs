//! Which characters a configured value may carry to where it goes: a URL or kannel.conf
//! (no escaping), an HTTP header (printable ASCII). Both gateways' settings and the shared
//! `from` are checked with these.

/// True for a value we can put into URLs and kannel.conf without escaping (Kannel reads `%`
/// in its URL templates as an escape code).
pub(crate) fn url_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// True for a value that can go into an HTTP header as it is.
pub(crate) fn header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}
