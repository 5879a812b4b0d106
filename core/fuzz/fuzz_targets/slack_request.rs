//! A Slack Events API body, an interactivity form body, and the mrkdwn of a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_channel_slack::inbound::{
    EventsBody, parse_button_value, parse_events, parse_interactivity,
};
use switchboard_channel_slack::mrkdwn::to_plain;

fuzz_target!(|body: &[u8]| {
    if let Ok(EventsBody::Message(m)) = parse_events(body, true) {
        let _ = to_plain(&m.text, |id| Some(id.to_owned()));
    }
    if let Ok(Some(press)) = parse_interactivity(body) {
        let _ = parse_button_value(&press.value);
    }
});
