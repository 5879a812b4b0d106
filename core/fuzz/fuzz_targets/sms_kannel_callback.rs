//! A Kannel get-url callback query (MO and DLR), as the SMS channel parses it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_channel_sms::inbound::{parse_dlr, parse_mo};
use switchboard_core::{Bytes, http, http_util};

fuzz_target!(|query: &[u8]| {
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(req) = http::Request::builder()
        .uri(format!("/mo?{query}"))
        .body(Bytes::new())
    else {
        return;
    };
    let pairs = http_util::query_pairs_raw(&req);
    let _ = parse_mo(&pairs);
    let _ = parse_dlr(&pairs);
});
