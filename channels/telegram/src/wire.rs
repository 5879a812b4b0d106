//! Bot API payloads, named as Telegram names them (only the fields the channel uses; unknown
//! fields are ignored, as new Bot API versions add them all the time).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// A message field whose shape a later Bot API version may change: an unreadable value still
/// tells that the field is there (the consumer sent a location, say), instead of making the
/// whole update unreadable.
#[derive(Debug, Clone)]
pub enum Lenient<T> {
    /// As documented.
    Parsed(T),
    /// Present, in a shape the channel does not know.
    Unreadable,
}

impl<T> Lenient<T> {
    /// The parsed value, if it parsed.
    pub fn parsed(&self) -> Option<&T> {
        match self {
            Lenient::Parsed(v) => Some(v),
            Lenient::Unreadable => None,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(serde_json::from_value(value)
            .map(Lenient::Parsed)
            .unwrap_or(Lenient::Unreadable))
    }
}

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
    /// Caption of a photo, document, audio, video, animation or voice message.
    #[serde(default)]
    pub caption: Option<String>,
    /// A voice message (OGG/Opus as recorded by the client).
    #[serde(default)]
    pub voice: Option<Lenient<Media>>,
    /// A music or other audio file.
    #[serde(default)]
    pub audio: Option<Lenient<Media>>,
    /// A video.
    #[serde(default)]
    pub video: Option<Lenient<Media>>,
    /// A round video message.
    #[serde(default)]
    pub video_note: Option<Lenient<Media>>,
    /// A GIF or soundless video (Telegram converts GIFs to MP4); `document` is set too.
    #[serde(default)]
    pub animation: Option<Lenient<Media>>,
    /// A sticker.
    #[serde(default)]
    pub sticker: Option<Lenient<Sticker>>,
    /// A shared location (a venue sets it too).
    #[serde(default)]
    pub location: Option<Lenient<Location>>,
    /// A place with a name and an address.
    #[serde(default)]
    pub venue: Option<Lenient<Venue>>,
    /// A shared contact.
    #[serde(default)]
    pub contact: Option<Lenient<Contact>>,
    /// A dice, darts, ball… with its random value.
    #[serde(default)]
    pub dice: Option<Lenient<Dice>>,
    /// A poll.
    #[serde(default)]
    pub poll: Option<Lenient<Poll>>,
    /// A game.
    #[serde(default)]
    pub game: Option<serde_json::Value>,
    /// A forwarded story.
    #[serde(default)]
    pub story: Option<serde_json::Value>,
    /// Paid media.
    #[serde(default)]
    pub paid_media: Option<serde_json::Value>,
    /// An invoice.
    #[serde(default)]
    pub invoice: Option<serde_json::Value>,
    /// A checklist.
    #[serde(default)]
    pub checklist: Option<serde_json::Value>,
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
    /// Bytes, when Telegram says.
    #[serde(default)]
    pub file_size: Option<u64>,
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
    /// Bytes, when Telegram says.
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// A voice message, audio file, video, video note or animation: the fields the channel uses
/// of Telegram's `Voice`, `Audio`, `Video`, `VideoNote` and `Animation`.
#[derive(Debug, Clone, Deserialize)]
pub struct Media {
    /// For `getFile`.
    pub file_id: String,
    /// Seconds.
    #[serde(default)]
    pub duration: u64,
    /// As the sender said.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Bytes, when Telegram says.
    #[serde(default)]
    pub file_size: Option<u64>,
    /// The original name (audio, video, animation).
    #[serde(default)]
    pub file_name: Option<String>,
    /// Pixels (video, animation).
    #[serde(default)]
    pub width: Option<u64>,
    /// Pixels (video, animation).
    #[serde(default)]
    pub height: Option<u64>,
    /// The performer (audio).
    #[serde(default)]
    pub performer: Option<String>,
    /// The title (audio).
    #[serde(default)]
    pub title: Option<String>,
}

/// A sticker: a WEBP image, a TGS animation or a WEBM video.
#[derive(Debug, Clone, Deserialize)]
pub struct Sticker {
    /// The emoji it stands for.
    #[serde(default)]
    pub emoji: Option<String>,
    /// The set it belongs to.
    #[serde(default)]
    pub set_name: Option<String>,
}

/// A point on the map.
#[derive(Debug, Clone, Deserialize)]
pub struct Location {
    /// Degrees.
    pub latitude: f64,
    /// Degrees.
    pub longitude: f64,
    /// Radius of uncertainty, metres.
    #[serde(default)]
    pub horizontal_accuracy: Option<f64>,
    /// Set for a live location (seconds it will be updated for).
    #[serde(default)]
    pub live_period: Option<u64>,
}

/// A named place.
#[derive(Debug, Clone, Deserialize)]
pub struct Venue {
    /// Where.
    pub location: Location,
    /// Its name.
    #[serde(default)]
    pub title: String,
    /// Its address.
    #[serde(default)]
    pub address: String,
}

/// A shared contact.
#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    /// As the sender's address book has it.
    pub phone_number: String,
    /// Given name.
    #[serde(default)]
    pub first_name: String,
    /// Family name.
    #[serde(default)]
    pub last_name: Option<String>,
}

/// A thrown dice (or dart, ball…).
#[derive(Debug, Clone, Deserialize)]
pub struct Dice {
    /// 🎲, 🎯, 🏀, ⚽, 🎳 or 🎰.
    pub emoji: String,
    /// The random value.
    pub value: i64,
}

/// A poll.
#[derive(Debug, Clone, Deserialize)]
pub struct Poll {
    /// The question.
    #[serde(default)]
    pub question: String,
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
