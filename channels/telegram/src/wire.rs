//! Bot API payloads, named as Telegram names them (only the fields the channel uses; unknown
//! fields are ignored, as new Bot API versions add them all the time).

use serde::{Deserialize, Serialize};

/// One incoming update: at most one of the optional fields is set.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    /// Increasing id; the polling offset and the dedup key.
    pub update_id: i64,
    /// A new message.
    #[serde(default)]
    pub message: Option<Message>,
    /// An edited message (not supported: ignored).
    #[serde(default)]
    pub edited_message: Option<serde_json::Value>,
    /// An inline-keyboard button press.
    #[serde(default)]
    pub callback_query: Option<CallbackQuery>,
}

/// A message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Unique per chat.
    pub message_id: i64,
    /// Unix time.
    #[serde(default)]
    pub date: i64,
    /// The chat it belongs to.
    pub chat: Chat,
    /// The sender (absent in channels).
    #[serde(default)]
    pub from: Option<User>,
    /// Text messages.
    #[serde(default)]
    pub text: Option<String>,
    /// Photos, smallest to largest.
    #[serde(default)]
    pub photo: Option<Vec<PhotoSize>>,
    /// Any other file.
    #[serde(default)]
    pub document: Option<Document>,
    /// Caption of a photo or document.
    #[serde(default)]
    pub caption: Option<String>,
}

/// A chat.
#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    /// Positive for private chats (the user's id), negative for groups.
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// A Telegram user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// The user id (may exceed 32 bits).
    pub id: i64,
    /// Bots are ignored.
    #[serde(default)]
    pub is_bot: bool,
    /// Given name.
    #[serde(default)]
    pub first_name: String,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// `@handle` without the `@`.
    #[serde(default)]
    pub username: Option<String>,
    /// IETF language tag of the user's client.
    #[serde(default)]
    pub language_code: Option<String>,
}

/// One size of a photo.
#[derive(Debug, Clone, Deserialize)]
pub struct PhotoSize {
    /// For `getFile`.
    pub file_id: String,
    /// Pixels.
    #[serde(default)]
    pub width: i64,
    /// Pixels.
    #[serde(default)]
    pub height: i64,
}

/// A general file.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    /// For `getFile`.
    pub file_id: String,
    /// The original name.
    #[serde(default)]
    pub file_name: Option<String>,
    /// As the sender said.
    #[serde(default)]
    pub mime_type: Option<String>,
}

/// A button press on an inline keyboard.
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackQuery {
    /// For `answerCallbackQuery`.
    pub id: String,
    /// Who pressed.
    pub from: User,
    /// The message that carried the keyboard (or an inaccessible stub with `date == 0`).
    #[serde(default)]
    pub message: Option<Message>,
    /// The button's `callback_data`.
    #[serde(default)]
    pub data: Option<String>,
}

/// `getFile`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct File {
    /// Where to download it (`/file/bot<token>/<file_path>`).
    #[serde(default)]
    pub file_path: Option<String>,
}

/// The envelope of every Bot API answer.
#[derive(Debug, Deserialize)]
pub struct ApiResponse<T> {
    /// Success.
    pub ok: bool,
    /// The result on success.
    #[serde(default = "Option::default")]
    pub result: Option<T>,
    /// The HTTP-like code on failure.
    #[serde(default)]
    pub error_code: Option<u16>,
    /// What went wrong.
    #[serde(default)]
    pub description: Option<String>,
    /// Extra hints (`retry_after`).
    #[serde(default)]
    pub parameters: Option<ResponseParameters>,
}

/// `parameters` of an error.
#[derive(Debug, Deserialize)]
pub struct ResponseParameters {
    /// Seconds to wait after a 429.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// The supergroup a group was upgraded to.
    #[serde(default)]
    pub migrate_to_chat_id: Option<i64>,
}

/// An inline keyboard.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InlineKeyboardMarkup {
    /// Rows of buttons.
    pub inline_keyboard: Vec<Vec<InlineKeyboardButton>>,
}

/// One inline button: either sends `callback_data` back or opens `url`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InlineKeyboardButton {
    /// The label.
    pub text: String,
    /// Sent back in a callback query (1–64 bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    /// Opened by the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}
