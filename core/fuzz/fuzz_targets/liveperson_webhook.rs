//! A LivePerson webhook body: parsed, and every change translated to an agent event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_liveperson::webhook::{NotificationChange, parse};

fuzz_target!(|body: &[u8]| {
    if let Ok(notification) = parse(body) {
        for change in &notification.changes {
            if let NotificationChange::Message(message) = change {
                let _ = switchboard_liveperson::agent_event(message);
                let _ = message.dedup_key();
            }
        }
    }
});
