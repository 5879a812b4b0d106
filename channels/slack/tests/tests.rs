//! Tests of the Slack channel against the testkit's fake Slack, with requests signed as Slack
//! signs them.

mod shapes;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_channel_slack::inbound::{EventsBody, parse_events, parse_interactivity, sign};
use switchboard_channel_slack::mrkdwn::to_plain;
use switchboard_channel_slack::outbound::{MAX_TEXT, split_text};
use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{
    Attachment, AttachmentBody, Bytes, Channel, ChannelConfig, ConsumerAddress, DeliveryError,
    HttpRequest, Inbound, MessageRef, Outbound, OutboundEvent, async_trait, find_registration,
    http,
};
use switchboard_testkit::RecordingSink;
use switchboard_testkit::conformance::{self, Harness, PlatformFailure};
use switchboard_testkit::fake_slack::{FAKE_BOT_TOKEN, FakeSlack, SlackFailure};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const INSTANCE: &str = "slack";
const DM: &str = "D024BE91L";
const USER: &str = "U2147483697";

fn config(fake: &FakeSlack) -> ChannelConfig {
    ChannelConfig::new(
        INSTANCE,
        "slack",
        json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": SIGNING_SECRET, "api_base_url": fake.api_base }),
    )
}

fn build(config: &ChannelConfig) -> Arc<dyn Channel> {
    (find_registration("slack").expect("registered").build)(config).expect("valid config")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signed(path: &str, body: &[u8], timestamp: i64, secret: &str) -> HttpRequest {
    let ts = timestamp.to_string();
    http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign(secret, &ts, body))
        .body(Bytes::copy_from_slice(body))
        .unwrap()
}

/// A DM event; its `ts` follows from the event id, as each message has its own.
fn dm_body(event_id: &str, text: &str) -> Vec<u8> {
    let ts = format!(
        "1355517523.{:06}",
        event_id.bytes().map(u64::from).sum::<u64>()
    );
    serde_json::to_vec(&FakeSlack::envelope(
        event_id,
        FakeSlack::dm(USER, DM, text, &ts),
    ))
    .unwrap()
}

// ---------------------------------------------------------------------------------------------

struct Conformance {
    fake: FakeSlack,
}

#[async_trait]
impl Harness for Conformance {
    fn config(&self) -> ChannelConfig {
        config(&self.fake)
    }
    fn secrets(&self) -> Vec<String> {
        vec![FAKE_BOT_TOKEN.into(), SIGNING_SECRET.into()]
    }
    fn genuine(&self, n: u32, text: &str) -> HttpRequest {
        signed(
            "/events",
            &dm_body(&format!("Ev{n:08}"), text),
            now(),
            SIGNING_SECRET,
        )
    }
    fn genuine_with_body(&self, body: Bytes) -> Option<HttpRequest> {
        Some(signed("/events", &body, now(), SIGNING_SECRET))
    }
    fn forged(&self, n: u32, text: &str) -> Option<HttpRequest> {
        Some(signed(
            "/events",
            &dm_body(&format!("Ev{n:08}"), text),
            now(),
            "not-the-signing-secret",
        ))
    }
    fn consumer(&self, instance: &str) -> ConsumerAddress {
        ConsumerAddress::new(instance, DM)
    }
    async fn fail_next_delivery(&self, failure: PlatformFailure) -> bool {
        self.fake.fail_next(&[match failure {
            PlatformFailure::Outage => SlackFailure::Unavailable,
            PlatformFailure::Refusal => SlackFailure::App("channel_not_found"),
        }]);
        true
    }
}

#[tokio::test]
async fn the_slack_channel_passes_the_conformance_suite() {
    let fake = FakeSlack::start().await;
    conformance::run(&Conformance { fake }).await;
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_published_test_vector_signs_exactly() {
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        sign(SIGNING_SECRET, "1531420618", body.as_bytes()),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

#[tokio::test]
async fn forged_stale_and_unsigned_requests_are_refused_before_parsing() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let body = dm_body("Ev1", "hello");
    let mut cases = vec![
        signed("/events", &body, now(), "wrong-secret-wrong-secret"),
        signed("/events", &body, now() - 301, SIGNING_SECRET),
        signed("/events", &body, now() + 301, SIGNING_SECRET),
        signed(
            "/interactivity",
            b"payload=%7B%7D",
            now() - 600,
            SIGNING_SECRET,
        ),
    ];
    // Altered after signing.
    let mut altered = signed("/events", &body, now(), SIGNING_SECRET);
    *altered.body_mut() = Bytes::from(dm_body("Ev1", "hellO"));
    cases.push(altered);
    // v1 prefix, and no headers at all.
    let mut v1 = signed("/events", &body, now(), SIGNING_SECRET);
    let sig = v1.headers()["x-slack-signature"]
        .to_str()
        .unwrap()
        .replace("v0=", "v1=");
    v1.headers_mut()
        .insert("x-slack-signature", sig.parse().unwrap());
    cases.push(v1);
    cases.push(
        http::Request::builder()
            .method("POST")
            .uri("/events")
            .body(Bytes::from(body.clone()))
            .unwrap(),
    );
    for req in cases {
        let response = channel.handle_http(req, &ctx).await;
        assert_eq!(response.status(), 401);
        let v: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    assert!(sink.events().is_empty());
}

#[tokio::test]
async fn url_verification_is_answered_with_the_challenge() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let response = channel
        .handle_http(signed("/events", body, now(), SIGNING_SECRET), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    let v: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[tokio::test]
async fn a_dm_becomes_plain_text_with_a_profile_and_own_or_bot_messages_are_ignored() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let text =
        "Hi <@U0OTHER> see <https://example.com/o/1|my order> in <#C123|support> &amp; thanks 👋";
    let response = channel
        .handle_http(
            signed("/events", &dm_body("Ev42", text), now(), SIGNING_SECRET),
            &ctx,
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].consumer, ConsumerAddress::new(INSTANCE, DM));
    let ts = format!(
        "1355517523.{:06}",
        "Ev42".bytes().map(u64::from).sum::<u64>()
    );
    assert_eq!(
        events[0].platform_id.as_deref(),
        Some(format!("slack:{DM}:{ts}").as_str())
    );
    assert_eq!(events[0].occurred_at_ms, Some(1_355_517_523_000));
    assert_eq!(
        events[0].body,
        Inbound::text("Hi @ada.l see my order (https://example.com/o/1) in #support & thanks 👋")
    );
    let profile = events[0].profile.clone().unwrap();
    assert_eq!(profile.email.as_deref(), Some("ada@example.com"));
    assert_eq!(profile.first_name.as_deref(), Some("Ada"));
    assert_eq!(profile.platform_user_id.as_deref(), Some(USER));
    // users.info is cached: one lookup per user.
    let before = fake.calls("users.info").len();
    channel
        .handle_http(
            signed("/events", &dm_body("Ev43", "again"), now(), SIGNING_SECRET),
            &ctx,
        )
        .await;
    assert_eq!(fake.calls("users.info").len(), before);

    // Our own message, another bot's, an edit, a channel message: acknowledged, not taken.
    let mut own = FakeSlack::dm("UBOTUSER1", DM, "from us", "1.1");
    own["user"] = json!("UBOTUSER1");
    let mut bot = FakeSlack::dm("U999", DM, "a bot", "1.2");
    bot["bot_id"] = json!("B123");
    let mut edit = FakeSlack::dm(USER, DM, "edited", "1.3");
    edit["subtype"] = json!("message_changed");
    let mut public = FakeSlack::dm(USER, "C0PUBLIC", "in a channel", "1.4");
    public["channel_type"] = json!("channel");
    // Slack's echo of a message our bot posted.
    channel
        .deliver(
            &ConsumerAddress::new(INSTANCE, DM),
            &OutboundEvent::new("m-echo", Outbound::text("from the agent")),
        )
        .await
        .unwrap();
    let echo = FakeSlack::echo_of(&fake.conversation(DM)[0], DM);
    for (i, event) in [own, bot, edit, public, echo].into_iter().enumerate() {
        let body = serde_json::to_vec(&FakeSlack::envelope(&format!("EvX{i}"), event)).unwrap();
        let response = channel
            .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sink.events().len(), 2);
}

#[tokio::test]
async fn a_shared_file_is_downloaded_with_the_token_and_a_store_failure_is_retried() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let url = fake.add_file("F1", b"\x89PNG fake image");
    let mut event = FakeSlack::dm(USER, DM, "here it is", "2.1");
    event["subtype"] = json!("file_share");
    event["files"] =
        json!([{ "id": "F1", "name": "shot.png", "mimetype": "image/png", "url_private": url }]);
    let body = serde_json::to_vec(&FakeSlack::envelope("EvF", event)).unwrap();
    sink.set_failing(true);
    let response = channel
        .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
        .await;
    assert_eq!(response.status(), 503);
    sink.set_failing(false);
    let response = channel
        .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    let events = sink.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].body, Inbound::text("here it is"));
    let Inbound::File { file } = &events[1].body else {
        panic!("{events:?}")
    };
    assert_eq!(file.mime, "image/png");
    assert_eq!(
        file.body,
        AttachmentBody::Inline {
            data: Bytes::from_static(b"\x89PNG fake image")
        }
    );
    assert_ne!(events[0].platform_id, events[1].platform_id);
}

#[tokio::test]
async fn buttons_render_as_block_kit_with_a_fallback_and_a_click_becomes_a_choice() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let to = ConsumerAddress::new(INSTANCE, DM);
    let reply = |id: &str, title: &str| Button {
        id: id.into(),
        title: title.into(),
        action: ButtonAction::Reply,
    };
    let message = "lp:conv-1:dialog-1:7";
    let content = RichContent::with_quick_replies(
        "Did that help? <yes/no>",
        vec![reply("yes", "Yes"), reply("no", "No")],
    );
    channel
        .deliver(
            &to,
            &OutboundEvent::new(message, Outbound::Rich { content }),
        )
        .await
        .unwrap();
    let call = &fake.calls("chat.postMessage")[0].params;
    assert_eq!(call["channel"], DM);
    assert!(
        call["text"]
            .as_str()
            .unwrap()
            .contains("Did that help? &lt;yes/no&gt;")
    );
    assert!(call["text"].as_str().unwrap().contains("1. Yes"));
    let blocks = call["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[1]["type"], "actions");
    let value = blocks[1]["elements"][1]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    let payload = json!({ "type": "block_actions", "user": { "id": USER },
        "container": { "type": "message", "channel_id": DM },
        "actions": [{ "type": "button", "action_id": "sb-1", "value": value, "action_ts": "1548426417.840180" }] });
    let form = format!("payload={}", url_encode(&payload.to_string()));
    let mut req = signed("/interactivity", form.as_bytes(), now(), SIGNING_SECRET);
    req.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let response = channel.handle_http(req, &ctx).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        sink.events()[0].body,
        Inbound::Choice {
            message: MessageRef::new(message),
            choice: "no".into()
        }
    );
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn every_kind_is_delivered_cards_with_images_and_files_uploaded() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let to = ConsumerAddress::new(INSTANCE, DM);
    for event in conformance::every_outbound_kind() {
        channel.deliver(&to, &event).await.unwrap();
    }
    let posts = fake.calls("chat.postMessage");
    let card = posts
        .iter()
        .find(|c| c.params["blocks"].to_string().contains("Order #1"))
        .expect("the card");
    let blocks = card.params["blocks"].as_array().unwrap();
    let section = blocks.iter().find(|b| b["accessory"].is_object()).unwrap();
    assert_eq!(
        section["accessory"]["image_url"],
        "https://example.com/box.png"
    );
    assert!(
        section["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with("*Order #1*")
    );
    assert!(
        card.params["blocks"]
            .to_string()
            .contains("https://example.com/order/1")
    );
    // The inline file went through the external upload, bytes included.
    let completed = fake.calls("files.completeUploadExternal");
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].params["channel_id"], DM);
    assert_eq!(
        fake.uploads().values().copied().collect::<Vec<_>>(),
        vec![12]
    );
    // Typing is declared unsupported, not faked.
    assert!(!channel.capabilities().typing.accepts());
}

#[tokio::test]
async fn long_texts_are_split_and_failures_are_classified() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let to = ConsumerAddress::new(INSTANCE, DM);
    let text = "Your refund is on its way. ".repeat(400);
    channel
        .deliver(&to, &OutboundEvent::new("m1", Outbound::text(text.clone())))
        .await
        .unwrap();
    let pieces: Vec<String> = fake
        .calls("chat.postMessage")
        .iter()
        .map(|c| c.params["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(pieces.len() >= 3);
    assert!(
        pieces
            .iter()
            .all(|p| p.chars().count() <= MAX_TEXT && p.ends_with('.'))
    );
    assert_eq!(pieces.join(" "), text.trim());

    let event = OutboundEvent::new("m2", Outbound::text("hi"));
    fake.fail_next(&[SlackFailure::RateLimited(9)]);
    match channel.deliver(&to, &event).await {
        Err(DeliveryError::Retryable { after, .. }) => {
            assert_eq!(after, Some(Duration::from_secs(9)))
        }
        other => panic!("{other:?}"),
    }
    fake.fail_next(&[SlackFailure::App("internal_error")]);
    assert!(matches!(
        channel.deliver(&to, &event).await,
        Err(DeliveryError::Retryable { .. })
    ));
    for permanent in ["invalid_auth", "channel_not_found", "not_in_channel"] {
        fake.fail_next(&[SlackFailure::App(permanent)]);
        match channel.deliver(&to, &event).await {
            Err(e @ DeliveryError::Permanent { .. }) => {
                assert!(e.to_string().contains(permanent));
                assert!(!format!("{e:?}").contains(FAKE_BOT_TOKEN));
            }
            other => panic!("{permanent}: {other:?}"),
        }
    }
    let dead = ChannelConfig::new(
        INSTANCE,
        "slack",
        json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": SIGNING_SECRET,
                "api_base_url": format!("http://127.0.0.1:{}/api", switchboard_testkit::free_port()) }),
    );
    match build(&dead).deliver(&to, &event).await {
        Err(e @ DeliveryError::Retryable { .. }) => {
            assert!(!format!("{e:?}").contains(FAKE_BOT_TOKEN))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_file_link_outside_slack_never_gets_the_token() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    // Another host (a different port is another origin) pretending to hold the file.
    let elsewhere = format!(
        "http://127.0.0.1:{}/steal",
        switchboard_testkit::free_port()
    );
    let mut event = FakeSlack::dm(USER, DM, "", "3.1");
    event["subtype"] = json!("file_share");
    event["files"] =
        json!([{ "id": "F9", "name": "x.png", "mimetype": "image/png", "url_private": elsewhere }]);
    let body = serde_json::to_vec(&FakeSlack::envelope("EvZ", event)).unwrap();
    let response = channel
        .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        sink.events()[0].body,
        Inbound::text("[the consumer shared a file that could not be fetched: x.png]")
    );
}

#[test]
fn config_errors_name_the_key() {
    let registration = find_registration("slack").unwrap();
    let error = |settings: Value| {
        (registration.build)(&ChannelConfig::new("sl", "slack", settings))
            .map(|_| ())
            .unwrap_err()
            .key
    };
    assert_eq!(
        error(json!({ "signing_secret": SIGNING_SECRET })),
        "channels.sl.bot_token"
    );
    assert_eq!(
        error(json!({ "bot_token": "xoxp-user-token", "signing_secret": SIGNING_SECRET })),
        "channels.sl.bot_token"
    );
    assert_eq!(
        error(json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": "short" })),
        "channels.sl.signing_secret"
    );
    assert_eq!(
        error(
            json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": SIGNING_SECRET, "app_mention": true })
        ),
        "channels.sl.app_mention"
    );
}

#[test]
fn mrkdwn_and_app_mentions() {
    assert_eq!(
        to_plain(
            "<!here> a &lt;b&gt; <mailto:x@y.z|x@y.z> <!subteam^S1|@team>",
            |_| None
        ),
        "@here a <b> x@y.z (mailto:x@y.z) @team"
    );
    let mention = serde_json::to_vec(&FakeSlack::envelope(
        "EvM",
        json!({"type": "app_mention", "user": USER,
        "text": "<@UBOTUSER1> help", "ts": "1.5", "channel": "C123"}),
    ))
    .unwrap();
    assert!(matches!(
        parse_events(&mention, false),
        Ok(switchboard_channel_slack::inbound::EventsBody::Ignored(_))
    ));
    assert!(matches!(
        parse_events(&mention, true),
        Ok(switchboard_channel_slack::inbound::EventsBody::Message(_))
    ));
}

proptest::proptest! {
    #[test]
    fn the_parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = parse_events(&bytes, true);
        let _ = parse_interactivity(&bytes);
        let _ = to_plain(&String::from_utf8_lossy(&bytes), |_| None);
    }

    #[test]
    fn split_pieces_fit_and_lose_nothing(words in proptest::collection::vec("[a-zé👋.!?]{1,12}", 0..600), max in 16usize..200) {
        let text = words.join(" ");
        let pieces = split_text(&text, max);
        for piece in &pieces {
            proptest::prop_assert!(piece.chars().count() <= max);
        }
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        proptest::prop_assert_eq!(squash(&pieces.concat()), squash(&text));
    }
}

#[tokio::test]
async fn a_message_seen_as_dm_and_as_mention_or_retried_keeps_one_platform_id() {
    let dm = FakeSlack::dm(USER, DM, "<@UBOTUSER1> hi", "1795384800.000001");
    let mut mention = dm.clone();
    mention["type"] = json!("app_mention");
    let key = |event_id: &str, event: &Value| {
        let body = serde_json::to_vec(&FakeSlack::envelope(event_id, event.clone())).unwrap();
        match parse_events(&body, true).unwrap() {
            EventsBody::Message(m) => m.key,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(key("Ev1", &dm), key("Ev2", &mention));
    assert_eq!(key("Ev1", &dm), format!("slack:{DM}:1795384800.000001"));
}

#[tokio::test]
async fn an_ambiguous_post_is_looked_up_before_it_is_sent_again() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let to = ConsumerAddress::new(INSTANCE, DM);

    // A text: Slack posts it but answers 503. The retry finds it in the history.
    let event = OutboundEvent::new("lp:c1:d1:3", Outbound::text("Your order shipped."));
    fake.fail_next(&[SlackFailure::UnavailableAfterApplying]);
    assert!(matches!(
        channel.deliver(&to, &event).await,
        Err(DeliveryError::Retryable { .. })
    ));
    let delivered = channel.deliver(&to, &event).await.unwrap();
    let shown = fake.conversation(DM);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(delivered.platform_id.as_deref(), Some(shown[0].ts.as_str()));
    assert_eq!(shown[0].metadata["event_payload"]["id"], "lp:c1:d1:3");
    assert_eq!(fake.calls("conversations.history").len(), 1);

    // A long text in three messages: the second is ambiguous, the third never tried. The
    // retry posts neither the first again nor the second twice.
    let long = "Sentence number one is here. ".repeat(400);
    let event = OutboundEvent::new("lp:c1:d1:4", Outbound::text(long.clone()));
    let before = fake.conversation(DM).len();
    // The first part goes through, the injected failure hits the second.
    fake.fail_next(&[SlackFailure::Pass, SlackFailure::UnavailableAfterApplying]);
    assert!(channel.deliver(&to, &event).await.is_err());
    channel.deliver(&to, &event).await.unwrap();
    let texts: Vec<String> = fake.conversation(DM)[before..]
        .iter()
        .map(|p| p.text.clone())
        .collect();
    assert_eq!(texts.len(), split_text(&long, MAX_TEXT).len(), "{texts:?}");
    assert_eq!(texts.join(" "), long.trim());

    // A failure that Slack certainly did not act on (429) is simply posted again, unchecked.
    let event = OutboundEvent::new("lp:c1:d1:5", Outbound::text("one more"));
    let checks = fake.calls("conversations.history").len();
    fake.fail_next(&[SlackFailure::RateLimited(1)]);
    assert!(channel.deliver(&to, &event).await.is_err());
    channel.deliver(&to, &event).await.unwrap();
    assert_eq!(fake.calls("conversations.history").len(), checks);
    assert_eq!(
        fake.conversation(DM)
            .iter()
            .filter(|p| p.text == "one more")
            .count(),
        1
    );

    // A file whose sharing step is ambiguous is found by its file id, not uploaded again.
    let file = Attachment {
        name: Some("label.pdf".into()),
        mime: "application/pdf".into(),
        caption: Some("your label".into()),
        body: AttachmentBody::Inline {
            data: Bytes::from_static(b"%PDF-1.4 label"),
        },
    };
    let event = OutboundEvent::new("lp:c1:d1:6", Outbound::File { file });
    // getUploadURLExternal passes, completeUploadExternal is applied but answers 503.
    let uploads_before = fake.calls("files.getUploadURLExternal").len();
    fake.fail_next(&[SlackFailure::Pass, SlackFailure::UnavailableAfterApplying]);
    assert!(channel.deliver(&to, &event).await.is_err());
    channel.deliver(&to, &event).await.unwrap();
    assert_eq!(
        fake.calls("files.getUploadURLExternal").len(),
        uploads_before + 1
    );
    let shared: Vec<_> = fake
        .conversation(DM)
        .into_iter()
        .filter(|p| !p.file_ids.is_empty())
        .collect();
    assert_eq!(shared.len(), 1, "{shared:?}");
}

/// The memory of an ambiguous post dies with the process; the durable mark does not. A
/// restarted process (a new channel on the same store) neither posts a part twice that the
/// killed one may have posted, nor one whose delivery finished but was never recorded.
#[tokio::test]
async fn a_delivery_cut_short_by_a_crash_is_not_posted_again_after_a_restart() {
    let fake = FakeSlack::start().await;
    let sink = RecordingSink::new();
    let to = ConsumerAddress::new(INSTANCE, DM);
    let started = || async {
        let channel = build(&config(&fake));
        let (ctx, stop) = sink.context(INSTANCE);
        channel.start(ctx).await.unwrap();
        (channel, stop)
    };
    let count = |text: &str| {
        fake.conversation(DM)
            .iter()
            .filter(|p| p.text == text)
            .count()
    };

    // Posted, but the answer was lost and the process killed.
    let (first, _stop1) = started().await;
    let event = OutboundEvent::new("lp:c9:d9:1", Outbound::text("Your refund is on its way."));
    fake.fail_next(&[SlackFailure::UnavailableAfterApplying]);
    assert!(first.deliver(&to, &event).await.is_err());
    drop(first);
    let (second, _stop2) = started().await;
    second.deliver(&to, &event).await.unwrap();
    assert_eq!(count("Your refund is on its way."), 1);

    // Three parts: the first posted, the second ambiguous, then a restart.
    let long = "Here is one sentence of the answer. ".repeat(300);
    let event = OutboundEvent::new("lp:c9:d9:2", Outbound::text(long.clone()));
    let before = fake.conversation(DM).len();
    fake.fail_next(&[SlackFailure::Pass, SlackFailure::UnavailableAfterApplying]);
    assert!(second.deliver(&to, &event).await.is_err());
    drop(second);
    let (third, _stop3) = started().await;
    third.deliver(&to, &event).await.unwrap();
    let texts: Vec<String> = fake.conversation(DM)[before..]
        .iter()
        .map(|p| p.text.clone())
        .collect();
    assert_eq!(texts.len(), split_text(&long, MAX_TEXT).len(), "{texts:?}");
    assert_eq!(texts.join(" "), long.trim());

    // Delivered, but the process died before the router recorded it: the router repeats it.
    let event = OutboundEvent::new("lp:c9:d9:3", Outbound::text("See you soon."));
    third.deliver(&to, &event).await.unwrap();
    drop(third);
    let (fourth, _stop4) = started().await;
    fourth.deliver(&to, &event).await.unwrap();
    assert_eq!(count("See you soon."), 1);

    // The next event is posted as usual, without looking anything up.
    let lookups = fake.calls("conversations.history").len();
    let event = OutboundEvent::new("lp:c9:d9:4", Outbound::text("Anything else?"));
    fourth.deliver(&to, &event).await.unwrap();
    assert_eq!(count("Anything else?"), 1);
    assert_eq!(fake.calls("conversations.history").len(), lookups);
}

#[tokio::test]
async fn an_unparseable_but_signed_body_is_refused_without_retries() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let response = channel
        .handle_http(
            signed("/events", b"{\"type\":", now(), SIGNING_SECRET),
            &ctx,
        )
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-slack-no-retry"], "1");
}
