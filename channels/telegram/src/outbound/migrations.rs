//! Groups upgraded to supergroups: Telegram refuses sends to the old id with 400 and
//! `parameters.migrate_to_chat_id` (Bot API `ResponseParameters`; tdlib/telegram-bot-api
//! `Client.cpp`, `check_chat_access`: "group chat was upgraded to a supergroup chat").

use std::collections::HashMap;
use std::sync::Mutex;

use switchboard_core::{ChannelContext, DeliveryError};

/// Group chats that Telegram upgraded to supergroups (`migrate_to_chat_id`), kept in channel
/// state so that, once one send learnt the new id, every later one (after a restart too) goes
/// straight there instead of failing first.
#[derive(Debug, Default)]
pub(crate) struct Migrations {
    chats: tokio::sync::OnceCell<Mutex<HashMap<i64, i64>>>,
}

/// The channel-state key of [`Migrations`] (a JSON object: old chat id → new chat id).
const MIGRATIONS_KEY: &str = "migrated_chats";

impl Migrations {
    async fn chats(
        &self,
        ctx: &ChannelContext,
    ) -> Result<&Mutex<HashMap<i64, i64>>, DeliveryError> {
        self.chats
            .get_or_try_init(|| async {
                let saved = ctx.load_state(MIGRATIONS_KEY).await.map_err(|e| {
                    DeliveryError::retryable(format!("cannot read the migrated chats: {e}"))
                })?;
                let chats = saved
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default();
                Ok(Mutex::new(chats))
            })
            .await
    }

    /// Where messages for `chat` go now.
    pub(crate) async fn resolve(
        &self,
        ctx: &ChannelContext,
        chat: i64,
    ) -> Result<i64, DeliveryError> {
        let chats = self.chats(ctx).await?.lock().expect("migrations lock");
        let mut to = chat;
        // A chain of upgrades is followed (bounded, in case of a cycle).
        for _ in 0..4 {
            match chats.get(&to) {
                Some(next) => to = *next,
                None => break,
            }
        }
        Ok(to)
    }

    /// Remembers that `from` became `to` (best effort: a lost record costs one failed send).
    pub(crate) async fn record(&self, ctx: &ChannelContext, from: i64, to: i64) {
        let json = match self.chats(ctx).await {
            Ok(chats) => {
                let mut chats = chats.lock().expect("migrations lock");
                chats.insert(from, to);
                serde_json::to_string(&*chats).unwrap_or_default()
            }
            Err(_) => return,
        };
        if let Err(e) = ctx.save_state(MIGRATIONS_KEY, &json).await {
            tracing::warn!(error = %e, "cannot record a migrated Telegram chat");
        }
    }
}
