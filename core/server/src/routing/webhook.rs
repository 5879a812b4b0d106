//! `POST /webhooks/liveperson`: authenticate the raw bytes, parse, map each change to its
//! consumer, and answer `200` only once the resulting work is in the to-channel outbox.

use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use switchboard_core::{Outbound, OutboundEvent};
use switchboard_liveperson::translate;
use switchboard_liveperson::webhook::{
    self, ConversationChange, MessageChange, MessageEvent, NotificationChange, Role,
};
use switchboard_liveperson::{AgentEvent, DialogRef, agent_event};
use switchboard_store::{ConsumerRecord, ConversationState, Direction, NewItem};
use tracing::Instrument as _;

use super::jobs::{self, AckRef, ChannelWork, DialogWire, ToChannelJob};
use super::order::{Planned, now_ms};
use super::{Failure, Routing};
use crate::error::ApiError;
use crate::handlers::LivePersonWebhook;
use crate::metrics as m;

/// How long webhook dedup keys live: LivePerson keeps retrying for up to three days
/// (`retention_time` ≤ 259200 s), plus a margin.
pub const WEBHOOK_DEDUP_TTL: Duration = Duration::from_secs(4 * 24 * 3600);

/// State scope: the last chat state queued per dialog and originator, with the dialog's next
/// expected sequence at that moment (`{state}|{next}`).
const CHAT_SCOPE: &str = "lp-chat";

/// State scope: the conversation of each survey (POST_SURVEY) dialog of a known consumer, by
/// dialog id. Survey events may name only their dialog: the post-conversation-survey
/// tutorial's survey notifications carry `dialogId` and no `conversationId` (developer-center
/// `pages/Documents/ClientSideConfiguration/MessagingWindowAPI/Tutorials/post-conversation-survey-pcs.md`,
/// step 10), and the ExConversation notification that opened the dialog says whose it is.
const DIALOG_SCOPE: &str = "lp-dialog";

/// State scope: messaging events of a conversation not known yet, parked until its
/// ExConversation notification says whose it is, keyed `{conversation}:{dialog}:{sequence:020}`
/// (a redelivery overwrites its own row). An agent-started ("resumed") conversation's first
/// messages can arrive before the notification that it was created: the two come through
/// different webhooks, and only retention-time retries keep any order (docs/protocol/liveperson.md §7.5, §7.6).
const ORPHAN_SCOPE: &str = "lp-orphan";

/// How long a parked event of an unknown conversation waits for its conversation.
const ORPHAN_HOLD: Duration = Duration::from_secs(60);

/// The most events of unknown conversations this process keeps parked at once: webhooks cover
/// every conversation of the account, most of them other channels' that never become known.
const ORPHAN_LIMIT: usize = 10_000;

/// State scope: the last agent assigned to each conversation (empty once a transfer was
/// announced), to tell an agent-to-agent transfer from an agent joining.
const AGENT_SCOPE: &str = "lp-agent";

/// The LivePerson webhook handler.
#[derive(Debug, Clone)]
pub struct LpWebhook {
    routing: Routing,
}

impl LpWebhook {
    pub(super) fn new(routing: Routing) -> Self {
        Self { routing }
    }
}

fn count(outcome: &'static str) {
    metrics::counter!(m::LP_WEBHOOKS, "outcome" => outcome).increment(1);
}

#[async_trait]
impl LivePersonWebhook for LpWebhook {
    /// `401` for a forged request; `503` when the store cannot take what the notification
    /// needs (LivePerson keeps it and retries); `200` for everything authentic, usable or not.
    ///
    /// An authentic notification that cannot be used (not JSON, not an object, a change whose
    /// work cannot even be serialized) is answered `200` and recorded (the `unusable` outcome, and a log line with the
    /// notification's id): in retention-time retry mode, the manifest's default, LivePerson
    /// counts any other answer as a failure of the whole app installation and holds the events
    /// of every conversation until it stops (developer-center
    /// `pages/Documents/MessagingChannels/ConnectorAPI/Webhooks/retry-policy.md`; docs/protocol/liveperson.md §7.5).
    async fn handle(&self, headers: &HeaderMap, body: Bytes) -> Result<(), ApiError> {
        let started = tokio::time::Instant::now();
        let engine = &self.routing.inner.engine;
        if let Err(e) = webhook::verify(headers, &body, engine.config()) {
            count("rejected");
            tracing::warn!(reason = %e, "LivePerson webhook refused");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                e.to_string(),
            ));
        }
        let notification = match webhook::parse(&body) {
            Ok(notification) => notification,
            Err(e) => {
                unusable(&body, &e.to_string());
                return Ok(());
            }
        };
        // Every change is applied idempotently (each queued event carries a dedup key, state
        // is saved after what depends on it), so when one change fails and LivePerson retries
        // the whole notification, the changes already applied are not applied twice.
        for change in &notification.changes {
            let result = match change {
                NotificationChange::Message(message) => self.routing.on_message(message).await,
                NotificationChange::Conversation(conversation) => {
                    match self.routing.on_conversation(conversation).await {
                        Ok(()) => self.routing.release_orphans(conversation).await,
                        failed => failed,
                    }
                }
                NotificationChange::Unknown { reason } => {
                    tracing::debug!(
                        notification = %notification_id(&body),
                        %reason,
                        "ignored a notification change"
                    );
                    count("ignored");
                    Ok(())
                }
            };
            match result {
                Ok(()) => {}
                // Retrying cannot make it usable, and a refusal would hold every other
                // conversation's events: it is recorded and the rest goes on.
                Err(Failure::Dead { reason }) => unusable(&body, &reason),
                Err(failure) => {
                    let reason = failure.into_reason();
                    tracing::error!(
                        notification = %notification_id(&body),
                        %reason,
                        "cannot store a LivePerson notification; LivePerson will retry"
                    );
                    super::echo::webhooks_failed(&self.routing.inner.store).await;
                    return Err(ApiError::unavailable(
                        "cannot store the notification right now",
                        2,
                    ));
                }
            }
        }
        // Too late for LivePerson, which retries it (and its echoes) later.
        if started.elapsed() >= super::echo::SLOW_ANSWER {
            super::echo::webhooks_failed(&self.routing.inner.store).await;
        }
        Ok(())
    }
}

/// A short, stable id of a notification: the first 16 hex digits of the SHA-256 of its bytes.
/// LivePerson's notifications carry no id of their own; this one is the same on every
/// redelivery, so an operator can match log lines with LivePerson's retries.
fn notification_id(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body)
        .iter()
        .take(8)
        .fold(String::with_capacity(16), |mut id, byte| {
            use std::fmt::Write as _;
            let _ = write!(id, "{byte:02x}");
            id
        })
}

/// Records an authentic notification (or one of its changes) that cannot be used.
fn unusable(body: &[u8], reason: &str) {
    count("unusable");
    tracing::warn!(
        notification = %notification_id(body),
        bytes = body.len(),
        %reason,
        "an authentic LivePerson notification could not be used; answered 200 so that \
         LivePerson does not hold the app's other events"
    );
}

/// Which consumer each conversation belongs to (its key and LivePerson participant id), for
/// the messaging events of its notifications: a conversation never changes hands, so the
/// answer is kept instead of being read from the store for every event. Bounded: it starts
/// over when full. A consumer's entries are dropped when this process maps the consumer to
/// another conversation; when another instance does, a late event of the old conversation may
/// still reach the consumer here, where the store alone would have ignored it.
#[derive(Debug, Default)]
pub(super) struct KnownConversations {
    map: std::sync::Mutex<std::collections::HashMap<String, (String, Option<String>)>>,
    /// The events of unknown conversations this process parked (see [`ORPHAN_SCOPE`]).
    orphans: ParkedOrphans,
}

/// The events of not-yet-known conversations this process parked, oldest first, with when:
/// bounds their number ([`ORPHAN_LIMIT`]) and finds the expired ones to delete without
/// listing the store. Rows parked before a restart are swept once, at the first park.
#[derive(Debug, Default)]
struct ParkedOrphans {
    rows: std::sync::Mutex<std::collections::VecDeque<(String, i64)>>,
    swept: std::sync::atomic::AtomicBool,
}

/// A parked event of a conversation not known yet.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OrphanRow {
    /// When it was parked (ms since the epoch).
    at_ms: i64,
    /// The change as parsed.
    change: MessageChange,
}

fn orphan_hold_ms() -> i64 {
    i64::try_from(ORPHAN_HOLD.as_millis()).unwrap_or(i64::MAX)
}

/// The most conversations [`KnownConversations`] keeps.
const KNOWN_CONVERSATIONS: usize = 10_000;

impl KnownConversations {
    fn get(&self, conversation: &str) -> Option<(String, Option<String>)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(conversation).cloned()
    }

    fn insert(&self, conversation: &str, consumer: (String, Option<String>)) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KNOWN_CONVERSATIONS {
            map.clear();
        }
        map.insert(conversation.to_owned(), consumer);
    }

    /// Forgets the conversations of consumer `key`: it moves to another one, and events of
    /// the old one are then no longer its own (as the store says).
    pub(super) fn forget_consumer(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (consumer, _)| consumer != key);
    }
}

impl Routing {
    /// The consumer a conversation belongs to (key, LivePerson participant id), or `None` for
    /// a conversation of another channel.
    async fn consumer_of(
        &self,
        conversation: &str,
    ) -> Result<Option<(String, Option<String>)>, Failure> {
        if let Some(known) = self.inner.known.get(conversation) {
            return Ok(Some(known));
        }
        let record = self
            .inner
            .store
            .consumer_by_conversation(conversation)
            .await
            .map_err(super::failures::store_failure)?;
        Ok(record.map(|record| {
            let lp_id = record.identity.map(|i| i.lp_consumer_id);
            let consumer = (record.key, lp_id);
            // Only a complete answer is kept: the participant id may still be learnt.
            if consumer.1.is_some() {
                self.inner.known.insert(conversation, consumer.clone());
            }
            consumer
        }))
    }

    /// The conversation a survey dialog belongs to, once its ExConversation announced it.
    async fn survey_conversation(&self, dialog: &str) -> Result<Option<String>, Failure> {
        self.inner
            .store
            .load_state(DIALOG_SCOPE, dialog)
            .await
            .map_err(super::failures::store_failure)
    }

    async fn on_message(&self, message: &MessageChange) -> Result<(), Failure> {
        self.take_message(message, true).await
    }

    /// Takes one messaging event to its consumer's channel; one of a conversation not known
    /// (yet) is parked when `may_park`, else dropped (a release never parks again).
    async fn take_message(&self, message: &MessageChange, may_park: bool) -> Result<(), Failure> {
        let mut consumer = self.consumer_of(&message.conversation_id).await?;
        let mut resolved = None;
        // Without `conversationId` the parser fell back to the dialog id (docs/protocol/liveperson.md §7.4.1): a survey
        // dialog's events come so (see DIALOG_SCOPE).
        if consumer.is_none()
            && !message.names_conversation
            && let Some(conversation) = self.survey_conversation(&message.dialog_id).await?
        {
            consumer = self.consumer_of(&conversation).await?;
            let mut owned = message.clone();
            owned.conversation_id = conversation;
            owned.names_conversation = true;
            resolved = Some(owned);
        }
        let message = resolved.as_ref().unwrap_or(message);
        let Some((key, lp_id)) = consumer else {
            // Another channel's conversation (webhooks cover the whole account), or one whose
            // notification has not come yet.
            if may_park {
                return self.park_orphan(message).await;
            }
            count("ignored");
            return Ok(());
        };
        let Some((instance, consumer_id)) = split_key(&key) else {
            return Ok(());
        };
        let job = self
            .channel_job(message, lp_id.as_deref(), instance, consumer_id)
            .await?;
        if job.is_none() {
            count("ignored");
        }
        let planned = Planned {
            consumer_key: key.clone(),
            job,
            dedup: message.dedup_key(),
        };
        match message.sequence {
            Some(sequence) => {
                let dialog = jobs::dialog_key(&DialogWire {
                    conversation_id: message.conversation_id.clone(),
                    dialog_id: message.dialog_id.clone(),
                });
                self.in_order(&dialog, sequence, planned).await
            }
            // Chat states have no place in the sequence: they go at once.
            None => {
                if let Some(job) = &planned.job {
                    let stored = self.enqueue_chat_state(message, &key, job).await?;
                    count(if stored { "accepted" } else { "duplicate" });
                }
                Ok(())
            }
        }
    }

    /// Queues a chat state for the consumer's channel, unless it repeats the last one queued for
    /// the same dialog and originator with no sequenced event in between.
    ///
    /// LivePerson neither numbers nor timestamps chat states (docs/protocol/liveperson.md §7.4.1), so a redelivery
    /// (a duplicate, or the retry of a notification that failed partway) looks exactly like a
    /// genuine repeat. They are last-writer-wins (docs/protocol/liveperson.md §7.5): a state equal to the last one queued,
    /// while the dialog's next expected sequence has not moved, changes nothing for the
    /// consumer and is dropped. `COMPOSING`, `PAUSE`, `COMPOSING` all go; so does a
    /// `COMPOSING` after the agent's message. Returns whether it was queued.
    async fn enqueue_chat_state(
        &self,
        message: &MessageChange,
        consumer_key: &str,
        job: &ToChannelJob,
    ) -> Result<bool, Failure> {
        let store = &self.inner.store;
        let dialog = jobs::dialog_key(&DialogWire {
            conversation_id: message.conversation_id.clone(),
            dialog_id: message.dialog_id.clone(),
        });
        let _ordered = self.dialog_lock(&dialog).lock().await;
        let next = store
            .load_state(super::order::NEXT_SCOPE, &dialog)
            .await
            .map_err(super::failures::store_failure)?
            .unwrap_or_default();
        // The event as LivePerson sent it (the job carries an id of ours, new each time).
        let mark = format!(
            "{}|{next}",
            jobs::text_digest(&format!("{:?}", message.event))
        );
        let key = format!(
            "{dialog}:{}",
            message.originator_id.as_deref().unwrap_or_default()
        );
        let last = store
            .load_state(CHAT_SCOPE, &key)
            .await
            .map_err(super::failures::store_failure)?;
        if last.as_deref() == Some(mark.as_str()) {
            return Ok(false);
        }
        let span = crate::telemetry::spans::store_write(store, Direction::ToChannel);
        let item = NewItem {
            consumer_key: consumer_key.to_owned(),
            payload: serde_json::to_value(job).map_err(|e| Failure::dead(e.to_string()))?,
            trace_context: crate::telemetry::to_stored(&span),
        };
        let outcome = store
            .enqueue(Direction::ToChannel, &[item], None)
            .instrument(span)
            .await
            .map_err(super::failures::store_failure)?;
        self.inner.wake_channel.notify_one();
        self.trace_enqueued(consumer_key, job, &outcome);
        store
            .save_state(CHAT_SCOPE, &key, &mark)
            .await
            .map_err(super::failures::store_failure)?;
        Ok(true)
    }

    /// What one agent event means for the consumer's channel: a job, or nothing to deliver.
    async fn channel_job(
        &self,
        message: &MessageChange,
        lp_id: Option<&str>,
        instance: &str,
        consumer_id: &str,
    ) -> Result<Option<ToChannelJob>, Failure> {
        let store = &self.inner.store;
        if let (Some(Role::Consumer), MessageEvent::Text { text, .. }, Some(sequence)) =
            (&message.role, &message.event, message.sequence)
        {
            self.remember_echo(message, text, sequence).await?;
            self.trace_echo(message, sequence, instance, consumer_id);
        }
        if !message.is_for_consumer(lp_id) {
            return Ok(None);
        }
        let Some(event) = agent_event(message) else {
            return Ok(None);
        };
        let dialog = DialogWire {
            conversation_id: message.conversation_id.clone(),
            dialog_id: message.dialog_id.clone(),
        };
        let id = message
            .sequence
            .map(|s| translate::message_ref(&DialogRef::from(&dialog), s))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let ack = message.sequence.map(|sequence| AckRef {
            dialog: dialog.clone(),
            sequence,
        });
        let job = |work, ack| ToChannelJob {
            instance: instance.to_owned(),
            consumer_id: consumer_id.to_owned(),
            work,
            ack,
        };
        Ok(Some(match event {
            AgentEvent::Deliver { outbound, clicks } => {
                if !clicks.is_empty() {
                    let table = serde_json::to_string(&clicks).unwrap_or_default();
                    store
                        .save_state(jobs::CLICKS_SCOPE, &id, &table)
                        .await
                        .map_err(super::failures::store_failure)?;
                }
                let ack = match outbound {
                    Outbound::ChatState { .. } => None,
                    _ => ack,
                };
                job(
                    ChannelWork::Deliver {
                        event: OutboundEvent::new(id, outbound),
                    },
                    ack,
                )
            }
            AgentEvent::HostedFile {
                relative_path,
                file_type,
                caption,
            } => job(
                ChannelWork::HostedFile {
                    id,
                    relative_path,
                    file_type,
                    caption,
                },
                ack,
            ),
            AgentEvent::Receipt { status, sequences } => {
                let mut messages = Vec::new();
                for sequence in sequences {
                    let key = jobs::sequence_key(&dialog, sequence);
                    if let Some(platform_id) = store
                        .load_state(jobs::SEQUENCE_SCOPE, &key)
                        .await
                        .map_err(super::failures::store_failure)?
                        && !messages.contains(&platform_id)
                    {
                        messages.push(platform_id);
                    }
                }
                if messages.is_empty() {
                    return Ok(None);
                }
                job(
                    ChannelWork::Deliver {
                        event: OutboundEvent::new(id, Outbound::Receipt { status, messages }),
                    },
                    None,
                )
            }
        }))
    }

    /// Records LivePerson's echo of a consumer text as the `confirmed` stage of the event it
    /// came from: our `ExternalId` (`sb-{item}-{step}`) names its outbox item.
    fn trace_echo(
        &self,
        message: &MessageChange,
        sequence: i64,
        instance: &str,
        consumer_id: &str,
    ) {
        if self.inner.settings.trace.is_none() {
            return;
        }
        let key = switchboard_core::ConsumerAddress::new(instance, consumer_id).key();
        let mut entry = super::timeline::for_consumer(
            Direction::ToLivePerson,
            switchboard_store::TraceStage::Confirmed,
            &key,
        );
        let external = jobs::echoed_external_id(message.metadata.as_ref());
        entry.item = external
            .and_then(|id| id.strip_prefix("sb-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|item| item.parse().ok());
        entry.conversation_id = Some(message.conversation_id.clone());
        entry.detail = serde_json::json!({ "by": "liveperson echo", "sequence": sequence });
        if message.dialog_id != message.conversation_id {
            entry.detail["dialog_id"] = message.dialog_id.as_str().into();
        }
        self.trace(entry);
    }

    /// Keeps the consumer's latest echoed text per dialog (see `ECHO_SCOPE`).
    async fn remember_echo(
        &self,
        message: &MessageChange,
        text: &str,
        sequence: i64,
    ) -> Result<(), Failure> {
        let store = &self.inner.store;
        let fail = super::failures::store_failure;
        let key = jobs::dialog_key(&DialogWire {
            conversation_id: message.conversation_id.clone(),
            dialog_id: message.dialog_id.clone(),
        });
        let newer = store
            .load_state(jobs::ECHO_SCOPE, &key)
            .await
            .map_err(fail)?
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v["sequence"].as_i64())
            .is_none_or(|known| known < sequence);
        if newer {
            let mut value =
                serde_json::json!({ "sequence": sequence, "text": jobs::text_digest(text) });
            // The id our send carried, which LivePerson echoes in the change's `metadata`
            // (developer-center `messaging-agent-sdk-conversation-metadata-guide.html`).
            if let Some(id) = jobs::echoed_external_id(message.metadata.as_ref()) {
                value["external_id"] = id.into();
            }
            store
                .save_state(jobs::ECHO_SCOPE, &key, &value.to_string())
                .await
                .map_err(fail)?;
        }
        Ok(())
    }

    async fn queue(
        &self,
        record: &ConsumerRecord,
        instance: &str,
        consumer_id: &str,
        work: ChannelWork,
        ack: Option<AckRef>,
        dedup: Option<String>,
    ) -> Result<(), Failure> {
        let job = ToChannelJob {
            instance: instance.to_owned(),
            consumer_id: consumer_id.to_owned(),
            work,
            ack,
        };
        let stored = self
            .enqueue_for_channel(&record.key, &job, dedup.as_deref(), None)
            .await?;
        count(if stored { "accepted" } else { "duplicate" });
        Ok(())
    }

    /// Queues a lifecycle notice (closed, transferred) once per `dedup` key.
    async fn notice(
        &self,
        record: &ConsumerRecord,
        instance: &str,
        consumer_id: &str,
        event: OutboundEvent,
        dedup: String,
    ) -> Result<(), Failure> {
        let work = ChannelWork::Deliver { event };
        self.queue(record, instance, consumer_id, work, None, Some(dedup))
            .await
    }

    async fn on_conversation(&self, change: &ConversationChange) -> Result<(), Failure> {
        let store = &self.inner.store;
        let fail = super::failures::store_failure;
        let conversation = &change.conversation_id;
        // Complete state each time: keep only the newest (docs/protocol/liveperson.md §7.5).
        if let Some(ts) = change.last_update_ms
            && !store
                .advance_conversation_clock(conversation, ts)
                .await
                .map_err(fail)?
        {
            count("stale");
            return Ok(());
        }
        let mut record = store
            .consumer_by_conversation(conversation)
            .await
            .map_err(fail)?;
        if record.is_none()
            && let Some(participant) = &change.consumer_id
        {
            record = store.consumer_by_lp_id(participant).await.map_err(fail)?;
        }
        let Some(record) = record else {
            count("ignored");
            return Ok(());
        };
        let Some((instance, consumer_id)) = split_key(&record.key) else {
            return Ok(());
        };
        let current = record.conversation_id.as_deref() == Some(conversation.as_str());
        if let Some(event) = translate::closed_event(change) {
            if store
                .close_conversation(conversation)
                .await
                .map_err(fail)?
                .is_some()
                || current
            {
                let dedup = format!("lp-closed:{conversation}");
                self.notice(&record, instance, consumer_id, event, dedup)
                    .await?;
            }
            return Ok(());
        }
        // Open: adopt a conversation we did not create (agent-started, or created before a
        // crash), and follow the survey dialog.
        let dialog = change
            .open_survey_dialog()
            .map(|d| d.dialog_id.clone())
            .unwrap_or_else(|| conversation.clone());
        if !current
            || record.state != ConversationState::Open
            || record.dialog_id.as_deref() != Some(dialog.as_str())
        {
            // The survey dialog's conversation, for its events that name only the dialog;
            // saved before the dialog is followed, so a retry after a failure saves it again.
            if dialog != *conversation {
                store
                    .save_state(DIALOG_SCOPE, &dialog, conversation)
                    .await
                    .map_err(fail)?;
            }
            if current {
                store
                    .set_dialog(conversation, &dialog)
                    .await
                    .map_err(fail)?;
            } else {
                tracing::info!(%conversation, consumer = %masked_key(&record.key), "adopting a conversation LivePerson opened for a known consumer");
                store
                    .open_conversation(&record.key, conversation, &dialog)
                    .await
                    .map_err(fail)?;
                self.inner.known.forget_consumer(&record.key);
            }
        }
        self.transfers(change, &record, instance, consumer_id).await
    }

    /// Tells the consumer about a transfer (docs/protocol/liveperson.md §7.6): the skill changed between two real skills
    /// (or away from the skill an agent already served them on), or another agent took over
    /// from the last one. Routing's first move off skill `-1`, before any agent joined, is
    /// not one: the consumer was never with anybody.
    async fn transfers(
        &self,
        change: &ConversationChange,
        record: &ConsumerRecord,
        instance: &str,
        consumer_id: &str,
    ) -> Result<(), Failure> {
        let store = &self.inner.store;
        let fail = super::failures::store_failure;
        let conversation = &change.conversation_id;
        let last_agent = store
            .load_state(AGENT_SCOPE, conversation)
            .await
            .map_err(fail)?
            .filter(|agent| !agent.is_empty());
        let mut announced = false;
        if let Some(skill) = &change.skill_id {
            let previous = store
                .load_state(jobs::SKILL_SCOPE, conversation)
                .await
                .map_err(fail)?;
            if let Some(previous) = previous.as_deref()
                && previous != skill
                && (is_real_skill(previous) || last_agent.is_some())
            {
                // The notice is queued (once, by its dedup key) before the new skill is
                // saved: if saving fails, LivePerson's retry still sees the change and queues
                // nothing twice; saved first, a failure in between would lose the notice.
                let event = OutboundEvent::new(
                    format!("transfer:{conversation}:{skill}"),
                    Outbound::Transferred {
                        skill: Some(skill.clone()),
                    },
                );
                let dedup = format!(
                    "lp-transfer:{conversation}:{}",
                    change.last_update_ms.unwrap_or_default()
                );
                self.notice(record, instance, consumer_id, event, dedup)
                    .await?;
                announced = true;
            }
            if previous.as_deref() != Some(skill.as_str()) {
                store
                    .save_state(jobs::SKILL_SCOPE, conversation, skill)
                    .await
                    .map_err(fail)?;
            }
        }
        let agent = change.assigned_agents.first();
        if !announced
            && let (Some(last), Some(agent)) = (&last_agent, agent)
            && !change.assigned_agents.contains(last)
        {
            let event = OutboundEvent::new(
                format!("transfer:{conversation}:agent:{agent}"),
                Outbound::Transferred { skill: None },
            );
            let dedup = format!("lp-transfer-agent:{conversation}:{agent}");
            self.notice(record, instance, consumer_id, event, dedup)
                .await?;
        }
        // Remembered: the agent now assigned, or none after a skill transfer (whoever joins
        // next is the transfer's destination, already announced).
        let remembered = if announced {
            Some(String::new())
        } else {
            agent.filter(|a| last_agent.as_ref() != Some(*a)).cloned()
        };
        if let Some(remembered) = remembered {
            store
                .save_state(AGENT_SCOPE, conversation, &remembered)
                .await
                .map_err(fail)?;
        }
        Ok(())
    }

    /// Parks a messaging event of a conversation not known yet (see [`ORPHAN_SCOPE`]), if it
    /// is one a consumer would see: consumer echoes, agent-only messages and chat states (not
    /// worth keeping: the next one replaces them) are left.
    async fn park_orphan(&self, message: &MessageChange) -> Result<(), Failure> {
        let Some(sequence) = message.sequence else {
            count("ignored");
            return Ok(());
        };
        if !message.is_for_consumer(None) {
            count("ignored");
            return Ok(());
        }
        let store = &self.inner.store;
        let fail = super::failures::store_failure;
        let orphans = &self.inner.known.orphans;
        self.expire_orphans().await?;
        let key = format!(
            "{}:{}:{sequence:020}",
            message.conversation_id, message.dialog_id
        );
        let at_ms = now_ms();
        {
            let rows = orphans.rows.lock().unwrap_or_else(|p| p.into_inner());
            if rows.len() >= ORPHAN_LIMIT {
                drop(rows);
                tracing::debug!(
                    conversation = %message.conversation_id,
                    "too many events of unknown conversations parked; this one is dropped"
                );
                count("ignored");
                return Ok(());
            }
        }
        let row = OrphanRow {
            at_ms,
            change: message.clone(),
        };
        let value = serde_json::to_string(&row).map_err(|e| Failure::dead(e.to_string()))?;
        store
            .save_state(ORPHAN_SCOPE, &key, &value)
            .await
            .map_err(fail)?;
        orphans
            .rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((key, at_ms));
        count("orphaned");
        // Its conversation may have become known while it was being parked (its release
        // found nothing yet): then it goes now.
        let known = self.consumer_of(&message.conversation_id).await?.is_some()
            || (!message.names_conversation
                && self
                    .survey_conversation(&message.dialog_id)
                    .await?
                    .is_some());
        if known {
            self.release_orphans_of(&message.conversation_id).await?;
        }
        Ok(())
    }

    /// Deletes the parked events whose wait is over: those this process parked, and once per
    /// process every expired row in the store (left by a process that stopped).
    async fn expire_orphans(&self) -> Result<(), Failure> {
        let store = &self.inner.store;
        let fail = super::failures::store_failure;
        let orphans = &self.inner.known.orphans;
        let deadline = now_ms() - orphan_hold_ms();
        if !orphans
            .swept
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let rows = store
                .states_with_prefix(ORPHAN_SCOPE, "")
                .await
                .map_err(fail)?;
            for (key, value) in rows {
                let at_ms = serde_json::from_str::<OrphanRow>(&value).map_or(0, |r| r.at_ms);
                if at_ms <= deadline {
                    store.delete_state(ORPHAN_SCOPE, &key).await.map_err(fail)?;
                }
            }
        }
        loop {
            let expired = {
                let mut rows = orphans.rows.lock().unwrap_or_else(|p| p.into_inner());
                match rows.front() {
                    Some((_, at_ms)) if *at_ms <= deadline => rows.pop_front(),
                    _ => None,
                }
            };
            let Some((key, _)) = expired else {
                return Ok(());
            };
            // Gone already when its conversation became known in time.
            store.delete_state(ORPHAN_SCOPE, &key).await.map_err(fail)?;
        }
    }

    /// Delivers what was parked for the conversation of `change` (and for its dialogs, whose
    /// survey events may name only the dialog), now that it may be known.
    async fn release_orphans(&self, change: &ConversationChange) -> Result<(), Failure> {
        self.release_orphans_of(&change.conversation_id).await?;
        for dialog in &change.dialogs {
            if dialog.dialog_id != change.conversation_id {
                self.release_orphans_of(&dialog.dialog_id).await?;
            }
        }
        Ok(())
    }

    /// Takes the events parked under `id` (a conversation id, or a survey dialog id) to the
    /// consumer in sequence order, if `id` now has a consumer; expired ones are
    /// dropped.
    async fn release_orphans_of(&self, id: &str) -> Result<(), Failure> {
        let store = &self.inner.store;
        let fail = super::failures::store_failure;
        let rows = store
            .states_with_prefix(ORPHAN_SCOPE, &format!("{id}:"))
            .await
            .map_err(fail)?;
        if rows.is_empty() {
            return Ok(());
        }
        let conversation = match self.consumer_of(id).await? {
            Some(_) => Some(id.to_owned()),
            None => self.survey_conversation(id).await?,
        };
        let Some(conversation) = conversation else {
            return Ok(());
        };
        if self.consumer_of(&conversation).await?.is_none() {
            return Ok(());
        }
        let deadline = now_ms() - orphan_hold_ms();
        for (key, value) in rows {
            match serde_json::from_str::<OrphanRow>(&value) {
                Ok(row) if row.at_ms > deadline => {
                    tracing::debug!(%conversation, "delivering an event that came before its conversation");
                    // Boxed: parking ends by releasing, which delivers through here (and
                    // never parks again, whatever changed meanwhile).
                    Box::pin(self.take_message(&row.change, false)).await?;
                }
                _ => {}
            }
            store.delete_state(ORPHAN_SCOPE, &key).await.map_err(fail)?;
        }
        Ok(())
    }
}

/// A skill LivePerson routes to: not `-1` ("any skill") and not empty.
fn is_real_skill(skill: &str) -> bool {
    let skill = skill.trim();
    !skill.is_empty() && skill != "-1"
}

/// `ConsumerAddress::key()` back into (instance, id): `{len}:{instance}:{id}`.
pub(super) fn split_key(key: &str) -> Option<(&str, &str)> {
    let (len, rest) = key.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let instance = rest.get(..len)?;
    let id = rest.get(len..)?.strip_prefix(':')?;
    Some((instance, id))
}

/// A consumer key as warnings and errors log it: `instance/***1234`
/// ([`switchboard_core::ConsumerAddress::masked`]).
pub(super) fn masked_key(key: &str) -> String {
    match split_key(key) {
        Some((instance, id)) => format!("{instance}/{}", switchboard_core::mask_id(id)),
        None => switchboard_core::mask_id(key),
    }
}

#[cfg(test)]
mod tests {
    use switchboard_core::ConsumerAddress;

    #[test]
    fn keys_split_back_into_instance_and_id() {
        let key = ConsumerAddress::new("s:ms", "+49:1").key();
        assert_eq!(super::split_key(&key), Some(("s:ms", "+49:1")));
        assert_eq!(super::split_key("x"), None);
        assert_eq!(super::split_key("9:ab:c"), None);
    }
}
