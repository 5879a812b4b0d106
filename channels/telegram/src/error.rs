//! What can go wrong talking to the Bot API or reading an update.

use std::time::Duration;

use switchboard_core::DeliveryError;

/// A reqwest failure as an [`BotApiError`], without the URL (it holds the token): a timeout
/// after the request went out is [`BotApiError::NoAnswer`], anything else [`BotApiError::Network`].
pub(crate) fn transport(e: reqwest::Error) -> BotApiError {
    let shown = e.without_url();
    if shown.is_timeout() && !shown.is_connect() {
        BotApiError::NoAnswer(shown.to_string())
    } else {
        BotApiError::Network(shown.to_string())
    }
}

/// A failed Bot API call.
#[derive(Debug, thiserror::Error)]
pub enum BotApiError {
    /// Telegram answered `ok: false` (or a non-JSON error from a proxy in front of it).
    #[error("Telegram answered {code}: {description}")]
    Refused {
        /// `error_code` (the HTTP status).
        code: u16,
        /// `description`.
        description: String,
        /// `parameters.retry_after` or the `Retry-After` header.
        retry_after: Option<Duration>,
        /// `parameters.migrate_to_chat_id`: the group became a supergroup with this id.
        migrate_to: Option<i64>,
    },
    /// No answer: connection refused, timeout. Never carries the URL (it holds the token).
    #[error("cannot reach Telegram: {0}")]
    Network(String),
    /// The request went out but no answer came in time: Telegram may have carried it out.
    #[error("no answer from Telegram in time (it may have carried the request out): {0}")]
    NoAnswer(String),
    /// An answer that is not the Bot API's JSON.
    #[error("unexpected answer from Telegram: {0}")]
    Malformed(String),
    /// A file to download is larger than the channel takes.
    #[error("the file is over the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

/// The 400 descriptions with which Telegram refuses the *file* of a `sendPhoto` or
/// `sendDocument` (rather than the chat or the request): a URL it cannot fetch, content that
/// is no image, a photo it cannot take. Sources: the server's own mapping of TDLib's errors
/// (tdlib/telegram-bot-api `Client.cpp`, `fail_query_with_error`: `WEBPAGE_CURL_FAILED`,
/// `WEBPAGE_MEDIA_EMPTY`, `WC_CONVERT_URL_INVALID`, `File generation failed`), TDLib's own
/// text for an unusable file or URL, and the MTProto errors it passes on for photos
/// (`PHOTO_INVALID_DIMENSIONS`, `PHOTO_SAVE_FILE_INVALID`, `IMAGE_PROCESS_FAILED`).
const MEDIA_REFUSALS: [&str; 9] = [
    "wrong file identifier/http url specified",
    "failed to get http url content",
    "wrong type of the web page content",
    "wrong http url specified",
    "can't upload file by url",
    "wrong remote file identifier specified",
    "photo_invalid_dimensions",
    "photo_save_file_invalid",
    "image_process_failed",
];

impl BotApiError {
    /// Whether trying again later can succeed: network errors, 429 and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            BotApiError::Refused { code, .. } => *code == 429 || *code >= 500,
            BotApiError::Network(_) | BotApiError::NoAnswer(_) | BotApiError::Malformed(_) => true,
            BotApiError::TooLarge { .. } => false,
        }
    }

    /// Telegram refused the file of a send, not the chat: sending something else (a link, a
    /// document) can still reach the consumer.
    pub fn is_media_refusal(&self) -> bool {
        match self {
            BotApiError::Refused {
                code: 400,
                description,
                ..
            } => {
                let description = description.to_ascii_lowercase();
                MEDIA_REFUSALS.iter().any(|m| description.contains(m))
            }
            _ => false,
        }
    }

    /// `getFile` refused a file over the 20 MB bots may download (Client.cpp, `do_get_file`:
    /// "Bad Request: file is too big").
    pub fn is_file_too_big(&self) -> bool {
        matches!(self, BotApiError::Refused { code: 400, description, .. } if description.contains("file is too big"))
    }

    /// The chat a group moved to, if Telegram says so.
    pub fn migrated_to(&self) -> Option<i64> {
        match self {
            BotApiError::Refused { migrate_to, .. } => *migrate_to,
            _ => None,
        }
    }

    /// The wait Telegram asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BotApiError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<BotApiError> for DeliveryError {
    /// 429, 5xx and network failures retry (honouring `retry_after`); 400 (chat not found,
    /// bad request), 401 (revoked token), 403 (the user blocked the bot) are permanent.
    fn from(e: BotApiError) -> Self {
        if e.is_retryable() {
            DeliveryError::Retryable {
                after: e.retry_after(),
                reason: e.to_string(),
            }
        } else {
            DeliveryError::permanent(e.to_string())
        }
    }
}
