//! Updates from Telegram: the webhook's secret check (before anything is parsed), parsing, and
//! translation into canonical events.

use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Attachment, AttachmentBody, ChannelContext, ConsumerProfile, HttpRequest, HttpResponse,
    Inbound, InboundEvent, MessageRef, Secret, http,
};

use crate::client::BotClient;
use crate::error::ApiError;
use crate::wire::{Message, Update, User};

/// The header Telegram carries the webhook's secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// Bots may download files up to 20 MB.
pub const MAX_DOWNLOAD_BYTES: usize = 20 * 1024 * 1024;

/// Checks the secret token in constant time; `Err` is the 401 to answer.
pub fn check_secret(req: &HttpRequest, secret: &Secret) -> Result<(), Box<HttpResponse>> {
    let presented = req
        .headers()
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if secret.matches(presented) {
        Ok(())
    } else {
        Err(Box::new(json_error(
            http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        )))
    }
}

/// Parses one update (unknown fields and update kinds are accepted and ignored later).
pub fn parse_update(body: &[u8]) -> Result<Update, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a Telegram update: {e}"))
}

/// What an update asks of the channel once its events are stored.
#[derive(Debug, Default)]
pub struct Translated {
    /// The events to submit (none for updates the channel ignores).
    pub events: Vec<InboundEvent>,
    /// A callback query to answer after the submit (clients spin until it is answered).
    pub answer_callback: Option<String>,
}

/// The profile LivePerson shows the agent.
pub fn profile(user: &User) -> ConsumerProfile {
    ConsumerProfile {
        first_name: Some(user.first_name.clone()).filter(|s| !s.is_empty()),
        last_name: user.last_name.clone(),
        username: user.username.clone(),
        language: user.language_code.clone(),
        platform_user_id: Some(user.id.to_string()),
        ..ConsumerProfile::default()
    }
}

/// The state key under which a keyboard's message ref is kept (see `outbound`).
pub(crate) fn callback_key(key: &str) -> String {
    format!("cb:{key}")
}

/// Translates an update. Downloads photos and documents (errors are retryable or not as the
/// [`ApiError`] says). Group chats, channel posts, edits and other update kinds are ignored.
pub async fn translate(
    update: &Update,
    client: &BotClient,
    ctx: &ChannelContext,
) -> Result<Translated, ApiError> {
    let platform_id = format!("tg:{}", update.update_id);
    if let Some(message) = &update.message {
        let Some(from) = message.from.as_ref().filter(|u| !u.is_bot) else {
            return Ok(Translated::default());
        };
        if message.chat.kind != "private" {
            return Ok(Translated::default());
        }
        let Some(body) = message_body(message, client).await? else {
            return Ok(Translated::default());
        };
        let event = InboundEvent::new(ctx.consumer(message.chat.id.to_string()), body)
            .with_platform_id(platform_id)
            .with_profile(profile(from))
            .at_ms(message.date.saturating_mul(1000));
        return Ok(Translated {
            events: vec![event],
            answer_callback: None,
        });
    }
    if let Some(query) = &update.callback_query {
        let chat = query
            .message
            .as_ref()
            .map(|m| m.chat.id)
            .unwrap_or(query.from.id);
        let choice = match query.data.as_deref().and_then(parse_callback_data) {
            Some((key, button)) => {
                ctx.load_state(&callback_key(key))
                    .await
                    .ok()
                    .flatten()
                    .map(|message| Inbound::Choice {
                        message: MessageRef::new(message),
                        choice: button.to_owned(),
                    })
            }
            None => None,
        };
        let events = choice
            .map(|body| {
                vec![
                    InboundEvent::new(ctx.consumer(chat.to_string()), body)
                        .with_platform_id(platform_id)
                        .with_profile(profile(&query.from)),
                ]
            })
            .unwrap_or_default();
        return Ok(Translated {
            events,
            answer_callback: Some(query.id.clone()),
        });
    }
    Ok(Translated::default())
}

/// `c:<key>:<button id>`, as `outbound` writes it.
pub fn parse_callback_data(data: &str) -> Option<(&str, &str)> {
    let rest = data.strip_prefix("c:")?;
    let (key, button) = rest.split_once(':')?;
    (!key.is_empty() && !button.is_empty()).then_some((key, button))
}

async fn message_body(message: &Message, client: &BotClient) -> Result<Option<Inbound>, ApiError> {
    if let Some(text) = &message.text {
        // `/start` (with or without a deep-link payload) is a message like any other: it
        // opens the conversation and the agent sees it.
        return Ok(Some(Inbound::text(text.clone())));
    }
    let (file_id, name, mime) = if let Some(largest) = message
        .photo
        .as_ref()
        .and_then(|sizes| sizes.iter().max_by_key(|p| p.width * p.height))
    {
        (largest.file_id.clone(), None, "image/jpeg".to_owned())
    } else if let Some(doc) = &message.document {
        (
            doc.file_id.clone(),
            doc.file_name.clone(),
            doc.mime_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        )
    } else {
        // Stickers, voice, locations, contacts…: not forwarded (see the README).
        return Ok(None);
    };
    let data = match download(client, &file_id).await {
        Ok(data) => data,
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => {
            tracing::info!(error = %e, "a consumer's file could not be fetched; telling the agent");
            let caption = message.caption.clone().unwrap_or_default();
            return Ok(Some(Inbound::text(
                format!("[the consumer sent a file that could not be fetched] {caption}")
                    .trim_end()
                    .to_owned(),
            )));
        }
    };
    Ok(Some(Inbound::File {
        file: Attachment {
            name,
            mime,
            caption: message.caption.clone(),
            body: AttachmentBody::Inline { data },
        },
    }))
}

async fn download(client: &BotClient, file_id: &str) -> Result<switchboard_core::Bytes, ApiError> {
    let file: crate::wire::File = client
        .call("getFile", &serde_json::json!({ "file_id": file_id }), None)
        .await?;
    let path = file.file_path.ok_or_else(|| ApiError::Refused {
        code: 400,
        description: "getFile gave no file_path (file too big?)".into(),
        retry_after: None,
        migrate_to: None,
    })?;
    client.download(&path, MAX_DOWNLOAD_BYTES).await
}

/// The answer for a handled webhook call: 200 with an empty JSON object (an answer body could
/// carry a method call, which this channel never uses).
pub fn ok() -> HttpResponse {
    http_util::json(http::StatusCode::OK, &serde_json::json!({}))
}
