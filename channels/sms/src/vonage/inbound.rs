//! Vonage webhooks: collect the parameters (GET query, POST form or POST JSON, as the
//! dashboard's "webhook format" says), verify the signature, timestamp and nonce, then parse
//! inbound messages and delivery receipts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_core::{ChannelContext, HttpRequest, HttpResponse, http, http_util};

use crate::SmsChannel;
use crate::config::VonageSettings;
use crate::error::InboundError;
use crate::inbound::{
    ConsumerText, Pairs, Reported, accept_text, ok, raw, required, submit_receipt, text_param,
    tracked,
};
use crate::tracking::parse_piece_ref;
use crate::vonage::client::client_ref_key;
use crate::vonage::signature::{self, SignatureError};
use crate::vonage::wire::{
    ConcatPart, DlrStatus, InboundType, VonageDlr, VonageInbound, parse_message_timestamp,
};

/// A webhook's parameters as raw bytes, in the order received.
pub type ParamList = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes `%XX` escapes and `+` of a form-encoded string into bytes; invalid escapes are
/// kept as they are.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(h), Some(l)) = (
                    s.get(i + 1).and_then(|b| hex(*b)),
                    s.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The pairs of an `application/x-www-form-urlencoded` body, as raw bytes.
pub fn form_pairs(body: &[u8]) -> ParamList {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The pairs of a JSON object body: strings as they are, numbers and booleans as their JSON
/// text, `null` as empty. `None` for anything else (not JSON, not an object, nested values):
/// such a body cannot carry a Vonage signature.
pub fn json_pairs(body: &[u8]) -> Option<ParamList> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    map.into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => String::new(),
                _ => return None,
            };
            Some((k.into_bytes(), v.into_bytes()))
        })
        .collect()
}

/// A webhook's parameters: the query of a GET, the form or JSON body of a POST. `None` when
/// the request cannot carry signed parameters (another method or content type, a body that
/// does not parse): it is refused as unauthenticated.
pub fn webhook_params(req: &HttpRequest) -> Option<ParamList> {
    if req.method() == http::Method::GET {
        return Some(http_util::query_pairs_raw(req));
    }
    if req.method() != http::Method::POST {
        return None;
    }
    let content_type = http_util::header_str(req, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/x-www-form-urlencoded" => Some(form_pairs(req.body())),
        "application/json" => json_pairs(req.body()),
        _ => None,
    }
}

/// Verifies a webhook: signature (constant time), timestamp window, and a nonce not seen
/// before (reserved; the caller releases it if the request is not accepted). Returns the
/// parameters and the nonce.
pub(crate) fn authenticate(
    ch: &SmsChannel,
    settings: &VonageSettings,
    req: &HttpRequest,
    now: i64,
) -> Result<(ParamList, String), SignatureError> {
    let params = webhook_params(req).ok_or(SignatureError::Missing)?;
    let nonce = signature::verify(
        settings.signature_method,
        settings.signature_secret.expose(),
        &params,
        now,
    )?;
    if !ch.replay.reserve(&nonce, now) {
        return Err(SignatureError::Replayed);
    }
    Ok((params, nonce))
}

fn number_param(pairs: &Pairs, key: &str, max: u8) -> Result<Option<u8>, InboundError> {
    match text_param(pairs, key, 8)?.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<u8>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .map(Some)
            .ok_or_else(|| InboundError::bad(format!("`{key}` must be a number from 1 to {max}"))),
    }
}

/// Parses an inbound-message webhook's parameters (the signature already checked).
pub fn parse_inbound(pairs: &Pairs) -> Result<VonageInbound, InboundError> {
    let msisdn = required(pairs, "msisdn", 64)?;
    let message_id = required(pairs, "messageId", 128)?;
    let kind = match text_param(pairs, "type", 16)?.as_deref().map(str::trim) {
        None | Some("") | Some("text") => InboundType::Text,
        Some("unicode") => InboundType::Unicode,
        Some("binary") => InboundType::Binary,
        Some(_) => return Err(InboundError::bad("`type` must be text, unicode or binary")),
    };
    let text = match kind {
        InboundType::Binary => String::new(),
        _ => {
            let bytes = raw(pairs, "text").ok_or_else(|| InboundError::bad("`text` is missing"))?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| InboundError::bad("`text` is not valid UTF-8"))?
        }
    };
    let to = text_param(pairs, "to", 64)?.filter(|s| !s.is_empty());
    let keyword = text_param(pairs, "keyword", 200)?.filter(|s| !s.is_empty());
    let message_timestamp_ms = text_param(pairs, "message-timestamp", 32)?
        .as_deref()
        .and_then(parse_message_timestamp);
    let concat = match text_param(pairs, "concat-ref", 32)?.filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(reference) => {
            let total = number_param(pairs, "concat-total", u8::MAX)?
                .ok_or_else(|| InboundError::bad("`concat-total` is missing"))?;
            let part = number_param(pairs, "concat-part", total)?
                .ok_or_else(|| InboundError::bad("`concat-part` is missing"))?;
            Some(ConcatPart {
                reference: reference.trim().to_owned(),
                total,
                part,
            })
        }
    };
    Ok(VonageInbound {
        msisdn,
        to,
        message_id,
        kind,
        text,
        keyword,
        message_timestamp_ms,
        concat,
    })
}

/// Parses a delivery-receipt webhook's parameters (the signature already checked).
pub fn parse_dlr(pairs: &Pairs) -> Result<VonageDlr, InboundError> {
    Ok(VonageDlr {
        msisdn: required(pairs, "msisdn", 64)?,
        status: DlrStatus::parse(&required(pairs, "status", 32)?),
        to: text_param(pairs, "to", 64)?.filter(|s| !s.is_empty()),
        message_id: text_param(pairs, "messageId", 128)?.filter(|s| !s.is_empty()),
        err_code: text_param(pairs, "err-code", 16)?.filter(|s| !s.is_empty()),
        client_ref: text_param(pairs, "client-ref", 64)?
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
    })
}

/// The parts of a long inbound message received so far, kept in the channel state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Assembly {
    /// When the first part arrived (Unix seconds).
    started: i64,
    /// Part number → (text, Vonage's messageId).
    parts: BTreeMap<u8, (String, String)>,
}

/// Parts older than this are dropped when a part of the same reference arrives.
const ASSEMBLY_MAX_AGE_SECS: i64 = 24 * 3600;

/// Stores one part of a long message; returns the whole message once every part is there
/// (its platform id is part 1's `messageId`).
async fn assemble(
    ch: &SmsChannel,
    ctx: &ChannelContext,
    from: &str,
    concat: &ConcatPart,
    text: &str,
    message_id: &str,
    now: i64,
) -> Result<Option<(String, String, String)>, InboundError> {
    let key = format!("concat:{from}:{}:{}", concat.reference, concat.total);
    // One part at a time per process, so that two parts arriving together both count.
    let _guard = ch.concat.lock().await;
    let mut assembly = match ctx.load_state(&key).await.map_err(InboundError::Submit)? {
        Some(v) if !v.is_empty() => serde_json::from_str::<Assembly>(&v).unwrap_or_default(),
        _ => Assembly::default(),
    };
    if assembly.parts.is_empty() || now - assembly.started > ASSEMBLY_MAX_AGE_SECS {
        if !assembly.parts.is_empty() {
            tracing::warn!(
                instance = ctx.instance(),
                parts = assembly.parts.len(),
                "dropping the parts of a long SMS that never completed"
            );
        }
        assembly = Assembly {
            started: now,
            parts: BTreeMap::new(),
        };
    }
    assembly
        .parts
        .insert(concat.part, (text.to_owned(), message_id.to_owned()));
    if assembly.parts.len() < usize::from(concat.total) {
        let value = serde_json::to_string(&assembly).unwrap_or_default();
        ctx.save_state(&key, &value)
            .await
            .map_err(InboundError::Submit)?;
        return Ok(None);
    }
    let whole: String = assembly.parts.values().map(|(t, _)| t.as_str()).collect();
    let first_id = assembly
        .parts
        .values()
        .next()
        .map(|(_, id)| id.clone())
        .unwrap_or_else(|| message_id.to_owned());
    Ok(Some((whole, first_id, key)))
}

/// `/inbound`: one inbound message (or one part of a long one).
pub(crate) async fn handle_inbound(
    ch: &SmsChannel,
    pairs: &Pairs,
    ctx: &ChannelContext,
    now: i64,
) -> Result<HttpResponse, InboundError> {
    let mo = parse_inbound(pairs)?;
    if mo.kind == InboundType::Binary {
        tracing::info!(
            instance = ctx.instance(),
            "ignoring a binary SMS: not supported"
        );
        return Ok(ok());
    }
    let from = ch.settings.normalize(&mo.msisdn);
    let Some(concat) = &mo.concat else {
        let msg = ConsumerText {
            from,
            text: mo.text,
            platform_id: mo.message_id,
            at_ms: mo.message_timestamp_ms,
        };
        return accept_text(ch, ctx, msg).await;
    };
    let Some((text, platform_id, key)) =
        assemble(ch, ctx, &from, concat, &mo.text, &mo.message_id, now).await?
    else {
        return Ok(ok());
    };
    let msg = ConsumerText {
        from,
        text,
        platform_id,
        at_ms: mo.message_timestamp_ms,
    };
    let resp = accept_text(ch, ctx, msg).await?;
    // Stored: the parts can go. If this fails, a late duplicate part finds them complete
    // again and the runtime drops the repeated message by its platform id.
    if let Err(e) = ctx.save_state(&key, "").await {
        tracing::warn!(instance = ctx.instance(), error = %e, "cannot clear a long SMS's parts");
    }
    Ok(resp)
}

/// `/dlr`: one delivery receipt (one per SMS part).
pub(crate) async fn handle_dlr(
    ch: &SmsChannel,
    pairs: &Pairs,
    ctx: &ChannelContext,
) -> Result<HttpResponse, InboundError> {
    let dlr = parse_dlr(pairs)?;
    let Some(reference) = dlr.client_ref.as_deref() else {
        tracing::debug!(
            instance = ctx.instance(),
            status = dlr.status.as_str(),
            "Vonage delivery receipt without client-ref (not one of our messages)"
        );
        return Ok(ok());
    };
    let legacy = |message: String| Reported {
        message,
        consumer: ch.settings.normalize(&dlr.msisdn),
        fresh: true,
    };
    let Reported {
        message,
        consumer,
        fresh,
    } = if let Some((reference, piece)) = parse_piece_ref(reference) {
        match tracked(ctx, reference, piece, dlr.status.as_str()).await? {
            Some(found) => found,
            None => return Ok(ok()),
        }
    } else if reference.starts_with('~') {
        // An earlier release's hashed client-ref.
        match ctx
            .load_state(&client_ref_key(reference))
            .await
            .map_err(InboundError::Submit)?
        {
            Some(id) if !id.is_empty() => legacy(id),
            _ => {
                tracing::info!(
                    instance = ctx.instance(),
                    client_ref = reference,
                    "Vonage delivery receipt for an unknown client-ref"
                );
                return Ok(ok());
            }
        }
    } else {
        // An earlier release's plain client-ref: our message id itself.
        legacy(reference.to_owned())
    };
    match &dlr.status {
        DlrStatus::Delivered if fresh => {
            crate::inbound::count_report(ctx.instance(), "vonage", true);
        }
        DlrStatus::Delivered => {}
        status if status.is_failure() && !fresh => return Ok(ok()),
        status if status.is_failure() => {
            crate::inbound::count_report(ctx.instance(), "vonage", false);
            tracing::warn!(
                instance = ctx.instance(),
                gateway = "vonage",
                outcome = crate::inbound::NOT_DELIVERED,
                message = %message,
                status = status.as_str(),
                err_code = dlr.err_code.as_deref().unwrap_or(""),
                "SMS not delivered"
            );
            return Ok(ok());
        }
        status => {
            tracing::debug!(
                instance = ctx.instance(),
                message = %message,
                status = status.as_str(),
                "SMS delivery report"
            );
            return Ok(ok());
        }
    }
    let key = format!("dlr:{message}:delivered");
    submit_receipt(ctx, &consumer, &message, key).await
}

/// Routes an authenticated request to its endpoint.
pub(crate) async fn handle(
    ch: &SmsChannel,
    endpoint: &str,
    pairs: &Pairs,
    ctx: &ChannelContext,
    now: i64,
) -> Result<HttpResponse, InboundError> {
    if endpoint == "/inbound" {
        handle_inbound(ch, pairs, ctx, now).await
    } else {
        handle_dlr(ch, pairs, ctx).await
    }
}

/// The 401 for a refused signature.
pub(crate) fn refused(e: SignatureError) -> InboundError {
    InboundError::BadSignature(e.to_string())
}
