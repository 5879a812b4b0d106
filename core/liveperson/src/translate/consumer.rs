//! A consumer's event to the Send API requests it becomes, in order, without I/O: what the
//! router's to-LivePerson worker runs step by step (recording its progress after each) and what
//! the benchmarks measure.
//!
//! The caller supplies what needs a look-up: the dialog the event goes to (the consumer's
//! conversation, opened first when [`needs`] says so) and, for a button choice, the clicked
//! button's entry of the message's click table.

use bytes::Bytes;
use switchboard_core::{AttachmentBody, ChatState, Inbound, InboundEvent, ReceiptStatus};

use super::files::{MAX_UPLOAD_BYTES, upload_file_type};
use super::message_ref::parse_message_ref;
use crate::engine::{ext_consumer_id, profile_body};
use crate::error::PlanError;
use crate::send_api::{AcceptStatus, DialogRef, SendRequest, split_for_send};
use crate::structured::ClickAction;

/// What an event needs of the consumer's conversation before its requests can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// An open conversation, created if there is none (texts, files, choices).
    Open,
    /// The open conversation if there is one; nothing to do otherwise (chat states, receipts,
    /// close, profile: none of them is worth opening a conversation for).
    IfOpen,
    /// The consumer's latest conversation, open or closed: a CSAT answer goes to the closed
    /// conversation whose survey asked it (docs/protocol/liveperson.md §5.9).
    Latest,
}

/// What `body` needs of the consumer's conversation.
pub fn needs(body: &Inbound) -> Needs {
    match body {
        Inbound::Text { .. } | Inbound::File { .. } | Inbound::Choice { .. } => Needs::Open,
        Inbound::Survey { .. } => Needs::Latest,
        _ => Needs::IfOpen,
    }
}

/// One request of a plan, as the worker runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A SEND request. `remember` is the consumer message's platform id, to be recorded under
    /// the answer's sequence so that the agent's receipts can name it.
    Send {
        /// The request.
        request: SendRequest,
        /// The consumer message's platform id, for texts.
        remember: Option<String>,
    },
    /// A file to upload, then publish (docs/protocol/liveperson.md §5.10).
    Upload(Upload),
}

impl Step {
    /// A SEND request with nothing to remember.
    fn send(request: SendRequest) -> Step {
        Step::Send {
            request,
            remember: None,
        }
    }
}

/// A consumer file LivePerson can host: the bytes go to the upload URL
/// (`ms.GenerateURLForUploadFile`, then a PUT), then a `hosted/file` event publishes them
/// ([`Upload::published`]). When the account has file sharing switched off, the agent gets
/// [`Upload::fallback`] as text instead (docs/protocol/liveperson.md §13).
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    /// Where the file is published.
    pub to: DialogRef,
    /// `JPEG`, `PNG` or `GIF`.
    pub file_type: &'static str,
    /// The file.
    pub bytes: Bytes,
    /// The caption (always sent: the schema requires one).
    pub caption: String,
    /// The text sent instead when file sharing is disabled.
    pub fallback: String,
}

impl Upload {
    /// The `hosted/file` event publishing the file uploaded at `relative_path`.
    pub fn published(self, relative_path: String) -> SendRequest {
        SendRequest::File {
            to: self.to,
            relative_path,
            file_type: self.file_type.to_owned(),
            caption: self.caption,
            preview: None,
        }
    }

    /// The text that tells the agent about the file when the account cannot host it.
    pub fn fallback(self) -> SendRequest {
        SendRequest::Text {
            to: self.to,
            text: self.fallback,
            metadata: None,
        }
    }
}

/// The requests `event` becomes in `target`, in the order they must be made. `clicked` is the
/// clicked button's entry of the message's click table, for an [`Inbound::Choice`] (`None`
/// when the table has no such button); other events ignore it. An event with nothing to send
/// (a blank text, a chat state into a survey, a survey answer without a rating) is an empty
/// plan.
pub fn plan(
    event: &InboundEvent,
    target: &DialogRef,
    clicked: Option<&ClickAction>,
) -> Result<Vec<Step>, PlanError> {
    Ok(match &event.body {
        Inbound::Text { text } if text.trim().is_empty() => Vec::new(),
        Inbound::Text { text } => text_steps(event, target, text),
        Inbound::File { file } => {
            let caption = file
                .caption
                .clone()
                .or_else(|| file.name.clone())
                .unwrap_or_else(|| "file".into());
            match (&file.body, upload_file_type(&file.mime)) {
                (AttachmentBody::Inline { data }, Some(file_type))
                    if data.len() <= MAX_UPLOAD_BYTES =>
                {
                    // No link exists for inline bytes: the agent learns the name and size.
                    let shown: String = caption.chars().take(1000).collect();
                    let fallback = format!(
                        "[The consumer sent a file, but file sharing is disabled on this LivePerson account: {shown} ({}, {} bytes)]",
                        file.mime,
                        data.len()
                    );
                    vec![Step::Upload(Upload {
                        to: target.clone(),
                        file_type,
                        bytes: data.clone(),
                        caption,
                        fallback,
                    })]
                }
                (AttachmentBody::Url { url }, _) => {
                    text_steps(event, target, &format!("{caption}: {url}"))
                }
                // LivePerson takes only JPG/PNG/GIF up to 3 MB from consumers
                // (docs/protocol/liveperson.md §5.10): the agent at least learns that
                // something was sent.
                (AttachmentBody::Inline { data }, _) => text_steps(
                    event,
                    target,
                    &format!(
                        "[The consumer sent a file LivePerson cannot show: {caption} ({}, {} bytes)]",
                        file.mime,
                        data.len()
                    ),
                ),
            }
        }
        // Never into a post-conversation survey: it rejects chat states
        // (docs/protocol/liveperson.md §5.5).
        Inbound::ChatState { .. } if target.is_survey() => Vec::new(),
        Inbound::ChatState { state } => vec![Step::send(SendRequest::ChatState {
            to: target.clone(),
            state: chat_state(*state),
        })],
        Inbound::Receipt { status, messages } => receipts(*status, messages),
        Inbound::Choice { message, choice } => {
            let Some(clicked) = clicked else {
                return Err(PlanError::UnknownButton {
                    message: message.as_str().to_owned(),
                    choice: choice.clone(),
                });
            };
            choice_steps(event, target, message.as_str(), clicked)?
        }
        Inbound::Survey { answer } => match answer.csat {
            // CSATRate needs a 1-5 rating; FCR alone is PARTIALLY_FILLED
            // (docs/protocol/liveperson.md §5.9).
            Some(rate) if (1..=5).contains(&rate) => vec![Step::send(SendRequest::Csat {
                conversation_id: target.conversation_id.clone(),
                rate,
                resolved: answer.resolved.unwrap_or(false),
                status: if answer.resolved.is_some() {
                    "FILLED"
                } else {
                    "PARTIALLY_FILLED"
                },
            })],
            _ => {
                tracing::warn!(
                    "survey answer without a 1-5 rating: LivePerson's CSATRate needs one; not sent"
                );
                Vec::new()
            }
        },
        Inbound::Close => vec![Step::send(SendRequest::Close {
            conversation_id: target.conversation_id.clone(),
            skip_survey: false,
        })],
        Inbound::ProfileUpdate => vec![Step::send(SendRequest::SetProfile {
            body: profile_body(
                event.profile.as_ref(),
                &ext_consumer_id(&event.consumer.instance, &event.consumer.id),
            ),
        })],
        _ => Vec::new(),
    })
}

/// A consumer text as SEND requests, split to fit one request each
/// (docs/protocol/liveperson.md §9), each remembering the consumer message.
fn text_steps(event: &InboundEvent, target: &DialogRef, text: &str) -> Vec<Step> {
    split_for_send(text, target)
        .into_iter()
        .map(|part| Step::Send {
            request: SendRequest::Text {
                to: target.clone(),
                text: part,
                metadata: None,
            },
            remember: event.platform_id.clone(),
        })
        .collect()
}

/// A channel's receipt of agent messages: one `AcceptStatusEvent` per dialog the messages are
/// in, in the order the dialogs first appear (docs/protocol/liveperson.md §5.6). Messages
/// that are not LivePerson agent events are skipped.
fn receipts(status: ReceiptStatus, messages: &[switchboard_core::MessageRef]) -> Vec<Step> {
    let status = match status {
        ReceiptStatus::Delivered => AcceptStatus::Accept,
        ReceiptStatus::Read => AcceptStatus::Read,
    };
    let mut by_dialog: Vec<(DialogRef, Vec<i64>)> = Vec::new();
    for (dialog, sequence) in messages
        .iter()
        .filter_map(|m| parse_message_ref(m.as_str()))
    {
        match by_dialog.iter_mut().find(|(d, _)| *d == dialog) {
            Some((_, sequences)) => sequences.push(sequence),
            None => by_dialog.push((dialog, vec![sequence])),
        }
    }
    by_dialog
        .into_iter()
        .map(|(to, sequences)| {
            Step::send(SendRequest::AcceptStatus {
                to,
                status,
                sequences,
                metadata: None,
            })
        })
        .collect()
}

/// A button click: the `ACTION` receipt on the agent event that carried the button, then its
/// `publishText` text, both with the button's `click.metadata`
/// (docs/protocol/liveperson.md §5.6). The receipt only while that event's conversation is
/// the current one; the text goes to the button's dialog while it is current, to `target`
/// otherwise.
fn choice_steps(
    event: &InboundEvent,
    target: &DialogRef,
    message: &str,
    clicked: &ClickAction,
) -> Result<Vec<Step>, PlanError> {
    let Some((dialog, sequence)) = parse_message_ref(message) else {
        return Err(PlanError::UnknownMessage {
            message: message.to_owned(),
        });
    };
    let current = dialog.conversation_id == target.conversation_id;
    let mut steps = Vec::new();
    if current {
        steps.push(Step::send(SendRequest::AcceptStatus {
            to: dialog.clone(),
            status: AcceptStatus::Action,
            sequences: vec![sequence],
            metadata: clicked.metadata.clone(),
        }));
    }
    if let Some(text) = &clicked.text {
        steps.push(Step::Send {
            request: SendRequest::Text {
                to: if current { dialog } else { target.clone() },
                text: text.clone(),
                metadata: clicked.metadata.clone(),
            },
            remember: event.platform_id.clone(),
        });
    }
    Ok(steps)
}

/// The receipts of agent event `sequence` in `to` once the consumer's channel delivered it:
/// `ACCEPT`, then `READ` when `read` (for channels that cannot report reads,
/// docs/protocol/liveperson.md §5.6 "or immediately if it cannot").
pub fn delivered(to: &DialogRef, sequence: i64, read: bool) -> Vec<SendRequest> {
    let statuses: &[AcceptStatus] = if read {
        &[AcceptStatus::Accept, AcceptStatus::Read]
    } else {
        &[AcceptStatus::Accept]
    };
    statuses
        .iter()
        .map(|&status| SendRequest::AcceptStatus {
            to: to.clone(),
            status,
            sequences: vec![sequence],
            metadata: None,
        })
        .collect()
}

/// A chat state's `chatState` value (docs/protocol/liveperson.md §5.5).
pub fn chat_state(state: ChatState) -> &'static str {
    match state {
        ChatState::Composing => "COMPOSING",
        ChatState::Paused => "PAUSE",
        ChatState::Active => "ACTIVE",
        ChatState::Inactive => "INACTIVE",
        ChatState::Gone => "GONE",
    }
}

#[cfg(test)]
mod tests;
