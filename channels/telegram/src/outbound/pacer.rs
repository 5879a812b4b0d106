//! Per-chat pacing of sends (Bot FAQ, "My bot is hitting limits":
//! https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this — about one
//! message per second in a chat, bursts tolerated).

/// Per-chat pacing, so that an agent's burst (or a long text split in parts) does not trip
/// Telegram's flood limit of about one message per second per chat: a burst of up to
/// [`Pacer::BURST`] messages goes at once, then one per [`Pacer::INTERVAL`].
#[derive(Debug, Default)]
pub struct Pacer {
    /// Per chat, when the bucket is next empty ("theoretical arrival time").
    next: std::sync::Mutex<std::collections::HashMap<i64, tokio::time::Instant>>,
}

impl Pacer {
    /// One message per second per chat…
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
    /// …after a burst of three.
    pub const BURST: u32 = 3;

    /// Waits until a message to `chat` may go.
    pub async fn wait(&self, chat: i64) {
        let now = tokio::time::Instant::now();
        let tolerance = Self::INTERVAL * (Self::BURST - 1);
        let start = {
            let mut next = self.next.lock().expect("pacer lock");
            if next.len() > 10_000 {
                next.retain(|_, at| *at > now);
            }
            let tat = next.get(&chat).copied().unwrap_or(now).max(now);
            let start = tat
                .checked_sub(tolerance)
                .filter(|s| *s > now)
                .unwrap_or(now);
            next.insert(chat, tat + Self::INTERVAL);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}
