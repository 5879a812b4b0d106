//! Vonage webhooks: collect the parameters (GET query, POST form or POST JSON, as the
//! dashboard's "webhook format" says), verify the signature, timestamp and nonce, then parse
//! inbound messages and delivery receipts.

use switchboard_core::{
    ChannelContext, HttpRequest, HttpResponse, PartAdded, SubmitError, http, http_util,
};

use super::client::client_ref_key;
use super::config::VonageSettings;
use super::signature::{self, SignatureError};
use super::wire::{
    ConcatPart, DlrStatus, InboundType, VonageDlr, VonageInbound, parse_message_timestamp,
};
use crate::SmsChannel;
use crate::callbacks::{
    ConsumerText, NOT_DELIVERED, Pairs, Reported, accept_text, count_report, ok, raw, required,
    submit_receipt, text_param, tracked,
};
use crate::error::InboundError;
use crate::tracking::parse_piece_ref;

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

/// The name of a long message in the store's parts: the sender, Vonage's `concat-ref` and the
/// number of parts (the consumer's number comes first: the expiry sweep reads it back).
fn concat_group(from: &str, concat: &ConcatPart) -> String {
    format!("{from}:{}:{}", concat.reference, concat.total)
}

/// The text of a long message given up with parts missing: the parts that came, a gap marked
/// where parts are missing, and a notice saying which never arrived.
pub fn partial_text(total: u32, parts: &[(u32, String)]) -> String {
    let mut text = String::new();
    let mut missing = Vec::new();
    for n in 1..=total {
        match parts.iter().find(|(p, _)| *p == n) {
            Some((_, body)) => text.push_str(body),
            None => {
                missing.push(n.to_string());
                if !text.ends_with(" […] ") {
                    text.push_str(" […] ");
                }
            }
        }
    }
    format!(
        "{}\n[This SMS came in {total} parts; part {} never arrived.]",
        text.trim(),
        missing.join(", ")
    )
}

/// Delivers a part that cannot join its message (it came after the message was submitted, or
/// the runtime keeps no parts) on its own, marked, so that nothing Vonage handed us is lost.
async fn accept_lone_part(
    ch: &SmsChannel,
    ctx: &ChannelContext,
    mo: VonageInbound,
    from: String,
    concat: &ConcatPart,
) -> Result<HttpResponse, InboundError> {
    let msg = ConsumerText {
        from,
        text: format!(
            "[part {} of {} of a longer SMS] {}",
            concat.part, concat.total, mo.text
        ),
        platform_id: mo.message_id,
        at_ms: mo.message_timestamp_ms,
    };
    accept_text(ch, ctx, msg).await
}

/// `/inbound`: one inbound message (or one part of a long one).
pub(crate) async fn handle_inbound(
    ch: &SmsChannel,
    settings: &VonageSettings,
    pairs: &Pairs,
    ctx: &ChannelContext,
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
    let Some(concat) = mo.concat.clone() else {
        let msg = ConsumerText {
            from,
            text: mo.text,
            platform_id: mo.message_id,
            at_ms: mo.message_timestamp_ms,
        };
        return accept_text(ch, ctx, msg).await;
    };
    let wait = settings.concat_wait;
    let group = concat_group(&from, &concat);
    let added = ctx
        .add_part(
            &group,
            (
                u32::from(concat.part),
                u32::from(concat.total),
                &mo.message_id,
            ),
            &mo.text,
            wait,
        )
        .await;
    match added {
        Ok(PartAdded::Complete { parts, id }) => {
            let msg = ConsumerText {
                from,
                text: parts.concat(),
                platform_id: id,
                at_ms: mo.message_timestamp_ms,
            };
            let accepted = accept_text(ch, ctx, msg).await;
            // Stored, or not: the claim ends either way (a failure is retried by Vonage, and
            // that retry claims the message again).
            if let Err(e) = ctx.finish_parts(&group, accepted.is_ok()).await {
                tracing::warn!(instance = ctx.instance(), error = %e, "cannot end the claim of a long SMS");
            }
            accepted
        }
        Ok(PartAdded::Waiting) => Ok(ok()),
        Ok(PartAdded::Late) => {
            tracing::info!(
                instance = ctx.instance(),
                part = concat.part,
                total = concat.total,
                "a part of a long SMS came after its message was delivered: delivered on its own"
            );
            accept_lone_part(ch, ctx, mo, from, &concat).await
        }
        Ok(_) => Ok(ok()),
        Err(SubmitError::Rejected(reason)) => {
            // A runtime without message parts: each part goes on its own.
            tracing::debug!(instance = ctx.instance(), %reason, "long SMS parts delivered one by one");
            accept_lone_part(ch, ctx, mo, from, &concat).await
        }
        Err(e) => Err(InboundError::Submit(e)),
    }
}

/// Delivers the long messages whose wait is over with parts missing (claimed for this
/// instance by the store): the parts that came and a notice of the missing ones. Returns how
/// many were delivered.
pub async fn deliver_expired_parts(ch: &SmsChannel, ctx: &ChannelContext) -> usize {
    let expired = match ctx.expired_parts().await {
        Ok(expired) => expired,
        Err(e) => {
            tracing::warn!(instance = ctx.instance(), error = %e, "cannot look for long SMS missing parts");
            return 0;
        }
    };
    let mut delivered = 0;
    for message in expired {
        let from = message
            .group
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        tracing::warn!(
            instance = ctx.instance(),
            outcome = "sms_parts_missing",
            parts = message.parts.len(),
            total = message.total,
            "a long SMS is delivered with parts missing: they never arrived"
        );
        let msg = ConsumerText {
            from,
            text: partial_text(message.total, &message.parts),
            platform_id: message.id.clone(),
            at_ms: None,
        };
        let accepted = accept_text(ch, ctx, msg).await.is_ok();
        delivered += usize::from(accepted);
        if let Err(e) = ctx.finish_parts(&message.group, accepted).await {
            tracing::warn!(instance = ctx.instance(), error = %e, "cannot end the claim of a long SMS");
        }
    }
    delivered
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
            count_report(ctx.instance(), "vonage", true);
        }
        DlrStatus::Delivered => {}
        status if status.is_failure() && !fresh => return Ok(ok()),
        status if status.is_failure() => {
            count_report(ctx.instance(), "vonage", false);
            tracing::warn!(
                instance = ctx.instance(),
                gateway = "vonage",
                outcome = NOT_DELIVERED,
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
    settings: &VonageSettings,
    endpoint: &str,
    pairs: &Pairs,
    ctx: &ChannelContext,
) -> Result<HttpResponse, InboundError> {
    if endpoint == "/inbound" {
        handle_inbound(ch, settings, pairs, ctx).await
    } else {
        handle_dlr(ch, pairs, ctx).await
    }
}

/// The 401 for a refused signature.
pub(crate) fn refused(e: SignatureError) -> InboundError {
    InboundError::BadSignature(e.to_string())
}
