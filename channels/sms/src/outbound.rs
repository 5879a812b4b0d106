//! `deliver`: render an outbound event as SMS text, keep it within the part cap, send it
//! (unless the consumer opted out), recording each gateway call's outcome.

use std::time::Duration;

use switchboard_core::{
    AttachmentBody, ChannelContext, ClosedBy, ConsumerAddress, Delivered, DeliveryError, Outbound,
    OutboundEvent, RichContent, SubmitError,
};

use crate::SmsChannel;
use crate::callbacks::{Menu, menu_key};
use crate::encoding;
use crate::gateway::OutgoingSms;
use crate::tracking;

/// The SMS text for an event, or `None` for events SMS does not carry (typing, receipts).
pub fn render(event: &Outbound) -> Option<String> {
    match event {
        Outbound::Text { text } => Some(text.clone()),
        Outbound::Rich { content } => Some(content.to_numbered_text()),
        Outbound::SurveyQuestion { question } => Some(question.to_numbered_text()),
        Outbound::File { file } => {
            let caption = file.caption.as_deref().unwrap_or("").trim();
            let link = match &file.body {
                AttachmentBody::Url { url } => Some(url.as_str()),
                AttachmentBody::Inline { .. } => None,
            };
            Some(match (caption.is_empty(), link) {
                (false, Some(url)) => format!("{caption}\n{url}"),
                (true, Some(url)) => url.to_owned(),
                (false, None) => format!("{caption}\n(a file was sent that SMS cannot show)"),
                (true, None) => "(a file was sent that SMS cannot show)".to_owned(),
            })
        }
        Outbound::Closed { by } => Some(
            match by {
                ClosedBy::Consumer => "You ended the conversation.",
                _ => "The conversation has been closed.",
            }
            .to_owned(),
        ),
        Outbound::Transferred { .. } => {
            Some("You are being transferred to another agent.".to_owned())
        }
        Outbound::ChatState { .. } | Outbound::Receipt { .. } => None,
        _ => None,
    }
}

/// The rich content whose numbered replies a consumer may answer, if the event has any.
fn menu_of(event: &Outbound) -> Option<&RichContent> {
    match event {
        Outbound::Rich { content } | Outbound::SurveyQuestion { question: content } => {
            (!content.reply_buttons().is_empty()).then_some(content)
        }
        _ => None,
    }
}

/// Sends an event: splits the text into pieces within `max_parts` and submits them in order.
///
/// The channel's record of the message ([`tracking`]) is saved before each gateway call: it
/// maps the gateway's delivery reports back to the message, says which pieces already went
/// (a retry resumes after them) and which call is in flight. A call that ends without a known
/// outcome (a timeout, a connection lost after the request went out, a crash) is not repeated
/// blindly: the retry first looks for the gateway's report of that piece, and waits up to
/// `report_wait_secs` ([`Settings::report_wait`](crate::Settings::report_wait)) for
/// one.
///
/// A consumer who opted out (STOP) gets nothing: the event fails permanently, so it shows
/// as a dead letter with the reason. Until the runtime has given the channel its context
/// (`start`) nothing is sent: without it the opt-out cannot be checked.
pub(crate) async fn deliver(
    ch: &SmsChannel,
    to: &ConsumerAddress,
    event: &OutboundEvent,
) -> Result<Delivered, DeliveryError> {
    let Some(text) = render(&event.body) else {
        return Ok(Delivered::default());
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(DeliveryError::permanent("empty text: nothing to send"));
    }
    let Some(ctx) = ch.ctx.get() else {
        return Err(DeliveryError::retry_after(
            "the SMS channel is still starting: the consumer's opt-out cannot be checked yet",
            Duration::from_secs(1),
        ));
    };
    let state = |e: SubmitError| DeliveryError::retryable(format!("channel state: {e}"));
    let number = ch.settings.normalize(&to.id);
    if ch.settings.keywords.enabled && ch.load_opt_out(ctx, &number).await.map_err(state)? {
        return Err(DeliveryError::permanent(
            "not sent: the consumer opted out of SMS (STOP); they must send START first",
        ));
    }
    let gateway = ch.gateway.as_ref();
    let pieces = encoding::split(text, ch.settings.max_parts as usize);
    let reference = tracking::reference(event.id.as_str());
    let mut record = match tracking::load(ctx, &reference).await.map_err(state)? {
        Some(record) if record.message == event.id.as_str() => record,
        _ => tracking::Record {
            message: event.id.as_str().to_owned(),
            consumer: number.clone(),
            done: legacy_progress(ctx, event, pieces.len()).await?,
            sending: None,
        },
    };
    let mut delivered = Delivered::default();
    while record.done < pieces.len() {
        let i = record.done;
        let piece_ref = tracking::piece_ref(&reference, i);
        if let Some(sending) = record.sending.filter(|s| s.piece == i) {
            if tracking::report(ctx, &piece_ref)
                .await
                .map_err(state)?
                .is_some()
            {
                // The gateway reported on the piece: it took it.
                record.done = i + 1;
                record.sending = None;
                continue;
            }
            let waited = crate::unix_now().saturating_sub(sending.at);
            let window = i64::try_from(ch.settings.report_wait.as_secs()).unwrap_or(i64::MAX);
            if gateway.reports() && waited < window {
                tracking::save(ctx, &reference, &record)
                    .await
                    .map_err(state)?;
                return Err(DeliveryError::retry_after(
                    "an SMS gateway call ended without an answer: waiting for the gateway's \
                     report before sending it again",
                    Duration::from_secs(u64::try_from(window - waited).unwrap_or(1)),
                ));
            }
            tracing::info!(
                instance = ctx.instance(),
                message = %event.id.as_str(),
                piece = i,
                "no report of an uncertain SMS gateway call: sending it again"
            );
        }
        record.sending = Some(tracking::Sending {
            piece: i,
            at: crate::unix_now(),
        });
        tracking::save(ctx, &reference, &record)
            .await
            .map_err(state)?;
        let piece = &pieces[i];
        let mt = OutgoingSms {
            to: &number,
            text: piece,
            coding: encoding::coding_for(piece),
            reference: &piece_ref,
            report: true,
        };
        match gateway.send(&mt).await {
            Ok(d) => {
                if delivered.platform_id.is_none() {
                    delivered = d;
                }
                record.done = i + 1;
                record.sending = None;
            }
            Err(e) => {
                if !e.uncertain {
                    // Known not to have been taken: nothing to look for next time.
                    record.sending = None;
                    if let Err(se) = tracking::save(ctx, &reference, &record).await {
                        tracing::warn!(error = %se, "cannot record an SMS send's outcome");
                    }
                }
                return Err(e.error);
            }
        }
    }
    // Every piece went: a repeated delivery of this event (a crash before the runtime
    // recorded it) finds them done and sends nothing.
    if let Err(e) = tracking::save(ctx, &reference, &record).await {
        tracing::warn!(error = %e, "cannot record an SMS send's outcome");
    }
    remember_menu(ctx, &number, event).await;
    Ok(delivered)
}

/// Pieces an earlier release recorded as sent for a long message (`sent:<event id>`), so an
/// event it left half sent resumes after them.
async fn legacy_progress(
    ctx: &ChannelContext,
    event: &OutboundEvent,
    pieces: usize,
) -> Result<usize, DeliveryError> {
    if pieces < 2 {
        return Ok(0);
    }
    let saved = ctx
        .load_state(&format!("sent:{}", event.id))
        .await
        .map_err(|e| DeliveryError::retryable(format!("channel state: {e}")))?;
    Ok(saved
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(pieces))
}

/// Keeps the last rich message with reply buttons per consumer, so that a typed number maps
/// back to a choice; any other message the consumer receives replaces it.
async fn remember_menu(ctx: &ChannelContext, number: &str, event: &OutboundEvent) {
    let value = match menu_of(&event.body) {
        Some(content) => serde_json::to_string(&Menu {
            message: event.id.clone(),
            content: content.clone(),
        })
        .unwrap_or_default(),
        None => String::new(),
    };
    if let Err(e) = ctx.save_state(&menu_key(number), &value).await {
        tracing::warn!(error = %e, "cannot record the last SMS menu");
    }
}
