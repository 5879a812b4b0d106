//! GSM 03.38 table, part counting (docs/protocol/channels.md §3.8) and splitting.

use proptest::prelude::*;
use switchboard_channel_sms::encoding::{Coding, gsm7_septets, is_gsm7, parts_needed, split};

#[test]
fn the_gsm_tables() {
    let basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                 ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    assert_eq!(basic.chars().count(), 127, "128 codes minus ESC");
    assert!(basic.chars().all(|c| gsm7_septets(c) == Some(1)));
    for c in ['^', '{', '}', '\\', '[', '~', ']', '|', '€', '\u{0c}'] {
        assert_eq!(gsm7_septets(c), Some(2), "{c}");
    }
    assert_eq!(gsm7_septets('ç'), Some(1), "accepted as 0x09");
    for c in ['`', '“', '–', '…', 'á', 'П', '👋', '\t', '\u{1b}'] {
        assert_eq!(gsm7_septets(c), None, "{c:?}");
    }
    assert!(is_gsm7("Hello {world} €5"));
    assert!(!is_gsm7("Hello “world”"));
}

#[test]
fn part_counts_at_the_boundaries() {
    assert_eq!(parts_needed(""), (Coding::Gsm7, 1));
    assert_eq!(parts_needed(&"a".repeat(160)), (Coding::Gsm7, 1));
    assert_eq!(parts_needed(&"a".repeat(161)), (Coding::Gsm7, 2));
    assert_eq!(parts_needed(&"a".repeat(306)), (Coding::Gsm7, 2));
    assert_eq!(parts_needed(&"a".repeat(307)), (Coding::Gsm7, 3));
    assert_eq!(
        parts_needed(&"€".repeat(80)),
        (Coding::Gsm7, 1),
        "160 septets"
    );
    assert_eq!(parts_needed(&"€".repeat(81)).1, 2);
    // An escape pair never straddles: 152 + € makes 2 parts of 152 and 2.
    assert_eq!(
        parts_needed(&format!("{}€{}", "a".repeat(152), "a".repeat(152))).1,
        3
    );
    assert_eq!(parts_needed(&"я".repeat(70)), (Coding::Ucs2, 1));
    assert_eq!(parts_needed(&"я".repeat(71)), (Coding::Ucs2, 2));
    assert_eq!(parts_needed(&"я".repeat(134)), (Coding::Ucs2, 2));
    assert_eq!(parts_needed(&"я".repeat(135)), (Coding::Ucs2, 3));
    assert_eq!(
        parts_needed(&"👋".repeat(35)),
        (Coding::Ucs2, 1),
        "70 UTF-16 units"
    );
    // A surrogate pair never straddles: 134 units, yet 3 parts (66, 2 + 65, 1).
    assert_eq!(
        parts_needed(&format!("{}👋{}", "я".repeat(66), "я".repeat(66))).1,
        3
    );
    assert_eq!(Coding::Gsm7.kannel_value(), 0);
    assert_eq!(Coding::Ucs2.kannel_value(), 2);
}

#[test]
fn split_keeps_words_and_fits() {
    assert_eq!(split("short", 1), ["short"]);
    let text = "lorem ipsum dolor ".repeat(30);
    let pieces = split(&text, 1);
    assert!(pieces.len() >= 4);
    assert!(pieces.iter().all(|p| parts_needed(p).1 == 1));
    assert_eq!(pieces.join(" "), text.trim());
    // One long word is cut.
    let word = "x".repeat(500);
    let pieces = split(&word, 1);
    assert_eq!(pieces.concat(), word);
    assert!(pieces.iter().all(|p| p.len() <= 160));
}

proptest! {
    #[test]
    fn split_pieces_fit_and_lose_no_text(text in "\\PC{0,600}", max in 1usize..4) {
        let pieces = split(&text, max);
        for p in &pieces {
            prop_assert!(parts_needed(p).1 <= max, "{p:?}");
            prop_assert!(!p.is_empty() || text.is_empty() || pieces.len() == 1);
        }
        let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        prop_assert_eq!(strip(&pieces.concat()), strip(&text));
    }
}

#[test]
fn every_ascii_character_has_its_gsm7_size() {
    // GSM 03.38: the ASCII characters of the basic table, and those of the extension table.
    let basic = "@$_\n\r !\"#%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let extension = "\u{0c}^{}\\[~]|";
    for byte in 0u8..128 {
        let c = char::from(byte);
        let expected = if basic.contains(c) {
            Some(1)
        } else if extension.contains(c) {
            Some(2)
        } else {
            None
        };
        assert_eq!(gsm7_septets(c), expected, "{c:?}");
    }
    assert_eq!(gsm7_septets('é'), Some(1));
    assert_eq!(gsm7_septets('€'), Some(2));
    assert_eq!(gsm7_septets('ł'), None);
}
