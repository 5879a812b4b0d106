//! Agent events to Telegram: texts (split at 4096 UTF-16 units), inline keyboards, cards as
//! photos with captions, files, typing.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_core::rich::{Button, ButtonAction, Card, RichContent};
use switchboard_core::{
    Attachment, AttachmentBody, ChannelContext, Delivered, DeliveryError, MessageRef, Outbound,
    OutboundEvent,
};

use crate::client::BotClient;
use crate::inbound::callback_key;
use crate::wire::{InlineKeyboardButton, InlineKeyboardMarkup};

/// Longest text of one message, in UTF-16 code units.
pub const MAX_TEXT: usize = 4096;
/// Longest caption, in UTF-16 code units.
pub const MAX_CAPTION: usize = 1024;

/// Splits `text` into pieces of at most `max` UTF-16 units, preferring the end of a sentence
/// or line, then a space, and never cutting a character.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while utf16_len(rest) > max {
        // The longest prefix within the limit, on a char boundary.
        let mut units = 0;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > max {
                break;
            }
            units += c.len_utf16();
            end = i + c.len_utf8();
        }
        let window = &rest[..end];
        let cut = window
            .rfind(['\n'])
            .or_else(|| {
                window
                    .rmatch_indices(['.', '!', '?'])
                    .map(|(i, _)| i + 1)
                    .find(|&i| window[i..].starts_with(' '))
            })
            .filter(|&i| i > end / 2)
            .or_else(|| window.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(end);
        let (head, tail) = rest.split_at(cut.max(1).min(rest.len()));
        let head = head.trim_end();
        if !head.is_empty() {
            pieces.push(head.to_owned());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn truncate_units(s: &str, max: usize) -> String {
    if utf16_len(s) <= max {
        return s.to_owned();
    }
    let mut units = 0;
    let mut out = String::new();
    for c in s.chars() {
        if units + c.len_utf16() > max - 1 {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// The short key a keyboard's callback data carries instead of the (long) message ref.
pub fn ref_key(message: &MessageRef) -> String {
    let digest = Sha256::digest(message.as_str().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Per-chat pacing, so that an agent's burst (or a long text split in parts) does not trip
/// Telegram's flood limit of about one message per second per chat: a burst of up to
/// [`Pacer::BURST`] messages goes at once, then one per [`Pacer::INTERVAL`].
#[derive(Debug, Default)]
pub struct Pacer {
    /// Per chat, when the bucket is next empty ("theoretical arrival time").
    next: std::sync::Mutex<std::collections::HashMap<i64, tokio::time::Instant>>,
}

impl Pacer {
    /// One message per second per chat…
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
    /// …after a burst of three.
    pub const BURST: u32 = 3;

    /// Waits until a message to `chat` may go.
    pub async fn wait(&self, chat: i64) {
        let now = tokio::time::Instant::now();
        let tolerance = Self::INTERVAL * (Self::BURST - 1);
        let start = {
            let mut next = self.next.lock().expect("pacer lock");
            if next.len() > 10_000 {
                next.retain(|_, at| *at > now);
            }
            let tat = next.get(&chat).copied().unwrap_or(now).max(now);
            let start = tat
                .checked_sub(tolerance)
                .filter(|s| *s > now)
                .unwrap_or(now);
            next.insert(chat, tat + Self::INTERVAL);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// Group chats that Telegram upgraded to supergroups (`migrate_to_chat_id`), kept in channel
/// state so that, once one send learnt the new id, every later one (after a restart too) goes
/// straight there instead of failing first.
#[derive(Debug, Default)]
pub(crate) struct Migrations {
    chats: tokio::sync::OnceCell<Mutex<HashMap<i64, i64>>>,
}

/// The channel-state key of [`Migrations`] (a JSON object: old chat id → new chat id).
const MIGRATIONS_KEY: &str = "migrated_chats";

impl Migrations {
    async fn chats(
        &self,
        ctx: &ChannelContext,
    ) -> Result<&Mutex<HashMap<i64, i64>>, DeliveryError> {
        self.chats
            .get_or_try_init(|| async {
                let saved = ctx.load_state(MIGRATIONS_KEY).await.map_err(|e| {
                    DeliveryError::retryable(format!("cannot read the migrated chats: {e}"))
                })?;
                let chats = saved
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default();
                Ok(Mutex::new(chats))
            })
            .await
    }

    /// Where messages for `chat` go now.
    pub(crate) async fn resolve(
        &self,
        ctx: &ChannelContext,
        chat: i64,
    ) -> Result<i64, DeliveryError> {
        let chats = self.chats(ctx).await?.lock().expect("migrations lock");
        let mut to = chat;
        // A chain of upgrades is followed (bounded, in case of a cycle).
        for _ in 0..4 {
            match chats.get(&to) {
                Some(next) => to = *next,
                None => break,
            }
        }
        Ok(to)
    }

    /// Remembers that `from` became `to` (best effort: a lost record costs one failed send).
    async fn record(&self, ctx: &ChannelContext, from: i64, to: i64) {
        let json = match self.chats(ctx).await {
            Ok(chats) => {
                let mut chats = chats.lock().expect("migrations lock");
                chats.insert(from, to);
                serde_json::to_string(&*chats).unwrap_or_default()
            }
            Err(_) => return,
        };
        if let Err(e) = ctx.save_state(MIGRATIONS_KEY, &json).await {
            tracing::warn!(error = %e, "cannot record a migrated Telegram chat");
        }
    }
}

/// Sends agent events for one chat.
#[derive(Debug)]
pub(crate) struct Sender<'a> {
    pub(crate) client: &'a BotClient,
    pub(crate) pacer: &'a Pacer,
    pub(crate) migrations: &'a Migrations,
    pub(crate) ctx: &'a ChannelContext,
    pub(crate) chat_id: i64,
    pub(crate) closed_text: &'a str,
    pub(crate) transferred_text: &'a str,
}

impl Sender<'_> {
    /// Delivers one event (typing is handled by the channel, not here).
    pub(crate) async fn deliver(&self, event: &OutboundEvent) -> Result<Delivered, DeliveryError> {
        match &event.body {
            Outbound::Text { text } => self.text(text, None).await,
            Outbound::Rich { content } | Outbound::SurveyQuestion { question: content } => {
                self.rich(&event.id, content).await
            }
            Outbound::File { file } => self.file(file).await,
            Outbound::Closed { .. } => self.text(self.closed_text, None).await,
            Outbound::Transferred { .. } => self.text(self.transferred_text, None).await,
            // Telegram has no receipts for a bot to show; typing is the channel's job; kinds a
            // later core adds are dropped deliberately until this channel maps them.
            _ => Ok(Delivered::default()),
        }
    }

    async fn send(&self, method: &str, mut params: Value) -> Result<Delivered, DeliveryError> {
        self.pacer.wait(self.chat_id).await;
        let message: Value = match self.client.call(method, &params, None).await {
            Err(e) if e.migrated_to().is_some() => {
                // A group upgraded to a supergroup: follow it, and remember it.
                let to = e.migrated_to().unwrap_or(self.chat_id);
                tracing::info!(
                    "the Telegram chat moved to a supergroup; sending there from now on"
                );
                self.migrations.record(self.ctx, self.chat_id, to).await;
                params["chat_id"] = to.into();
                self.client.call(method, &params, None).await?
            }
            other => other?,
        };
        Ok(message["message_id"]
            .as_i64()
            .map(|id| Delivered::with_id(id.to_string()))
            .unwrap_or_default())
    }

    async fn text(
        &self,
        text: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<Delivered, DeliveryError> {
        let mut pieces = split_text(text, MAX_TEXT);
        if pieces.is_empty() {
            pieces.push("…".into());
        }
        let last = pieces.len() - 1;
        let mut delivered = Delivered::default();
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut params = json!({ "chat_id": self.chat_id, "text": piece });
            if i == last
                && let Some(k) = &keyboard
            {
                params["reply_markup"] = json!(k);
            }
            delivered = self.send("sendMessage", params).await?;
        }
        Ok(delivered)
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
                _ => InlineKeyboardButton {
                    text: button.title.clone(),
                    callback_data: None,
                    url: button.url(),
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

    async fn rich(
        &self,
        id: &MessageRef,
        content: &RichContent,
    ) -> Result<Delivered, DeliveryError> {
        let quick: Vec<&Button> = content.quick_replies.iter().collect();
        if content.cards.is_empty() {
            let keyboard = self.keyboard(id, &quick).await?;
            return self.text(&content.text, keyboard).await;
        }
        let mut delivered = Delivered::default();
        if !content.text.trim().is_empty() && quick.is_empty() {
            delivered = self.text(&content.text, None).await?;
        }
        for card in &content.cards {
            delivered = self.card(id, card).await?;
        }
        if !quick.is_empty() {
            let keyboard = self.keyboard(id, &quick).await?;
            let text = if content.text.trim().is_empty() {
                "…"
            } else {
                &content.text
            };
            delivered = self.text(text, keyboard).await?;
        }
        Ok(delivered)
    }

    async fn card(&self, id: &MessageRef, card: &Card) -> Result<Delivered, DeliveryError> {
        let buttons: Vec<&Button> = card.buttons.iter().collect();
        let keyboard = self.keyboard(id, &buttons).await?;
        let mut lines: Vec<String> = card.title.iter().cloned().collect();
        lines.extend(card.lines.iter().cloned());
        let text = lines.join("\n");
        match &card.image_url {
            Some(url) => {
                let mut params = json!({
                    "chat_id": self.chat_id,
                    "photo": url,
                    "caption": truncate_units(&text, MAX_CAPTION),
                });
                if let Some(k) = keyboard {
                    params["reply_markup"] = json!(k);
                }
                self.send("sendPhoto", params).await
            }
            None => {
                self.text(if text.is_empty() { "…" } else { &text }, keyboard)
                    .await
            }
        }
    }

    async fn file(&self, file: &Attachment) -> Result<Delivered, DeliveryError> {
        let (method, field) = if file.is_image() {
            ("sendPhoto", "photo")
        } else {
            ("sendDocument", "document")
        };
        let caption = file
            .caption
            .as_deref()
            .map(|c| truncate_units(c, MAX_CAPTION));
        match &file.body {
            AttachmentBody::Url { url } => {
                let mut params = json!({ "chat_id": self.chat_id, field: url });
                if let Some(c) = caption {
                    params["caption"] = json!(c);
                }
                self.send(method, params).await
            }
            AttachmentBody::Inline { data } => {
                let mut fields = vec![("chat_id", self.chat_id.to_string())];
                if let Some(c) = caption {
                    fields.push(("caption", c));
                }
                let name = file.name.clone().unwrap_or_else(|| "file".into());
                self.pacer.wait(self.chat_id).await;
                let message: Value = self
                    .client
                    .upload(
                        method,
                        &fields,
                        field,
                        (data.clone(), name, file.mime.clone()),
                    )
                    .await?;
                Ok(message["message_id"]
                    .as_i64()
                    .map(|id| Delivered::with_id(id.to_string()))
                    .unwrap_or_default())
            }
        }
    }
}
