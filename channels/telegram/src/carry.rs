//! What of a consumer's message can reach the agent, and in what form.
//!
//! Telegram messages carry many kinds of content (Bot API, `Message`:
//! https://core.telegram.org/bots/api#message). LivePerson takes files from consumers only as
//! JPG, PNG or GIF images of at most 3 MB (Connector API, `ms.GenerateURLForUploadFile`;
//! docs/protocol/liveperson.md §5.10). So:
//!
//! - texts, locations, venues, contacts, stickers (their emoji) and dice are texts the agent
//!   reads as they are;
//! - photos, and documents or animations that are such images, are downloaded and handed on
//!   as files (a photo at its largest size within 3 MB);
//! - everything else (voice messages, audio, video, round videos, other files, polls, games,
//!   stories, paid media, invoices, checklists) cannot reach the agent: the agent reads a
//!   description of what was sent, and the consumer is told (`not_carried_text`);
//! - service messages (a pinned message, a payment, a shared chat…) carry nothing for the
//!   agent and are acknowledged without a word.

use crate::wire::{Document, Lenient, Media, Message, PhotoSize};

/// The image types LivePerson accepts from consumers (docs/protocol/liveperson.md §5.10).
const AGENT_IMAGE_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/gif"];
/// The largest file LivePerson accepts from a consumer (docs/protocol/liveperson.md §5.10).
pub(crate) const AGENT_MAX_BYTES: u64 = 3 * 1024 * 1024;

/// What becomes of one message on its way to the agent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Carry {
    /// A text the agent reads as it is.
    Text(String),
    /// An image to download (`getFile`) and hand on as a file.
    Image {
        /// For `getFile`.
        file_id: String,
        /// The original name, if Telegram has one.
        name: Option<String>,
        /// One of [`AGENT_IMAGE_TYPES`].
        mime: String,
    },
    /// Content that cannot reach the agent: what was sent, as a phrase ("a voice message
    /// (0:07)"). The agent reads it; the consumer is told.
    NotCarried(String),
    /// Nothing for the agent (a service message).
    Nothing,
}

/// Decides what `message` carries.
pub(crate) fn carry(message: &Message) -> Carry {
    if let Some(text) = &message.text {
        // `/start` (with or without a deep-link payload) is a message like any other: it
        // opens the conversation and the agent sees it.
        return Carry::Text(text.clone());
    }
    // An animation also sets `document` (Bot API): decide on the animation first.
    if let Some(animation) = &message.animation {
        return match (animation.parsed(), &message.document) {
            (Some(a), Some(doc)) if is_agent_image(a.mime_type.as_deref(), a.file_size) => {
                image_of_document(doc)
            }
            (a, _) => Carry::NotCarried(format!(
                "an animation{}",
                a.map(|a| details(&[duration(a.duration), size(a.file_size)]))
                    .unwrap_or_default()
            )),
        };
    }
    if let Some(sizes) = &message.photo {
        return photo(sizes);
    }
    if let Some(doc) = &message.document {
        let mime = doc
            .mime_type
            .clone()
            .or_else(|| mime_of_name(doc.file_name.as_deref()));
        if is_agent_image(mime.as_deref(), doc.file_size) {
            return image_of_document(doc);
        }
        let name = doc.file_name.as_deref().unwrap_or("a file");
        return Carry::NotCarried(format!(
            "the file {name}{}",
            details(&[mime, size(doc.file_size)])
        ));
    }
    if let Some(sticker) = &message.sticker {
        let emoji = sticker.parsed().and_then(|s| s.emoji.clone());
        return Carry::Text(match emoji {
            Some(e) => format!("[Sticker: {e}]"),
            None => "[Sticker]".into(),
        });
    }
    let media: [(&Option<Lenient<Media>>, &str); 4] = [
        (&message.voice, "a voice message"),
        (&message.audio, "an audio file"),
        (&message.video, "a video"),
        (&message.video_note, "a round video message"),
    ];
    for (field, what) in media {
        if let Some(media) = field {
            return Carry::NotCarried(format!(
                "{}{}",
                audio_title(what, media.parsed()),
                media
                    .parsed()
                    .map(|m| details(&[duration(m.duration), size(m.file_size)]))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(venue) = &message.venue {
        return match venue.parsed() {
            Some(v) => Carry::Text(format!(
                "📍 {}, {}: {}",
                v.title,
                v.address,
                map_link(v.location.latitude, v.location.longitude)
            )),
            None => Carry::NotCarried("a place".into()),
        };
    }
    if let Some(location) = &message.location {
        return match location.parsed() {
            Some(l) => {
                let what = if l.live_period.is_some() {
                    "Live location, as first shared"
                } else {
                    "Location"
                };
                let accuracy = l
                    .horizontal_accuracy
                    .filter(|a| *a > 0.0)
                    .map(|a| format!(" (±{a:.0} m)"))
                    .unwrap_or_default();
                Carry::Text(format!(
                    "📍 {what}: {}{accuracy}",
                    map_link(l.latitude, l.longitude)
                ))
            }
            None => Carry::NotCarried("a location".into()),
        };
    }
    if let Some(contact) = &message.contact {
        return match contact.parsed() {
            Some(c) => {
                let name = [Some(c.first_name.as_str()), c.last_name.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                Carry::Text(format!("👤 Contact: {name}: {}", c.phone_number))
            }
            None => Carry::NotCarried("a contact".into()),
        };
    }
    if let Some(dice) = &message.dice {
        return match dice.parsed() {
            Some(d) => Carry::Text(format!("[{} {}]", d.emoji, d.value)),
            None => Carry::NotCarried("a dice".into()),
        };
    }
    if let Some(poll) = &message.poll {
        return Carry::NotCarried(match poll.parsed() {
            Some(p) if !p.question.is_empty() => format!("a poll (\"{}\")", p.question),
            _ => "a poll".into(),
        });
    }
    let others = [
        (&message.game, "a game"),
        (&message.story, "a story"),
        (&message.paid_media, "paid media"),
        (&message.invoice, "an invoice"),
        (&message.checklist, "a checklist"),
    ];
    for (field, what) in others {
        if field.is_some() {
            return Carry::NotCarried(what.into());
        }
    }
    Carry::Nothing
}

/// The text the agent reads for content that cannot reach them.
pub(crate) fn described(what: &str, caption: Option<&str>) -> String {
    let caption = caption
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| format!(" Its caption: \"{c}\"."))
        .unwrap_or_default();
    format!(
        "[The consumer sent {what}, which cannot reach you here; they were asked to write \
         instead.{caption}]"
    )
}

/// The photo at its largest size within LivePerson's limit (sizes come smallest first, but
/// are sorted here by area to be sure).
fn photo(sizes: &[PhotoSize]) -> Carry {
    let mut sorted: Vec<&PhotoSize> = sizes.iter().collect();
    sorted.sort_by_key(|p| p.width * p.height);
    match sorted
        .iter()
        .rev()
        .find(|p| p.file_size.is_none_or(|n| n <= AGENT_MAX_BYTES))
    {
        Some(p) => Carry::Image {
            file_id: p.file_id.clone(),
            name: None,
            // Telegram stores photos as JPEG.
            mime: "image/jpeg".into(),
        },
        None => Carry::NotCarried(format!(
            "a photo{}",
            details(&[size(sorted.first().and_then(|p| p.file_size))])
        )),
    }
}

fn image_of_document(doc: &Document) -> Carry {
    let mime = doc
        .mime_type
        .clone()
        .or_else(|| mime_of_name(doc.file_name.as_deref()))
        .unwrap_or_else(|| "image/jpeg".into());
    Carry::Image {
        file_id: doc.file_id.clone(),
        name: doc.file_name.clone(),
        mime,
    }
}

fn is_agent_image(mime: Option<&str>, size: Option<u64>) -> bool {
    mime.is_some_and(|m| AGENT_IMAGE_TYPES.contains(&m.to_ascii_lowercase().as_str()))
        && size.is_none_or(|n| n <= AGENT_MAX_BYTES)
}

/// The type of a file by its name, for documents whose sender gave none.
fn mime_of_name(name: Option<&str>) -> Option<String> {
    let ext = name?.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(
        match ext.as_str() {
            "jpg" | "jpeg" => "image/jpeg",
            "png" => "image/png",
            "gif" => "image/gif",
            _ => return None,
        }
        .into(),
    )
}

fn audio_title(what: &str, media: Option<&Media>) -> String {
    let title = media.and_then(|m| match (&m.performer, &m.title) {
        (Some(p), Some(t)) => Some(format!("{p} – {t}")),
        (None, Some(t)) => Some(t.clone()),
        _ => m.file_name.clone(),
    });
    match title {
        Some(t) => format!("{what} \"{t}\""),
        None => what.to_owned(),
    }
}

/// ` (a, b)` of the parts that are known, or nothing.
fn details(parts: &[Option<String>]) -> String {
    let known: Vec<&str> = parts.iter().flatten().map(String::as_str).collect();
    if known.is_empty() {
        String::new()
    } else {
        format!(" ({})", known.join(", "))
    }
}

fn duration(seconds: u64) -> Option<String> {
    (seconds > 0).then(|| format!("{}:{:02}", seconds / 60, seconds % 60))
}

/// A size people read: `640 KB`, `4.2 MB`.
pub(crate) fn size(bytes: Option<u64>) -> Option<String> {
    let bytes = bytes?;
    Some(if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{} KB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    })
}

/// The same map link the core gives location buttons (`Button::url`).
fn map_link(lat: f64, lon: f64) -> String {
    format!("https://maps.google.com/?q={lat:.6},{lon:.6}")
}
