//! `deliver`: render an outbound event as SMS text, keep it within the part cap, send it.

use switchboard_core::{
    AttachmentBody, ChannelContext, ClosedBy, ConsumerAddress, Delivered, DeliveryError, Outbound,
    OutboundEvent, RichContent,
};

use crate::client::{Mt, SmsGateway};
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
pub(crate) async fn deliver(
    gateway: &dyn SmsGateway,
    ctx: Option<&ChannelContext>,
    max_parts: u32,
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
    let pieces = encoding::split(text, max_parts as usize);
    let progress_key = format!("sent:{}", event.id);
    let mut done = 0usize;
    if pieces.len() > 1
        && let Some(ctx) = ctx
    {
        done = match ctx.load_state(&progress_key).await {
            Ok(v) => v.and_then(|v| v.parse().ok()).unwrap_or(0),
            Err(e) => return Err(DeliveryError::retryable(format!("channel state: {e}"))),
        };
    }
    for (i, piece) in pieces.iter().enumerate().skip(done) {
        let mt = Mt {
            to: &to.id,
            text: piece,
            coding: encoding::coding_for(piece),
            message_id: event.id.as_str(),
        };
        if let Err(e) = gateway.send(&mt).await {
            if i > 0
                && let Some(ctx) = ctx
                && let Err(se) = ctx.save_state(&progress_key, &i.to_string()).await
            {
                tracing::warn!(error = %se, "cannot record SMS split progress");
            }
            return Err(e);
        }
    }
    if let Some(ctx) = ctx {
        if done > 0 {
            // Finished after a resumed retry: forget the progress.
            let _ = ctx.save_state(&progress_key, "0").await;
        }
        remember_menu(ctx, to, event).await;
    }
    Ok(Delivered::default())
}

/// Keeps the last rich message with reply buttons per consumer, so that a typed number maps
/// back to a choice; any other message the consumer receives replaces it.
async fn remember_menu(ctx: &ChannelContext, to: &ConsumerAddress, event: &OutboundEvent) {
    let value = match menu_of(&event.body) {
        Some(content) => serde_json::to_string(&Menu {
            message: event.id.clone(),
            content: content.clone(),
        })
        .unwrap_or_default(),
        None => String::new(),
    };
    if let Err(e) = ctx.save_state(&menu_key(&to.id), &value).await {
        tracing::warn!(error = %e, "cannot record the last SMS menu");
    }
}
