//! Rich content (cards, buttons, quick replies) in a platform-neutral form, with the text
//! rendering every channel can fall back to.
//!
//! The LivePerson engine translates LivePerson's structured content into this form; channels
//! render it natively (Slack Block Kit, Telegram inline keyboards) or as numbered text (SMS).
//! A consumer's pick comes back as [`Inbound::Choice`](crate::Inbound::Choice) carrying the
//! [`Button::id`].

use serde::{Deserialize, Serialize};

/// Cards and/or quick replies, always with a plain-text fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RichContent {
    /// The text to show when nothing else can be shown; also the message text above cards.
    pub text: String,
    /// Zero or more cards (one for a plain card, several for a carousel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards: Vec<Card>,
    /// Quick replies offered under the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quick_replies: Vec<Button>,
}

/// One card: a title, some lines of text, an optional image and buttons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Card {
    /// The card's title (its first, usually bold, text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Further lines of text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// An image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The card's buttons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

/// A button or quick reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// A short id, unique within its message, that the channel sends back when it is picked.
    /// At most 32 ASCII characters, so that it fits in any platform's callback data.
    pub id: String,
    /// The label shown.
    pub title: String,
    /// What picking it does.
    pub action: ButtonAction,
}

/// What a button does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ButtonAction {
    /// Sends the choice back to the agent (LivePerson `publishText`).
    Reply,
    /// Opens a web page.
    Link {
        /// The page.
        url: String,
    },
    /// Opens a map at a place.
    Location {
        /// Latitude.
        lat: f64,
        /// Longitude.
        lon: f64,
    },
}

impl Button {
    /// The URL a link or location button opens, if any.
    pub fn url(&self) -> Option<String> {
        match &self.action {
            ButtonAction::Reply => None,
            ButtonAction::Link { url } => Some(url.clone()),
            ButtonAction::Location { lat, lon } => {
                Some(format!("https://maps.google.com/?q={lat},{lon}"))
            }
        }
    }
}

impl RichContent {
    /// Content that is only text and quick replies.
    pub fn with_quick_replies(text: impl Into<String>, replies: Vec<Button>) -> Self {
        Self {
            text: text.into(),
            cards: Vec::new(),
            quick_replies: replies,
        }
    }

    /// Every button that sends a choice back, in display order (card buttons, then quick
    /// replies). Numbered text renderings count in this order.
    pub fn reply_buttons(&self) -> Vec<&Button> {
        self.cards
            .iter()
            .flat_map(|c| c.buttons.iter())
            .chain(self.quick_replies.iter())
            .filter(|b| matches!(b.action, ButtonAction::Reply))
            .collect()
    }

    /// The button a typed number picks in [`RichContent::to_numbered_text`] (1-based).
    pub fn choice_by_number(&self, n: usize) -> Option<&Button> {
        n.checked_sub(1)
            .and_then(|i| self.reply_buttons().get(i).copied())
    }

    /// A plain-text rendering for channels without buttons: the text, each card's title, lines,
    /// image and links, then the reply buttons as a numbered list ("1. Yes").
    pub fn to_numbered_text(&self) -> String {
        let mut out = Vec::new();
        if !self.text.trim().is_empty() {
            out.push(self.text.trim_end().to_string());
        }
        for card in &self.cards {
            if let Some(t) = &card.title {
                out.push(t.clone());
            }
            out.extend(card.lines.iter().cloned());
            if let Some(img) = &card.image_url {
                out.push(img.clone());
            }
            for b in &card.buttons {
                if let Some(url) = b.url() {
                    out.push(format!("{}: {url}", b.title));
                }
            }
        }
        for (i, b) in self.reply_buttons().iter().enumerate() {
            out.push(format!("{}. {}", i + 1, b.title));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(id: &str, title: &str) -> Button {
        Button {
            id: id.into(),
            title: title.into(),
            action: ButtonAction::Reply,
        }
    }

    #[test]
    fn numbered_text_lists_cards_links_and_replies() {
        let rc = RichContent {
            text: "Pick one".into(),
            cards: vec![Card {
                title: Some("Shoes".into()),
                lines: vec!["Size 42".into()],
                image_url: Some("https://img.example/shoe.png".into()),
                buttons: vec![
                    reply("b1", "Buy"),
                    Button {
                        id: "l".into(),
                        title: "Details".into(),
                        action: ButtonAction::Link {
                            url: "https://x.example".into(),
                        },
                    },
                ],
            }],
            quick_replies: vec![reply("q1", "Yes"), reply("q2", "No")],
        };
        assert_eq!(
            rc.to_numbered_text(),
            "Pick one\nShoes\nSize 42\nhttps://img.example/shoe.png\nDetails: https://x.example\n1. Buy\n2. Yes\n3. No"
        );
        assert_eq!(rc.choice_by_number(2).unwrap().id, "q1");
        assert!(rc.choice_by_number(0).is_none());
        assert!(rc.choice_by_number(4).is_none());
    }
}
