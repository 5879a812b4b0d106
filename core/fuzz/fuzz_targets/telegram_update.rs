//! A Telegram update as the webhook or `getUpdates` delivers it, and the callback data of a
//! button press.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_channel_telegram::inbound::{parse_callback_data, parse_update};

fuzz_target!(|body: &[u8]| {
    if let Ok(update) = parse_update(body)
        && let Some(data) = update.callback_query.as_ref().and_then(|q| q.data.as_deref())
    {
        let _ = parse_callback_data(data);
    }
});
