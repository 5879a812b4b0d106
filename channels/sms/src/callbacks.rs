//! What every gateway's callbacks share: reading query parameters as bytes, a consumer's
//! text through keywords, menus and `submit`, the once-only `Delivered` receipt, the lookup
//! of the message a report is for, and the count of final delivery reports. The gateways'
//! own parsing lives in [`crate::kannel::inbound`] and [`crate::vonage::inbound`].

use switchboard_core::{
    ChannelContext, ConsumerProfile, HttpResponse, Inbound, InboundEvent, MessageRef,
    ReceiptStatus, RichContent, http, http_util,
};

use crate::SmsChannel;
use crate::error::InboundError;
use crate::keywords::{Keyword, OptState, help_key, opt_out_key};
use crate::number;
use crate::tracking;

/// Query pairs as raw bytes.
pub type Pairs = [(Vec<u8>, Vec<u8>)];

/// The first value of a parameter.
pub(crate) fn raw<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k.as_slice() == key.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// A parameter that must be printable UTF-8 without control characters.
pub(crate) fn text_param(
    pairs: &Pairs,
    key: &str,
    max: usize,
) -> Result<Option<String>, InboundError> {
    let Some(v) = raw(pairs, key) else {
        return Ok(None);
    };
    let s = std::str::from_utf8(v)
        .map_err(|_| InboundError::bad(format!("`{key}` is not valid UTF-8")))?;
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(InboundError::bad(format!("`{key}` is malformed")));
    }
    Ok(Some(s.to_owned()))
}

pub(crate) fn required(pairs: &Pairs, key: &str, max: usize) -> Result<String, InboundError> {
    match text_param(pairs, key, max)? {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(InboundError::bad(format!("`{key}` is missing"))),
    }
}

/// The state key of the last numbered menu sent to a consumer.
pub(crate) fn menu_key(consumer: &str) -> String {
    format!("menu:{consumer}")
}

/// The last agent message with reply buttons, kept per consumer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Menu {
    pub(crate) message: MessageRef,
    pub(crate) content: RichContent,
}

/// A number typed in answer to a numbered menu ("2", " 2. ").
fn menu_number(text: &str) -> Option<usize> {
    let t = text.trim().trim_end_matches(['.', ')']);
    if t.is_empty() || t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

pub(crate) fn ok() -> HttpResponse {
    http_util::empty(http::StatusCode::OK)
}

/// A consumer's text message, whatever the gateway, ready for keywords, menus and `submit`.
#[derive(Debug)]
pub(crate) struct ConsumerText {
    /// The consumer's number, normalised.
    pub(crate) from: String,
    /// The text.
    pub(crate) text: String,
    /// The gateway's id for it (the runtime's dedup key).
    pub(crate) platform_id: String,
    /// When it was sent, in Unix milliseconds.
    pub(crate) at_ms: Option<i64>,
}

/// Handles a consumer's text: keywords (STOP / START / HELP), the numbered menu, `submit`.
/// The answer is 200 only once everything that must be durable is.
pub(crate) async fn accept_text(
    ch: &SmsChannel,
    ctx: &ChannelContext,
    msg: ConsumerText,
) -> Result<HttpResponse, InboundError> {
    let text = msg.text.trim();
    if text.is_empty() {
        tracing::debug!(instance = ctx.instance(), "ignoring an empty SMS");
        return Ok(ok());
    }
    let keywords = &ch.settings.keywords;
    let keyword = keywords.classify(text);
    let now = crate::unix_now();
    // The message's own time orders keywords: a replayed or late one never undoes a later.
    let at_ms = msg.at_ms.unwrap_or(now.saturating_mul(1000));
    let opt = match keyword {
        Some(Keyword::OptOut | Keyword::OptIn) => ch
            .load_opt_state(ctx, &msg.from)
            .await
            .map_err(InboundError::Submit)?,
        _ => OptState::default(),
    };
    if keyword.is_none() || keywords.forward {
        let mut body = Inbound::text(text);
        if keyword.is_none()
            && let Some(n) = menu_number(text)
        {
            match ctx.load_state(&menu_key(&msg.from)).await {
                Ok(Some(saved)) if !saved.is_empty() => {
                    if let Ok(menu) = serde_json::from_str::<Menu>(&saved)
                        && let Some(button) = menu.content.choice_by_number(n)
                    {
                        body = Inbound::Choice {
                            message: menu.message,
                            choice: button.id.clone(),
                        };
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(InboundError::Submit(e)),
            }
        }
        let mut event =
            InboundEvent::new(ctx.consumer(&msg.from), body).with_platform_id(msg.platform_id);
        if let Some(ms) = msg.at_ms {
            event = event.at_ms(ms);
        }
        if number::is_e164(&msg.from) {
            event = event.with_profile(ConsumerProfile {
                phone: Some(msg.from.clone()),
                ..ConsumerProfile::default()
            });
        }
        ctx.submit(vec![event])
            .await
            .map_err(InboundError::Submit)?;
    }
    // The opt-out state changes after the message is stored (a failed submit changes
    // nothing, and the gateway's retry finds the same state), and the confirmation goes
    // only on a change, so a retry never confirms twice.
    let opt_key = opt_out_key(&msg.from);
    let save_opt = |opted_out: bool| {
        let value = OptState {
            opted_out,
            at_ms: Some(at_ms.max(opt.at_ms.unwrap_or(i64::MIN))),
        }
        .value();
        let key = &opt_key;
        async move {
            ctx.save_state(key, &value)
                .await
                .map_err(InboundError::Submit)
        }
    };
    let reply = match keyword {
        None => None,
        Some(Keyword::OptOut) if !opt.may_change(at_ms) => None,
        Some(Keyword::OptOut) if opt.opted_out => {
            // Already out: only the time moves on, so that an older START stays powerless.
            save_opt(true).await?;
            None
        }
        Some(Keyword::OptOut) => {
            save_opt(true).await?;
            tracing::info!(
                instance = ctx.instance(),
                keyword = "opt_out",
                "an SMS consumer opted out"
            );
            Some(&keywords.opt_out_reply)
        }
        Some(Keyword::OptIn) if opt.opted_out && opt.may_change(at_ms) => {
            save_opt(false).await?;
            tracing::info!(
                instance = ctx.instance(),
                keyword = "opt_in",
                "an SMS consumer opted in again"
            );
            Some(&keywords.opt_in_reply)
        }
        Some(Keyword::Help) => help_due(ch, ctx, &msg.from, now)
            .await
            .then_some(&keywords.help_reply),
        Some(_) => None,
    };
    if let Some(reply) = reply {
        ch.send_reply(ctx, &msg.from, reply).await;
    }
    Ok(ok())
}

/// Whether a help reply may go to `number` now (none in the last `help_interval_secs`), and
/// if so records it: two auto-responders answering each other get one reply per interval.
/// When the record cannot be read or written, no reply goes (the message itself was stored).
async fn help_due(ch: &SmsChannel, ctx: &ChannelContext, number: &str, now: i64) -> bool {
    let interval = i64::try_from(ch.settings.keywords.help_interval_secs).unwrap_or(i64::MAX);
    let key = help_key(number);
    match ctx.load_state(&key).await {
        Ok(Some(last)) if last.parse::<i64>().is_ok_and(|t| now - t < interval) => {
            tracing::debug!(
                instance = ctx.instance(),
                "help reply skipped: sent recently"
            );
            return false;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(instance = ctx.instance(), error = %e, "cannot read the last help reply");
            return false;
        }
    }
    match ctx.save_state(&key, &now.to_string()).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(instance = ctx.instance(), error = %e, "cannot record a help reply");
            false
        }
    }
}

/// Submits one `Delivered` receipt for our message, once per dedup `key` (channel state, and
/// the runtime's platform-id dedup as a second line).
pub(crate) async fn submit_receipt(
    ctx: &ChannelContext,
    consumer: &str,
    message: &str,
    key: String,
) -> Result<HttpResponse, InboundError> {
    match ctx.load_state(&key).await {
        Ok(Some(_)) => return Ok(ok()),
        Ok(None) => {}
        Err(e) => return Err(InboundError::Submit(e)),
    }
    let event = InboundEvent::new(
        ctx.consumer(consumer),
        Inbound::Receipt {
            status: ReceiptStatus::Delivered,
            messages: vec![MessageRef::new(message)],
        },
    )
    .with_platform_id(key.clone());
    ctx.submit(vec![event])
        .await
        .map_err(InboundError::Submit)?;
    if let Err(e) = ctx.save_state(&key, "1").await {
        // The runtime also drops duplicates by platform id; this store is a second line.
        tracing::warn!(instance = ctx.instance(), error = %e, "cannot record a DLR as seen");
    }
    Ok(ok())
}

/// The message a delivery report is for.
#[derive(Debug)]
pub(crate) struct Reported {
    /// Our message id.
    pub(crate) message: String,
    /// The consumer it went to.
    pub(crate) consumer: String,
    /// False when the same report already came for the same piece (a gateway's retry, a
    /// replay, another part of the same text): it is not counted or logged again.
    pub(crate) fresh: bool,
}

/// Our message and its consumer for a report's reference, from the record `deliver` saved.
/// `None` (logged) for a reference we keep no record of: nothing to do but acknowledge.
pub(crate) async fn tracked(
    ctx: &ChannelContext,
    reference: &str,
    piece: usize,
    report: &str,
) -> Result<Option<Reported>, InboundError> {
    let piece_ref = tracking::piece_ref(reference, piece);
    let previous = tracking::report(ctx, &piece_ref)
        .await
        .map_err(InboundError::Submit)?;
    let fresh = previous.as_deref() != Some(report);
    // Recorded first: it is what proves to a retried send that the gateway took the piece.
    if fresh {
        tracking::save_report(ctx, &piece_ref, report)
            .await
            .map_err(InboundError::Submit)?;
    }
    match tracking::load(ctx, reference)
        .await
        .map_err(InboundError::Submit)?
    {
        Some(record) => Ok(Some(Reported {
            message: record.message,
            consumer: record.consumer,
            fresh,
        })),
        None => {
            tracing::info!(
                instance = ctx.instance(),
                reference,
                "delivery report for a message this channel keeps no record of"
            );
            Ok(None)
        }
    }
}

/// The `outcome` field of the warning logged for a delivery report saying an SMS did not
/// reach the handset (stable: alert on it).
pub const NOT_DELIVERED: &str = "sms_not_delivered";

/// The counter of final delivery reports, by channel (instance), gateway and outcome (`delivered`,
/// `not_delivered`), exported on `/metrics`.
pub const DELIVERY_REPORTS: &str = "switchboard_sms_delivery_reports_total";

/// Counts one final delivery report.
pub(crate) fn count_report(instance: &str, gateway: &'static str, delivered: bool) {
    let outcome = if delivered {
        "delivered"
    } else {
        "not_delivered"
    };
    metrics::counter!(
        DELIVERY_REPORTS,
        "channel" => instance.to_owned(),
        "gateway" => gateway,
        "outcome" => outcome
    )
    .increment(1);
}
