//! The file of a `sendPhoto` or `sendDocument`: uploaded, by URL, or by `file_id`, checked as
//! Telegram checks it.
//!
//! Sources: the Bot API page, "Sending files" (https://core.telegram.org/bots/api#sending-files:
//! by URL 5 MB for photos and 20 MB for other files, `sendDocument` by URL only for GIF, PDF
//! and ZIP; uploads 10 MB for photos, 50 MB for other files) and `sendPhoto` (width + height
//! at most 10000, ratio at most 20); the texts are the server's (Client.cpp maps
//! `WEBPAGE_CURL_FAILED` to "failed to get HTTP URL content" and `WEBPAGE_MEDIA_EMPTY` to
//! "wrong type of the web page content") and TDLib's as bots observe them ("wrong file
//! identifier/HTTP URL specified", `PHOTO_INVALID_DIMENSIONS`, `PHOTO_SAVE_FILE_INVALID`,
//! `IMAGE_PROCESS_FAILED`).
//!
//! Telegram fetches a URL from its own servers. Here only loopback URLs answer (the fake's
//! [`super::FakeTelegram::host`], or a test's server): any other host cannot be reached, as a
//! machine without the internet would find, which is what Telegram answers for an URL it
//! cannot fetch.

use axum::response::Response;
use serde_json::{Value, json};

use super::params::Received;
use super::{FakeState, envelope_error};

const MB: usize = 1024 * 1024;

/// The kinds of file the two methods send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `sendPhoto`.
    Photo,
    /// `sendDocument`.
    Document,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Photo => "photo",
            Kind::Document => "document",
        }
    }
}

fn refuse(description: &str) -> Response {
    envelope_error(400, &format!("Bad Request: {description}"), None)
}

/// An image format Telegram reads, by its first bytes.
fn image_format(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("jpeg")
    } else if bytes.starts_with(b"GIF8") {
        Some("gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("webp")
    } else {
        None
    }
}

/// Width and height of a PNG (its IHDR chunk); `None` for a PNG without one.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some((be(16), be(20)))
}

/// Checks an image Telegram is to show as a photo; `Ok` holds its size (1×1 when unknown).
fn check_photo(bytes: &[u8]) -> Result<(u32, u32), Response> {
    let Some(format) = image_format(bytes) else {
        return Err(refuse("IMAGE_PROCESS_FAILED"));
    };
    if format != "png" {
        return Ok((1, 1));
    }
    let Some((w, h)) = png_size(bytes) else {
        return Err(refuse("IMAGE_PROCESS_FAILED"));
    };
    let (long, short) = (w.max(h), w.min(h).max(1));
    if w == 0 || h == 0 || w + h > 10_000 || long / short > 20 {
        return Err(refuse("PHOTO_INVALID_DIMENSIONS"));
    }
    Ok((w, h))
}

/// What a URL gave: its content type and bytes.
struct Fetched {
    content_type: String,
    bytes: Vec<u8>,
}

/// Fetches `url` as Telegram's servers would; `None` when it cannot be fetched.
async fn fetch(st: &FakeState, url: &str) -> Option<Fetched> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let loopback = matches!(
        parsed.host_str(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]")
    );
    if !loopback {
        return None;
    }
    let response = st.http.get(parsed).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bytes = response.bytes().await.ok()?.to_vec();
    Some(Fetched {
        content_type,
        bytes,
    })
}

/// The sent file, as the `photo` or `document` field of the answered `Message`.
fn described(
    st: &FakeState,
    kind: Kind,
    bytes: &[u8],
    size: (u32, u32),
    name: Option<String>,
) -> Value {
    let id = {
        let mut inner = st.lock();
        inner.next_message += 1;
        format!("sent-{}", inner.next_message)
    };
    match kind {
        Kind::Photo => json!([{ "file_id": id, "file_unique_id": format!("u{id}"),
            "width": size.0, "height": size.1, "file_size": bytes.len() }]),
        Kind::Document => json!({ "file_id": id, "file_unique_id": format!("u{id}"),
            "file_name": name.unwrap_or_else(|| "file".into()), "file_size": bytes.len() }),
    }
}

/// Resolves and checks the file of a `kind` send; `Err` is Telegram's answer.
pub(super) async fn resolve(
    st: &FakeState,
    kind: Kind,
    call: &Received,
) -> Result<Value, Response> {
    let field = kind.field();
    let mut value = call.arg(field);
    // `attach://<name>` points at a file part of that name.
    let attached = value
        .as_deref()
        .and_then(|v| v.strip_prefix("attach://"))
        .map(str::to_owned);
    let wanted = attached.as_deref().unwrap_or(field);
    if let Some(upload) = call.file.as_ref().filter(|f| f.field == wanted) {
        return uploaded(st, kind, &upload.bytes, upload.name.clone());
    }
    if attached.is_some() {
        value = None;
    }
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Err(refuse(&format!("there is no {field} in the request")));
    };
    if value.starts_with("http://") || value.starts_with("https://") {
        return by_url(st, kind, &value).await;
    }
    // A file_id: one the bot received, or one of a file it sent.
    let known = value.starts_with("sent-") || st.lock().files.contains_key(&value);
    if known {
        return Ok(described(st, kind, &[], (1, 1), None));
    }
    Err(refuse("wrong file identifier/HTTP URL specified"))
}

fn uploaded(
    st: &FakeState,
    kind: Kind,
    bytes: &[u8],
    name: Option<String>,
) -> Result<Value, Response> {
    match kind {
        Kind::Photo => {
            if bytes.len() > 10 * MB {
                return Err(refuse("PHOTO_SAVE_FILE_INVALID"));
            }
            let size = check_photo(bytes)?;
            Ok(described(st, kind, bytes, size, None))
        }
        Kind::Document => {
            if bytes.len() > 50 * MB {
                return Err(envelope_error(413, "Request Entity Too Large", None));
            }
            if bytes.is_empty() {
                return Err(refuse("file must be non-empty"));
            }
            Ok(described(st, kind, bytes, (0, 0), name))
        }
    }
}

async fn by_url(st: &FakeState, kind: Kind, url: &str) -> Result<Value, Response> {
    let Some(fetched) = fetch(st, url).await else {
        return Err(refuse("failed to get HTTP URL content"));
    };
    let name = url.rsplit('/').next().map(str::to_owned);
    match kind {
        Kind::Photo => {
            if !fetched.content_type.starts_with("image/") {
                return Err(refuse("wrong type of the web page content"));
            }
            if fetched.bytes.len() > 5 * MB {
                return Err(refuse("wrong file identifier/HTTP URL specified"));
            }
            let size = check_photo(&fetched.bytes)?;
            Ok(described(st, kind, &fetched.bytes, size, None))
        }
        Kind::Document => {
            let by_url_ok = ["application/pdf", "application/zip", "image/gif"]
                .iter()
                .any(|t| fetched.content_type.starts_with(t));
            if !by_url_ok {
                return Err(refuse("wrong type of the web page content"));
            }
            if fetched.bytes.len() > 20 * MB {
                return Err(refuse("wrong file identifier/HTTP URL specified"));
            }
            Ok(described(st, kind, &fetched.bytes, (0, 0), name))
        }
    }
}
