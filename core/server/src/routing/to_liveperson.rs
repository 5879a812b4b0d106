//! The to-LivePerson worker: a consumer's events become Send API requests in their
//! conversation, opening one when none is open (exactly once: only one event per consumer is
//! ever in flight). What an event becomes is `switchboard_liveperson::translate::plan`; this
//! runs its steps durably: progress recorded after each, a text marked as sending before it
//! goes, so that a retry resumes instead of repeating (and looks for the echo of a send whose
//! outcome it does not know, [`super::unconfirmed`]).

use std::time::Duration;

use switchboard_core::{ConsumerAddress, DeliveryError, Inbound, InboundEvent};
use switchboard_liveperson::structured::ClickAction;
use switchboard_liveperson::translate::{self, Needs, Step};
use switchboard_liveperson::{ConsumerIdentity, DialogRef, EngineError, SendOutcome, SendRequest};
use switchboard_store::{ConsumerRecord, ConversationState, OutboxItem};
use tracing::Instrument as _;

use super::failures::store_failure;
use super::jobs::{self, DialogWire, ToLpJob};
use super::unconfirmed::Unconfirmed;
use super::{Failure, Routing};
use crate::metrics as m;
use crate::telemetry::spans;

/// A text step a previous attempt marked as sending: which, and when (see
/// [`jobs::ToLpJob::Inbound`]).
#[derive(Debug, Clone, Copy)]
struct Mark {
    step: usize,
    at_ms: Option<i64>,
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
                let receipts = translate::delivered(&DialogRef::from(&dialog), sequence, read);
                for (i, request) in receipts.into_iter().enumerate().skip(done) {
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
            let target = match (translate::needs(&event.body), dialog) {
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
                    if reopened || !matches!(translate::needs(&event.body), Needs::Open) {
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
                Step::Upload(upload) => match self
                    .inner
                    .engine
                    .upload_file(identity, upload.file_type, upload.bytes.clone())
                    .await
                {
                    Ok(relative_path) => {
                        let request = upload.published(relative_path);
                        self.send_lp(identity, &request).await?;
                        self.count_sent(&request);
                        None
                    }
                    // The file cannot be published on this account; the agent gets its name
                    // as text, sent (and checked against LivePerson's echo) like any text.
                    Err(EngineError::FileSharingDisabled { reason }) => {
                        tracing::warn!(id = item.id, %reason, "file sharing is disabled for the LivePerson account; sending the file's name as text");
                        Some(Step::Send {
                            request: upload.fallback(),
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
                        sequence = self
                            .unconfirmed_send(item, &dialog, sent)
                            .await
                            .map_err(Halt::Stop)?;
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

    async fn remember_sequence(&self, dialog: &DialogWire, sequence: i64, platform_id: &str) {
        let key = jobs::sequence_key(dialog, sequence);
        let store = &self.inner.store;
        let save = || store.save_state(jobs::SEQUENCE_SCOPE, &key, platform_id);
        if let Err(e) = super::persist("sequence", self.store_patience(), save).await {
            tracing::warn!(error = %e, "cannot record a message sequence; agent receipts for it will be lost");
        }
    }

    /// [`translate::plan`], with the click table of the message a choice answers looked up.
    async fn plan(&self, event: &InboundEvent, target: &DialogRef) -> Result<Vec<Step>, Failure> {
        let clicked = match &event.body {
            Inbound::Choice { message, choice } => self.click(message.as_str(), choice).await?,
            _ => None,
        };
        translate::plan(event, target, clicked.as_ref()).map_err(|e| Failure::dead(e.to_string()))
    }

    /// The click table entry of a reply button, `None` when the message's table is gone or
    /// has no such button.
    async fn click(&self, message: &str, choice: &str) -> Result<Option<ClickAction>, Failure> {
        let table = self
            .inner
            .store
            .load_state(jobs::CLICKS_SCOPE, message)
            .await
            .map_err(store_failure)?;
        Ok(table
            .and_then(|t| serde_json::from_str::<Vec<ClickAction>>(&t).ok())
            .and_then(|t| t.into_iter().find(|c| c.button_id == choice)))
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
    pub(super) async fn send_lp(
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

    /// Counts a request LivePerson took.
    pub(super) fn count_sent(&self, request: &SendRequest) {
        metrics::counter!(m::LP_SENT, "kind" => request.kind()).increment(1);
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
