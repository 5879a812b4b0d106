//! Webhook delivery (docs/protocol/liveperson.md §7): per-conversation ordered queues, retry by count or by retention
//! time. What is sent, its signature and the log are [`crate::notifications`]; state changes
//! that queue notifications go through [`SimState::with`], defined here so that the state
//! itself does not depend on delivery.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::WebhooksConfig;
use crate::notifications::{
    DeliveryOutcome, Job, Mode, Outgoing, WebhookDelivery, signature_header,
};
use crate::state::{Inner, SimState};

/// `d × scale`, capped at ten years (no overflow for absurd scales).
fn scaled(d: Duration, scale: f64) -> Duration {
    const CAP: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    Duration::try_from_secs_f64((d.as_secs_f64() * scale).max(0.0))
        .unwrap_or(CAP)
        .min(CAP)
}

/// Queues a notification for delivery (called with the state lock held, so order is kept).
pub(crate) fn dispatch(sim: &SimState, g: &mut Inner, out: Outgoing) {
    let Some(ep) = g.config.webhooks.endpoints.get(&out.key).cloned() else {
        return;
    };
    if ep.endpoint.is_empty() {
        return;
    }
    let bytes = Bytes::from(serde_json::to_vec(&out.body).unwrap_or_default());
    let secret = if g.faults.bad_signature_webhooks > 0 {
        g.faults.bad_signature_webhooks -= 1;
        format!("{}-wrong", g.config.client_secret)
    } else {
        g.config.client_secret.clone()
    };
    let signature = signature_header(&secret, &bytes, g.config.signature);
    let headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        (
            "x-liveperson-account-id".to_string(),
            out.account_id
                .clone()
                .unwrap_or_else(|| g.config.account_id.clone()),
        ),
        (
            "x-liveperson-client-id".to_string(),
            out.client_id
                .clone()
                .unwrap_or_else(|| g.config.client_id.clone()),
        ),
        ("x-liveperson-signature".to_string(), signature),
    ];
    let mode = match g.config.webhooks.retry.retention_time {
        Some(secs) => Mode::Ttl {
            retention: Duration::from_secs(secs),
            exempt: ep.max_retries == Some(0),
        },
        None => Mode::Count(ep.max_retries.unwrap_or(0).min(5)),
    };
    let scale = g.config.time_scale;
    let copies = if g.faults.duplicate_webhooks { 2 } else { 1 };
    let dropped = if g.faults.drop_webhooks > 0 {
        g.faults.drop_webhooks -= 1;
        true
    } else {
        false
    };
    let reorder = g.faults.reorder_webhooks;
    let late = g.faults.delay_types.get(&out.key).copied();
    for copy in 0..copies {
        let id = g.deliveries.len();
        g.deliveries.push(WebhookDelivery {
            id,
            notification_type: out.key.clone(),
            conversation_id: out.conversation_id.clone(),
            endpoint: ep.endpoint.clone(),
            attempts: 0,
            statuses: Vec::new(),
            outcome: if dropped {
                DeliveryOutcome::Dropped
            } else {
                DeliveryOutcome::Pending
            },
            duplicate: copy > 0,
            last_duration_ms: None,
            body: out.body.clone(),
        });
        if dropped {
            continue;
        }
        let job = Job {
            id,
            bytes: bytes.clone(),
            endpoint: ep.clone(),
            headers: headers.clone(),
            mode,
            scale,
            delay: Duration::from_millis(g.faults.webhook_delay_ms),
        };
        if reorder || late.is_some() {
            let s = sim.clone();
            let delay = Duration::from_millis(late.unwrap_or_else(|| rand::random::<u64>() % 150));
            sim.shared.rt.spawn(async move {
                tokio::time::sleep(delay).await;
                process(&s, job).await;
            });
            continue;
        }
        let qkey = out
            .conversation_id
            .clone()
            .unwrap_or_else(|| "_account".to_string());
        let job = match g.queues.get(&qkey) {
            Some(tx) => match tx.send(job) {
                Ok(()) => continue,
                Err(e) => e.0,
            },
            None => job,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let _ = tx.send(job);
        g.queues.insert(qkey, tx);
        let s = sim.clone();
        sim.shared.rt.spawn(async move {
            while let Some(job) = rx.recv().await {
                process(&s, job).await;
            }
        });
    }
}

async fn attempt(sim: &SimState, job: &Job) -> bool {
    let mut req = sim
        .shared
        .http
        .post(&job.endpoint.endpoint)
        .body(job.bytes.clone());
    for (k, v) in &job.headers {
        req = req.header(k, v);
    }
    for h in &job.endpoint.headers {
        req = req.header(&h.header_name, &h.header_value);
    }
    let started = Instant::now();
    let status = match req.send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            Some(s)
        }
        Err(e) => {
            tracing::debug!(error = %e, "webhook delivery failed");
            None
        }
    };
    let ok = matches!(status, Some(200) | Some(201));
    {
        let mut g = sim.lock();
        if let Some(d) = g.deliveries.get_mut(job.id) {
            d.attempts += 1;
            d.statuses.push(status);
            d.last_duration_ms = Some(started.elapsed().as_millis() as u64);
            if ok {
                d.outcome = DeliveryOutcome::Delivered;
            }
        }
    }
    sim.notify_changed();
    ok
}

fn give_up(sim: &SimState, id: usize) {
    if let Some(d) = sim.lock().deliveries.get_mut(id) {
        d.outcome = DeliveryOutcome::Dropped;
    }
    sim.notify_changed();
}

/// Delivers one job. Count mode: first attempt in queue order, retries in a detached task (no
/// ordering guarantee). TTL mode: retries inline, so the conversation's later notifications wait.
async fn process(sim: &SimState, job: Job) {
    if !job.delay.is_zero() {
        tokio::time::sleep(job.delay).await;
    }
    if attempt(sim, &job).await {
        return;
    }
    match job.mode {
        Mode::Count(0) => give_up(sim, job.id),
        Mode::Count(n) => {
            let s = sim.clone();
            sim.shared.rt.spawn(async move {
                for _ in 0..n {
                    tokio::time::sleep(scaled(Duration::from_secs(30), job.scale)).await;
                    if attempt(&s, &job).await {
                        return;
                    }
                }
                give_up(&s, job.id);
            });
        }
        Mode::Ttl { exempt: true, .. } => give_up(sim, job.id),
        Mode::Ttl { retention, .. } => {
            let deadline = Instant::now().checked_add(scaled(retention, job.scale));
            let mut gap = Duration::from_secs(2);
            loop {
                let wait = scaled(gap, job.scale);
                let next = Instant::now().checked_add(wait);
                if matches!((next, deadline), (Some(n), Some(d)) if n > d) {
                    give_up(sim, job.id);
                    return;
                }
                tokio::time::sleep(wait).await;
                if attempt(sim, &job).await {
                    return;
                }
                gap = (gap * 2).min(Duration::from_secs(300));
            }
        }
    }
}

impl SimState {
    /// Runs `f` on the state, then dispatches any notifications it produced (in order) and wakes
    /// waiters.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner, &str) -> R) -> R {
        let mut g = self.lock();
        let r = f(&mut g, &self.shared.subscription_id);
        let out = std::mem::take(&mut g.outbox);
        for o in out {
            dispatch(self, &mut g, o);
        }
        drop(g);
        self.notify_changed();
        r
    }

    /// Every notification queued so far and what became of it.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.lock().deliveries.clone()
    }

    /// Points all five notification types at `url` (keeping each type's retry settings).
    pub fn set_webhook_endpoint(&self, url: &str) {
        let mut g = self.lock();
        for key in crate::config::NOTIFICATION_TYPES {
            g.config
                .webhooks
                .endpoints
                .entry(key.to_string())
                .or_default()
                .endpoint = url.to_string();
        }
    }

    /// Replaces the whole webhook configuration of the app installation.
    pub fn set_webhooks(&self, webhooks: WebhooksConfig) {
        self.lock().config.webhooks = webhooks;
    }

    /// Waits until at least `count` deliveries are no longer pending; returns the log.
    pub async fn wait_for_deliveries(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Vec<WebhookDelivery> {
        self.wait_until(timeout, |s| {
            let d = s.webhook_deliveries();
            (d.iter()
                .filter(|d| d.outcome != DeliveryOutcome::Pending)
                .count()
                >= count)
                .then_some(d)
        })
        .await
        .unwrap_or_else(|| self.webhook_deliveries())
    }

    pub(crate) fn stop_webhook_workers(&self) {
        self.lock().queues.clear();
    }
}
