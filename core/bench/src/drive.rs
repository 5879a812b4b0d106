//! The load itself: consumers writing through the SMS channel's inbound webhook (Kannel's MO
//! get-url, authenticated by its token) to LivePerson, and agents answering through LivePerson's
//! webhooks to the gateway; at the highest rate the system sustains, then at a fixed rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_lp_sim::SimHandle;
use tokio::sync::mpsc;

use crate::sink::Arrival;
use crate::stats::{Ledger, MessageKey, Summary};

/// The SMS channel's callback token in the generated configuration.
pub(crate) const MO_TOKEN: &str = "load-callback-token-0123456789";
/// The brand's short code.
pub(crate) const SHORT_CODE: &str = "12345";

/// The phone number of consumer `i`.
pub(crate) fn phone(i: u32) -> String {
    format!("+1555{i:07}")
}

/// Where arrivals go: the ledger of each phase, the conversation of each consumer (learnt from
/// its first message), and the waiters of a closed-loop phase.
#[derive(Debug, Default)]
pub(crate) struct Board {
    ledgers: Mutex<HashMap<u8, Ledger>>,
    conversations: Mutex<HashMap<u32, String>>,
    waiters: Mutex<HashMap<u32, mpsc::UnboundedSender<u32>>>,
}

impl Board {
    /// Collects consumer messages as the simulator accepts them, and agent messages as the
    /// gateway receives them.
    pub(crate) fn collect(
        self: &Arc<Self>,
        sim: &SimHandle,
        mut gateway: mpsc::UnboundedReceiver<Arrival>,
    ) {
        let mut tap = sim.tap_consumer_messages();
        let board = self.clone();
        tokio::spawn(async move {
            while let Some(m) = tap.recv().await {
                let Some(key) = m.event["message"].as_str().and_then(MessageKey::find) else {
                    continue;
                };
                // The latest conversation of a consumer is the one its messages go to.
                board
                    .conversations
                    .lock()
                    .expect("board")
                    .insert(key.consumer, m.conversation_id);
                board.arrived(key, m.at);
            }
        });
        let board = self.clone();
        tokio::spawn(async move {
            while let Some((text, at)) = gateway.recv().await {
                if let Some(key) = MessageKey::find(&text) {
                    board.arrived(key, at);
                }
            }
        });
    }

    fn arrived(&self, key: MessageKey, at: Instant) {
        self.ledgers
            .lock()
            .expect("board")
            .entry(key.phase)
            .or_default()
            .arrived(key, at);
        if let Some(waiter) = self.waiters.lock().expect("board").get(&key.consumer) {
            let _ = waiter.send(key.seq);
        }
    }

    fn sent(&self, key: MessageKey, at: Instant) {
        self.ledgers
            .lock()
            .expect("board")
            .entry(key.phase)
            .or_default()
            .sent(key, at);
    }

    fn refused(&self, phase: u8) {
        self.ledgers
            .lock()
            .expect("board")
            .entry(phase)
            .or_default()
            .refusals += 1;
    }

    fn progress(&self, phase: u8) -> (usize, usize) {
        let ledgers = self.ledgers.lock().expect("board");
        ledgers
            .get(&phase)
            .map_or((0, 0), |l| (l.sent_count(), l.delivered()))
    }

    /// Waits until every message of `phase` arrived, or nothing arrived for `quiet`.
    pub(crate) async fn settle(&self, phase: u8, quiet: Duration) {
        let mut last = (0, 0);
        let mut since = Instant::now();
        loop {
            let now = self.progress(phase);
            if now.0 > 0 && now.1 >= now.0 {
                return;
            }
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The summary of `phase`.
    pub(crate) fn summary(&self, phase: u8, name: &str) -> Summary {
        let ledgers = self.ledgers.lock().expect("board");
        ledgers
            .get(&phase)
            .map_or_else(|| Ledger::default().summary(name), |l| l.summary(name))
    }

    /// The conversation of consumer `i`, once its first message arrived.
    pub(crate) fn conversation(&self, i: u32) -> Option<String> {
        self.conversations.lock().expect("board").get(&i).cloned()
    }

    /// Forgets every consumer's conversation (before another target opens its own).
    pub(crate) fn forget_conversations(&self) {
        self.conversations.lock().expect("board").clear();
    }

    /// Tells the board which conversation consumer `i` has (when known in advance).
    pub(crate) fn set_conversation(&self, i: u32, conversation: String) {
        self.conversations
            .lock()
            .expect("board")
            .insert(i, conversation);
    }
}

/// Where the consumers' gateway sends MO requests: one connector (or relay) base URL per
/// instance; consumer `i` uses instance `i % n`.
#[derive(Debug, Clone)]
pub(crate) struct Inbound {
    /// `http://127.0.0.1:{port}` of each instance.
    pub(crate) bases: Vec<String>,
    /// The HTTP client (a gateway keeps its connections open).
    pub(crate) http: reqwest::Client,
}

impl Inbound {
    /// Sends one MO as Kannel's get-url does, retrying (as Kannel does) until it is accepted.
    /// Returns how many requests it took (0: never accepted).
    pub(crate) async fn send(&self, board: &Board, key: MessageKey) -> u32 {
        let base = &self.bases[key.consumer as usize % self.bases.len()];
        let url = format!("{base}/channels/sms/mo");
        let text = key.text();
        let phone = phone(key.consumer);
        let id = format!("{}-{}-{}", key.phase, key.consumer, key.seq);
        let query = [
            ("token", MO_TOKEN),
            ("from", phone.as_str()),
            ("to", SHORT_CODE),
            ("text", text.as_str()),
            ("ts", "1795384800"),
            ("id", id.as_str()),
            ("smsc", "load"),
            ("coding", "0"),
            ("charset", "UTF-8"),
        ];
        board.sent(key, Instant::now());
        for attempt in 0..200u32 {
            match self.http.get(&url).query(&query).send().await {
                Ok(r) if r.status().is_success() => return attempt + 1,
                _ => {
                    board.refused(key.phase);
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(50) + 1)))
                        .await;
                }
            }
        }
        0
    }

    /// Every consumer sends `messages` messages, each as soon as the previous one was
    /// accepted: the highest rate the system sustains with `consumers` concurrent senders.
    pub(crate) async fn max_rate(
        &self,
        board: &Arc<Board>,
        phase: u8,
        consumers: u32,
        messages: u32,
    ) {
        let mut tasks = Vec::new();
        for consumer in 0..consumers {
            let (me, board) = (self.clone(), board.clone());
            tasks.push(tokio::spawn(async move {
                for seq in 0..messages {
                    me.send(
                        &board,
                        MessageKey {
                            phase,
                            consumer,
                            seq,
                        },
                    )
                    .await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// `total` messages at `rate` per second, round robin over the consumers (open loop: a
    /// send does not wait for the previous one).
    pub(crate) async fn fixed_rate(
        &self,
        board: &Arc<Board>,
        phase: u8,
        consumers: u32,
        total: u32,
        rate: f64,
    ) {
        let mut tasks = Vec::new();
        pace(total, rate, |n| {
            let key = MessageKey {
                phase,
                consumer: n % consumers,
                seq: n / consumers,
            };
            let (me, board) = (self.clone(), board.clone());
            tasks.push(tokio::spawn(async move {
                me.send(&board, key).await;
            }));
        })
        .await;
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Calls `send(n)` for `n` in `0..total`, `rate` times per second on average (nothing for a
/// rate that is not a positive number).
async fn pace(total: u32, rate: f64, mut send: impl FnMut(u32)) {
    if !(rate.is_finite() && rate > 0.0) {
        return;
    }
    let start = Instant::now();
    let mut n = 0;
    while n < total {
        let due = ((start.elapsed().as_secs_f64() * rate) as u32 + 1).min(total);
        while n < due {
            send(n);
            n += 1;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Agents answering: each message is published by the simulator's agent and reaches the
/// consumer's phone through LivePerson's webhook, the connector and the gateway.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// The simulator (the agents' side).
    pub(crate) sim: Arc<SimHandle>,
}

impl Outbound {
    fn send(&self, board: &Board, key: MessageKey) {
        let Some(conversation) = board.conversation(key.consumer) else {
            return;
        };
        board.sent(key, Instant::now());
        if let Err(e) = self.sim.agent_send_text(&conversation, &key.text()) {
            tracing::warn!(error = %e, "the agent could not send");
        }
    }

    /// Each conversation's agent sends `messages` messages, each once the previous one reached
    /// the phone: `consumers` concurrent pipelines, at the highest rate they sustain.
    pub(crate) async fn max_rate(
        &self,
        board: &Arc<Board>,
        phase: u8,
        consumers: u32,
        messages: u32,
    ) {
        let mut tasks = Vec::new();
        for consumer in 0..consumers {
            let (tx, mut rx) = mpsc::unbounded_channel();
            board.waiters.lock().expect("board").insert(consumer, tx);
            let (me, board) = (self.clone(), board.clone());
            tasks.push(tokio::spawn(async move {
                for seq in 0..messages {
                    me.send(
                        &board,
                        MessageKey {
                            phase,
                            consumer,
                            seq,
                        },
                    );
                    // Wait for this one (a lost message ends the pipeline after a while).
                    loop {
                        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                            Ok(Some(got)) if got == seq => break,
                            Ok(Some(_)) => continue,
                            _ => return,
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        board.waiters.lock().expect("board").clear();
    }

    /// `total` messages at `rate` per second, round robin over the conversations.
    pub(crate) async fn fixed_rate(
        &self,
        board: &Arc<Board>,
        phase: u8,
        consumers: u32,
        total: u32,
        rate: f64,
    ) {
        pace(total, rate, |n| {
            self.send(
                board,
                MessageKey {
                    phase,
                    consumer: n % consumers,
                    seq: n / consumers,
                },
            );
        })
        .await;
    }
}
