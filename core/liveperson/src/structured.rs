//! LivePerson structured content (docs/protocol/liveperson.md §11) to Switchboard's channel-neutral [`RichContent`], and
//! the click table that turns a consumer's pick back into what LivePerson expects (docs/protocol/liveperson.md §5.6).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_core::{Button, ButtonAction, Card, RichContent};

/// What clicking a reply button must publish: an `ACTION` receipt with `metadata`, then the
/// `publishText` text (if any) with the same metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickAction {
    /// The [`Button::id`] the channel reports back.
    pub button_id: String,
    /// The text the button publishes (`publishText`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The button's `click.metadata`, copied verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Rich content plus the click table of its reply buttons.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translated {
    /// What channels render.
    pub content: RichContent,
    /// One entry per reply button.
    pub clicks: Vec<ClickAction>,
}

impl Translated {
    /// True when a channel would have nothing to show: no text, no card, no quick reply.
    pub fn is_empty(&self) -> bool {
        self.content.text.trim().is_empty()
            && self.content.cards.is_empty()
            && self.content.quick_replies.is_empty()
    }
}

#[derive(Debug, Default)]
struct Builder {
    clicks: Vec<ClickAction>,
    texts: Vec<String>,
    /// Types of the elements no card could show (rendered as their text, if any).
    dropped: Vec<String>,
}

impl Builder {
    /// A button element or quick reply, or `None` when it has nothing a consumer can use.
    fn button(&mut self, element: &Value) -> Option<Button> {
        let title = str_of(element, "title")
            .or_else(|| str_of(element, "tooltip"))
            .unwrap_or_default();
        let click = element.get("click");
        let actions = click
            .and_then(|c| c.get("actions"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let metadata = click
            .and_then(|c| c.get("metadata"))
            .filter(|m| !m.is_null())
            .cloned();
        let id = format!("b{}", self.clicks.len());
        // First usable action decides the button's kind; publishText wins over link when both.
        if let Some(text) = actions
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some("publishText"))
            .and_then(|a| str_of(a, "text"))
        {
            self.clicks.push(ClickAction {
                button_id: id.clone(),
                text: Some(text),
                metadata,
            });
            return Some(Button {
                id,
                title: if title.is_empty() {
                    "…".into()
                } else {
                    title
                },
                action: ButtonAction::Reply,
            });
        }
        for action in actions {
            match action.get("type").and_then(Value::as_str) {
                Some("link") => {
                    let url = str_of(action, "uri")
                        .or_else(|| action.get("web").and_then(|w| str_of(w, "uri")))?;
                    return Some(Button {
                        id,
                        title: if title.is_empty() { url.clone() } else { title },
                        action: ButtonAction::Link { url },
                    });
                }
                Some("navigate") => {
                    let (lat, lon) = (action.get("la")?.as_f64()?, action.get("lo")?.as_f64()?);
                    return Some(Button {
                        id,
                        title: if title.is_empty() {
                            "Map".into()
                        } else {
                            title
                        },
                        action: ButtonAction::Location { lat, lon },
                    });
                }
                _ => {}
            }
        }
        // A button with metadata only still tells the agent something when clicked.
        if metadata.is_some() && !title.is_empty() {
            self.clicks.push(ClickAction {
                button_id: id.clone(),
                text: None,
                metadata,
            });
            return Some(Button {
                id,
                title,
                action: ButtonAction::Reply,
            });
        }
        None
    }

    /// Fills `card` from a template's elements (nested templates are flattened into it).
    fn fill_card(&mut self, card: &mut Card, template: &Value) {
        let elements = template
            .get("elements")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for element in elements {
            match element.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(text) = str_of(element, "text").filter(|t| !t.trim().is_empty()) {
                        self.texts.push(text.clone());
                        if card.title.is_none() {
                            card.title = Some(text);
                        } else {
                            card.lines.push(text);
                        }
                    }
                }
                Some("image") => {
                    if let Some(url) = str_of(element, "url") {
                        if card.image_url.is_none() {
                            card.image_url = Some(url);
                        } else {
                            card.lines.push(url);
                        }
                    }
                    if let Some(caption) = str_of(element, "caption") {
                        card.lines.push(caption);
                    }
                }
                Some("button") => {
                    if let Some(button) = self.button(element) {
                        card.buttons.push(button);
                    }
                }
                Some("map") => {
                    if let (Some(lat), Some(lon)) = (
                        element.get("la").and_then(Value::as_f64),
                        element.get("lo").and_then(Value::as_f64),
                    ) {
                        card.buttons.push(Button {
                            id: format!("m{}", card.buttons.len()),
                            title: str_of(element, "tooltip").unwrap_or_else(|| "Map".into()),
                            action: ButtonAction::Location { lat, lon },
                        });
                    }
                }
                Some("vertical" | "horizontal") => self.fill_card(card, element),
                // Unknown elements (date pickers, checklists …) degrade to their text, if any.
                other => {
                    self.dropped
                        .push(other.unwrap_or("(no type)").chars().take(40).collect());
                    for key in ["title", "text", "tooltip"] {
                        if let Some(text) = str_of(element, key) {
                            card.lines.push(text);
                            break;
                        }
                    }
                }
            }
        }
    }

    fn quick_replies(&mut self, quick_replies: Option<&Value>) -> Vec<Button> {
        quick_replies
            .and_then(|q| q.get("replies"))
            .and_then(Value::as_array)
            .map(|replies| replies.iter().filter_map(|r| self.button(r)).collect())
            .unwrap_or_default()
    }
}

fn str_of(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Translates a `RichContentEvent`'s `content` (and its `quickReplies`).
///
/// The root may be a template (`vertical`, `horizontal`, `carousel`, or another type with
/// `elements`) or a single basic element (`text`, `image`, `button`, `map`, or one this
/// version does not know), which becomes a one-element card. LivePerson: "By using these
/// elements in your template, you can send basic messages, such as simple text, images or
/// buttons" (developer-center
/// `pages/Documents/RichMessaging/GettingStartedwithRichMessaging/introduction.md`, "Basic
/// Elements"). Nothing in the docs forbids a bare element as the whole `content`, so one is
/// shown rather than dropped.
pub fn translate_rich(content: &Value, quick_replies: Option<&Value>) -> Translated {
    let mut builder = Builder::default();
    let mut cards = Vec::new();
    match content.get("type").and_then(Value::as_str) {
        _ if !content.get("elements").is_some_and(Value::is_array) => {
            let mut card = Card::default();
            builder.fill_card(&mut card, &serde_json::json!({ "elements": [content] }));
            cards.push(card);
        }
        Some("carousel") => {
            for element in content
                .get("elements")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let mut card = Card::default();
                builder.fill_card(&mut card, element);
                cards.push(card);
            }
        }
        _ => {
            let mut card = Card::default();
            builder.fill_card(&mut card, content);
            cards.push(card);
        }
    }
    cards.retain(|c| {
        c.title.is_some() || !c.lines.is_empty() || c.image_url.is_some() || !c.buttons.is_empty()
    });
    let quick_replies = builder.quick_replies(quick_replies);
    let text = builder.texts.join("\n");
    if !builder.dropped.is_empty() {
        tracing::info!(
            dropped = ?builder.dropped,
            "structured content elements no channel renders were reduced to their text"
        );
    }
    Translated {
        content: RichContent {
            text,
            cards,
            quick_replies,
        },
        clicks: builder.clicks,
    }
}

/// Translates a text `ContentEvent` that carries `quickReplies`.
pub fn translate_quick_replies(text: &str, quick_replies: &Value) -> Translated {
    let mut builder = Builder::default();
    let replies = builder.quick_replies(Some(quick_replies));
    Translated {
        content: RichContent::with_quick_replies(text.trim_end(), replies),
        clicks: builder.clicks,
    }
}

/// Every human-readable string of a structured content template, in document order, without
/// immediate repeats (a `title` equal to its `tooltip` …): what is left to show a consumer when
/// no card can be built from it.
pub fn plain_text(content: &Value) -> String {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for key in ["title", "text", "caption", "tooltip", "url", "uri"] {
                    if let Some(text) = map.get(key).and_then(Value::as_str) {
                        let text = text.trim();
                        if !text.is_empty() && out.last().is_none_or(|last| last != text) {
                            out.push(text.to_owned());
                        }
                    }
                }
                for child in map.values() {
                    if child.is_object() || child.is_array() {
                        walk(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(content, &mut out);
    out.join("\n")
}

/// The `type` of every object in a template (for the log line of what was dropped).
pub fn element_types(content: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(kind) = map.get("type").and_then(Value::as_str)
                    && !out.iter().any(|k| k == kind)
                {
                    out.push(kind.chars().take(40).collect());
                }
                map.values().for_each(|child| walk(child, out));
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(content, &mut out);
    out
}
