//! SMS text encoding (docs/protocol/channels.md §3.8): the GSM 03.38 alphabet check, part counting and splitting.
//!
//! HTTP gateways take text and do the septet packing themselves, so this module only decides
//! the coding (GSM-7 when every character is in the basic or extension table, else UCS-2) and
//! counts parts conservatively: an extension character (2 septets) and a UTF-16 surrogate pair
//! never straddle a part boundary, so the count is never below the gateway's.

/// The GSM 03.38 basic table, in code order (0x1B, the escape, is left out: it is not text).
/// 0x09 is `Ç` in 23.038; `ç` is accepted too, as many gateways map it there.
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüàç";

/// The extension table (ESC + code, 2 septets each): form feed, `^ { } \ [ ~ ] |` and `€`.
const EXTENSION: &str = "\u{0c}^{}\\[~]|€";

/// Septets of each ASCII character (0: not in GSM-7), derived from [`BASIC`] and [`EXTENSION`].
static ASCII_SEPTETS: std::sync::LazyLock<[u8; 128]> = std::sync::LazyLock::new(|| {
    let mut table = [0u8; 128];
    for c in BASIC.chars().filter(char::is_ascii) {
        table[c as usize] = 1;
    }
    for c in EXTENSION.chars().filter(char::is_ascii) {
        table[c as usize] = 2;
    }
    table
});

/// How a text goes on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// GSM 7-bit default alphabet (Kannel `coding=0`).
    Gsm7,
    /// UCS-2, in practice UTF-16 (Kannel `coding=2`).
    Ucs2,
}

impl Coding {
    /// Kannel's `coding` value.
    pub fn kannel_value(self) -> u8 {
        match self {
            Coding::Gsm7 => 0,
            Coding::Ucs2 => 2,
        }
    }

    /// Units (septets or UTF-16 code units) in a single, unconcatenated SMS.
    pub fn single_limit(self) -> usize {
        match self {
            Coding::Gsm7 => 160,
            Coding::Ucs2 => 70,
        }
    }

    /// Units per part of a concatenated SMS (8-bit reference UDH).
    pub fn part_limit(self) -> usize {
        match self {
            Coding::Gsm7 => 153,
            Coding::Ucs2 => 67,
        }
    }

    /// The units one character takes in this coding (`None` if GSM-7 cannot carry it).
    pub fn units(self, c: char) -> Option<usize> {
        match self {
            Coding::Gsm7 => gsm7_septets(c),
            Coding::Ucs2 => Some(c.len_utf16()),
        }
    }
}

/// Septets a character takes in GSM-7: 1 in the basic table, 2 in the extension table,
/// `None` when GSM-7 cannot carry it.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if c.is_ascii() {
        // Most texts are ASCII: a table built once from the alphabets answers at once.
        return match ASCII_SEPTETS[c as usize] {
            0 => None,
            n => Some(usize::from(n)),
        };
    }
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// True when every character is in the GSM 03.38 basic or extension table.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm7_septets(c).is_some())
}

/// The coding a text needs.
pub fn coding_for(text: &str) -> Coding {
    if is_gsm7(text) {
        Coding::Gsm7
    } else {
        Coding::Ucs2
    }
}

/// Counts parts incrementally, never splitting a character across parts.
#[derive(Debug, Clone, Copy)]
struct Packer {
    coding: Coding,
    total: usize,
    parts: usize,
    fill: usize,
}

impl Packer {
    fn new(coding: Coding) -> Self {
        Self {
            coding,
            total: 0,
            parts: 0,
            fill: 0,
        }
    }

    fn push(&mut self, c: char) {
        // A character the coding cannot carry is counted at its widest (2 units).
        let u = self.coding.units(c).unwrap_or(2);
        self.total += u;
        if self.parts == 0 || self.fill + u > self.coding.part_limit() {
            self.parts += 1;
            self.fill = u;
        } else {
            self.fill += u;
        }
    }

    fn parts(&self) -> usize {
        if self.total <= self.coding.single_limit() {
            1
        } else {
            self.parts
        }
    }
}

/// The coding and the number of SMS parts a text needs (at least 1).
pub fn parts_needed(text: &str) -> (Coding, usize) {
    let coding = coding_for(text);
    let mut p = Packer::new(coding);
    text.chars().for_each(|c| p.push(c));
    (coding, p.parts())
}

/// Splits a text into pieces that each need at most `max_parts` SMS parts, at whitespace
/// where possible (a single word longer than a piece is cut). A text that fits is returned
/// whole; pieces are trimmed and never empty.
pub fn split(text: &str, max_parts: usize) -> Vec<String> {
    let max_parts = max_parts.max(1);
    let (coding, parts) = parts_needed(text);
    if parts <= max_parts {
        return vec![text.to_owned()];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut packer = Packer::new(coding);
    for c in text.chars() {
        let mut next = packer;
        next.push(c);
        if next.parts() <= max_parts {
            packer = next;
            current.push(c);
            continue;
        }
        // `current` is full: cut at its last whitespace unless that leaves too little.
        let cut = current
            .char_indices()
            .filter(|(_, ch)| ch.is_whitespace())
            .map(|(i, _)| i)
            .next_back()
            .filter(|&i| i >= current.len() / 2);
        let carry = match cut {
            Some(i) => current.split_off(i),
            None => String::new(),
        };
        let piece = current.trim();
        if !piece.is_empty() {
            pieces.push(piece.to_owned());
        }
        current = carry.trim_start().to_owned();
        current.push(c);
        packer = Packer::new(coding);
        current.chars().for_each(|ch| packer.push(ch));
    }
    let piece = current.trim();
    if !piece.is_empty() {
        pieces.push(piece.to_owned());
    }
    pieces
}
