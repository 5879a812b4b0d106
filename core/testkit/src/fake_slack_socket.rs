//! The Socket Mode side of the fake Slack: a WebSocket server that follows Slack's Socket Mode
//! protocol (docs.slack.dev/apis/events-api/using-socket-mode, docs/protocol/channels.md §1.6).
//!
//! - A connection needs a ticket that `apps.connections.open` issued; each ticket works once
//!   (a second handshake with it is refused with 401, as Slack's URLs are single-use).
//! - Slack speaks first: `{"type":"hello","num_connections":…,"debug_info":…,
//!   "connection_info":{"app_id":…}}`.
//! - Envelopes (`events_api`, `interactive`, `slash_commands`) carry an `envelope_id`; an
//!   envelope not acknowledged with `{"envelope_id":…}` within 3 seconds is sent again with
//!   `retry_attempt` + 1 and `retry_reason: "timeout"` (up to three retries), on whichever
//!   connection is open then; with none open, it waits for one.
//! - `disconnect` frames (`refresh_requested`, `warning`, …) ask the app to reconnect; the
//!   fake then closes the old connection after a grace period. A connection can also be cut
//!   without a word, as a network failure does.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// How long an envelope waits for its acknowledgement before Slack sends it again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How many times an unacknowledged envelope is sent again.
pub const MAX_RETRIES: u32 = 3;

/// What the server sends a connection.
enum Outgoing {
    Frame(String),
    /// Close the WebSocket properly.
    Close,
    /// Drop the TCP connection without a close frame.
    Cut,
}

#[derive(Debug, Default)]
struct State {
    tickets: Mutex<HashSet<String>>,
    connections: Mutex<HashMap<u64, mpsc::UnboundedSender<Outgoing>>>,
    acked: Mutex<Vec<String>>,
    deliveries: Mutex<Vec<(String, u32)>>,
    opened: AtomicUsize,
    next: AtomicU64,
    /// Bumped when a connection opens, so waiting envelopes go out.
    changed: Mutex<Option<watch::Sender<u64>>>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outgoing::Frame(_) => "Frame",
            Outgoing::Close => "Close",
            Outgoing::Cut => "Cut",
        })
    }
}

/// A running Socket Mode server.
#[derive(Debug, Clone)]
pub struct SocketServer {
    /// `ws://127.0.0.1:{port}`.
    pub base: String,
    app_id: String,
    state: Arc<State>,
    opened_rx: watch::Receiver<u64>,
}

impl SocketServer {
    /// Starts the server on a free loopback port.
    pub async fn start(app_id: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, opened_rx) = watch::channel(0u64);
        let state = Arc::new(State::default());
        *state.changed.lock().expect("changed") = Some(tx);
        let server = Self {
            base: format!("ws://127.0.0.1:{port}"),
            app_id: app_id.to_owned(),
            state,
            opened_rx,
        };
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = accepting.clone();
                tokio::spawn(async move { s.serve(stream).await });
            }
        });
        server
    }

    /// A fresh single-use WebSocket URL, as `apps.connections.open` returns it.
    pub fn issue_url(&self) -> String {
        let n = self.state.next.fetch_add(1, Ordering::SeqCst);
        let ticket = format!("{n:08x}-7c1f-4aa2-9a0b-{:012x}", n * 7919);
        self.state
            .tickets
            .lock()
            .expect("tickets")
            .insert(ticket.clone());
        format!("{}/link/?ticket={ticket}&app_id={}", self.base, self.app_id)
    }

    async fn serve(&self, stream: tokio::net::TcpStream) {
        let state = self.state.clone();
        // The signature is tungstenite's callback type.
        #[allow(clippy::result_large_err)]
        let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let ticket = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("ticket="))
                .unwrap_or("");
            if req.uri().path() == "/link/" && state.tickets.lock().expect("tickets").remove(ticket)
            {
                Ok(resp)
            } else {
                let mut refused = ErrorResponse::new(Some("invalid or used ticket".into()));
                *refused.status_mut() = StatusCode::UNAUTHORIZED;
                Err(refused)
            }
        };
        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
            return;
        };
        let id = self.state.next.fetch_add(1, Ordering::SeqCst);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let count = {
            let mut conns = self.state.connections.lock().expect("connections");
            conns.insert(id, tx);
            conns.len()
        };
        self.state.opened.fetch_add(1, Ordering::SeqCst);
        let hello = json!({ "type": "hello", "num_connections": count,
            "debug_info": { "host": "applink-fake-1", "build_number": 118, "approximate_connection_time": 18060 },
            "connection_info": { "app_id": self.app_id } });
        if ws
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
        {
            self.forget(id);
            return;
        }
        if let Some(changed) = self.state.changed.lock().expect("changed").as_ref() {
            changed.send_modify(|n| *n += 1);
        }
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Outgoing::Frame(text)) => {
                        if ws.send(Message::Text(text.into())).await.is_err() { break; }
                    }
                    Some(Outgoing::Close) => { let _ = ws.close(None).await; break; }
                    Some(Outgoing::Cut) | None => break,
                },
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(v) = serde_json::from_str::<Value>(text.as_str())
                            && let Some(envelope) = v["envelope_id"].as_str()
                        {
                            self.state.acked.lock().expect("acked").push(envelope.to_owned());
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        self.forget(id);
    }

    fn forget(&self, id: u64) {
        self.state
            .connections
            .lock()
            .expect("connections")
            .remove(&id);
    }

    /// Whether `envelope_id` was acknowledged.
    pub fn is_acked(&self, envelope_id: &str) -> bool {
        self.state
            .acked
            .lock()
            .expect("acked")
            .iter()
            .any(|a| a == envelope_id)
    }

    /// Every acknowledgement received, in order (a redelivered envelope acknowledged twice
    /// appears twice).
    pub fn acked(&self) -> Vec<String> {
        self.state.acked.lock().expect("acked").clone()
    }

    /// Every delivery made: (envelope id, retry attempt).
    pub fn deliveries(&self) -> Vec<(String, u32)> {
        self.state.deliveries.lock().expect("deliveries").clone()
    }

    /// Connections opened so far (each needs its own `apps.connections.open`).
    pub fn connections_opened(&self) -> usize {
        self.state.opened.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn live_connections(&self) -> usize {
        self.state.connections.lock().expect("connections").len()
    }

    /// Sends an envelope of `kind` (`events_api`, `interactive`, `slash_commands`) with
    /// `payload`, and keeps sending it (3 s apart, at most three retries) until acknowledged.
    /// Returns its `envelope_id`.
    pub fn send_envelope(&self, kind: &str, payload: Value) -> String {
        let n = self.state.next.fetch_add(1, Ordering::SeqCst);
        let envelope_id = format!("{n:08x}-4d35-4d0b-b6aa-{:012x}", n * 104_729);
        let server = self.clone();
        let (kind, id) = (kind.to_owned(), envelope_id.clone());
        tokio::spawn(async move {
            for attempt in 0..=MAX_RETRIES {
                let frame = json!({ "envelope_id": id, "type": kind,
                    "accepts_response_payload": kind == "slash_commands",
                    "retry_attempt": attempt, "retry_reason": if attempt == 0 { "" } else { "timeout" },
                    "payload": payload });
                server.deliver(&frame.to_string(), &id, attempt).await;
                tokio::time::sleep(ACK_TIMEOUT).await;
                if server.is_acked(&id) {
                    return;
                }
            }
        });
        envelope_id
    }

    /// Puts a frame on an open connection, waiting for one to open if none is.
    async fn deliver(&self, frame: &str, id: &str, attempt: u32) {
        let mut opened = self.opened_rx.clone();
        loop {
            let sent = {
                let conns = self.state.connections.lock().expect("connections");
                // The newest connection, as Slack favours fresh ones after a refresh.
                conns
                    .iter()
                    .max_by_key(|(k, _)| **k)
                    .is_some_and(|(_, tx)| tx.send(Outgoing::Frame(frame.to_owned())).is_ok())
            };
            if sent {
                self.state
                    .deliveries
                    .lock()
                    .expect("deliveries")
                    .push((id.to_owned(), attempt));
                return;
            }
            if opened.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sends `{"type":"disconnect","reason":…}` on every open connection and closes each
    /// `grace` later, as Slack does when it rotates connections.
    pub fn disconnect(&self, reason: &str, grace: Duration) {
        let frame = json!({ "type": "disconnect", "reason": reason,
            "debug_info": { "host": "applink-fake-1" } })
        .to_string();
        let senders: Vec<_> = self
            .state
            .connections
            .lock()
            .expect("connections")
            .values()
            .cloned()
            .collect();
        for tx in &senders {
            let _ = tx.send(Outgoing::Frame(frame.clone()));
        }
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for tx in senders {
                let _ = tx.send(Outgoing::Close);
            }
        });
    }

    /// Cuts every open connection without a close frame (a network failure).
    pub fn cut_connections(&self) {
        for tx in self.state.connections.lock().expect("connections").values() {
            let _ = tx.send(Outgoing::Cut);
        }
    }
}
