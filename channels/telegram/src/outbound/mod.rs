//! Agent events to Telegram: texts (split at 4096 UTF-16 units), inline keyboards, cards as
//! photos with captions, files. Typing is the channel's (see `lib.rs`).
//!
//! An event becomes one or more messages ([`Part`]s), sent in order; each one sent is recorded
//! ([`progress`]) so that a retry resumes after it. What Telegram refuses of a file, rather
//! than of the chat, falls back to something that still reaches the consumer: a card's image
//! or a file by URL that Telegram cannot fetch becomes a text with the link, a photo it cannot
//! take is sent as a document.

mod migrations;
mod pacer;
mod progress;
mod split;

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_core::rich::{Button, ButtonAction, Card, RichContent};
use switchboard_core::{
    Attachment, AttachmentBody, Bytes, ChannelContext, Delivered, DeliveryError, MessageRef,
    Outbound, OutboundEvent,
};

pub(crate) use migrations::Migrations;
pub use pacer::Pacer;
pub use split::split_text;

use crate::client::BotClient;
use crate::error::BotApiError;
use crate::inbound::callback_key;
use crate::wire::{InlineKeyboardButton, InlineKeyboardMarkup};
use progress::Progress;
use split::truncate_units;

/// Longest text of one message, in UTF-16 code units.
pub const MAX_TEXT: usize = 4096;
/// Longest caption, in UTF-16 code units.
pub const MAX_CAPTION: usize = 1024;
/// Largest photo a bot may upload; larger images go as documents (Bot API `sendPhoto`).
pub const MAX_PHOTO_UPLOAD: usize = 10 * 1024 * 1024;
/// Largest file a bot may upload (Bot API `sendDocument`).
pub const MAX_UPLOAD: usize = 50 * 1024 * 1024;

/// The short key a keyboard's callback data carries instead of the (long) message ref.
pub fn ref_key(message: &MessageRef) -> String {
    let digest = Sha256::digest(message.as_str().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// One Telegram message of an agent event.
#[derive(Debug)]
enum Part<'a> {
    /// A text (one piece of a split text), with the buttons of its inline keyboard.
    Text {
        text: String,
        buttons: Vec<&'a Button>,
    },
    /// A card: a photo with a caption and buttons, or a text without an image.
    Card(&'a Card),
    /// A file.
    File(&'a Attachment),
}

/// The messages of `text`: its pieces, the keyboard on the last one.
fn text_parts<'a>(text: &str, buttons: Vec<&'a Button>) -> Vec<Part<'a>> {
    let mut pieces = split_text(text, MAX_TEXT);
    if pieces.is_empty() {
        // Telegram refuses an empty text; a keyboard needs a message to hang on.
        pieces.push("…".into());
    }
    let last = pieces.len() - 1;
    let mut buttons = Some(buttons);
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, text)| Part::Text {
            text,
            buttons: if i == last {
                buttons.take().unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect()
}

fn rich_parts(content: &RichContent) -> Vec<Part<'_>> {
    let quick: Vec<&Button> = content.quick_replies.iter().collect();
    if content.cards.is_empty() {
        return text_parts(&content.text, quick);
    }
    let mut parts = Vec::new();
    if !content.text.trim().is_empty() && quick.is_empty() {
        parts.extend(text_parts(&content.text, Vec::new()));
    }
    parts.extend(content.cards.iter().map(Part::Card));
    if !quick.is_empty() {
        parts.extend(text_parts(&content.text, quick));
    }
    parts
}

/// The text of a card: its title and lines.
fn card_text(card: &Card) -> String {
    let mut lines: Vec<String> = card.title.iter().cloned().collect();
    lines.extend(card.lines.iter().cloned());
    lines.join("\n")
}

/// A URL an inline button may open: `http(s)` with a host, or `tg:` (Bot API
/// `InlineKeyboardButton.url`: "HTTP or tg:// URL to be opened when the button is pressed").
fn opens_in_telegram(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| match u.scheme() {
        "http" | "https" => u.host_str().is_some_and(|h| !h.is_empty()),
        "tg" => true,
        _ => false,
    })
}

/// A text that stands for what could not be sent: the text, then the link.
fn with_link(text: &str, url: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        url.to_owned()
    } else {
        format!(
            "{}\n{url}",
            truncate_units(text, MAX_TEXT.saturating_sub(url.len() + 1).max(1))
        )
    }
}

/// A call's body: JSON, or multipart with a file.
#[derive(Debug)]
enum Payload {
    Json(Value),
    Upload {
        fields: Vec<(&'static str, String)>,
        field: &'static str,
        file: (Bytes, String, String),
    },
}

/// Sends agent events for one chat.
#[derive(Debug)]
pub(crate) struct Sender<'a> {
    pub(crate) client: &'a BotClient,
    pub(crate) pacer: &'a Pacer,
    pub(crate) migrations: &'a Migrations,
    pub(crate) ctx: &'a ChannelContext,
    /// The consumer's chat, as addressed (the key of the event's progress).
    pub(crate) consumer: i64,
    /// Where messages go now (a migrated group's supergroup, once known).
    pub(crate) chat_id: AtomicI64,
    pub(crate) closed_text: &'a str,
    pub(crate) transferred_text: &'a str,
}

impl Sender<'_> {
    /// Delivers one event (typing is handled by the channel, not here), skipping the messages
    /// an earlier attempt of the same event sent.
    pub(crate) async fn deliver(&self, event: &OutboundEvent) -> Result<Delivered, DeliveryError> {
        let parts = match &event.body {
            Outbound::Text { text } => text_parts(text, Vec::new()),
            Outbound::Rich { content } | Outbound::SurveyQuestion { question: content } => {
                rich_parts(content)
            }
            Outbound::File { file } => vec![Part::File(file)],
            Outbound::Closed { .. } => text_parts(self.closed_text, Vec::new()),
            Outbound::Transferred { .. } => text_parts(self.transferred_text, Vec::new()),
            // Telegram has no receipts for a bot to show; typing is the channel's job; kinds a
            // later core adds are dropped deliberately until this channel maps them.
            _ => Vec::new(),
        };
        if parts.is_empty() {
            return Ok(Delivered::default());
        }
        let mut progress = Progress::load(self.ctx, self.consumer, event.id.as_str()).await?;
        if progress.sent() > 0 {
            tracing::info!(
                already_sent = progress.sent(),
                of = parts.len(),
                "resuming a Telegram delivery after the messages that went"
            );
        }
        for part in parts.iter().skip(progress.sent()) {
            let message_id = self.part(&event.id, part).await?;
            progress.record(self.ctx, self.consumer, message_id).await;
        }
        Ok(progress.delivered())
    }

    async fn part(
        &self,
        event: &MessageRef,
        part: &Part<'_>,
    ) -> Result<Option<i64>, DeliveryError> {
        match part {
            Part::Text { text, buttons } => {
                let keyboard = self.keyboard(event, buttons).await?;
                Ok(self.text(text, keyboard).await?)
            }
            Part::Card(card) => self.card(event, card).await,
            Part::File(file) => self.file(file).await,
        }
    }

    /// Calls a send method for the chat (paced, following a migrated group), and returns the
    /// sent message's id.
    async fn send(&self, method: &str, payload: Payload) -> Result<Option<i64>, BotApiError> {
        self.pacer.wait(self.chat_id.load(Ordering::Relaxed)).await;
        match self.call(method, &payload).await {
            Err(e) if e.migrated_to().is_some() => {
                // A group upgraded to a supergroup: follow it, and remember it.
                let to = e.migrated_to().unwrap_or_default();
                tracing::info!(
                    "the Telegram chat moved to a supergroup; sending there from now on"
                );
                self.migrations
                    .record(self.ctx, self.chat_id.load(Ordering::Relaxed), to)
                    .await;
                self.chat_id.store(to, Ordering::Relaxed);
                self.call(method, &payload).await
            }
            other => other,
        }
    }

    async fn call(&self, method: &str, payload: &Payload) -> Result<Option<i64>, BotApiError> {
        let chat = self.chat_id.load(Ordering::Relaxed);
        let message: Value = match payload {
            Payload::Json(params) => {
                let mut params = params.clone();
                params["chat_id"] = chat.into();
                self.client.call(method, &params, None).await?
            }
            Payload::Upload {
                fields,
                field,
                file,
            } => {
                let mut fields = fields.clone();
                fields.push(("chat_id", chat.to_string()));
                self.client
                    .upload(method, &fields, field, file.clone())
                    .await?
            }
        };
        Ok(message["message_id"].as_i64())
    }

    async fn text(
        &self,
        text: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<Option<i64>, BotApiError> {
        let mut params = json!({ "text": text });
        if let Some(k) = keyboard {
            params["reply_markup"] = json!(k);
        }
        self.send("sendMessage", Payload::Json(params)).await
    }

    async fn keyboard(
        &self,
        message: &MessageRef,
        buttons: &[&Button],
    ) -> Result<Option<InlineKeyboardMarkup>, DeliveryError> {
        if buttons.is_empty() {
            return Ok(None);
        }
        let key = ref_key(message);
        let mut rows = Vec::new();
        for button in buttons {
            let row = match &button.action {
                ButtonAction::Reply => {
                    let data = format!("c:{key}:{}", button.id);
                    if data.len() > 64 {
                        continue;
                    }
                    InlineKeyboardButton {
                        text: button.title.clone(),
                        callback_data: Some(data),
                        url: None,
                    }
                }
                _ => match button.url().filter(|u| opens_in_telegram(u)) {
                    Some(url) => InlineKeyboardButton {
                        text: button.title.clone(),
                        callback_data: None,
                        url: Some(url),
                    },
                    None => {
                        // Telegram would refuse the whole message (BUTTON_URL_INVALID).
                        tracing::info!(
                            button = %button.title,
                            "left out a link button whose address Telegram cannot open"
                        );
                        continue;
                    }
                },
            };
            rows.push(vec![row]);
        }
        if buttons
            .iter()
            .any(|b| matches!(b.action, ButtonAction::Reply))
        {
            self.ctx
                .save_state(&callback_key(&key), message.as_str())
                .await
                .map_err(|e| DeliveryError::retryable(format!("cannot keep the keyboard: {e}")))?;
        }
        Ok(Some(InlineKeyboardMarkup {
            inline_keyboard: rows,
        }))
    }

    /// A card: its image with the text as caption; if Telegram cannot fetch or take the
    /// image, the text with the image's link.
    async fn card(&self, event: &MessageRef, card: &Card) -> Result<Option<i64>, DeliveryError> {
        let buttons: Vec<&Button> = card.buttons.iter().collect();
        let keyboard = self.keyboard(event, &buttons).await?;
        let text = card_text(card);
        let Some(url) = &card.image_url else {
            let text = if text.trim().is_empty() { "…" } else { &text };
            return Ok(self.text(&truncate_units(text, MAX_TEXT), keyboard).await?);
        };
        let mut params = json!({ "photo": url, "caption": truncate_units(&text, MAX_CAPTION) });
        if let Some(k) = &keyboard {
            params["reply_markup"] = json!(k);
        }
        match self.send("sendPhoto", Payload::Json(params)).await {
            Err(e) if e.is_media_refusal() => {
                tracing::info!(error = %e, "Telegram refused a card's image; sending its text with the link");
                Ok(self.text(&with_link(&text, url), keyboard).await?)
            }
            other => Ok(other?),
        }
    }

    async fn file(&self, file: &Attachment) -> Result<Option<i64>, DeliveryError> {
        let caption = file
            .caption
            .as_deref()
            .map(|c| truncate_units(c, MAX_CAPTION));
        match &file.body {
            AttachmentBody::Url { url } => {
                let (method, field) = if file.is_image() {
                    ("sendPhoto", "photo")
                } else {
                    ("sendDocument", "document")
                };
                let mut params = json!({ field: url });
                if let Some(c) = &caption {
                    params["caption"] = json!(c);
                }
                match self.send(method, Payload::Json(params)).await {
                    Err(e) if e.is_media_refusal() => {
                        // Telegram fetches by URL only what it can (photos up to 5 MB,
                        // documents only as GIF, PDF or ZIP up to 20 MB: Bot API, "Sending
                        // files"); the link still reaches the consumer.
                        tracing::info!(error = %e, "Telegram could not send a file by its URL; sending the link");
                        let label = file
                            .caption
                            .as_deref()
                            .or(file.name.as_deref())
                            .unwrap_or("");
                        Ok(self.text(&with_link(label, url), None).await?)
                    }
                    other => Ok(other?),
                }
            }
            AttachmentBody::Inline { data } => {
                if data.len() > MAX_UPLOAD {
                    return Err(DeliveryError::permanent(format!(
                        "the file is {} bytes, over the 50 MB Telegram lets bots upload",
                        data.len()
                    )));
                }
                let mut fields = Vec::new();
                if let Some(c) = caption {
                    fields.push(("caption", c));
                }
                let name = file.name.clone().unwrap_or_else(|| "file".into());
                let upload = |field| Payload::Upload {
                    fields: fields.clone(),
                    field,
                    file: (data.clone(), name.clone(), file.mime.clone()),
                };
                if file.is_image() && data.len() <= MAX_PHOTO_UPLOAD {
                    match self.send("sendPhoto", upload("photo")).await {
                        Err(e) if e.is_media_refusal() => {
                            // Too large in pixels, an odd ratio, a format Telegram cannot
                            // read as a photo: a document carries it as it is.
                            tracing::info!(error = %e, "Telegram refused an image as a photo; sending it as a document");
                        }
                        other => return Ok(other?),
                    }
                }
                Ok(self.send("sendDocument", upload("document")).await?)
            }
        }
    }
}
