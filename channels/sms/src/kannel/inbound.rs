//! Kannel's callbacks (docs/protocol/channels.md §3.3–3.5): the `token` checked first, in
//! constant time, then the sms-service get-url's consumer messages (`GET /mo`) and the
//! `dlr-url`'s delivery reports (`GET /dlr`).
//!
//! Parameters arrive percent-encoded in the query string; values are handled as bytes until
//! the text is decoded by its `charset` (Kannel sends UCS-2 messages as raw UTF-16BE bytes).

use switchboard_core::{ChannelContext, HttpRequest, HttpResponse, Secret, http, http_util};

use super::config::KannelSettings;
use super::wire::{DLR_REF, DlrStatus, DlrTarget, KannelDlr, KannelMo, dlr_decode};
use crate::SmsChannel;
use crate::callbacks::{
    ConsumerText, NOT_DELIVERED, Reported, accept_text, count_report, ok, raw, required,
    submit_receipt, text_param, tracked,
};
use crate::error::InboundError;
use crate::tracking::parse_piece_ref;

pub use crate::callbacks::Pairs;

/// Kannel's `GET /mo` and `GET /dlr` below the instance's path, the token checked first.
pub(crate) async fn handle(
    ch: &SmsChannel,
    settings: &KannelSettings,
    req: HttpRequest,
    ctx: &ChannelContext,
) -> HttpResponse {
    let path = req.uri().path().trim_end_matches('/');
    let endpoint = match path {
        "/mo" | "/dlr" => path,
        _ => return InboundError::NotFound.to_response(),
    };
    if req.method() != http::Method::GET {
        return InboundError::MethodNotAllowed.to_response();
    }
    let pairs = http_util::query_pairs_raw(&req);
    if let Err(e) = check_token(&pairs, &settings.callback_token) {
        return e.to_response();
    }
    let result = if endpoint == "/mo" {
        handle_mo(ch, &pairs, ctx).await
    } else {
        handle_dlr(ch, &pairs, ctx).await
    };
    result.unwrap_or_else(|e| {
        if !matches!(e, InboundError::Submit(_)) {
            tracing::info!(instance = ctx.instance(), error = %e, "refused an SMS callback");
        }
        e.to_response()
    })
}

/// Checks the `token` parameter in constant time. Runs before anything else is parsed.
pub fn check_token(pairs: &Pairs, token: &Secret) -> Result<(), InboundError> {
    match raw(pairs, "token") {
        Some(presented) if token.matches(presented) => Ok(()),
        _ => Err(InboundError::Unauthorized),
    }
}

/// The characters Windows-1252 has at 0x80–0x9F (where ISO-8859-1 has control codes); `None`
/// for its five unassigned codes.
const CP1252_HIGH: [Option<char>; 32] = [
    Some('€'),
    None,
    Some('‚'),
    Some('ƒ'),
    Some('„'),
    Some('…'),
    Some('†'),
    Some('‡'),
    Some('ˆ'),
    Some('‰'),
    Some('Š'),
    Some('‹'),
    Some('Œ'),
    None,
    Some('Ž'),
    None,
    None,
    Some('‘'),
    Some('’'),
    Some('“'),
    Some('”'),
    Some('•'),
    Some('–'),
    Some('—'),
    Some('˜'),
    Some('™'),
    Some('š'),
    Some('›'),
    Some('œ'),
    None,
    Some('ž'),
    Some('Ÿ'),
];

/// Decodes message bytes by Kannel's `charset` (`%C`): `UTF-8` for GSM-7 messages (what
/// smsbox sends, `gw/urltrans.c`; the user guide says `GSM`, read as UTF-8 too),
/// `UTF-16BE` for UCS-2 ones with `mo-recode = false`, `WINDOWS-1252` for UCS-2 ones smsbox
/// recoded (`mo-recode = true`), and ISO-8859-1.
pub fn decode_text(bytes: &[u8], charset: &str) -> Result<String, InboundError> {
    let cs = charset.trim().to_ascii_uppercase();
    match cs.as_str() {
        "" | "UTF-8" | "UTF8" | "GSM" => String::from_utf8(bytes.to_vec())
            .map_err(|_| InboundError::bad("`text` is not valid UTF-8")),
        "WINDOWS-1252" | "CP1252" => bytes
            .iter()
            .map(|&b| match b {
                0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
                _ => Some(char::from(b)),
            })
            .collect::<Option<String>>()
            .ok_or_else(|| InboundError::bad("`text` is not valid Windows-1252")),
        "UTF-16BE" | "UTF-16" | "UCS-2" | "UCS-2BE" => {
            if !bytes.len().is_multiple_of(2) {
                return Err(InboundError::bad(
                    "`text` has an odd number of UTF-16 bytes",
                ));
            }
            let units = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| InboundError::bad("`text` is not valid UTF-16BE"))
        }
        "ISO-8859-1" | "LATIN1" | "ISO_8859-1" => Ok(bytes.iter().map(|&b| b as char).collect()),
        _ => Err(InboundError::bad("unsupported `charset`")),
    }
}

/// Parses an MO callback's parameters (the token already checked).
pub fn parse_mo(pairs: &Pairs) -> Result<KannelMo, InboundError> {
    let from = required(pairs, "from", 64)?;
    let id = required(pairs, "id", 128)?;
    let to = text_param(pairs, "to", 64)?.filter(|s| !s.is_empty());
    let smsc = text_param(pairs, "smsc", 64)?.filter(|s| !s.is_empty());
    let coding = match text_param(pairs, "coding", 4)?.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(c) => c
            .parse::<u8>()
            .ok()
            .filter(|c| *c <= 2)
            .ok_or_else(|| InboundError::bad("`coding` must be 0, 1 or 2"))?,
    };
    let charset = text_param(pairs, "charset", 32)?.unwrap_or_default();
    let Some(text_bytes) = raw(pairs, "text") else {
        return Err(InboundError::bad("`text` is missing"));
    };
    // 8-bit (binary) messages carry no text; the handler ignores them.
    let text = if coding == 1 {
        String::new()
    } else {
        decode_text(text_bytes, &charset)?
    };
    let ts = text_param(pairs, "ts", 20)?.and_then(|t| t.trim().parse::<i64>().ok());
    let udh = raw(pairs, "udh").map(<[u8]>::to_vec).unwrap_or_default();
    Ok(KannelMo {
        from,
        to,
        text,
        ts,
        id,
        smsc,
        coding,
        udh,
    })
}

/// Parses a DLR callback's parameters (the token already checked): `ref` (our reference),
/// or for reports of messages earlier releases sent, `id` and `c`.
pub fn parse_dlr(pairs: &Pairs) -> Result<KannelDlr, InboundError> {
    let target = match text_param(pairs, DLR_REF, 64)?.filter(|s| !s.is_empty()) {
        Some(value) => {
            let (reference, piece) = parse_piece_ref(value.trim())
                .ok_or_else(|| InboundError::bad("`ref` is malformed"))?;
            DlrTarget::Reference {
                reference: reference.to_owned(),
                piece,
            }
        }
        None => DlrTarget::Legacy {
            id: dlr_decode(&required(pairs, "id", 200)?)
                .ok_or_else(|| InboundError::bad("`id` is malformed"))?,
            consumer: dlr_decode(&required(pairs, "c", 200)?)
                .ok_or_else(|| InboundError::bad("`c` is malformed"))?,
        },
    };
    let status = required(pairs, "status", 10)?
        .parse::<u32>()
        .map(DlrStatus::from_code)
        .map_err(|_| InboundError::bad("`status` must be a number"))?;
    // The SMSC's answer is free text (an SMPP receipt: `id:… stat:UNDELIV err:001 text:…`,
    // whose `text:` quotes the message): only its `stat:` and `err:` are kept, for the log.
    let answer = raw(pairs, "answer")
        .map(|a| receipt_outcome(&String::from_utf8_lossy(a)))
        .filter(|a| !a.is_empty());
    let fid = text_param(pairs, "fid", 128)?.filter(|s| !s.is_empty());
    Ok(KannelDlr {
        target,
        status,
        answer,
        fid,
    })
}

/// The `stat:` and `err:` fields of an SMPP delivery receipt text (SMPP 3.4 Appendix B), the
/// part of Kannel's `%A` that says why a message failed, without the quoted message text.
pub fn receipt_outcome(answer: &str) -> String {
    answer
        .split_whitespace()
        .filter(|w| w.starts_with("stat:") || w.starts_with("err:"))
        .map(|w| w.chars().take(16).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /mo`: one MO message.
async fn handle_mo(
    ch: &SmsChannel,
    pairs: &Pairs,
    ctx: &ChannelContext,
) -> Result<HttpResponse, InboundError> {
    let mo = parse_mo(pairs)?;
    if mo.coding == 1 {
        tracing::info!(
            instance = ctx.instance(),
            "ignoring an 8-bit (binary) SMS: not supported"
        );
        return Ok(ok());
    }
    let msg = ConsumerText {
        from: ch.settings.normalize(&mo.from),
        text: mo.text,
        platform_id: mo.id,
        at_ms: mo.ts.and_then(|s| s.checked_mul(1000)),
    };
    accept_text(ch, ctx, msg).await
}

/// `GET /dlr`: one delivery report event.
async fn handle_dlr(
    ch: &SmsChannel,
    pairs: &Pairs,
    ctx: &ChannelContext,
) -> Result<HttpResponse, InboundError> {
    let dlr = parse_dlr(pairs)?;
    let code = dlr.status.code().to_string();
    let Reported {
        message,
        consumer,
        fresh,
    } = match &dlr.target {
        DlrTarget::Reference { reference, piece } => {
            match tracked(ctx, reference, *piece, &code).await? {
                Some(found) => found,
                None => return Ok(ok()),
            }
        }
        DlrTarget::Legacy { id, consumer } => Reported {
            message: id.clone(),
            consumer: ch.settings.normalize(consumer),
            fresh: true,
        },
    };
    match dlr.status {
        DlrStatus::Delivered if fresh => count_report(ctx.instance(), "kannel", true),
        DlrStatus::Delivered => {}
        DlrStatus::Undelivered | DlrStatus::SmscRejected if !fresh => return Ok(ok()),
        DlrStatus::Undelivered | DlrStatus::SmscRejected => {
            count_report(ctx.instance(), "kannel", false);
            tracing::warn!(
                instance = ctx.instance(),
                gateway = "kannel",
                outcome = NOT_DELIVERED,
                message = %message,
                status = dlr.status.code(),
                answer = dlr.answer.as_deref().unwrap_or(""),
                "SMS not delivered"
            );
            return Ok(ok());
        }
        _ => {
            tracing::debug!(
                instance = ctx.instance(),
                message = %message,
                status = dlr.status.code(),
                "SMS delivery report"
            );
            return Ok(ok());
        }
    }
    let key = format!("dlr:{message}:1");
    submit_receipt(ctx, &consumer, &message, key).await
}
