//! Tests of the Slack channel against the testkit's fake Slack, with requests signed as Slack
//! signs them.

mod shapes;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_channel_slack::inbound::{EventsBody, parse_events, parse_interactivity, sign};
use switchboard_channel_slack::mrkdwn::to_plain;
use switchboard_channel_slack::outbound::{MAX_TEXT, split_text};
use switchboard_core::rich::{Button, ButtonAction, RichContent};
use switchboard_core::{
    Attachment, AttachmentBody, Bytes, Channel, ChannelConfig, ConsumerAddress, DeliveryError,
    HttpRequest, Inbound, InboundEvent, MessageRef, Outbound, OutboundEvent, async_trait,
    find_registration, http,
};
use switchboard_testkit::RecordingSink;
use switchboard_testkit::conformance::{self, Harness, PlatformFailure};
use switchboard_testkit::fake_slack::{
    FAKE_APP_TOKEN, FAKE_BOT_TOKEN, FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, FakeSlack, SlackFailure,
};

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

/// The submitted events as the runtime sends them to LivePerson: after `Channel::prepare`.
async fn prepared(channel: &Arc<dyn Channel>, events: Vec<InboundEvent>) -> Vec<InboundEvent> {
    let mut out = Vec::new();
    for e in events {
        out.push(channel.prepare(e).await.expect("prepared"));
    }
    out
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
    // Acknowledged without a single users.info: the look-ups come later, in `prepare`.
    assert!(fake.calls("users.info").is_empty());
    let stored = sink.events();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].body,
        Inbound::text(text),
        "stored as sent, mrkdwn"
    );
    let events = prepared(&channel, stored).await;
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
    prepared(&channel, sink.events()).await;
    assert_eq!(fake.calls("users.info").len(), before);

    // Our own message, another bot's (with `bot_id`, with only `bot_profile`, or a legacy
    // `bot_message`), an edit, a channel message: acknowledged, not taken.
    let mut own = FakeSlack::dm("UBOTUSER1", DM, "from us", "1.1");
    own["user"] = json!("UBOTUSER1");
    let mut bot = FakeSlack::dm("U999", DM, "a bot", "1.2");
    bot["bot_id"] = json!("B123");
    let mut profiled = FakeSlack::dm("U998", DM, "a bot too", "1.21");
    profiled["bot_profile"] = json!({ "id": "B124", "name": "other" });
    let mut legacy = FakeSlack::dm("U997", DM, "a legacy bot", "1.22");
    legacy["subtype"] = json!("bot_message");
    legacy.as_object_mut().unwrap().remove("user");
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
    for (i, event) in [own, bot, profiled, legacy, edit, public, echo]
        .into_iter()
        .enumerate()
    {
        let body = serde_json::to_vec(&FakeSlack::envelope(&format!("EvX{i}"), event)).unwrap();
        let response = channel
            .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sink.events().len(), 2);
}

#[tokio::test]
async fn a_slow_slack_never_delays_the_acknowledgement() {
    let fake = FakeSlack::start().await;
    fake.slow_users_info(Duration::from_secs(30));
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let url = fake.add_file("F9", b"bytes");
    let mut event = FakeSlack::dm(USER, DM, "hi <@U0OTHER>", "9.1");
    event["subtype"] = json!("file_share");
    event["files"] =
        json!([{ "id": "F9", "name": "a.png", "mimetype": "image/png", "url_private": url }]);
    let body = serde_json::to_vec(&FakeSlack::envelope("EvSlow", event)).unwrap();
    // Slack waits three seconds; users.info takes thirty. The answer needs neither it nor
    // the download.
    let answered = tokio::time::timeout(
        Duration::from_secs(3),
        channel.handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx),
    )
    .await
    .expect("answered within Slack's three seconds");
    assert_eq!(answered.status(), 200);
    assert_eq!(sink.events().len(), 2);
    // The stored file is a small reference, never the bytes.
    let Inbound::File { file } = &sink.events()[1].body else {
        panic!("{:?}", sink.events())
    };
    assert_eq!(file.body, AttachmentBody::Url { url: url.clone() });
}

#[tokio::test]
async fn a_shared_file_is_downloaded_with_the_token_and_a_store_failure_is_retried() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let url = fake.add_file_as("F1", b"\x89PNG fake image", "image/png");
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
    let events = prepared(&channel, sink.events()).await;
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
    // Slack down while the file is fetched: retried later, neither lost nor a notice.
    fake.fail_next_downloads(1);
    let stored = sink.events()[1].clone();
    let err = channel.prepare(stored.clone()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(
        channel.prepare(stored).await.unwrap().body,
        Inbound::File { .. }
    ));
}

/// A file message with `files` as given, through the channel and `prepare`: what the agent
/// gets for each file.
async fn agent_sees(fake: &FakeSlack, channel: &Arc<dyn Channel>, files: Value) -> Vec<Inbound> {
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let mut event = FakeSlack::dm(USER, DM, "", "3.1");
    event["subtype"] = json!("file_share");
    event["files"] = files;
    let body = serde_json::to_vec(&FakeSlack::envelope("EvFiles", event)).unwrap();
    let response = channel
        .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    let _ = fake;
    prepared(channel, sink.events())
        .await
        .into_iter()
        .map(|e| e.body)
        .collect()
}

fn notice_about(body: &Inbound, name: &str, why: &str) -> bool {
    matches!(body, Inbound::Text { text } if text.contains("cannot be passed on") && text.contains(name) && text.contains(why))
}

#[tokio::test]
async fn files_slack_will_not_hand_over_reach_the_agent_as_a_clear_notice() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let visible = fake.add_file_as("FOK", b"%PDF-1.7", "application/pdf");
    fake.add_file_as("FCONNECT", b"connect bytes", "application/pdf");
    fake.add_denied_connect_file("FDENIED");
    let seen = agent_sees(&fake, &channel, json!([
        // Free plan: older files are hidden by the storage limit, without a link.
        { "id": "FHIDDEN", "mode": "hidden_by_limit" },
        { "id": "FGONE", "name": "gone.pdf", "mode": "tombstone" },
        // Slack Connect: no link in the event; files.info gives one, or refuses.
        { "id": "FCONNECT", "name": "shared.pdf", "mimetype": "application/pdf", "file_access": "check_file_info" },
        { "id": "FDENIED", "name": "secret.pdf", "mimetype": "application/pdf", "file_access": "check_file_info" },
        { "id": "FNOURL", "name": "nourl.pdf", "mimetype": "application/pdf" },
        { "id": "FBIG", "name": "huge.mov", "mimetype": "video/quicktime", "size": 25_000_000, "url_private": visible },
        { "id": "FOK", "name": "ok.pdf", "mimetype": "application/pdf", "url_private": visible },
    ]))
    .await;
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert!(
        notice_about(&seen[0], "FHIDDEN", "storage limit"),
        "{:?}",
        seen[0]
    );
    assert!(
        notice_about(&seen[1], "gone.pdf", "deleted"),
        "{:?}",
        seen[1]
    );
    assert!(
        matches!(&seen[2], Inbound::File { file } if file.body == AttachmentBody::Inline { data: Bytes::from_static(b"connect bytes") }),
        "{:?}",
        seen[2]
    );
    assert!(
        notice_about(&seen[3], "secret.pdf", "access_denied"),
        "{:?}",
        seen[3]
    );
    assert!(
        notice_about(&seen[4], "nourl.pdf", "no link"),
        "{:?}",
        seen[4]
    );
    assert!(notice_about(&seen[5], "huge.mov", "20 MB"), "{:?}", seen[5]);
    assert!(matches!(&seen[6], Inbound::File { .. }), "{:?}", seen[6]);

    // Without `files:read` Slack answers its sign-in page (HTTP 200, HTML): never the file.
    fake.set_scopes(&["chat:write", "im:history", "users:read"]);
    let seen = agent_sees(&fake, &channel, json!([
        { "id": "FOK", "name": "ok.pdf", "mimetype": "application/pdf", "url_private": visible },
    ]))
    .await;
    assert!(notice_about(&seen[0], "ok.pdf", "sign-in page"), "{seen:?}");
}

#[tokio::test]
async fn events_from_another_workspace_are_ignored() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context(INSTANCE);
    let mut envelope =
        FakeSlack::envelope("EvOther", FakeSlack::dm(USER, DM, "from elsewhere", "4.1"));
    envelope["team_id"] = json!("T0ELSEWHERE");
    let body = serde_json::to_vec(&envelope).unwrap();
    let response = channel
        .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    assert!(sink.events().is_empty());
    // The workspace came from auth.test, once; the same app in our workspace is taken.
    let response = channel
        .handle_http(
            signed("/events", &dm_body("EvOurs", "ours"), now(), SIGNING_SECRET),
            &ctx,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(sink.events().len(), 1);
    assert_eq!(fake.calls("auth.test").len(), 1);
    // A configured `team_id` needs no auth.test at all.
    let pinned = build(&ChannelConfig::new(
        INSTANCE,
        "slack",
        json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": SIGNING_SECRET,
                "api_base_url": fake.api_base, "team_id": "T0ELSEWHERE" }),
    ));
    let response = pinned
        .handle_http(signed("/events", &body, now(), SIGNING_SECRET), &ctx)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(sink.events().len(), 2);
    assert_eq!(fake.calls("auth.test").len(), 1);
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
        "team": { "id": "T0FAKE", "domain": "fake" },
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
        channel
            .deliver(&to, &OutboundEvent::new("m3", Outbound::text("hi")))
            .await,
        Err(DeliveryError::Retryable { .. })
    ));
    for permanent in ["invalid_auth", "channel_not_found", "not_in_channel"] {
        fake.fail_next(&[SlackFailure::App(permanent)]);
        let event = OutboundEvent::new(format!("m-{permanent}"), Outbound::text("hi"));
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
    // Another host (a different port is another origin) pretending to hold the file, behind
    // links that only look like Slack's: a fragment, a backslash, a look-alike name.
    let thief = switchboard_testkit::webhook_receiver::WebhookReceiver::start().await;
    let elsewhere = thief.url("");
    let links = [
        format!("{elsewhere}/steal"),
        format!("{elsewhere}#@files.slack.com/x.png"),
        format!("{elsewhere}\\@files.slack.com/x.png"),
        format!("{elsewhere}\\.slack.com/x.png"),
    ];
    let files: Vec<Value> = links
        .iter()
        .enumerate()
        .map(|(i, url)| {
            json!({ "id": format!("F{i}"), "name": format!("x{i}.png"),
            "mimetype": "image/png", "url_private": url })
        })
        .collect();
    let seen = agent_sees(&fake, &channel, Value::from(files)).await;
    assert_eq!(seen.len(), links.len());
    for (i, body) in seen.iter().enumerate() {
        assert!(
            notice_about(body, &format!("x{i}.png"), "does not point to Slack"),
            "{body:?}"
        );
    }
    assert!(
        thief
            .received()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "the bot token went to another host"
    );
    assert!(thief.received().is_empty());
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
    // Keys the chosen mode ignores are errors naming them.
    assert_eq!(
        error(json!({ "bot_token": FAKE_BOT_TOKEN })),
        "channels.sl.signing_secret"
    );
    assert_eq!(
        error(
            json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": SIGNING_SECRET, "app_token": FAKE_APP_TOKEN })
        ),
        "channels.sl.app_token"
    );
    assert_eq!(
        error(json!({ "mode": "socket_mode", "bot_token": FAKE_BOT_TOKEN })),
        "channels.sl.app_token"
    );
    assert_eq!(
        error(
            json!({ "mode": "socket_mode", "bot_token": FAKE_BOT_TOKEN, "app_token": FAKE_APP_TOKEN, "signing_secret": SIGNING_SECRET })
        ),
        "channels.sl.signing_secret"
    );
    // The app-level token's shape: `xapp-1-A…-…-…`; a bot or user token is no app token.
    for wrong in [
        FAKE_BOT_TOKEN,
        "xoxp-1-2-3",
        "xapp-A0FAKE",
        "xapp-1-B0FAKE-1-ab",
        "xapp-1-A0FAKE--ab",
    ] {
        assert_eq!(
            error(
                json!({ "mode": "socket_mode", "bot_token": FAKE_BOT_TOKEN, "app_token": wrong })
            ),
            "channels.sl.app_token",
            "{wrong}"
        );
    }
    assert!((registration.build)(&ChannelConfig::new("sl", "slack",
        json!({ "mode": "socket_mode", "bot_token": FAKE_BOT_TOKEN, "app_token": FAKE_APP_TOKEN }))).is_ok());
    assert_eq!(
        error(json!({ "mode": "webhooks", "bot_token": FAKE_BOT_TOKEN })),
        "channels.sl.mode"
    );
    // Rotation keys go with a rotating token only, and all three together.
    assert_eq!(
        error(
            json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": SIGNING_SECRET, "refresh_token": "xoxe-1-abc" })
        ),
        "channels.sl.refresh_token"
    );
    assert_eq!(
        error(
            json!({ "bot_token": "xoxe.xoxb-1-abc", "signing_secret": SIGNING_SECRET,
            "refresh_token": "xoxe-1-abc", "client_id": FAKE_CLIENT_ID })
        ),
        "channels.sl.client_secret"
    );
    assert_eq!(
        error(
            json!({ "bot_token": "xoxe.xoxb-1-abc", "signing_secret": SIGNING_SECRET,
            "refresh_token": "not-a-refresh-token", "client_id": FAKE_CLIENT_ID, "client_secret": FAKE_CLIENT_SECRET })
        ),
        "channels.sl.refresh_token"
    );
    assert_eq!(
        error(
            json!({ "bot_token": FAKE_BOT_TOKEN, "signing_secret": SIGNING_SECRET, "team_id": "workspace" })
        ),
        "channels.sl.team_id"
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

/// Hands the channel Slack's echo of the newest post in the DM, as Slack sends it.
async fn echo_newest(
    fake: &FakeSlack,
    channel: &Arc<dyn Channel>,
    ctx: &switchboard_core::ChannelContext,
) {
    let newest = fake.conversation(DM).last().cloned().expect("a post");
    let envelope = FakeSlack::envelope(
        &format!("EvEcho{}", newest.ts),
        FakeSlack::echo_of(&newest, DM),
    );
    let body = serde_json::to_vec(&envelope).unwrap();
    let response = channel
        .handle_http(signed("/events", &body, now(), SIGNING_SECRET), ctx)
        .await;
    assert_eq!(response.status(), 200);
}

/// A started channel on `sink`'s state, as the runtime runs it.
async fn started(
    fake: &FakeSlack,
    sink: &Arc<RecordingSink>,
) -> (
    Arc<dyn Channel>,
    switchboard_core::ChannelContext,
    impl Drop,
) {
    let channel = build(&config(fake));
    let (ctx, stop) = sink.context(INSTANCE);
    channel.start(ctx.clone()).await.unwrap();
    (channel, ctx, stop)
}

#[tokio::test]
async fn an_ambiguous_post_is_resolved_from_slacks_echo_without_reading_the_history() {
    let fake = FakeSlack::start().await;
    let sink = RecordingSink::new();
    let (channel, ctx, _stop) = started(&fake, &sink).await;
    let to = ConsumerAddress::new(INSTANCE, DM);

    // A text: Slack posts it but answers 503; its echo arrives. The retry finds it there.
    let event = OutboundEvent::new("lp:c1:d1:3", Outbound::text("Your order shipped."));
    fake.fail_next(&[SlackFailure::UnavailableAfterApplying]);
    assert!(matches!(
        channel.deliver(&to, &event).await,
        Err(DeliveryError::Retryable { .. })
    ));
    echo_newest(&fake, &channel, &ctx).await;
    let delivered = channel.deliver(&to, &event).await.unwrap();
    let shown = fake.conversation(DM);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(delivered.platform_id.as_deref(), Some(shown[0].ts.as_str()));
    assert_eq!(shown[0].metadata["event_payload"]["id"], "lp:c1:d1:3");

    // A long text in three messages: the second is ambiguous, the third never tried. The
    // retry posts neither the first again nor the second twice.
    let long = "Sentence number one is here. ".repeat(400);
    let event = OutboundEvent::new("lp:c1:d1:4", Outbound::text(long.clone()));
    let before = fake.conversation(DM).len();
    fake.fail_next(&[SlackFailure::Pass, SlackFailure::UnavailableAfterApplying]);
    assert!(channel.deliver(&to, &event).await.is_err());
    // The echo of the first part comes late, after the second was tried: it is not taken
    // for the second.
    let first_part = fake.conversation(DM)[before].clone();
    let late = FakeSlack::envelope("EvLate", FakeSlack::echo_of(&first_part, DM));
    let late = serde_json::to_vec(&late).unwrap();
    channel
        .handle_http(signed("/events", &late, now(), SIGNING_SECRET), &ctx)
        .await;
    echo_newest(&fake, &channel, &ctx).await;
    channel
        .handle_http(signed("/events", &late, now(), SIGNING_SECRET), &ctx)
        .await;
    channel.deliver(&to, &event).await.unwrap();
    let texts: Vec<String> = fake.conversation(DM)[before..]
        .iter()
        .map(|p| p.text.clone())
        .collect();
    assert_eq!(texts.len(), split_text(&long, MAX_TEXT).len(), "{texts:?}");
    assert_eq!(texts.join(" "), long.trim());

    // A failure that Slack certainly did not act on (429) is simply posted again, unchecked.
    let event = OutboundEvent::new("lp:c1:d1:5", Outbound::text("one more"));
    fake.fail_next(&[SlackFailure::RateLimited(1)]);
    assert!(channel.deliver(&to, &event).await.is_err());
    channel.deliver(&to, &event).await.unwrap();
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
    echo_newest(&fake, &channel, &ctx).await;
    let delivered = channel.deliver(&to, &event).await.unwrap();
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
    assert_eq!(delivered.platform_id, Some(shared[0].file_ids[0].clone()));

    // An upload cut short before the file was shared is simply uploaded again: an unshared
    // file is invisible.
    let event = OutboundEvent::new(
        "lp:c1:d1:7",
        Outbound::File {
            file: Attachment {
                name: Some("b.pdf".into()),
                mime: "application/pdf".into(),
                caption: None,
                body: AttachmentBody::Inline {
                    data: Bytes::from_static(b"%PDF b"),
                },
            },
        },
    );
    fake.fail_next(&[SlackFailure::UnavailableAfterApplying]);
    assert!(channel.deliver(&to, &event).await.is_err());
    channel.deliver(&to, &event).await.unwrap();
    // Slack was never asked for its history in all of this.
    assert!(fake.calls("conversations.history").is_empty());
}

/// Makes the durable mark of the DM's post look `secs` older, as if that long had passed.
async fn age_the_mark(sink: &Arc<RecordingSink>, secs: i64) {
    use switchboard_core::EventSink;
    let key = format!("slack-post:{DM}");
    let raw = sink
        .load_state(INSTANCE, &key)
        .await
        .unwrap()
        .expect("a mark");
    let mut mark: Value = serde_json::from_str(&raw).unwrap();
    mark["at_ms"] = json!(mark["at_ms"].as_i64().unwrap() - secs * 1000);
    sink.save_state(INSTANCE, &key, &mark.to_string())
        .await
        .unwrap();
}

#[tokio::test]
async fn without_an_echo_the_history_is_read_once_and_narrowly() {
    let fake = FakeSlack::start().await;
    let sink = RecordingSink::new();
    let (channel, _ctx, _stop) = started(&fake, &sink).await;
    let to = ConsumerAddress::new(INSTANCE, DM);
    let earlier = OutboundEvent::new("lp:c2:d2:1", Outbound::text("Earlier answer."));
    channel.deliver(&to, &earlier).await.unwrap();

    let event = OutboundEvent::new("lp:c2:d2:2", Outbound::text("Your parcel is here."));
    fake.fail_next(&[SlackFailure::UnavailableAfterApplying]);
    assert!(channel.deliver(&to, &event).await.is_err());
    // No echo yet: the channel waits for it rather than post again or read the history.
    match channel.deliver(&to, &event).await {
        Err(DeliveryError::Retryable { after, reason }) => {
            assert!(after.is_some(), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.calls("conversations.history").is_empty());
    // Long after, still no echo: one look at the conversation since the previous post.
    age_the_mark(&sink, 30).await;
    channel.deliver(&to, &event).await.unwrap();
    let lookups = fake.calls("conversations.history");
    assert_eq!(lookups.len(), 1);
    let params = &lookups[0].params;
    assert_eq!(
        params["limit"], "15",
        "Slack gives non-Marketplace apps 15 messages"
    );
    assert_eq!(params["oldest"], fake.conversation(DM)[0].ts.as_str());
    assert!(params["latest"].is_string());
    assert_eq!(
        fake.conversation(DM)
            .iter()
            .filter(|p| p.text == "Your parcel is here.")
            .count(),
        1
    );

    // A second such look within the minute meets Slack's one-a-minute limit: retried after
    // Slack's Retry-After, nothing posted meanwhile.
    let event = OutboundEvent::new("lp:c2:d2:3", Outbound::text("And one more."));
    fake.fail_next(&[SlackFailure::Unavailable]);
    // A 503 from Slack's edge may or may not have been applied: here it was not.
    assert!(channel.deliver(&to, &event).await.is_err());
    age_the_mark(&sink, 30).await;
    match channel.deliver(&to, &event).await {
        Err(DeliveryError::Retryable {
            after: Some(after), ..
        }) => {
            assert!(after >= Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.conversation(DM)
            .iter()
            .filter(|p| p.text == "And one more.")
            .count(),
        0
    );
}

/// The memory of an ambiguous post dies with the process; the durable mark does not. A
/// restarted process (a new channel on the same store) neither posts a part twice that the
/// killed one may have posted, nor one whose delivery finished but was never recorded.
#[tokio::test]
async fn a_delivery_cut_short_by_a_crash_is_not_posted_again_after_a_restart() {
    let fake = FakeSlack::start().await;
    let sink = RecordingSink::new();
    let to = ConsumerAddress::new(INSTANCE, DM);
    let count = |text: &str| {
        fake.conversation(DM)
            .iter()
            .filter(|p| p.text == text)
            .count()
    };

    // Posted, but the answer was lost and the process killed; the echo reached the store.
    let (first, ctx1, stop1) = started(&fake, &sink).await;
    let event = OutboundEvent::new("lp:c9:d9:1", Outbound::text("Your refund is on its way."));
    fake.fail_next(&[SlackFailure::UnavailableAfterApplying]);
    assert!(first.deliver(&to, &event).await.is_err());
    echo_newest(&fake, &first, &ctx1).await;
    drop((first, stop1));
    let (second, ctx2, stop2) = started(&fake, &sink).await;
    second.deliver(&to, &event).await.unwrap();
    assert_eq!(count("Your refund is on its way."), 1);

    // Three parts: the first posted, the second ambiguous, then a restart.
    let long = "Here is one sentence of the answer. ".repeat(300);
    let event = OutboundEvent::new("lp:c9:d9:2", Outbound::text(long.clone()));
    let before = fake.conversation(DM).len();
    fake.fail_next(&[SlackFailure::Pass, SlackFailure::UnavailableAfterApplying]);
    assert!(second.deliver(&to, &event).await.is_err());
    echo_newest(&fake, &second, &ctx2).await;
    drop((second, stop2));
    let (third, _ctx3, _stop3) = started(&fake, &sink).await;
    third.deliver(&to, &event).await.unwrap();
    let texts: Vec<String> = fake.conversation(DM)[before..]
        .iter()
        .map(|p| p.text.clone())
        .collect();
    assert_eq!(texts.len(), split_text(&long, MAX_TEXT).len(), "{texts:?}");
    assert_eq!(texts.join(" "), long.trim());

    // Delivered, but the process died before the router recorded it: the router repeats it,
    // and the store says it is posted.
    let event = OutboundEvent::new("lp:c9:d9:3", Outbound::text("See you soon."));
    third.deliver(&to, &event).await.unwrap();
    drop(third);
    let (fourth, _ctx4, _stop4) = started(&fake, &sink).await;
    fourth.deliver(&to, &event).await.unwrap();
    assert_eq!(count("See you soon."), 1);

    // The next event is posted as usual.
    let event = OutboundEvent::new("lp:c9:d9:4", Outbound::text("Anything else?"));
    fourth.deliver(&to, &event).await.unwrap();
    assert_eq!(count("Anything else?"), 1);
    assert!(fake.calls("conversations.history").is_empty());
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

#[tokio::test]
async fn a_rotating_bot_token_is_refreshed_before_use_and_kept_in_the_store() {
    let fake = FakeSlack::start().await;
    let (access, refresh) = fake.enable_rotation();
    let config = ChannelConfig::new(
        INSTANCE,
        "slack",
        json!({ "bot_token": access, "refresh_token": refresh, "client_id": FAKE_CLIENT_ID,
                "client_secret": FAKE_CLIENT_SECRET, "signing_secret": SIGNING_SECRET,
                "api_base_url": fake.api_base }),
    );
    let sink = RecordingSink::new();
    let to = ConsumerAddress::new(INSTANCE, DM);
    let start = || async {
        let channel = build(&config);
        let (ctx, stop) = sink.context(INSTANCE);
        channel.start(ctx).await.unwrap();
        (channel, stop)
    };
    // A token from the config has an unknown age: it is exchanged at once, and the new pair
    // is in the store before it is used (the refresh token just used is revoked).
    let (channel, _stop) = start().await;
    let refreshes = fake.calls("oauth.v2.access");
    assert_eq!(refreshes.len(), 1);
    assert_eq!(refreshes[0].params["grant_type"], "refresh_token");
    assert_eq!(refreshes[0].params["refresh_token"], refresh.as_str());
    let stored: Value =
        serde_json::from_str(&sink.state(INSTANCE, "slack-token").unwrap()).unwrap();
    assert_ne!(stored["access_token"], access.as_str());
    assert!(
        stored["access_token"]
            .as_str()
            .unwrap()
            .starts_with("xoxe.xoxb-")
    );
    channel
        .deliver(&to, &OutboundEvent::new("r1", Outbound::text("one")))
        .await
        .unwrap();
    // Slack says the token expired (12 hours passed): refreshed, and the call made again.
    fake.expire_bot_tokens();
    channel
        .deliver(&to, &OutboundEvent::new("r2", Outbound::text("two")))
        .await
        .unwrap();
    assert_eq!(fake.calls("oauth.v2.access").len(), 2);
    // A restart takes the newest pair from the store, not the config's revoked one.
    drop(channel);
    let (again, _stop2) = start().await;
    again
        .deliver(&to, &OutboundEvent::new("r3", Outbound::text("three")))
        .await
        .unwrap();
    assert_eq!(fake.calls("oauth.v2.access").len(), 2);
    let texts: Vec<String> = fake.conversation(DM).into_iter().map(|p| p.text).collect();
    assert_eq!(texts, ["one", "two", "three"]);
}

#[tokio::test]
async fn a_card_carousel_never_exceeds_slacks_fifty_blocks() {
    let fake = FakeSlack::start().await;
    let channel = build(&config(&fake));
    let to = ConsumerAddress::new(INSTANCE, DM);
    let card = |n: usize| switchboard_core::rich::Card {
        title: Some(format!("Option {n}")),
        lines: vec!["a line".into()],
        image_url: None,
        buttons: vec![Button {
            id: format!("b{n}"),
            title: format!("Pick {n}"),
            action: ButtonAction::Reply,
        }],
    };
    let content = RichContent {
        text: "Choose one".into(),
        cards: (0..30).map(card).collect(),
        quick_replies: Vec::new(),
    };
    // Two blocks a card: 61 blocks, which Slack refuses (`invalid_blocks`).
    channel
        .deliver(
            &to,
            &OutboundEvent::new("m-many", Outbound::Rich { content }),
        )
        .await
        .expect("posted");
    let posted = &fake.calls("chat.postMessage")[0].params;
    assert_eq!(posted["blocks"].as_array().unwrap().len(), 50);
    assert!(
        posted["text"].as_str().unwrap().contains("Pick 29"),
        "the fallback keeps every option"
    );
}
