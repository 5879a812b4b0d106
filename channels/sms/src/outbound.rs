//! `deliver`: render an outbound event as SMS text, keep it within the part cap, send it
//! (unless the consumer opted out).

use switchboard_core::{
    AttachmentBody, ChannelContext, ClosedBy, ConsumerAddress, Delivered, DeliveryError, Outbound,
    OutboundEvent, RichContent,
};

use crate::SmsChannel;
use crate::client::Mt;
use crate::encoding;
use crate::inbound::{Menu, menu_key};

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
/// When a later piece fails, the pieces already accepted are recorded in the channel state
/// (`sent:<event id>`), so the runtime's retry resumes after them instead of repeating them.
/// A consumer who opted out (STOP) gets nothing: the event fails permanently, so it shows
/// as a dead letter with the reason.
pub(crate) async fn deliver(
    ch: &SmsChannel,
    to: &ConsumerAddress,
    event: &OutboundEvent,
) -> Result<Delivered, DeliveryError> {
    let gateway = ch.gateway.as_ref();
    let ctx = ch.ctx.get();
    let max_parts = ch.settings.max_parts;
    let Some(text) = render(&event.body) else {
        return Ok(Delivered::default());
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(DeliveryError::permanent("empty text: nothing to send"));
    }
    let number = ch.settings.normalize(&to.id);
    if let Some(ctx) = ctx
        && ch.settings.keywords.enabled
    {
        let opted_out = ch
            .load_opt_out(ctx, &number)
            .await
            .map_err(|e| DeliveryError::retryable(format!("channel state: {e}")))?;
        if opted_out {
            return Err(DeliveryError::permanent(
                "not sent: the consumer opted out of SMS (STOP); they must send START first",
            ));
        }
    }
    let pieces = encoding::split(text, max_parts as usize);
    let progress_key = format!("sent:{}", event.id);
    let mut done = 0usize;
    if let Some(ctx) = ctx {
        if pieces.len() > 1 {
            done = match ctx.load_state(&progress_key).await {
                Ok(v) => v.and_then(|v| v.parse().ok()).unwrap_or(0),
                Err(e) => return Err(DeliveryError::retryable(format!("channel state: {e}"))),
            };
        }
        if done == 0 {
            gateway.prepare(ctx, &number, event.id.as_str()).await?;
        }
    }
    let mut delivered = Delivered::default();
    for (i, piece) in pieces.iter().enumerate().skip(done) {
        let mt = Mt {
            to: &number,
            text: piece,
            coding: encoding::coding_for(piece),
            message_id: event.id.as_str(),
            report: true,
        };
        match gateway.send(&mt).await {
            Ok(d) => {
                if delivered.platform_id.is_none() {
                    delivered = d;
                }
            }
            Err(e) => {
                if i > 0
                    && let Some(ctx) = ctx
                    && let Err(se) = ctx.save_state(&progress_key, &i.to_string()).await
                {
                    tracing::warn!(error = %se, "cannot record SMS split progress");
                }
                return Err(e);
            }
        }
    }
    if let Some(ctx) = ctx {
        if done > 0 {
            // Finished after a resumed retry: forget the progress.
            let _ = ctx.save_state(&progress_key, "0").await;
        }
        remember_menu(ctx, &number, event).await;
    }
    Ok(delivered)
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
