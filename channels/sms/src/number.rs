//! Phone numbers in E.164 form, so that one person is one consumer whatever form the gateway
//! used (`+15551234567`, `0015551234567`, `15551234567`, `(555) 123-4567` with a default country).
//!
//! The rules, applied to the number with spaces, dashes, dots and parentheses removed:
//!
//! - `+` and digits: kept (`+15551234567`);
//! - `00` and digits: the international prefix becomes `+` (`0015551234567` → `+15551234567`);
//! - a national number (a single leading `0`, or for country code 1 ten digits not starting
//!   with 0 or 1) gets the configured default country code (`020 7946 0018` with 44 →
//!   `+442079460018`); without one, a number with a leading `0` is kept as it is;
//! - other digits, 7 or more of them: an international number without its `+`, as Kannel's
//!   `%p` and Vonage's `msisdn` give it (`447700900001` → `+447700900001`);
//! - fewer than 7 digits: a short code, kept as it is (`1000`);
//! - anything else (an alphanumeric sender such as `MyBrand`): the trimmed input, unchanged.
//!
//! [`normalize`] is idempotent: a normalised number normalises to itself.

/// Fewer digits than this is a short code, not a phone number.
pub const SHORT_CODE_MAX_DIGITS: usize = 6;

/// The E.164 form of a number (see the module docs for the rules). `default_country_code` is
/// the calling code without `+` (`"44"`) used for national numbers, when configured.
pub fn normalize(raw: &str, default_country_code: Option<&str>) -> String {
    let trimmed = raw.trim();
    let compact: String = trimmed
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '(' | ')' | '.')))
        .collect();
    let (plus, digits) = match compact.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, compact.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.to_owned();
    }
    if plus || digits.len() <= SHORT_CODE_MAX_DIGITS {
        return compact;
    }
    if let Some(international) = digits.strip_prefix("00") {
        if international.is_empty() || international.starts_with('0') {
            return compact;
        }
        return format!("+{international}");
    }
    if let Some(national) = digits.strip_prefix('0') {
        // A national number: only a default country code can make it international.
        return match default_country_code {
            Some(cc) => format!("+{cc}{national}"),
            None => compact,
        };
    }
    if default_country_code == Some("1") && digits.len() == 10 && !digits.starts_with('1') {
        return format!("+1{digits}");
    }
    format!("+{digits}")
}

/// True for `+` followed by 7 to 15 digits, the first not 0: a number in E.164 form.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|d| {
        (SHORT_CODE_MAX_DIGITS + 1..=15).contains(&d.len())
            && !d.starts_with('0')
            && d.bytes().all(|b| b.is_ascii_digit())
    })
}

/// True for a short code: 1 to 6 digits, no `+`.
pub fn is_short_code(number: &str) -> bool {
    !number.is_empty()
        && number.len() <= SHORT_CODE_MAX_DIGITS
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// A valid default country code: 1 to 3 digits, not starting with 0 (a leading `+` is
/// accepted and dropped).
pub(crate) fn country_code(raw: &str) -> Option<String> {
    let cc = raw.trim().trim_start_matches('+');
    (!cc.is_empty()
        && cc.len() <= 3
        && !cc.starts_with('0')
        && cc.bytes().all(|b| b.is_ascii_digit()))
    .then(|| cc.to_owned())
}
