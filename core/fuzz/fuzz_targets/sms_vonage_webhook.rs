//! A Vonage inbound-message or delivery-receipt webhook body (form or JSON), as the SMS
//! channel reads and parses it, and the signature check over its parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_channel_sms::SignatureMethod;
use switchboard_channel_sms::vonage::inbound::{form_pairs, json_pairs, parse_dlr, parse_inbound};
use switchboard_channel_sms::vonage::signature::sign;

fuzz_target!(|body: &[u8]| {
    let mut lists = vec![form_pairs(body)];
    lists.extend(json_pairs(body));
    for pairs in lists {
        let _ = parse_inbound(&pairs);
        let _ = parse_dlr(&pairs);
        let _ = sign(SignatureMethod::Sha256, "secret", &pairs);
    }
});
