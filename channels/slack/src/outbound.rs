//! Agent events as Slack messages: text (split above 4,000 characters), Block Kit for rich
//! content (always with a `text` fallback), files through the external upload flow, and the
//! ledger that keeps a retried delivery from posting twice.
//!
//! `chat.postMessage` is not idempotent: a post that timed out or met a 5xx may be in the
//! conversation already. Whether a part was posted is therefore kept in our store (the
//! channel's durable state), not asked of Slack: before a part is posted, the conversation's
//! [`Attempt`] mark names the event, the part and the newest post of ours known there; once
//! Slack confirms it, the mark says so with its `ts`. The router delivers one agent event per
//! consumer at a time, so one mark per Slack conversation suffices (it is overwritten, never
//! piles up). A process that starts on an event its mark names (the last one was killed
//! mid-delivery, or its completion was never recorded) takes the parts before the marked one
//! as posted and resolves the marked one before posting it.
//!
//! A part whose outcome is unknown (a timeout, a 5xx, a crash mid-call) is resolved by Slack's
//! echo: the app receives every message of its DMs, its own included, and the channel keeps
//! the newest echo of its own posts per conversation (`slack-echo:{channel}`). An echo newer
//! than the post's predecessor, or carrying its part id, means the post landed. Only when no
//! echo came within [`ECHO_WAIT`] is the conversation read, once, over the few seconds around
//! the attempt (`conversations.history` with `oldest`/`latest` and at most 15 messages): since
//! May 2025 apps outside the Marketplace get one such request a minute and 15 messages
//! (docs.slack.dev/changelog/2025/05/29/rate-limit-changes-for-non-marketplace-apps).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{Bytes, ChannelContext, Delivered};

use crate::client::WebClient;
use crate::error::SlackApiError;
use crate::inbound::{OwnPost, button_value};
use crate::mrkdwn::escape;
use crate::wire::METADATA_EVENT_TYPE;

/// Most messages asked of `conversations.history` in one request: the most a non-Marketplace
/// app gets since 2025-05-29 (docs.slack.dev/apis/web-api/rate-limits).
const HISTORY_LIMIT: &str = "15";
/// Pages of history read at most to resolve one uncertain post.
const HISTORY_PAGES: usize = 3;
/// How long Slack's echo of an uncertain post is awaited before the history is read.
pub const ECHO_WAIT: Duration = Duration::from_secs(20);
/// How long to wait between looks for the echo.
const ECHO_POLL: Duration = Duration::from_secs(3);

/// Longest text of one message, in characters (Slack renders up to 4,000 well).
pub const MAX_TEXT: usize = 4000;
/// Longest section text.
const MAX_SECTION: usize = 3000;
/// Longest button label.
const MAX_LABEL: usize = 75;
/// Most elements in one actions block.
const MAX_ACTIONS: usize = 25;
/// Most blocks in one message (docs.slack.dev/reference/block-kit/blocks).
const MAX_BLOCKS: usize = 50;

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
    // Slack refuses a message of more than 50 blocks (`invalid_blocks`); the text fallback
    // still carries every option.
    blocks.truncate(MAX_BLOCKS);
    blocks
}

/// Where a part of an agent event stands, as the durable mark records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
enum Stage {
    /// The post was started; whether it landed is unknown until confirmed or resolved. (A mark
    /// of an older version without a stage means this too.)
    #[default]
    Posting,
    /// Slack confirmed it (`ts` holds its id).
    Posted,
    /// It certainly did not land (a 429, a refusal, a connection never made).
    NotPosted,
}

/// The durable mark of the part being posted to one Slack conversation (state key
/// `slack-post:{channel}`): the parts of `event` before `part` are on Slack; `part` is as
/// `stage` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    event: String,
    part: usize,
    #[serde(default)]
    stage: Stage,
    /// When the post started (Unix milliseconds; 0 on marks of older versions).
    #[serde(default)]
    at_ms: i64,
    /// The newest `ts` of ours known in the conversation before this post: an echo newer
    /// than it is this post's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// Slack's id of the posted part (`ts`, or the file id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ts: Option<String>,
    /// The uploaded file whose sharing is uncertain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

/// The newest of our own posts Slack echoed in a conversation (state key
/// `slack-echo:{channel}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Echo {
    ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    part: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    files: Vec<String>,
}

fn attempt_key(channel: &str) -> String {
    format!("slack-post:{channel}")
}

fn echo_key(channel: &str) -> String {
    format!("slack-echo:{channel}")
}

/// A Slack `ts` as a comparable number (seconds, microseconds).
fn ts_order(ts: &str) -> (u64, u64) {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    (secs.parse().unwrap_or(0), micros.parse().unwrap_or(0))
}

fn newer(a: &str, than: &str) -> bool {
    ts_order(a) > ts_order(than)
}

/// The newer of two optional `ts`.
fn newest(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if newer(&b, &a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A Unix-millisecond instant as a Slack `ts`.
fn ms_as_ts(ms: i64) -> String {
    format!("{}.{:06}", ms.div_euclid(1000), ms.rem_euclid(1000) * 1000)
}

/// The channel's durable state, or this process's memory before the channel is started
/// (tests that deliver without a runtime).
#[derive(Debug, Default)]
struct Marks {
    memory: Mutex<HashMap<String, String>>,
}

impl Marks {
    async fn load<T: serde::de::DeserializeOwned>(
        &self,
        ctx: Option<&ChannelContext>,
        key: &str,
    ) -> Result<Option<T>, SlackApiError> {
        let raw = match ctx {
            Some(ctx) => ctx
                .load_state(key)
                .await
                .map_err(|e| SlackApiError::State(e.to_string()))?,
            None => self.memory.lock().expect("marks lock").get(key).cloned(),
        };
        Ok(raw.and_then(|v| serde_json::from_str(&v).ok()))
    }

    async fn save<T: Serialize>(
        &self,
        ctx: Option<&ChannelContext>,
        key: &str,
        value: &T,
    ) -> Result<(), SlackApiError> {
        let raw = serde_json::to_string(value).unwrap_or_default();
        match ctx {
            Some(ctx) => ctx
                .save_state(key, &raw)
                .await
                .map_err(|e| SlackApiError::State(e.to_string())),
            None => {
                self.memory
                    .lock()
                    .expect("marks lock")
                    .insert(key.to_owned(), raw);
                Ok(())
            }
        }
    }
}

/// Posts agent events to Slack: each part at most once, even across retries and restarts.
#[derive(Debug)]
pub(crate) struct Poster {
    client: WebClient,
    marks: Marks,
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
            marks: Marks::default(),
        }
    }

    /// Remembers an echo of our own post (from the Events API or Socket Mode), keeping the
    /// newest per conversation.
    pub(crate) async fn record_echo(
        &self,
        ctx: Option<&ChannelContext>,
        post: &OwnPost,
    ) -> Result<(), SlackApiError> {
        let key = echo_key(&post.channel);
        let known: Option<Echo> = self.marks.load(ctx, &key).await?;
        if known.is_some_and(|e| !newer(&post.ts, &e.ts)) {
            return Ok(());
        }
        let echo = Echo {
            ts: post.ts.clone(),
            part: post.part.clone(),
            files: post.files.clone(),
        };
        self.marks.save(ctx, &key, &echo).await
    }

    /// Posts the parts of the event `event` to `channel` in order, skipping parts already
    /// posted by an earlier attempt (module docs). Returns the last part's Slack id (`ts` or
    /// file id).
    pub(crate) async fn post(
        &self,
        channel: &str,
        event: &str,
        parts: Vec<Part<'_>>,
        ctx: Option<&ChannelContext>,
    ) -> Result<Delivered, SlackApiError> {
        let key = attempt_key(channel);
        let mut mark: Option<Attempt> = self.marks.load(ctx, &key).await?;
        let mut last = Delivered::default();
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            let part_id = if count == 1 {
                event.to_owned()
            } else {
                format!("{event}#{index}")
            };
            if let Some(m) = mark.as_ref().filter(|m| m.event == event) {
                if index < m.part {
                    continue;
                }
                if index == m.part {
                    let found = match m.stage {
                        Stage::Posted => m.ts.clone(),
                        Stage::NotPosted => None,
                        Stage::Posting => self.resolve(channel, &part_id, m, ctx).await?,
                    };
                    if let Some(id) = found {
                        let posted = Attempt {
                            stage: Stage::Posted,
                            ts: Some(id.clone()),
                            ..m.clone()
                        };
                        self.keep(ctx, &key, &posted).await;
                        mark = Some(posted);
                        last = Delivered::with_id(id);
                        continue;
                    }
                }
            }
            let echo: Option<Echo> = self.marks.load(ctx, &echo_key(channel)).await?;
            let before = mark
                .as_ref()
                .and_then(|m| newest(m.after.clone(), m.ts.clone()));
            let attempt = Attempt {
                event: event.to_owned(),
                part: index,
                stage: Stage::Posting,
                at_ms: now_ms(),
                after: newest(before, echo.map(|e| e.ts)),
                ts: None,
                file: None,
            };
            // No mark, no post: the mark is what keeps a crash from posting twice.
            self.marks.save(ctx, &key, &attempt).await?;
            match self.post_part(channel, &part_id, part).await {
                Ok(id) => {
                    let posted = Attempt {
                        stage: Stage::Posted,
                        ts: Some(id.clone()),
                        ..attempt
                    };
                    self.keep(ctx, &key, &posted).await;
                    mark = Some(posted);
                    last = Delivered::with_id(id);
                }
                Err((e, file)) => {
                    let failed = if e.maybe_applied() {
                        Attempt { file, ..attempt }
                    } else {
                        Attempt {
                            stage: Stage::NotPosted,
                            ..attempt
                        }
                    };
                    self.keep(ctx, &key, &failed).await;
                    return Err(e);
                }
            }
        }
        Ok(last)
    }

    /// Saves a mark after a call; a failure is logged, not returned: the call's outcome stands,
    /// and the previous mark (a post in progress) errs on the side of resolving it again.
    async fn keep(&self, ctx: Option<&ChannelContext>, key: &str, mark: &Attempt) {
        if let Err(e) = self.marks.save(ctx, key, mark).await {
            tracing::warn!(error = %e, "cannot record a Slack post's outcome; a retry resolves it from Slack's echo");
        }
    }

    async fn post_part(
        &self,
        channel: &str,
        part_id: &str,
        part: Part<'_>,
    ) -> Result<String, (SlackApiError, Option<String>)> {
        match part {
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
            } => match self.client.upload(channel, name, data, comment).await {
                Ok(id) => Ok(id),
                // Before `files.completeUploadExternal` nothing is shared: an unshared upload
                // is invisible, so the part counts as not posted whatever the error was.
                Err((e, None)) => Err((SlackApiError::not_applied(e), None)),
                Err(failed) => Err(failed),
            },
        }
    }

    /// Whether the uncertain part of `mark` landed: its id from Slack's echo when one came,
    /// `None` when it certainly did not, or a retryable error while the echo is awaited.
    async fn resolve(
        &self,
        channel: &str,
        part_id: &str,
        mark: &Attempt,
        ctx: Option<&ChannelContext>,
    ) -> Result<Option<String>, SlackApiError> {
        let echo: Option<Echo> = self.marks.load(ctx, &echo_key(channel)).await?;
        let floor = mark
            .after
            .clone()
            .unwrap_or_else(|| ms_as_ts(mark.at_ms.saturating_sub(60_000).max(0)));
        if let Some(echo) = echo {
            let id = |ts: String| Some(mark.file.clone().unwrap_or(ts));
            if echo.part.as_deref() == Some(part_id) {
                return Ok(id(echo.ts));
            }
            if let Some(file) = &mark.file
                && echo.files.contains(file)
            {
                return Ok(Some(file.clone()));
            }
            if newer(&echo.ts, &floor) {
                return Ok(id(echo.ts));
            }
        }
        let waited = Duration::from_millis(now_ms().saturating_sub(mark.at_ms).max(0) as u64);
        if mark.at_ms > 0 && waited < ECHO_WAIT {
            return Err(SlackApiError::Refused {
                error: "awaiting_echo".into(),
                retry_after: Some(ECHO_POLL),
            });
        }
        self.find_in_history(channel, part_id, mark, &floor).await
    }

    /// The last resort for an uncertain part: the conversation's messages between its
    /// predecessor and a minute after the attempt, at most [`HISTORY_LIMIT`] a page. Without
    /// the history scope the part counts as not posted (a possible repeat beats a loss).
    async fn find_in_history(
        &self,
        channel: &str,
        part_id: &str,
        mark: &Attempt,
        oldest: &str,
    ) -> Result<Option<String>, SlackApiError> {
        let mut cursor: Option<String> = None;
        for _ in 0..HISTORY_PAGES {
            let mut params = vec![
                ("channel", channel.to_owned()),
                ("limit", HISTORY_LIMIT.to_owned()),
                ("include_all_metadata", "true".to_owned()),
                ("oldest", oldest.to_owned()),
            ];
            if mark.at_ms > 0 {
                params.push(("latest", ms_as_ts(mark.at_ms.saturating_add(60_000))));
            }
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let history = match self.client.call("conversations.history", &params).await {
                Ok(h) => h,
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the conversation to check an uncertain post; posting again");
                    return Ok(None);
                }
            };
            let messages = history["messages"].as_array().cloned().unwrap_or_default();
            let file = mark.file.as_deref();
            let found = messages.iter().find_map(|m| {
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
            });
            if found.is_some() {
                return Ok(found);
            }
            cursor = history["response_metadata"]["next_cursor"]
                .as_str()
                .filter(|c| !c.is_empty() && history["has_more"] == true)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(None)
    }
}
