//! Agent events as Slack messages: text (split above 4,000 characters), Block Kit for rich
//! content (always with a `text` fallback), files through the external upload flow, and the
//! ledger that keeps a retried delivery from posting twice.
//!
//! `chat.postMessage` is not idempotent: a post that timed out or met a 5xx may be in the
//! conversation already. Every post therefore carries its part id in message `metadata`, and a
//! part whose post ended that way is looked up in `conversations.history` before it is posted
//! again (spec/channels.md §1.8).
//!
//! What this process knows of an event's parts is kept in memory; what must survive a crash
//! is kept in the channel's durable state: before a part is posted, the conversation's
//! [`Attempt`] mark names the event and the part. The router delivers one agent event per
//! consumer at a time, so one mark per Slack conversation suffices (it is overwritten, never
//! piles up). A process that starts on an event its mark names (the last one was killed
//! mid-delivery, or its completion was never recorded) takes the parts before the marked one
//! as posted and looks the marked one up before posting it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{Bytes, ChannelContext, Delivered};

use crate::client::WebClient;
use crate::error::ApiError;
use crate::inbound::button_value;
use crate::mrkdwn::escape;

/// The `metadata.event_type` of our posts.
pub const METADATA_EVENT_TYPE: &str = "switchboard_message";
/// How many recent messages are searched for an uncertain post.
const HISTORY_LIMIT: &str = "100";
/// Ledger entries older than this are dropped (their events were delivered or dead-lettered).
const LEDGER_TTL: Duration = Duration::from_secs(24 * 3600);

/// Longest text of one message, in characters (Slack renders up to 4,000 well).
pub const MAX_TEXT: usize = 4000;
/// Longest section text.
const MAX_SECTION: usize = 3000;
/// Longest button label.
const MAX_LABEL: usize = 75;
/// Most elements in one actions block.
const MAX_ACTIONS: usize = 25;

/// Splits `text` into pieces of at most `max` characters at a line break, the end of a
/// sentence, or a space.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        let end = rest
            .char_indices()
            .nth(max)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let window = &rest[..end];
        let cut = window
            .rfind('\n')
            .or_else(|| {
                window
                    .rmatch_indices(['.', '!', '?'])
                    .map(|(i, _)| i + 1)
                    .find(|&i| window[i..].starts_with(' '))
            })
            .filter(|&i| i > end / 2)
            .or_else(|| window.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(end);
        let (head, tail) = rest.split_at(cut);
        if !head.trim().is_empty() {
            pieces.push(head.trim_end().to_owned());
        }
        rest = tail.trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_owned());
    }
    pieces
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn button(message: &str, b: &Button, index: usize) -> Value {
    let mut element = json!({
        "type": "button",
        "action_id": format!("sb-{index}"),
        "text": { "type": "plain_text", "text": clip(&b.title, MAX_LABEL), "emoji": true },
    });
    match &b.action {
        ButtonAction::Reply => element["value"] = json!(button_value(message, &b.id)),
        _ => element["url"] = json!(b.url()),
    }
    element
}

fn actions(message: &str, buttons: &[Button], first_index: usize) -> Vec<Value> {
    buttons
        .chunks(MAX_ACTIONS)
        .enumerate()
        .map(|(chunk, group)| {
            let elements: Vec<Value> = group
                .iter()
                .enumerate()
                .map(|(i, b)| button(message, b, first_index + chunk * MAX_ACTIONS + i))
                .collect();
            json!({ "type": "actions", "elements": elements })
        })
        .collect()
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": clip(&escape(text), MAX_SECTION) } })
}

/// The Block Kit blocks of rich content: a section for the text, per card a section (title in
/// bold, lines, the image as accessory) and its buttons, then the quick replies as buttons.
pub fn blocks(message: &str, content: &RichContent) -> Vec<Value> {
    let mut blocks = Vec::new();
    if !content.text.trim().is_empty() {
        blocks.push(section(&content.text));
    }
    let mut index = 0;
    for card in &content.cards {
        let mut lines = Vec::new();
        if let Some(title) = &card.title {
            lines.push(format!("*{}*", escape(title)));
        }
        lines.extend(card.lines.iter().map(|l| escape(l)));
        let mut block = json!({ "type": "section", "text": { "type": "mrkdwn",
            "text": clip(&if lines.is_empty() { " ".to_owned() } else { lines.join("\n") }, MAX_SECTION) } });
        if let Some(url) = &card.image_url {
            block["accessory"] = json!({ "type": "image", "image_url": url,
                "alt_text": card.title.clone().unwrap_or_else(|| "image".into()) });
        }
        blocks.push(block);
        blocks.extend(actions(message, &card.buttons, index));
        index += card.buttons.len();
    }
    blocks.extend(actions(message, &content.quick_replies, index));
    blocks
}

/// What is known of one part (one Slack message) of an agent event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartState {
    /// Slack confirmed it.
    Posted(String),
    /// The post failed in a way Slack may still have acted on; `file` is the uploaded file's
    /// id when the uncertain step was sharing a file.
    Uncertain { file: Option<String> },
    /// The post failed in a way Slack certainly did not act on (a 429, a refusal): post it
    /// again without looking it up.
    NotPosted,
}

/// The durable mark of the part being posted to one Slack conversation (state key
/// `slack-post:{channel}`): the parts of `event` before `part` are on Slack, `part` may be.
#[derive(Debug, Serialize, Deserialize)]
struct Attempt {
    event: String,
    part: usize,
}

fn attempt_key(channel: &str) -> String {
    format!("slack-post:{channel}")
}

/// What is known of the parts of one agent event, and since when.
type EventParts = (Instant, HashMap<usize, PartState>);

/// Which parts of not-yet-delivered agent events are on Slack or may be, by event id.
#[derive(Debug, Default)]
struct Ledger {
    events: Mutex<HashMap<String, EventParts>>,
}

impl Ledger {
    fn get(&self, event: &str, part: usize) -> Option<PartState> {
        let events = self.events.lock().expect("ledger lock");
        events
            .get(event)
            .and_then(|(_, parts)| parts.get(&part).cloned())
    }

    fn set(&self, event: &str, part: usize, state: PartState) {
        let mut events = self.events.lock().expect("ledger lock");
        let now = Instant::now();
        events.retain(|_, (at, _)| now.duration_since(*at) < LEDGER_TTL);
        events
            .entry(event.to_owned())
            .or_insert_with(|| (now, HashMap::new()))
            .1
            .insert(part, state);
    }

    fn forget(&self, event: &str) {
        self.events.lock().expect("ledger lock").remove(event);
    }
}

/// Posts agent events to Slack: each part at most once, even across retries.
#[derive(Debug)]
pub(crate) struct Poster {
    client: WebClient,
    ledger: Ledger,
}

/// One Slack message of an agent event.
pub(crate) enum Part<'a> {
    /// `chat.postMessage` with a `text` (plain text, escaped here) and optional blocks.
    Message {
        /// The text or fallback.
        text: &'a str,
        /// Block Kit blocks.
        blocks: Option<Vec<Value>>,
    },
    /// A file shared through the external upload flow.
    File {
        /// The file name.
        name: &'a str,
        /// The bytes.
        data: Bytes,
        /// Shown with it.
        comment: Option<&'a str>,
    },
}

impl Poster {
    pub(crate) fn new(client: WebClient) -> Self {
        Self {
            client,
            ledger: Ledger::default(),
        }
    }

    /// Posts the parts of the event `event` to `channel` in order, skipping parts already
    /// posted by an earlier attempt. Returns the last part's Slack id (`ts` or file id).
    ///
    /// With `state` (the channel's context once started) every part is marked durably before
    /// it is posted, and a mark left by an earlier process is honoured (module docs).
    pub(crate) async fn post(
        &self,
        channel: &str,
        event: &str,
        parts: Vec<Part<'_>>,
        state: Option<&ChannelContext>,
    ) -> Result<Delivered, ApiError> {
        let key = attempt_key(channel);
        let earlier = match state {
            Some(ctx) => ctx
                .load_state(&key)
                .await
                .map_err(|e| ApiError::State(e.to_string()))?
                .and_then(|v| serde_json::from_str::<Attempt>(&v).ok())
                .filter(|a| a.event == event),
            None => None,
        };
        let mut last = Delivered::default();
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            let part_id = if count == 1 {
                event.to_owned()
            } else {
                format!("{event}#{index}")
            };
            let known = self.ledger.get(event, index).or_else(|| {
                // Only what an earlier process left: this one has not tried the event yet.
                let earlier = earlier.as_ref()?;
                (index < earlier.part)
                    .then(|| PartState::Posted(String::new()))
                    .or_else(|| {
                        (index == earlier.part).then_some(PartState::Uncertain { file: None })
                    })
            });
            let found = match known {
                Some(PartState::Posted(id)) => Some(id),
                Some(PartState::Uncertain { file }) => {
                    self.find(channel, &part_id, file.as_deref()).await?
                }
                Some(PartState::NotPosted) | None => None,
            };
            let id = match found {
                Some(id) => id,
                None => {
                    if let Some(ctx) = state {
                        let mark = Attempt {
                            event: event.to_owned(),
                            part: index,
                        };
                        let mark = serde_json::to_string(&mark).unwrap_or_default();
                        ctx.save_state(&key, &mark)
                            .await
                            .map_err(|e| ApiError::State(e.to_string()))?;
                    }
                    self.post_part(channel, event, index, &part_id, part)
                        .await?
                }
            };
            self.ledger.set(event, index, PartState::Posted(id.clone()));
            last = Delivered::with_id(id);
        }
        self.ledger.forget(event);
        Ok(last)
    }

    async fn post_part(
        &self,
        channel: &str,
        event: &str,
        index: usize,
        part_id: &str,
        part: Part<'_>,
    ) -> Result<String, ApiError> {
        let outcome = match part {
            Part::Message { text, blocks } => {
                let mut params = vec![
                    ("channel", channel.to_owned()),
                    ("text", escape(text)),
                    (
                        "metadata",
                        json!({ "event_type": METADATA_EVENT_TYPE,
                                "event_payload": { "id": part_id } })
                        .to_string(),
                    ),
                ];
                if let Some(blocks) = blocks.filter(|b| !b.is_empty()) {
                    params.push(("blocks", Value::Array(blocks).to_string()));
                }
                self.client
                    .call("chat.postMessage", &params)
                    .await
                    .map(|answer| answer["ts"].as_str().unwrap_or_default().to_owned())
                    .map_err(|e| (e, None))
            }
            Part::File {
                name,
                data,
                comment,
            } => self.client.upload(channel, name, data, comment).await,
        };
        outcome.map_err(|(e, file)| {
            let state = if e.maybe_applied() {
                PartState::Uncertain { file }
            } else {
                PartState::NotPosted
            };
            self.ledger.set(event, index, state);
            e
        })
    }

    /// Looks for an uncertain part among the conversation's recent messages: a message whose
    /// metadata carries `part_id`, or one sharing `file`. Without the history scope the part
    /// counts as not posted (a possible repeat beats a loss).
    async fn find(
        &self,
        channel: &str,
        part_id: &str,
        file: Option<&str>,
    ) -> Result<Option<String>, ApiError> {
        let history = self
            .client
            .call(
                "conversations.history",
                &[
                    ("channel", channel.to_owned()),
                    ("limit", HISTORY_LIMIT.to_owned()),
                    ("include_all_metadata", "true".to_owned()),
                ],
            )
            .await;
        let history = match history {
            Ok(h) => h,
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the conversation to check an uncertain post; posting again");
                return Ok(None);
            }
        };
        let messages = history["messages"].as_array().cloned().unwrap_or_default();
        Ok(messages.iter().find_map(|m| {
            let ours = m["metadata"]["event_type"] == METADATA_EVENT_TYPE
                && m["metadata"]["event_payload"]["id"] == part_id;
            let shares_file = file.is_some_and(|f| {
                m["files"]
                    .as_array()
                    .is_some_and(|files| files.iter().any(|x| x["id"] == f))
            });
            (ours || shares_file).then(|| match file {
                Some(f) => f.to_owned(),
                None => m["ts"].as_str().unwrap_or_default().to_owned(),
            })
        }))
    }
}
