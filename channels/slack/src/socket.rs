//! Socket Mode (docs.slack.dev/apis/events-api/using-socket-mode): instead of Slack POSTing
//! to a public Request URL, the channel asks `apps.connections.open` (with the app-level
//! token) for a single-use WebSocket URL and receives the same payloads over it.
//!
//! - Slack greets each connection with `hello`, then sends envelopes (`events_api`,
//!   `interactive`, `slash_commands`). Each is acknowledged with `{"envelope_id": …}` only
//!   after its events are stored; one that cannot be stored now is left unacknowledged, and
//!   Slack sends it again (with `retry_attempt`), possibly on another connection. The store
//!   drops the second copy of anything already taken, so a redelivery is never seen twice.
//! - `disconnect` (`refresh_requested`, `warning`, `link_disabled`, …): Slack rotates
//!   connections every few hours. A replacement is opened at once, and the old connection is
//!   read until Slack closes it (or [`DRAIN`] passes), so nothing in flight is dropped.
//! - A connection lost without a word (no frame for [`IDLE`], or an error) is replaced after a
//!   backoff from 1 s doubling to a minute, reset by every successful `hello`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::{ChannelContext, Secret};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::{Intake, SlackChannel};

/// We ping this often; Slack pings too.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A connection silent for this long (not even a pong) is taken as lost.
const IDLE: Duration = Duration::from_secs(75);
/// How long an old connection is read after Slack asked to replace it.
const DRAIN: Duration = Duration::from_secs(15);
/// The longest wait between attempts to connect.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest the WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A Socket Mode frame from Slack.
#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    envelope_id: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    retry_attempt: Option<u32>,
    #[serde(default)]
    num_connections: Option<u32>,
}

/// How one connection ended.
#[derive(Debug, Default)]
struct Ended {
    /// It got Slack's `hello`: the URL and token work (the backoff starts over).
    greeted: bool,
    /// Slack asked to replace it, and a replacement was started.
    replaced: bool,
}

/// Runs Socket Mode until shutdown: one connection at a time, two while one replaces the
/// other.
pub(crate) async fn run(channel: &SlackChannel, ctx: &ChannelContext, app_token: &Secret) {
    let (replace_tx, mut replace_rx) = mpsc::channel::<()>(4);
    let mut connections = FuturesUnordered::new();
    let mut failures: u32 = 0;
    connections.push(connection(
        channel,
        ctx,
        app_token,
        replace_tx.clone(),
        Duration::ZERO,
    ));
    loop {
        tokio::select! {
            _ = ctx.shutdown_requested() => break,
            Some(()) = replace_rx.recv() => {
                if connections.len() < 2 {
                    connections.push(connection(channel, ctx, app_token, replace_tx.clone(), Duration::ZERO));
                }
            }
            Some(ended) = connections.next() => {
                if !ended.replaced {
                    failures = if ended.greeted { 0 } else { failures.saturating_add(1) };
                }
                // Whichever ended last (a replaced one may outlive its replacement when the
                // network drops both), one connection is always wanted.
                if connections.is_empty() {
                    let delay = backoff(failures);
                    tracing::info!(?delay, "Slack Socket Mode connection ended; reconnecting");
                    connections.push(connection(channel, ctx, app_token, replace_tx.clone(), delay));
                }
            }
        }
    }
}

/// 0 for the first attempt after a working connection, then 1 s doubling to a minute.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (failures - 1).min(6)).min(MAX_BACKOFF)
}

/// One connection, from `apps.connections.open` to its end.
async fn connection(
    channel: &SlackChannel,
    ctx: &ChannelContext,
    app_token: &Secret,
    replace: mpsc::Sender<()>,
    delay: Duration,
) -> Ended {
    let mut ended = Ended::default();
    tokio::select! {
        _ = ctx.shutdown_requested() => return ended,
        _ = tokio::time::sleep(delay) => {}
    }
    let url = match channel.client.open_connection(app_token).await {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(error = %e, "apps.connections.open failed (is `app_token` an app-level token with connections:write?)");
            return ended;
        }
    };
    let socket = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await;
    let mut ws = match socket {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot open Slack's Socket Mode WebSocket");
            return ended;
        }
        Err(_) => {
            tracing::warn!("Slack's Socket Mode WebSocket handshake timed out");
            return ended;
        }
    };
    let mut last_seen = Instant::now();
    let mut drain_until: Option<Instant> = None;
    let mut ticks = tokio::time::interval(PING_EVERY.min(DRAIN));
    ticks.tick().await;
    // Envelopes are stored one at a time, in the order Slack sent them (a consumer's
    // messages keep their order), while the socket keeps being read: pings, `disconnect`
    // and further envelopes are never held up by a slow store.
    let mut queue: VecDeque<(String, String, Value, Option<u32>)> = VecDeque::new();
    let mut current: Option<Pending<'_>> = None;
    loop {
        if current.is_none()
            && let Some((id, kind, payload, retry)) = queue.pop_front()
        {
            current = Some(Box::pin(take(channel, ctx, id, kind, payload, retry)));
        }
        let frame = tokio::select! {
            _ = ctx.shutdown_requested() => {
                let _ = ws.close(None).await;
                return ended;
            }
            _ = ticks.tick() => {
                if last_seen.elapsed() > IDLE || drain_until.is_some_and(|d| Instant::now() >= d) {
                    let _ = ws.close(None).await;
                    return ended;
                }
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return ended;
                }
                continue;
            }
            (envelope_id, ack) = async {
                match current.as_mut() {
                    Some(work) => work.await,
                    None => std::future::pending().await,
                }
            } => {
                current = None;
                if ack {
                    let ack = json!({ "envelope_id": envelope_id }).to_string();
                    if ws.send(Message::Text(ack.into())).await.is_err() {
                        return ended;
                    }
                }
                continue;
            }
            frame = ws.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return ended,
            Some(Ok(_)) => {
                last_seen = Instant::now();
                continue;
            }
        };
        last_seen = Instant::now();
        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
            tracing::debug!("an unreadable Socket Mode frame; ignored");
            continue;
        };
        match frame.kind.as_str() {
            "hello" => {
                ended.greeted = true;
                tracing::info!(
                    connections = frame.num_connections,
                    "connected to Slack over Socket Mode"
                );
            }
            "disconnect" => {
                tracing::info!(
                    reason = frame.reason.as_deref().unwrap_or(""),
                    "Slack asks to replace its Socket Mode connection"
                );
                if !ended.replaced {
                    ended.replaced = replace.send(()).await.is_ok();
                    drain_until = Some(Instant::now() + DRAIN);
                }
            }
            kind => match frame.envelope_id {
                Some(id) => queue.push_back((
                    id,
                    kind.to_owned(),
                    frame.payload.unwrap_or(Value::Null),
                    frame.retry_attempt,
                )),
                None => tracing::debug!(kind, "a Socket Mode frame without an envelope; ignored"),
            },
        }
    }
}

/// The storing of one envelope: its id, and whether to acknowledge it.
type Pending<'a> = Pin<Box<dyn Future<Output = (String, bool)> + Send + 'a>>;

/// Stores one envelope's payload; acknowledged unless it could not be stored now.
async fn take(
    channel: &SlackChannel,
    ctx: &ChannelContext,
    envelope_id: String,
    kind: String,
    payload: Value,
    retry_attempt: Option<u32>,
) -> (String, bool) {
    let intake = match kind.as_str() {
        "events_api" => {
            let body = serde_json::to_vec(&payload).unwrap_or_default();
            channel.take_events(&body, ctx).await
        }
        "interactive" => channel.take_interaction(&payload.to_string(), ctx).await,
        // Not offered by this channel: acknowledged so that Slack does not resend it.
        _ => Intake::Ignored,
    };
    if let Intake::Unavailable(reason, _) = &intake {
        // Not acknowledged: Slack sends it again, here or on another connection.
        tracing::warn!(reason = %reason, retry_attempt, "a Socket Mode envelope could not be stored; Slack will resend it");
        return (envelope_id, false);
    }
    (envelope_id, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_starts_at_once_then_doubles_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
