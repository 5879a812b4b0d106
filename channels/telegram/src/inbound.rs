//! Updates from Telegram: the webhook's secret check (before anything is parsed), parsing, and
//! translation into canonical events.

use switchboard_core::http_util::{self, json_error};
use switchboard_core::{
    Attachment, AttachmentBody, ChannelContext, ConsumerProfile, HttpRequest, HttpResponse,
    Inbound, InboundEvent, MessageRef, Secret, http,
};

use crate::carry::{AGENT_MAX_BYTES, Carry, carry, described};
use crate::client::BotClient;
use crate::error::BotApiError;
use crate::wire::{Message, Update, User};

/// The header Telegram carries the webhook's secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

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

/// The `update_id` of a body that is a JSON object with one, even if it is no readable update.
pub fn update_id(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("update_id")?
        .as_i64()
}

/// What an update asks of the channel once its events are stored.
#[derive(Debug, Default)]
pub struct Translated {
    /// The events to submit (none for updates the channel ignores).
    pub events: Vec<InboundEvent>,
    /// A callback query to answer after the submit (clients spin until it is answered).
    pub answer_callback: Option<String>,
    /// A chat to tell, after the submit, that what its consumer sent could not reach the
    /// agent (`not_carried_text`).
    pub tell_consumer: Option<i64>,
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

/// Translates an update. Downloads the images the agent can take (errors are retryable or not
/// as the [`BotApiError`] says) and describes what cannot reach the agent (see `carry`). Group
/// chats, channel posts, edits and other update kinds are ignored.
pub async fn translate(
    update: &Update,
    client: &BotClient,
    ctx: &ChannelContext,
) -> Result<Translated, BotApiError> {
    let platform_id = format!("tg:{}", update.update_id);
    if let Some(message) = &update.message {
        let Some(from) = message.from.as_ref().filter(|u| !u.is_bot) else {
            return Ok(Translated::default());
        };
        if message.chat.kind != "private" {
            return Ok(Translated::default());
        }
        let Some((body, not_carried)) = message_body(message, client).await? else {
            return Ok(Translated::default());
        };
        let event = InboundEvent::new(ctx.consumer(message.chat.id.to_string()), body)
            .with_platform_id(platform_id)
            .with_profile(profile(from))
            .at_ms(message.date.saturating_mul(1000));
        return Ok(Translated {
            events: vec![event],
            answer_callback: None,
            tell_consumer: not_carried.then_some(message.chat.id),
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
            tell_consumer: None,
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

/// The event body of a consumer's message, and whether the consumer must be told that part
/// of it could not reach the agent; `None` for a message that carries nothing for the agent.
async fn message_body(
    message: &Message,
    client: &BotClient,
) -> Result<Option<(Inbound, bool)>, BotApiError> {
    let caption = message.caption.as_deref();
    let not_carried = |what: &str| Some((Inbound::text(described(what, caption)), true));
    Ok(match carry(message) {
        Carry::Nothing => None,
        Carry::Text(text) => Some((Inbound::text(text), false)),
        Carry::NotCarried(what) => not_carried(&what),
        Carry::Image {
            file_id,
            name,
            mime,
        } => match download(client, &file_id).await {
            Ok(data) => Some((
                Inbound::File {
                    file: Attachment {
                        name,
                        mime,
                        caption: message.caption.clone(),
                        body: AttachmentBody::Inline { data },
                    },
                },
                false,
            )),
            Err(e) if e.is_retryable() => return Err(e),
            Err(BotApiError::TooLarge { limit }) => not_carried(&format!(
                "an image over {}",
                crate::carry::size(Some(limit)).unwrap_or_default()
            )),
            Err(e) if e.is_file_too_big() => {
                not_carried("an image over Telegram's 20 MB limit for bots")
            }
            Err(e) => {
                tracing::info!(error = %e, "a consumer's image could not be fetched; telling the agent");
                not_carried("an image that could not be fetched from Telegram")
            }
        },
    })
}

/// Fetches a file the agent can take: `getFile`, then the download, refused past the
/// agent's limit (a `getFile` refusal past Telegram's own 20 MB limit is
/// `Bad Request: file is too big`).
async fn download(
    client: &BotClient,
    file_id: &str,
) -> Result<switchboard_core::Bytes, BotApiError> {
    let file: crate::wire::File = client
        .call("getFile", &serde_json::json!({ "file_id": file_id }), None)
        .await?;
    let path = file.file_path.ok_or_else(|| BotApiError::Refused {
        code: 400,
        description: "getFile gave no file_path".into(),
        retry_after: None,
        migrate_to: None,
    })?;
    client.download(&path, AGENT_MAX_BYTES).await
}

/// The answer for a handled webhook call: 200 with an empty JSON object (an answer body could
/// carry a method call, which this channel never uses).
pub fn ok() -> HttpResponse {
    http_util::json(http::StatusCode::OK, &serde_json::json!({}))
}
