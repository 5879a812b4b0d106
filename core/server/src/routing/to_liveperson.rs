//! The to-LivePerson worker: a consumer's events become Send API requests in their
//! conversation, opening one when none is open (exactly once: only one event per consumer is
//! ever in flight).

use std::time::Duration;

use switchboard_core::{
    AttachmentBody, ChatState, ConsumerAddress, DeliveryError, Inbound, InboundEvent,
    ReceiptStatus, Secret,
};
use switchboard_liveperson::structured::ClickAction;
use switchboard_liveperson::{
    AcceptStatus, ConsumerIdentity, DialogRef, EngineError, MAX_UPLOAD_BYTES, SendRequest,
    ext_consumer_id, split_for_send, upload_file_type,
};
use switchboard_store::{ConsumerRecord, ConversationState, Identity, OutboxItem};

use super::echo;
use super::jobs::{self, DialogWire, ToLpJob};
use super::{Failure, Routing};
use crate::metrics as m;
use crate::telemetry::spans;
use switchboard_liveperson::SendOutcome;
use tracing::Instrument as _;

/// Why an event waits: its previous send may have reached LivePerson, whose echo is awaited.
const ECHO_WAIT: &str = "waiting for LivePerson's echo of a send that was interrupted";
/// The streak of echo waits in a row (see [`switchboard_store::Streak`]).
const ECHO_WAIT_STREAK: &str = "echo wait";
/// The streak of "already has open conversation" answers in a row.
const CONFLICT_STREAK: &str = "open conflict";
/// State scope: per consumer key, `<item id>:<unix ms>` of the first time the event `item id`
/// met an open conversation LivePerson knows and we do not ([`Routing::await_adoption`]).
const OPEN_CONFLICT_SCOPE: &str = "lp-open-conflict";

/// State scope: the consumer whose `COMPOSING` awaits a `PAUSE` (value: a marker naming the
/// latest `COMPOSING`), see [`TYPING_TIMEOUT`].
const TYPING_SCOPE: &str = "lp-typing";
/// After `COMPOSING`, LivePerson shows the agent "typing" until another chat state arrives;
/// a text does not clear it (docs/protocol/liveperson.md §5.5). When the channel reports nothing else for this long, the
/// router publishes `PAUSE` itself (docs/protocol/liveperson.md §13 "then a non-COMPOSING state … after a timeout").
/// Scaled like the retry delays (`liveperson.retry_scale`).
const TYPING_TIMEOUT: Duration = Duration::from_secs(10);

/// A text step a previous attempt marked as sending: which, and when (see
/// [`jobs::ToLpJob::Inbound`]).
#[derive(Debug, Clone, Copy)]
struct Mark {
    step: usize,
    at_ms: Option<i64>,
}

/// What [`Routing::unconfirmed_send`] looks for.
#[derive(Debug, Clone, Copy)]
struct Unconfirmed<'a> {
    text: &'a str,
    /// The channel's id of the consumer's message.
    platform_id: Option<&'a str>,
    /// The `ExternalId` the text carries, if ours.
    external_id: Option<&'a str>,
    marked_at_ms: Option<i64>,
}

/// Why a plan stopped before its end.
#[derive(Debug)]
enum Halt {
    /// LivePerson refused or failed a request.
    Engine(EngineError),
    /// The worker cannot go on: a write the next request depends on failed (its "sending"
    /// mark: no mark, no send), or the lease is no longer ours.
    Stop(Failure),
}

impl From<EngineError> for Halt {
    fn from(e: EngineError) -> Self {
        Halt::Engine(e)
    }
}

/// One request of a plan.
#[derive(Debug)]
enum Step {
    /// A SEND request; `remember` is the consumer message's platform id, recorded under the
    /// answer's sequence so agent receipts can name it.
    Send {
        request: SendRequest,
        remember: Option<String>,
    },
    /// Upload the bytes, then publish them as `hosted/file`; when the account has file
    /// sharing switched off, publish `fallback` as text instead (docs/protocol/liveperson.md §13).
    Upload {
        to: DialogRef,
        file_type: &'static str,
        bytes: bytes::Bytes,
        caption: String,
        fallback: String,
    },
}

fn send(request: SendRequest) -> Step {
    Step::Send {
        request,
        remember: None,
    }
}

/// What the event needs from the consumer's conversation.
enum Needs {
    /// An open conversation, created if there is none.
    Open,
    /// The open conversation if there is one; nothing to do otherwise.
    IfOpen,
    /// The consumer's latest conversation, open or closed (CSAT).
    Latest,
}

fn needs(body: &Inbound) -> Needs {
    match body {
        Inbound::Text { .. } | Inbound::File { .. } | Inbound::Choice { .. } => Needs::Open,
        Inbound::Survey { .. } => Needs::Latest,
        _ => Needs::IfOpen,
    }
}

fn chat_state(state: ChatState) -> &'static str {
    match state {
        ChatState::Composing => "COMPOSING",
        ChatState::Paused => "PAUSE",
        ChatState::Active => "ACTIVE",
        ChatState::Inactive => "INACTIVE",
        ChatState::Gone => "GONE",
    }
}

impl Routing {
    pub(super) async fn process_to_lp(&self, item: OutboxItem) -> Result<(), Failure> {
        // Just after the claim: `item.claimed_at_ms` plus the time since is now by the
        // store's clock.
        let begun = tokio::time::Instant::now();
        let job: ToLpJob = serde_json::from_value(item.payload.clone())
            .map_err(|e| Failure::dead(format!("unreadable job: {e}")))?;
        match job {
            ToLpJob::Inbound {
                event,
                done,
                sending,
                marked_at_ms,
            } => {
                let mark = sending.map(|step| Mark {
                    step,
                    at_ms: marked_at_ms,
                });
                self.send_inbound(&item, *event, (done, mark, begun)).await
            }
            ToLpJob::Ack {
                instance,
                consumer_id,
                dialog,
                sequence,
                read,
                done,
            } => {
                let address = ConsumerAddress::new(instance, consumer_id);
                let record = self.record(&item.consumer_key).await?;
                let mut identity = self
                    .identity(&item.consumer_key, &address, record.as_ref())
                    .await?;
                let to = DialogRef::from(&dialog);
                let mut statuses = vec![AcceptStatus::Accept];
                if read {
                    statuses.push(AcceptStatus::Read);
                }
                for (i, status) in statuses.into_iter().enumerate().skip(done) {
                    let request = SendRequest::AcceptStatus {
                        to: to.clone(),
                        status,
                        sequences: vec![sequence],
                        metadata: None,
                    };
                    match self.send_lp(&mut identity, &request).await {
                        Ok(_) => self.count_sent(&request),
                        // Receipts for a conversation that closed meanwhile are moot.
                        Err(EngineError::ConversationClosed) => return Ok(()),
                        Err(e) => return Err(self.lp_failure(&item, e)),
                    }
                    let progress = ToLpJob::Ack {
                        instance: address.instance.clone(),
                        consumer_id: address.id.clone(),
                        dialog: dialog.clone(),
                        sequence,
                        read,
                        done: i + 1,
                    };
                    self.save_progress(&item, &progress).await?;
                }
                self.persist_identity(&item.consumer_key, record.as_ref(), &identity)
                    .await;
                Ok(())
            }
        }
    }

    async fn send_inbound(
        &self,
        item: &OutboxItem,
        event: InboundEvent,
        (mut done, mut sending, begun): (usize, Option<Mark>, tokio::time::Instant),
    ) -> Result<(), Failure> {
        let key = item.consumer_key.as_str();
        // The channel completes the event here (Slack's look-ups and downloads); progress
        // marks keep the event as stored, so what `prepare` adds never lands in the outbox.
        let (stored, event) = (event.clone(), self.prepare(item, event).await?);
        let mut record = self.record(key).await?;
        let mut identity = self.identity(key, &event.consumer, record.as_ref()).await?;
        let mut reopened = false;
        let result = loop {
            let dialog = open_dialog(record.as_ref());
            let target = match (needs(&event.body), dialog) {
                (_, Some(dialog)) => dialog,
                (Needs::Open, None) => match self
                    .create_conversation(item, key, &mut identity, &event)
                    .await
                {
                    Ok(dialog) => {
                        record = self.record(key).await?;
                        dialog
                    }
                    Err(failure) => break Err(failure),
                },
                (Needs::Latest, None) => {
                    match record.as_ref().and_then(|r| r.conversation_id.clone()) {
                        Some(conversation) => DialogRef::main(conversation),
                        None => break Ok(()),
                    }
                }
                (Needs::IfOpen, None) => break Ok(()),
            };
            let steps = match self.plan(&event, &target).await {
                Ok(steps) => steps,
                Err(failure) => break Err(failure),
            };
            match self
                .run_steps(
                    item,
                    &stored,
                    &mut identity,
                    &target,
                    steps,
                    (&mut done, sending, begun),
                )
                .await
            {
                Err(Halt::Engine(EngineError::ConversationClosed)) => {
                    // Closed under us (the close webhook not seen yet): mark it, open a new one
                    // and resend the rest, once.
                    if let Err(e) = self
                        .inner
                        .store
                        .close_conversation(&target.conversation_id)
                        .await
                    {
                        break Err(store_failure(e));
                    }
                    if reopened || !matches!(needs(&event.body), Needs::Open) {
                        break Ok(());
                    }
                    reopened = true;
                    sending = None;
                    record = self.record(key).await?;
                }
                Err(Halt::Engine(e)) => break Err(self.lp_failure(item, e)),
                Err(Halt::Stop(failure)) => break Err(failure),
                Ok(()) => break Ok(()),
            }
        };
        self.persist_identity(key, record.as_ref(), &identity).await;
        result
    }

    /// `Channel::prepare` of the consumer's channel, within the delivery timeout; its errors
    /// are handled like a channel's delivery errors.
    async fn prepare(
        &self,
        item: &OutboxItem,
        event: InboundEvent,
    ) -> Result<InboundEvent, Failure> {
        let Some(instance) = self.inner.channels.get(&event.consumer.instance) else {
            return Ok(event);
        };
        let limit = self.inner.settings.deliver_timeout;
        match tokio::time::timeout(limit, instance.channel.prepare(event)).await {
            Ok(Ok(event)) => Ok(event),
            Ok(Err(DeliveryError::Permanent { reason })) => Err(Failure::Dead { reason }),
            Ok(Err(DeliveryError::Retryable { reason, after })) => Err(Failure::retry(
                self.channel_backoff(item.attempts, after),
                reason,
            )),
            Err(_) => Err(Failure::retry(
                self.channel_backoff(item.attempts, None),
                format!("preparing the event took longer than {limit:?}"),
            )),
        }
    }

    /// Runs the plan from step `done`, saving progress after each request; `sending` is the
    /// step a previous attempt started without confirming it.
    async fn run_steps(
        &self,
        item: &OutboxItem,
        event: &InboundEvent,
        identity: &mut ConsumerIdentity,
        target: &DialogRef,
        steps: Vec<Step>,
        (done, sending, begun): (&mut usize, Option<Mark>, tokio::time::Instant),
    ) -> Result<(), Halt> {
        let total = steps.len();
        let dialog = DialogWire {
            conversation_id: target.conversation_id.clone(),
            dialog_id: target.dialog_id.clone(),
        };
        for (i, step) in steps.into_iter().enumerate().skip(*done) {
            let step = match step {
                Step::Upload {
                    to,
                    file_type,
                    bytes,
                    caption,
                    fallback,
                } => match self
                    .inner
                    .engine
                    .upload_file(identity, file_type, bytes)
                    .await
                {
                    Ok(relative_path) => {
                        let request = SendRequest::File {
                            to,
                            relative_path,
                            file_type: file_type.to_owned(),
                            caption,
                            preview: None,
                        };
                        self.send_lp(identity, &request).await?;
                        self.count_sent(&request);
                        None
                    }
                    // The file cannot be published on this account; the agent gets its name
                    // as text, sent (and checked against LivePerson's echo) like any text.
                    Err(EngineError::FileSharingDisabled { reason }) => {
                        tracing::warn!(id = item.id, %reason, "file sharing is disabled for the LivePerson account; sending the file's name as text");
                        Some(Step::Send {
                            request: SendRequest::Text {
                                to,
                                text: fallback,
                                metadata: None,
                            },
                            remember: event.platform_id.clone(),
                        })
                    }
                    Err(e) => return Err(e.into()),
                },
                other => Some(other),
            };
            if let Some(Step::Send {
                mut request,
                remember,
            }) = step
            {
                let mut sequence = None;
                // Our id on the text, which LivePerson's echo carries back: the echo of this
                // very send is recognised exactly. A clicked button's text keeps the click's
                // metadata alone (LivePerson reports on it) and is recognised by its content.
                if let SendRequest::Text { metadata, .. } = &mut request
                    && metadata.is_none()
                {
                    let id = jobs::external_id(item.id, i);
                    *metadata = Some(serde_json::json!([{ "type": "ExternalId", "id": id }]));
                }
                if let SendRequest::Text { text, metadata, .. } = &request {
                    let ours = jobs::echoed_external_id(metadata.as_ref());
                    if let Some(mark) = sending.filter(|mark| mark.step == i) {
                        let sent = Unconfirmed {
                            text,
                            platform_id: remember.as_deref(),
                            external_id: ours,
                            marked_at_ms: mark.at_ms,
                        };
                        sequence = self.unconfirmed_send(item, &dialog, sent).await?;
                    }
                    if sequence.is_none() {
                        // Mark the send as started: if we die before recording its end, the
                        // next attempt checks LivePerson's echo first. No mark, no send: a
                        // send that nothing records could be repeated blindly. The mark's
                        // time is by the store's clock (this attempt's claim, plus the time
                        // since on this host's monotonic clock).
                        let since = i64::try_from(begun.elapsed().as_millis()).unwrap_or(i64::MAX);
                        let marker = ToLpJob::Inbound {
                            event: Box::new(event.clone()),
                            done: i,
                            sending: Some(i),
                            marked_at_ms: Some(item.claimed_at_ms.saturating_add(since)),
                        };
                        self.save_progress(item, &marker)
                            .await
                            .map_err(Halt::Stop)?;
                    }
                }
                if sequence.is_none() {
                    let outcome = match self.send_lp(identity, &request).await {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            // Known not to have arrived: nothing to look for next time. A
                            // marker that stays thus always means an unknown outcome (a
                            // timeout, a garbled answer, a crash, a lease that ran out while
                            // the request was in flight).
                            if matches!(request, SendRequest::Text { .. }) && !e.may_have_arrived()
                            {
                                let cleared = ToLpJob::Inbound {
                                    event: Box::new(event.clone()),
                                    done: i,
                                    sending: None,
                                    marked_at_ms: None,
                                };
                                // Best effort: a mark left in place only makes the next
                                // attempt look for an echo first.
                                let _ = self.save_progress(item, &cleared).await;
                            }
                            return Err(e.into());
                        }
                    };
                    self.count_sent(&request);
                    sequence = outcome.sequence;
                    if let SendRequest::ChatState { to, state } = &request {
                        self.follow_typing(&item.consumer_key, to, state, identity)
                            .await;
                    }
                }
                self.trace_sent(
                    item,
                    super::timeline::sent_detail(request.kind(), sequence, target),
                    |entry| entry.conversation_id = Some(target.conversation_id.clone()),
                );
                if let (Some(platform_id), Some(sequence)) = (remember, sequence) {
                    self.remember_sequence(&dialog, sequence, &platform_id)
                        .await;
                }
            }
            *done = i + 1;
            if *done < total {
                let progress = ToLpJob::Inbound {
                    event: Box::new(event.clone()),
                    done: *done,
                    sending: None,
                    marked_at_ms: None,
                };
                self.save_progress(item, &progress)
                    .await
                    .map_err(Halt::Stop)?;
            }
        }
        Ok(())
    }

    /// After a `COMPOSING` was published, schedules a `PAUSE` in [`TYPING_TIMEOUT`] unless the
    /// consumer's channel reports another chat state (or another `COMPOSING`) first; any
    /// other chat state cancels the pending one. The marker lives in the store, so instances
    /// sharing one see each other's chat states. Chat states are last-writer-wins and safe to
    /// lose (docs/protocol/liveperson.md §7.5): the timer is not durable.
    async fn follow_typing(
        &self,
        consumer_key: &str,
        to: &DialogRef,
        state: &str,
        identity: &ConsumerIdentity,
    ) {
        let store = &self.inner.store;
        if state != "COMPOSING" {
            if let Err(e) = store.delete_state(TYPING_SCOPE, consumer_key).await {
                tracing::debug!(error = %e, "cannot clear the typing marker");
            }
            return;
        }
        let marker = uuid::Uuid::new_v4().to_string();
        if let Err(e) = store.save_state(TYPING_SCOPE, consumer_key, &marker).await {
            tracing::debug!(error = %e, "cannot record the typing marker; no automatic PAUSE");
            return;
        }
        let routing = self.clone();
        let key = consumer_key.to_owned();
        let to = to.clone();
        let mut identity = identity.clone();
        let wait = super::scaled(TYPING_TIMEOUT, self.inner.settings.retry.scale);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let store = &routing.inner.store;
            let current = store.load_state(TYPING_SCOPE, &key).await.ok().flatten();
            if current.as_deref() != Some(marker.as_str()) {
                return;
            }
            let _ = store.delete_state(TYPING_SCOPE, &key).await;
            let request = SendRequest::ChatState { to, state: "PAUSE" };
            match routing.inner.engine.send(&mut identity, &request).await {
                Ok(_) => routing.count_sent(&request),
                Err(e) => {
                    tracing::debug!(error = %e, "the automatic PAUSE after COMPOSING failed; dropped")
                }
            }
        });
    }

    async fn remember_sequence(&self, dialog: &DialogWire, sequence: i64, platform_id: &str) {
        let key = jobs::sequence_key(dialog, sequence);
        let store = &self.inner.store;
        let save = || store.save_state(jobs::SEQUENCE_SCOPE, &key, platform_id);
        if let Err(e) = super::persist("sequence", self.store_patience(), save).await {
            tracing::warn!(error = %e, "cannot record a message sequence; agent receipts for it will be lost");
        }
    }

    /// A text whose previous send was started but not confirmed: `Some(sequence)` when
    /// LivePerson's echo shows it arrived, `None` when it is to be sent again (its echo can no
    /// longer come, see [`echo`]); until then the item waits, looking for the echo again
    /// and again.
    ///
    /// The echo is the consumer's latest echoed text in the dialog. It is this send's when it
    /// carries this send's `ExternalId`. Without one on either side (a clicked button's text,
    /// or an echo without metadata: LivePerson documents consumer metadata on notifications,
    /// `change.metadata`, but not for every text [INFERRED], so that form is accepted too) it
    /// is recognised by its content: the same text, at a sequence that no other message of
    /// ours was confirmed at.
    async fn unconfirmed_send(
        &self,
        item: &OutboxItem,
        dialog: &DialogWire,
        sent: Unconfirmed<'_>,
    ) -> Result<Option<i64>, Halt> {
        let store = &self.inner.store;
        let echo = store
            .load_state(jobs::ECHO_SCOPE, &jobs::dialog_key(dialog))
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok());
        if let Some(echo) = echo
            && let Some(sequence) = echo["sequence"].as_i64()
        {
            let arrived = match (sent.external_id, echo["external_id"].as_str()) {
                (Some(ours), Some(echoed)) => ours == echoed,
                _ => {
                    let confirmed = store
                        .load_state(jobs::SEQUENCE_SCOPE, &jobs::sequence_key(dialog, sequence))
                        .await
                        .ok()
                        .flatten();
                    echo["text"].as_str() == Some(jobs::text_digest(sent.text).as_str())
                        // Confirmed as this very message: the crash came between the answer
                        // and the end.
                        && (confirmed.is_none() || confirmed.as_deref() == sent.platform_id)
                }
            };
            if arrived {
                tracing::info!(
                    id = item.id,
                    sequence,
                    "a message sent before an interruption reached LivePerson; not sending it again"
                );
                return Ok(Some(sequence));
            }
        }
        // The send marked as started may have arrived: its outcome was never recorded (a
        // crash, a lease that ran out while it was in flight) or was unknown (a timeout, a
        // garbled answer; a send known to have failed clears its marker). Its echo comes
        // through LivePerson's webhooks, which retry for as long as `echo::deadline` says.
        // A mark from before marks had times is counted from now.
        let now = item.claimed_at_ms;
        let marked_at = sent.marked_at_ms.unwrap_or(now);
        let scale = self.inner.settings.retry.scale;
        let deadline = self.notification_deadline(marked_at).await;
        if now < deadline {
            let looks = item.streak_of(ECHO_WAIT_STREAK);
            return Err(Halt::Stop(Failure::Wait {
                reason: ECHO_WAIT.to_owned(),
                after: echo::next_look(now, deadline, looks, scale),
                streak: ECHO_WAIT_STREAK,
            }));
        }
        tracing::warn!(
            id = item.id,
            waited_ms = now.saturating_sub(marked_at),
            "no echo of an interrupted send by the time LivePerson's webhook retries would have brought it; sending it again"
        );
        Ok(None)
    }

    /// The requests one consumer event turns into, in `target`.
    async fn plan(&self, event: &InboundEvent, target: &DialogRef) -> Result<Vec<Step>, Failure> {
        let platform_id = event.platform_id.clone();
        let text_steps = |text: &str, metadata: Option<serde_json::Value>| -> Vec<Step> {
            split_for_send(text, target)
                .into_iter()
                .map(|part| Step::Send {
                    request: SendRequest::Text {
                        to: target.clone(),
                        text: part,
                        metadata: metadata.clone(),
                    },
                    remember: platform_id.clone(),
                })
                .collect()
        };
        Ok(match &event.body {
            Inbound::Text { text } if text.trim().is_empty() => Vec::new(),
            Inbound::Text { text } => text_steps(text, None),
            Inbound::File { file } => {
                let caption = file
                    .caption
                    .clone()
                    .or_else(|| file.name.clone())
                    .unwrap_or_else(|| "file".into());
                match (&file.body, upload_file_type(&file.mime)) {
                    (AttachmentBody::Inline { data }, Some(file_type))
                        if data.len() <= MAX_UPLOAD_BYTES =>
                    {
                        // No link exists for inline bytes: the agent learns the name and size.
                        let shown: String = caption.chars().take(1000).collect();
                        let fallback = format!(
                            "[The consumer sent a file, but file sharing is disabled on this LivePerson account: {shown} ({}, {} bytes)]",
                            file.mime,
                            data.len()
                        );
                        vec![Step::Upload {
                            to: target.clone(),
                            file_type,
                            bytes: data.clone(),
                            caption,
                            fallback,
                        }]
                    }
                    (AttachmentBody::Url { url }, _) => {
                        text_steps(&format!("{caption}: {url}"), None)
                    }
                    // LivePerson takes only JPG/PNG/GIF up to 3 MB from consumers (docs/protocol/liveperson.md §5.10): the
                    // agent at least learns that something was sent.
                    (AttachmentBody::Inline { data }, _) => text_steps(
                        &format!(
                            "[The consumer sent a file LivePerson cannot show: {caption} ({}, {} bytes)]",
                            file.mime,
                            data.len()
                        ),
                        None,
                    ),
                }
            }
            Inbound::ChatState { state } => {
                // Never into a post-conversation survey: it rejects chat states (docs/protocol/liveperson.md §5.5).
                if target.is_survey() {
                    Vec::new()
                } else {
                    vec![send(SendRequest::ChatState {
                        to: target.clone(),
                        state: chat_state(*state),
                    })]
                }
            }
            Inbound::Receipt { status, messages } => {
                let status = match status {
                    ReceiptStatus::Delivered => AcceptStatus::Accept,
                    ReceiptStatus::Read => AcceptStatus::Read,
                };
                let mut by_dialog: Vec<(DialogWire, Vec<i64>)> = Vec::new();
                for (dialog, sequence) in messages
                    .iter()
                    .filter_map(|m| jobs::parse_message_ref(m.as_str()))
                {
                    match by_dialog.iter_mut().find(|(d, _)| *d == dialog) {
                        Some((_, sequences)) => sequences.push(sequence),
                        None => by_dialog.push((dialog, vec![sequence])),
                    }
                }
                by_dialog
                    .into_iter()
                    .map(|(dialog, sequences)| {
                        send(SendRequest::AcceptStatus {
                            to: DialogRef::from(&dialog),
                            status,
                            sequences,
                            metadata: None,
                        })
                    })
                    .collect()
            }
            Inbound::Choice { message, choice } => {
                let clicked = self.click(message.as_str(), choice).await?;
                let Some((dialog, sequence)) = jobs::parse_message_ref(message.as_str()) else {
                    return Err(Failure::dead(format!(
                        "choice on an unknown message `{}`",
                        message.as_str()
                    )));
                };
                let mut steps = Vec::new();
                // The click belongs to the dialog that carried the button, if still current.
                if dialog.conversation_id == target.conversation_id {
                    steps.push(send(SendRequest::AcceptStatus {
                        to: DialogRef::from(&dialog),
                        status: AcceptStatus::Action,
                        sequences: vec![sequence],
                        metadata: clicked.metadata.clone(),
                    }));
                }
                if let Some(text) = &clicked.text {
                    let to = if dialog.conversation_id == target.conversation_id {
                        DialogRef::from(&dialog)
                    } else {
                        target.clone()
                    };
                    steps.push(Step::Send {
                        request: SendRequest::Text {
                            to,
                            text: text.clone(),
                            metadata: clicked.metadata.clone(),
                        },
                        remember: platform_id.clone(),
                    });
                }
                steps
            }
            Inbound::Survey { answer } => match answer.csat {
                Some(rate) if (1..=5).contains(&rate) => vec![send(SendRequest::Csat {
                    conversation_id: target.conversation_id.clone(),
                    rate,
                    resolved: answer.resolved.unwrap_or(false),
                    status: if answer.resolved.is_some() {
                        "FILLED"
                    } else {
                        "PARTIALLY_FILLED"
                    },
                })],
                _ => {
                    tracing::warn!(
                        "survey answer without a 1-5 rating: LivePerson's CSATRate needs one; not sent"
                    );
                    Vec::new()
                }
            },
            Inbound::Close => vec![send(SendRequest::Close {
                conversation_id: target.conversation_id.clone(),
                skip_survey: false,
            })],
            Inbound::ProfileUpdate => vec![send(SendRequest::SetProfile {
                body: switchboard_liveperson::profile_body(
                    event.profile.as_ref(),
                    &ext_consumer_id(&event.consumer.instance, &event.consumer.id),
                ),
            })],
            _ => Vec::new(),
        })
    }

    /// The click table entry of a reply button.
    async fn click(&self, message: &str, choice: &str) -> Result<ClickAction, Failure> {
        let table = self
            .inner
            .store
            .load_state(jobs::CLICKS_SCOPE, message)
            .await
            .map_err(store_failure)?;
        table
            .and_then(|t| serde_json::from_str::<Vec<ClickAction>>(&t).ok())
            .and_then(|t| t.into_iter().find(|c| c.button_id == choice))
            .ok_or_else(|| {
                Failure::dead(format!(
                    "button `{choice}` of message `{message}` is unknown"
                ))
            })
    }

    async fn create_conversation(
        &self,
        item: &OutboxItem,
        key: &str,
        identity: &mut ConsumerIdentity,
        event: &InboundEvent,
    ) -> Result<DialogRef, Failure> {
        let span = spans::liveperson_create_conversation();
        let started = std::time::Instant::now();
        let created = self
            .inner
            .engine
            .create_conversation(identity, event.profile.as_ref())
            .instrument(span.clone())
            .await;
        metrics::histogram!(m::LP_SEND_SECONDS, "request" => "create_conversation")
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &created {
            spans::failed(&span, &e.to_string());
        }
        match created {
            Ok(conversation) => {
                self.inner
                    .store
                    .open_conversation(key, &conversation, &conversation)
                    .await
                    .map_err(store_failure)?;
                self.inner.known.forget_consumer(key);
                metrics::counter!(m::LP_SENT, "kind" => "create_conversation").increment(1);
                tracing::info!(consumer = %event.consumer.masked(), %conversation, "opened a conversation");
                Ok(DialogRef::main(conversation))
            }
            Err(EngineError::AlreadyOpen { reason }) => {
                Err(self.await_adoption(item, key, reason).await)
            }
            Err(e) => Err(self.lp_failure(item, e)),
        }
    }

    /// LivePerson knows an open conversation of this consumer that we do not: one created by
    /// an attempt whose answer was lost, before a crash, or by an agent. Its
    /// `ExConversationChangeNotification` maps it (the webhook adopts it by participant id),
    /// and that notification is as late as LivePerson's webhook retries allow, exactly like a
    /// text's echo ([`echo::deadline`], counted from the first conflict of this event). So the
    /// event waits, with looks that are not failures, until then, and only then becomes a dead
    /// letter (docs/protocol/liveperson.md §13): giving up earlier would dead-letter a consumer's message that the next
    /// retry of the notification would have let through.
    async fn await_adoption(&self, item: &OutboxItem, key: &str, reason: String) -> Failure {
        let store = &self.inner.store;
        let now = item.claimed_at_ms;
        let first = match store.load_state(OPEN_CONFLICT_SCOPE, key).await {
            Ok(Some(v)) => v
                .split_once(':')
                .filter(|(id, _)| *id == item.id.to_string())
                .and_then(|(_, at)| at.parse::<i64>().ok()),
            Ok(None) => None,
            Err(e) => return store_failure(e),
        };
        let since = match first {
            Some(at) => at,
            None => {
                if let Err(e) = store
                    .save_state(OPEN_CONFLICT_SCOPE, key, &format!("{}:{now}", item.id))
                    .await
                {
                    return store_failure(e);
                }
                now
            }
        };
        let scale = self.inner.settings.retry.scale;
        let deadline = self.notification_deadline(since).await;
        if now < deadline {
            return Failure::Wait {
                after: echo::next_look(now, deadline, item.streak_of(CONFLICT_STREAK), scale),
                reason,
                streak: CONFLICT_STREAK,
            };
        }
        Failure::dead(format!(
            "{reason}; LivePerson's notification of that conversation did not come by the time \
             its webhook retries would have brought it"
        ))
    }

    /// When a notification that LivePerson may owe us since `since` (a text's echo, a
    /// conversation's `ExConversationChangeNotification`) can no longer come:
    /// [`echo::deadline`] with the last time webhooks failed here, shared by all instances.
    async fn notification_deadline(&self, since: echo::Millis) -> echo::Millis {
        let failing_until = self
            .inner
            .store
            .load_state(echo::HEALTH_SCOPE, echo::FAILING_UNTIL)
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let settings = &self.inner.settings;
        echo::deadline(
            since,
            failing_until,
            settings.webhook_retention,
            settings.retry.scale,
        )
    }

    pub(super) async fn record(&self, key: &str) -> Result<Option<ConsumerRecord>, Failure> {
        self.inner.store.consumer(key).await.map_err(store_failure)
    }

    /// The consumer's LivePerson identity: stored, or fetched once and stored.
    pub(super) async fn identity(
        &self,
        key: &str,
        address: &ConsumerAddress,
        record: Option<&ConsumerRecord>,
    ) -> Result<ConsumerIdentity, Failure> {
        if let Some(identity) = record.and_then(|r| r.identity.as_ref()) {
            return Ok(ConsumerIdentity {
                ext_consumer_id: identity.ext_consumer_id.clone(),
                lp_consumer_id: identity.lp_consumer_id.clone(),
                jws: Secret::new(identity.jws.clone()),
            });
        }
        let ext = ext_consumer_id(&address.instance, &address.id);
        let identity = self
            .inner
            .engine
            .consumer_identity(&ext)
            .await
            .map_err(|e| self.engine_failure(0, e))?;
        self.store_identity(key, &identity).await?;
        Ok(identity)
    }

    async fn store_identity(&self, key: &str, identity: &ConsumerIdentity) -> Result<(), Failure> {
        self.inner
            .store
            .save_identity(
                key,
                &Identity {
                    ext_consumer_id: identity.ext_consumer_id.clone(),
                    lp_consumer_id: identity.lp_consumer_id.clone(),
                    jws: identity.jws.expose().to_owned(),
                },
            )
            .await
            .map_err(store_failure)
    }

    /// Stores a JWS the engine replaced after a `401`.
    pub(super) async fn persist_identity(
        &self,
        key: &str,
        record: Option<&ConsumerRecord>,
        identity: &ConsumerIdentity,
    ) {
        let stored = record
            .and_then(|r| r.identity.as_ref())
            .map(|i| i.jws.as_str());
        if stored.is_some_and(|jws| jws != identity.jws.expose())
            && let Err(Failure::Dead { reason } | Failure::Retry { reason, .. }) =
                self.store_identity(key, identity).await
        {
            tracing::warn!(%reason, "cannot store a renewed ConsumerJWS; it is fetched again next time");
        }
    }

    /// Records how far the item got. The next request must not be made when this fails: the
    /// store is not taking writes (the attempt is retried later, from what is recorded), or
    /// the item is no longer this worker's (whoever took it over carries on).
    async fn save_progress(&self, item: &OutboxItem, job: &ToLpJob) -> Result<(), Failure> {
        let payload = serde_json::to_value(job).map_err(|e| Failure::dead(e.to_string()))?;
        let (store, worker) = (&self.inner.store, &self.inner.worker_id);
        let save = || store.update_payload(item.id, worker, &payload);
        match super::persist("progress", self.store_patience(), save).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                metrics::counter!(m::LEASES_LOST).increment(1);
                tracing::warn!(id = item.id, "the item was taken over; stopping work on it");
                Err(Failure::retry(
                    Duration::ZERO,
                    "the item was taken over by another worker",
                ))
            }
            Err(e) => {
                tracing::warn!(id = item.id, error = %e, "cannot record progress; the next request waits for the store");
                Err(store_failure(e))
            }
        }
    }

    /// One Send API request, inside its `liveperson.send` span.
    async fn send_lp(
        &self,
        identity: &mut ConsumerIdentity,
        request: &SendRequest,
    ) -> Result<SendOutcome, EngineError> {
        let span = spans::liveperson_send(request.kind());
        let started = std::time::Instant::now();
        let result = self
            .inner
            .engine
            .send(identity, request)
            .instrument(span.clone())
            .await;
        metrics::histogram!(m::LP_SEND_SECONDS, "request" => request.kind())
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(SendOutcome {
                sequence: Some(sequence),
                ..
            }) => {
                span.record("liveperson.sequence", sequence);
            }
            Ok(_) => {}
            Err(e) => spans::failed(&span, &e.to_string()),
        }
        result
    }

    fn count_sent(&self, request: &SendRequest) {
        metrics::counter!(m::LP_SENT, "kind" => request.kind()).increment(1);
    }

    fn lp_failure(&self, item: &OutboxItem, e: EngineError) -> Failure {
        self.engine_failure(item.attempts, e)
    }

    pub(super) fn engine_failure(&self, attempts: u32, e: EngineError) -> Failure {
        if e.is_retryable() {
            Failure::retry(
                self.inner
                    .settings
                    .retry
                    .delay(attempts.saturating_add(1), &e),
                e.to_string(),
            )
        } else {
            Failure::dead(e.to_string())
        }
    }
}

/// The consumer's open dialog, if the map says one is open.
fn open_dialog(record: Option<&ConsumerRecord>) -> Option<DialogRef> {
    let record = record?;
    if record.state != ConversationState::Open {
        return None;
    }
    let conversation_id = record.conversation_id.clone()?;
    Some(DialogRef {
        dialog_id: record
            .dialog_id
            .clone()
            .unwrap_or_else(|| conversation_id.clone()),
        conversation_id,
    })
}

/// A store failure: retry soon, the event is still safe in the outbox.
pub(super) fn store_failure(e: impl std::fmt::Display) -> Failure {
    Failure::retry(Duration::from_secs(1), format!("store: {e}"))
}
