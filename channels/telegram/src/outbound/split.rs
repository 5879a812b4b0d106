//! Texts within Telegram's limits: `sendMessage.text` is 1–4096 characters and a caption
//! 0–1024 (Bot API, https://core.telegram.org/bots/api#sendmessage), counted here in UTF-16
//! code units, the unit Telegram's entity offsets use, so that an emoji counts twice.

/// Splits `text` into pieces of at most `max` UTF-16 units, preferring the end of a sentence
/// or line, then a space, and never cutting a character.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while utf16_len(rest) > max {
        // The longest prefix within the limit, on a char boundary.
        let mut units = 0;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > max {
                break;
            }
            units += c.len_utf16();
            end = i + c.len_utf8();
        }
        let window = &rest[..end];
        let cut = window
            .rfind(['\n'])
            .or_else(|| {
                window
                    .rmatch_indices(['.', '!', '?'])
                    .map(|(i, _)| i + 1)
                    .find(|&i| window[i..].starts_with(' '))
            })
            .filter(|&i| i > end / 2)
            .or_else(|| window.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(end);
        let (head, tail) = rest.split_at(cut.max(1).min(rest.len()));
        let head = head.trim_end();
        if !head.is_empty() {
            pieces.push(head.to_owned());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

pub(crate) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

pub(crate) fn truncate_units(s: &str, max: usize) -> String {
    if utf16_len(s) <= max {
        return s.to_owned();
    }
    let mut units = 0;
    let mut out = String::new();
    for c in s.chars() {
        if units + c.len_utf16() > max - 1 {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}
