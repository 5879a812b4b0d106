//! The to-channel worker: agent events reach the consumer through their channel instance,
//! degraded to what the channel can render, then LivePerson hears `ACCEPT` (and `READ`), unless
//! the channel reports delivery itself (`Capabilities::delivery_receipts`).

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use switchboard_core::{
    Attachment, AttachmentBody, Capabilities, ConsumerAddress, DeliveryError, Outbound,
    OutboundEvent, Support,
};
use switchboard_liveperson::mime_of_file_type;
use switchboard_store::{Direction, NewItem, OutboxItem};

use super::failures::store_failure;
use super::jobs::{ChannelWork, ToChannelJob, ToLpJob};
use super::{Failure, Routing};
use crate::metrics as m;
use crate::telemetry;
use tracing::Instrument as _;

impl Routing {
    pub(super) async fn process_to_channel(&self, item: OutboxItem) -> Result<(), Failure> {
        let job: ToChannelJob = serde_json::from_value(item.payload.clone())
            .map_err(|e| Failure::dead(format!("unreadable job: {e}")))?;
        let Some(instance) = self.inner.channels.get(&job.instance) else {
            return Err(Failure::dead(format!(
                "channel instance `{}` is not running (disabled or removed from the config)",
                job.instance
            )));
        };
        let address = ConsumerAddress::new(job.instance.clone(), job.consumer_id.clone());
        let capabilities = instance.channel.capabilities();
        let event = match &job.work {
            ChannelWork::Deliver { event } => event.clone(),
            // A channel that cannot carry the file gets a link Switchboard serves (SMS): the
            // file is fetched from LivePerson when the consumer opens it.
            ChannelWork::HostedFile {
                id,
                relative_path,
                file_type,
                caption,
            } if !supports(&capabilities, mime_of_file_type(file_type))
                && self.inner.media.is_some() =>
            {
                let url = self
                    .media_link(&item.consumer_key, relative_path, file_type)
                    .await?;
                OutboundEvent::new(
                    id.clone(),
                    Outbound::File {
                        file: Attachment {
                            name: relative_path.rsplit('/').next().map(str::to_owned),
                            mime: mime_of_file_type(file_type).to_owned(),
                            caption: caption.clone(),
                            body: AttachmentBody::Url { url },
                        },
                    },
                )
            }
            ChannelWork::HostedFile {
                id,
                relative_path,
                file_type,
                caption,
            } => {
                let record = self.record(&item.consumer_key).await?;
                let mut identity = self
                    .identity(&item.consumer_key, &address, record.as_ref())
                    .await?;
                let data = self
                    .inner
                    .engine
                    .download_file(&mut identity, relative_path)
                    .await
                    .map_err(|e| self.engine_failure(item.attempts, e))?;
                self.persist_identity(&item.consumer_key, record.as_ref(), &identity)
                    .await;
                let name = relative_path.rsplit('/').next().map(str::to_owned);
                OutboundEvent::new(
                    id.clone(),
                    Outbound::File {
                        file: Attachment {
                            name,
                            mime: mime_of_file_type(file_type).to_owned(),
                            caption: caption.clone(),
                            body: AttachmentBody::Inline { data },
                        },
                    },
                )
            }
        };
        let Some(event) = degrade(&capabilities, event) else {
            return Ok(());
        };
        let kind = event.body.kind();
        let span = telemetry::spans::channel_deliver(&job.instance, kind);
        // A channel that panics fails this delivery (retried later), never the worker.
        let started = std::time::Instant::now();
        let delivered = tokio::time::timeout(
            self.inner.settings.deliver_timeout,
            AssertUnwindSafe(instance.channel.deliver(&address, &event)).catch_unwind(),
        )
        .instrument(span.clone())
        .await;
        metrics::histogram!(m::CHANNEL_SEND_SECONDS, "channel" => job.instance.clone())
            .record(started.elapsed().as_secs_f64());
        match &delivered {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => telemetry::spans::failed(&span, &e.to_string()),
            Ok(Err(_)) => telemetry::spans::failed(&span, "the channel panicked"),
            Err(_) => telemetry::spans::failed(&span, "timed out"),
        }
        let delivered = match delivered {
            Ok(Err(_)) => {
                tracing::error!(instance = %job.instance, "the channel panicked in deliver");
                return Err(Failure::retry(
                    self.channel_backoff(item.attempts, None),
                    "the channel panicked while delivering",
                ));
            }
            Ok(Ok(result)) => Ok(result),
            Err(elapsed) => Err(elapsed),
        };
        match delivered {
            Ok(Ok(delivered)) => {
                self.trace_sent(
                    &item,
                    serde_json::json!({ "kind": kind, "event_id": event.id.as_str() }),
                    |entry| entry.platform_id = delivered.platform_id,
                );
                metrics::counter!(m::EVENTS_OUT, "channel" => job.instance.clone(), "kind" => kind)
                    .increment(1);
                // A channel that reports delivery to the handset (SMS DLRs) sends its own
                // receipt when that happens: the platform taking the message is not delivery.
                if let Some(ack) = job.ack.filter(|_| !capabilities.delivery_receipts) {
                    let ack = ToLpJob::Ack {
                        instance: job.instance.clone(),
                        consumer_id: job.consumer_id.clone(),
                        dialog: ack.dialog,
                        sequence: ack.sequence,
                        read: !capabilities.read_receipts,
                        done: 0,
                    };
                    let store = &self.inner.store;
                    let span = telemetry::spans::store_write(store, Direction::ToLivePerson);
                    let item = NewItem {
                        consumer_key: item.consumer_key.clone(),
                        payload: serde_json::to_value(ack).unwrap_or_default(),
                        trace_context: telemetry::to_stored(&span),
                    };
                    // Best effort: a lost receipt costs a tick in the agent's view, nothing more.
                    match store
                        .enqueue(Direction::ToLivePerson, &[item], None)
                        .instrument(span)
                        .await
                    {
                        Ok(_) => self.inner.wake_lp.notify_one(),
                        Err(e) => tracing::warn!(error = %e, "cannot queue the ACCEPT receipt"),
                    }
                }
                Ok(())
            }
            Ok(Err(DeliveryError::Retryable { reason, after })) => Err(Failure::retry(
                self.channel_backoff(item.attempts, after),
                reason,
            )),
            Ok(Err(DeliveryError::Permanent { reason })) => Err(Failure::Dead { reason }),
            Err(_) => Err(Failure::retry(
                self.channel_backoff(item.attempts, None),
                format!(
                    "deliver took longer than {:?}",
                    self.inner.settings.deliver_timeout
                ),
            )),
        }
    }

    /// Queues work for a consumer's channel (the webhook's side).
    pub(super) async fn enqueue_for_channel(
        &self,
        consumer_key: &str,
        job: &ToChannelJob,
        dedup: Option<&str>,
        raise: Option<(&str, &str, i64)>,
    ) -> Result<bool, Failure> {
        if !super::WriteGate::enter() {
            return Err(Failure::retry(
                std::time::Duration::from_secs(1),
                "the request timed out before its event was stored",
            ));
        }
        let store = &self.inner.store;
        let span = telemetry::spans::store_write(store, Direction::ToChannel);
        let item = NewItem {
            consumer_key: consumer_key.to_owned(),
            payload: serde_json::to_value(job).map_err(|e| Failure::dead(e.to_string()))?,
            trace_context: telemetry::to_stored(&span),
        };
        let outcome = store
            .enqueue_raising(
                Direction::ToChannel,
                &[item],
                dedup.map(|k| (k, super::webhook::WEBHOOK_DEDUP_TTL)),
                raise,
            )
            .instrument(span)
            .await
            .map_err(store_failure)?;
        self.inner.wake_channel.notify_one();
        self.trace_enqueued(consumer_key, job, &outcome);
        Ok(matches!(outcome, switchboard_store::Enqueued::Stored(_)))
    }

    /// Records the `received` (and `stored`) stages of an agent event queued for a channel.
    pub(super) fn trace_enqueued(
        &self,
        consumer_key: &str,
        job: &ToChannelJob,
        outcome: &switchboard_store::Enqueued,
    ) {
        let Some(log) = &self.inner.settings.trace else {
            return;
        };
        let mut entry = super::timeline::for_consumer(
            Direction::ToChannel,
            switchboard_store::TraceStage::Received,
            consumer_key,
        );
        let (id, kind) = match &job.work {
            ChannelWork::Deliver { event } => (event.id.as_str(), event.body.kind()),
            ChannelWork::HostedFile { id, .. } => (id.as_str(), "file"),
        };
        entry.platform_id = Some(id.to_owned());
        entry.conversation_id = job
            .ack
            .as_ref()
            .map(|ack| ack.dialog.conversation_id.clone())
            .or_else(|| super::timeline::conversation_of_ref(id));
        entry.detail = serde_json::json!({ "kind": kind, "from": "liveperson" });
        let stored = match outcome {
            switchboard_store::Enqueued::Stored(ids) => ids.first().copied(),
            switchboard_store::Enqueued::Duplicate => None,
        };
        super::timeline::trace_received(Some(log), entry, stored);
    }
}

/// Whether the channel carries files of type `mime` in some form.
fn supports(capabilities: &Capabilities, mime: &str) -> bool {
    let support = if mime.starts_with("image/") {
        capabilities.images
    } else {
        capabilities.files
    };
    support != Support::Unsupported
}

/// Fits an event to what the channel declared (docs/architecture.md: the router degrades rich content
/// for channels that can't render it). `None`: nothing this channel can show.
pub(crate) fn degrade(capabilities: &Capabilities, event: OutboundEvent) -> Option<OutboundEvent> {
    let OutboundEvent { id, body } = event;
    let body = match body {
        Outbound::Rich { content } if capabilities.rich_content == Support::Unsupported => {
            Outbound::text(content.to_numbered_text())
        }
        Outbound::SurveyQuestion { question }
            if capabilities.rich_content == Support::Unsupported =>
        {
            Outbound::text(question.to_numbered_text())
        }
        Outbound::File { file } => {
            if !supports(capabilities, &file.mime) {
                let name = file.name.clone().unwrap_or_else(|| "file".into());
                let text = match (&file.caption, &file.body) {
                    (Some(caption), AttachmentBody::Url { url }) => format!("{caption}\n{url}"),
                    (None, AttachmentBody::Url { url }) => format!("{name}\n{url}"),
                    (Some(caption), _) => {
                        format!("[{name}: {caption}] (this channel cannot show files)")
                    }
                    (None, _) => format!("[{name}] (this channel cannot show files)"),
                };
                Outbound::text(text)
            } else {
                Outbound::File { file }
            }
        }
        Outbound::ChatState { .. } if capabilities.typing == Support::Unsupported => return None,
        other => other,
    };
    Some(OutboundEvent { id, body })
}
