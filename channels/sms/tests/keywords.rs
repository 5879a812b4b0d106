//! STOP / START / HELP: opt-out persisted and confirmed once, nothing delivered while opted
//! out (a permanent failure), keyword messages still forwarded to the agent.

use std::sync::Arc;

use switchboard_channel_sms::keywords::{
    DEFAULT_HELP_REPLY, DEFAULT_OPT_IN_REPLY, DEFAULT_OPT_OUT_REPLY,
};
use switchboard_core::{ChatState, DeliveryError, Inbound, Outbound, OutboundEvent};

use crate::support::{
    Setup, Sink, TOKEN, fake_kannel, get, settings, setup, setup_with_sink, vonage_settings,
};
use switchboard_testkit::fake_kannel::FakeKannel;
use switchboard_testkit::fake_vonage::{
    FakeVonage, Format, SIG_SECRET, inbound_params, signed, webhook_request,
};

const CONSUMER: &str = "+15551234567";

fn config(fake: &FakeKannel, extra: serde_json::Value) -> switchboard_core::ChannelConfig {
    settings(
        &fake.sendsms_url(),
        "https://cx.example/channels/sms-main",
        extra,
    )
}

async fn mo(s: &Setup, id: &str, text: &str) -> u16 {
    let q = serde_urlencoded::to_string([("from", CONSUMER), ("id", id), ("text", text)]).unwrap();
    s.channel
        .handle_http(get(&format!("/mo?token={TOKEN}&{q}")), &s.ctx)
        .await
        .status()
        .as_u16()
}

async fn deliver(s: &Setup, id: &str, body: Outbound) -> Result<(), DeliveryError> {
    s.channel
        .deliver(&s.ctx.consumer(CONSUMER), &OutboundEvent::new(id, body))
        .await
        .map(|_| ())
}

fn texts(s: &Setup) -> Vec<String> {
    s.sink
        .events()
        .into_iter()
        .map(|e| match e.body {
            Inbound::Text { text } => text,
            other => format!("{other:?}"),
        })
        .collect()
}

fn replies(fake: &FakeKannel) -> Vec<String> {
    fake.accepted().into_iter().map(|r| r.body).collect()
}

#[tokio::test]
async fn stop_opts_out_is_confirmed_once_and_blocks_delivery() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(&fake, serde_json::json!({}))).await;
    assert_eq!(mo(&s, "m1", "STOP").await, 200);
    assert_eq!(replies(&fake), [DEFAULT_OPT_OUT_REPLY]);
    let reply = &fake.accepted()[0];
    assert_eq!(reply.headers["x-kannel-to"], CONSUMER);
    assert!(
        !reply.headers.contains_key("x-kannel-dlr-url"),
        "no delivery report for our own reply"
    );
    assert!(
        s.sink.state.lock().unwrap()[&format!("optout:{CONSUMER}")].starts_with("1 "),
        "opted out, with the time of the message"
    );
    // A second STOP (any case, padded, with a full stop): forwarded, not confirmed again.
    assert_eq!(mo(&s, "m2", "  stop. ").await, 200);
    assert_eq!(replies(&fake).len(), 1);
    assert_eq!(
        texts(&s),
        ["STOP", "stop."],
        "the agent sees the keyword messages"
    );
    // Agent messages are not sent, and fail permanently with a clear reason.
    let e = deliver(&s, "a1", Outbound::text("are you there?"))
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("opted out"), "{e}");
    // Events that send nothing anyway still succeed.
    deliver(
        &s,
        "a2",
        Outbound::ChatState {
            state: ChatState::Composing,
        },
    )
    .await
    .unwrap();
    assert_eq!(replies(&fake).len(), 1, "nothing else was sent");
}

#[tokio::test]
async fn the_opt_out_survives_a_new_channel_instance_until_start() {
    let fake = fake_kannel(6).await;
    let sink = Arc::new(Sink::default());
    let first = setup_with_sink(&config(&fake, serde_json::json!({})), sink.clone()).await;
    assert_eq!(mo(&first, "m1", "Unsubscribe").await, 200);
    drop(first);
    // A restart: a new channel on the same (durable) state.
    let s = setup_with_sink(&config(&fake, serde_json::json!({})), sink).await;
    let e = deliver(&s, "a1", Outbound::text("hello"))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(mo(&s, "m2", "Start").await, 200);
    assert_eq!(
        replies(&fake),
        [DEFAULT_OPT_OUT_REPLY, DEFAULT_OPT_IN_REPLY]
    );
    deliver(&s, "a2", Outbound::text("welcome back"))
        .await
        .unwrap();
    assert_eq!(replies(&fake).last().unwrap(), "welcome back");
    // START again while subscribed: just a message.
    assert_eq!(mo(&s, "m3", "START").await, 200);
    assert_eq!(replies(&fake).len(), 3);
}

/// Issue #21 item 8: the runtime's workers start before its channels, so `deliver` can be
/// called before `start`. An opted-out consumer must get nothing then too: until the channel
/// has its context (and so the opt-out state), `deliver` sends nothing and asks for a retry.
#[tokio::test]
async fn nothing_reaches_an_opted_out_consumer_while_the_channel_is_starting() {
    let fake = fake_kannel(6).await;
    let sink = Arc::new(Sink::default());
    sink.state
        .lock()
        .unwrap()
        .insert(format!("optout:{CONSUMER}"), "1".to_owned());
    let reg = switchboard_core::find_registration("sms").unwrap();
    let channel = (reg.build)(&config(&fake, serde_json::json!({}))).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let ctx = switchboard_core::ChannelContext::new(crate::support::INSTANCE, sink.clone(), rx);
    let event = OutboundEvent::new("a1", Outbound::text("hello"));
    let e = channel
        .deliver(&ctx.consumer(CONSUMER), &event)
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(fake.requests().is_empty(), "nothing was sent before start");
    channel.start(ctx.clone()).await.unwrap();
    let e = channel
        .deliver(&ctx.consumer(CONSUMER), &event)
        .await
        .unwrap_err();
    assert!(
        !e.is_retryable() && e.to_string().contains("opted out"),
        "{e}"
    );
    assert!(fake.requests().is_empty());
    drop(tx);
}

#[tokio::test]
async fn opt_in_words_from_a_subscribed_consumer_are_ordinary_messages() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(&fake, serde_json::json!({}))).await;
    assert_eq!(mo(&s, "m1", "Yes").await, 200);
    assert!(replies(&fake).is_empty(), "no automatic answer to `yes`");
    assert_eq!(texts(&s), ["Yes"]);
}

/// Issue #22 item 2: HELP is answered at most once an hour per number, so that an
/// auto-responder answering our reply with HELP (or our reply with its own) never starts an
/// endless exchange; the messages still reach the agent.
#[tokio::test]
async fn help_replies_are_limited_per_number_so_auto_responders_never_ping_pong() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(&fake, serde_json::json!({}))).await;
    for (i, word) in ["HELP", "info!", "help", "HELP", "Help."]
        .iter()
        .enumerate()
    {
        assert_eq!(mo(&s, &format!("m{i}"), word).await, 200);
    }
    assert_eq!(
        replies(&fake),
        [DEFAULT_HELP_REPLY],
        "one reply per interval"
    );
    assert_eq!(texts(&s).len(), 5, "every message reaches the agent");
    // Another number gets its own reply.
    let q = serde_urlencoded::to_string([("from", "+15550009999"), ("id", "o1"), ("text", "HELP")])
        .unwrap();
    let r = s
        .channel
        .handle_http(get(&format!("/mo?token={TOKEN}&{q}")), &s.ctx)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(replies(&fake).len(), 2);
    // Once the interval is over, HELP is answered again.
    let key = format!("helpsent:{CONSUMER}");
    let last: i64 = s.sink.state.lock().unwrap()[&key].parse().unwrap();
    s.sink
        .state
        .lock()
        .unwrap()
        .insert(key, (last - 3601).to_string());
    assert_eq!(mo(&s, "m9", "HELP").await, 200);
    assert_eq!(replies(&fake).len(), 3);
}

/// Keywords inside longer sentences are text; "I need help" asks the agent, not the robot.
#[tokio::test]
async fn only_whole_messages_and_short_opt_out_requests_are_keywords() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(&fake, serde_json::json!({}))).await;
    assert_eq!(mo(&s, "m1", "I need help").await, 200);
    assert_eq!(mo(&s, "m2", "I want to cancel my order").await, 200);
    assert!(replies(&fake).is_empty());
    deliver(&s, "a1", Outbound::text("sure")).await.unwrap();
    assert_eq!(texts(&s), ["I need help", "I want to cancel my order"]);
}

/// Issue #22 item 2: the FCC's words (47 CFR 64.1200(a)(10): stop, quit, end, revoke, opt
/// out, cancel, unsubscribe) opt out by default, and so does a short message that shows the
/// intent; sentences that merely contain the word do not.
#[tokio::test]
async fn the_fccs_words_and_short_requests_to_stop_opt_out() {
    let opts_out = [
        "REVOKE",
        "opt out",
        "Opt-Out",
        "OPTOUT",
        "stop all",
        "Quit",
        "stop texting me",
        "Please stop texting me!",
        "STOP SENDING ME THESE",
        "can you stop texting me",
        "unsubscribe me please",
        "I want to unsubscribe",
        "please stop",
        "opt out now",
        "stop it",
        "pls stop messaging",
    ];
    let stays_text = [
        "did it stop",
        "when will it stop?",
        "I can't stop laughing",
        "don't stop",
        "stop my order",
        "cancel my order",
        "end of the month is fine",
        "I quit my job so can I pause the plan",
        "please stop by the store tomorrow and ask for Sam",
        "is there a way to unsubscribe from the newsletter but keep my texts",
    ];
    let fake = fake_kannel(6).await;
    let keywords_of = |extra| {
        switchboard_channel_sms::SmsChannel::from_config(&config(&fake, extra))
            .unwrap()
            .settings()
            .keywords
            .clone()
    };
    let keywords = keywords_of(serde_json::json!({}));
    for text in opts_out {
        assert_eq!(
            keywords.classify(text),
            Some(switchboard_channel_sms::Keyword::OptOut),
            "{text}"
        );
    }
    for text in stays_text {
        assert_eq!(keywords.classify(text), None, "{text}");
    }
    // Through the channel: confirmed once, and nothing delivered afterwards.
    let s = setup(&config(&fake, serde_json::json!({}))).await;
    assert_eq!(mo(&s, "m1", "stop texting me").await, 200);
    assert_eq!(replies(&fake), [DEFAULT_OPT_OUT_REPLY]);
    assert!(deliver(&s, "a1", Outbound::text("hello")).await.is_err());
    // Without intent matching only whole keywords count.
    let plain = keywords_of(serde_json::json!({ "keywords": { "match_intent": false } }));
    assert_eq!(plain.classify("stop texting me"), None);
    assert_eq!(
        plain.classify("REVOKE"),
        Some(switchboard_channel_sms::Keyword::OptOut)
    );
}

/// Issue #22 item 2: the replies carry the brand's name: before the default texts, and in
/// place of `{brand}` in custom ones (which then need `brand`).
#[tokio::test]
async fn replies_carry_the_brands_name() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(
        &fake,
        serde_json::json!({ "keywords": {
            "brand": "ACME Parcels",
            "help_reply": "{brand} support: write your question. Msg&data rates may apply.",
        }}),
    ))
    .await;
    assert_eq!(mo(&s, "m1", "STOP").await, 200);
    assert_eq!(mo(&s, "m2", "HELP").await, 200);
    assert_eq!(mo(&s, "m3", "START").await, 200);
    assert_eq!(
        replies(&fake),
        [
            format!("ACME Parcels: {DEFAULT_OPT_OUT_REPLY}"),
            "ACME Parcels support: write your question. Msg&data rates may apply.".to_owned(),
            format!("ACME Parcels: {DEFAULT_OPT_IN_REPLY}"),
        ]
    );
    let err = switchboard_channel_sms::SmsConfig::from_channel_config(&config(
        &fake,
        serde_json::json!({ "keywords": { "help_reply": "{brand}: hello" } }),
    ))
    .unwrap_err();
    assert_eq!(err.key, "channels.sms-main.keywords.brand");
}

/// A STOP is not undone by a START older than it (Vonage's and Kannel's retries, and a
/// replayed request, carry the message's original time): the consumer stays opted out.
#[tokio::test]
async fn a_late_or_replayed_start_never_undoes_a_later_stop() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(&fake, serde_json::json!({}))).await;
    let at = |id: &str, text: &str, ts: i64| {
        let q = serde_urlencoded::to_string([
            ("from", CONSUMER),
            ("id", id),
            ("text", text),
            ("ts", &ts.to_string()),
        ])
        .unwrap();
        get(&format!("/mo?token={TOKEN}&{q}"))
    };
    let call = |req| s.channel.handle_http(req, &s.ctx);
    assert_eq!(call(at("m1", "STOP", 1_800_000_000)).await.status(), 200);
    assert_eq!(call(at("m2", "START", 1_800_000_100)).await.status(), 200);
    assert_eq!(call(at("m3", "STOP", 1_800_000_200)).await.status(), 200);
    // The START of 100 again (a replay, or a retry arriving late).
    assert_eq!(call(at("m2", "START", 1_800_000_100)).await.status(), 200);
    assert!(deliver(&s, "a1", Outbound::text("hello")).await.is_err());
    assert_eq!(
        replies(&fake),
        [
            DEFAULT_OPT_OUT_REPLY,
            DEFAULT_OPT_IN_REPLY,
            DEFAULT_OPT_OUT_REPLY
        ]
    );
}

#[tokio::test]
async fn a_failed_submit_changes_nothing_and_the_retry_confirms_once() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(&fake, serde_json::json!({}))).await;
    s.sink.set_failing(true);
    assert_eq!(mo(&s, "m1", "STOP").await, 503);
    assert!(replies(&fake).is_empty());
    assert!(
        !s.sink
            .state
            .lock()
            .unwrap()
            .contains_key(&format!("optout:{CONSUMER}"))
    );
    s.sink.set_failing(false);
    // Kannel retries with the same id.
    assert_eq!(mo(&s, "m1", "STOP").await, 200);
    assert_eq!(mo(&s, "m1", "STOP").await, 200);
    assert_eq!(replies(&fake), [DEFAULT_OPT_OUT_REPLY]);
}

#[tokio::test]
async fn keywords_and_replies_are_configurable() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(
        &fake,
        serde_json::json!({ "keywords": {
            "opt_out": ["Arrêt", "STOP"],
            "opt_in": ["Reprise"],
            "help": [],
            "opt_out_reply": "Vous êtes désinscrit. Envoyez REPRISE pour revenir.",
            "forward": false,
        }}),
    ))
    .await;
    assert_eq!(mo(&s, "m1", "ARRÊT").await, 200);
    let sent = fake.accepted();
    assert_eq!(
        sent[0].body,
        "Vous êtes désinscrit. Envoyez REPRISE pour revenir."
    );
    assert_eq!(sent[0].headers["x-kannel-coding"], "2", "not GSM-7: UCS-2");
    assert!(
        s.sink.events().is_empty(),
        "forward = false keeps keywords from the agent"
    );
    assert_eq!(mo(&s, "m2", "HELP").await, 200);
    assert_eq!(texts(&s), ["HELP"], "no help words: an ordinary message");
    assert_eq!(mo(&s, "m3", "reprise").await, 200);
    assert_eq!(replies(&fake).len(), 2);
    assert_eq!(replies(&fake)[1], DEFAULT_OPT_IN_REPLY);
}

#[tokio::test]
async fn disabled_keywords_change_nothing() {
    let fake = fake_kannel(6).await;
    let s = setup(&config(
        &fake,
        serde_json::json!({ "keywords": { "enabled": false } }),
    ))
    .await;
    assert_eq!(mo(&s, "m1", "STOP").await, 200);
    assert!(replies(&fake).is_empty());
    deliver(&s, "a1", Outbound::text("still sent"))
        .await
        .unwrap();
    assert_eq!(replies(&fake), ["still sent"]);
    assert_eq!(texts(&s), ["STOP"]);
}

#[tokio::test]
async fn keywords_work_the_same_through_vonage() {
    let fake = FakeVonage::start("sha256", Format::PostForm).await;
    let s = setup(&vonage_settings(
        &fake.url,
        "https://cx.example/channels/sms-main",
        serde_json::json!({ "signature_method": "sha256" }),
    ))
    .await;
    let params = signed(
        "sha256",
        SIG_SECRET,
        inbound_params("15551234567", "v1", "Stop"),
    );
    let r = s
        .channel
        .handle_http(
            webhook_request(Format::PostForm, "/inbound", &params),
            &s.ctx,
        )
        .await;
    assert_eq!(r.status(), 200);
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].params["text"], DEFAULT_OPT_OUT_REPLY);
    assert_eq!(sent[0].params["to"], "15551234567");
    assert!(
        !sent[0].params.contains_key("callback") && !sent[0].params.contains_key("client-ref"),
        "no receipts for our own reply"
    );
    let e = deliver(&s, "a1", Outbound::text("hello"))
        .await
        .unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(texts(&s), ["Stop"]);
}
