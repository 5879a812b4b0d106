//! The connector speaks the Connector API as LivePerson documents it (issue #17), against a
//! simulator that holds it to each rule: `Client-Properties` on every call, surveys only with
//! `MULTI_DIALOG`, structured content of any root, the SEND limit in UTF-16 code units,
//! authentic notifications always answered `200`, events that come before their conversation,
//! survey events that name only their dialog, and what counts as a transfer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use switchboard_core::Outbound;
use switchboard_lp_sim::{DeliveryOutcome, FaultRequest, SimConfig, Simulator};
use switchboard_testkit::fake_telegram::{FAKE_TOKEN, FakeTelegram};

use crate::liveperson_faults::Connector;
use crate::support::{eventually, load_toml, run_binary};

const DEFAULT_FEATURES: [&str; 3] = ["RICH_CONTENT", "QUICK_REPLIES", "MULTI_DIALOG"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_with_no_features_configured_announces_the_three_defaults() {
    let c = Connector::start("cp", SimConfig::default(), 0.001).await;
    c.consumer("cleo", "c1", "hello").await;
    c.consumer("cleo", "c2", "are you there?").await;
    c.arrived("are you there?").await;
    let requests = c
        .sim
        .wait_until(Duration::from_secs(20), |s| {
            let requests = s.received_requests();
            (requests.iter().filter(|r| r.endpoint == "send").count() >= 2).then_some(requests)
        })
        .await
        .expect("both texts were sent");
    assert!(requests.iter().any(|r| r.endpoint == "conversation"));
    for request in &requests {
        let features = request
            .client_properties
            .as_ref()
            .map(|p| p["features"].clone())
            .unwrap_or_else(|| panic!("a {} call without Client-Properties", request.endpoint));
        assert_eq!(features, json!(DEFAULT_FEATURES), "{}", request.endpoint);
    }
    c.stop().await;
}

/// The CSAT survey of `survey_skills` opens only for a client that announced MULTI_DIALOG; its
/// events name only the survey dialog (as in LivePerson's PCS tutorial), and the consumer's
/// answer goes into that dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csat_survey_runs_end_to_end_because_multi_dialog_was_announced() {
    let c = Connector::start(
        "cs",
        SimConfig {
            survey_skills: vec!["*".into()],
            ..SimConfig::default()
        },
        0.001,
    )
    .await;
    c.consumer("sam", "s1", "my order is late").await;
    let conversation = c.arrived("my order is late").await;
    c.sim
        .agent_send_text(&conversation, "It ships today")
        .unwrap();
    eventually("the agent's text", || {
        c.texts_to("sam")
            .contains(&"It ships today".to_owned())
            .then_some(())
    })
    .await;
    c.sim.agent_close(&conversation, true).unwrap();
    let survey = c.sim.conversation(&conversation).unwrap();
    assert!(survey.survey_dialog().is_some(), "no survey dialog opened");
    let question = eventually("the survey question", || {
        c.delivered_to("sam").into_iter().find_map(|o| match o {
            Outbound::SurveyQuestion { question } => Some(question),
            _ => None,
        })
    })
    .await;
    assert!(question.text.contains("How would you rate"), "{question:?}");
    assert_eq!(question.quick_replies.len(), 5);
    c.consumer("sam", "s2", "5").await;
    let done = c
        .sim
        .wait_for_conversation(&conversation, Duration::from_secs(30), |c| {
            c.stage == "CLOSE"
        })
        .await
        .expect("the survey completed");
    assert_eq!(done.csat.as_ref().unwrap()["csatRate"], 5);
    eventually("the survey's thanks", || {
        c.texts_to("sam")
            .contains(&"Thank you for your feedback!".to_owned())
            .then_some(())
    })
    .await;
    assert!(c.dead_letters().await.is_empty());
    c.stop().await;
}

/// A bare `image`, `text` or `button` as the whole structured content reaches a rich channel
/// and a text-only one (as SMS renders it) as something, never as an empty message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_element_structured_content_reaches_rich_and_text_channels() {
    for (instance, channel) in [("sr", "rich = true\n"), ("st", "")] {
        let c = Connector::start_with(instance, SimConfig::default(), 0.001, channel).await;
        c.consumer("ivo", "i1", "show me").await;
        let conversation = c.arrived("show me").await;
        let roots = [
            (
                json!({"type": "image", "url": "https://img.example/parcel.png"}),
                "https://img.example/parcel.png",
            ),
            (
                json!({"type": "text", "text": "Parcel 7 is out for delivery"}),
                "Parcel 7 is out for delivery",
            ),
            (
                json!({"type": "button", "title": "Track parcel 7",
                       "click": {"actions": [{"type": "link", "name": "Track", "uri": "https://track.example/7"}]}}),
                "https://track.example/7",
            ),
        ];
        for (root, expected) in &roots {
            c.sim
                .agent_send_rich(&conversation, root.clone(), None)
                .unwrap();
            let shown = eventually(&format!("{root} at {instance}"), || {
                c.delivered_to("ivo").into_iter().find_map(|o| match o {
                    Outbound::Rich { content } => {
                        let text = content.to_numbered_text();
                        text.contains(expected).then_some(text)
                    }
                    _ => None,
                })
            })
            .await;
            assert!(!shown.trim().is_empty());
        }
        c.stop().await;
    }
}

/// The same through the whole product and Telegram's Bot API (the testkit's fake): an image
/// alone becomes a photo, a text alone a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_element_structured_content_reaches_telegram() {
    const CHAT: i64 = 555_000_222;
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let fake = FakeTelegram::start().await;
    let channel = format!(
        "[channels.tg]\nkind = \"telegram\"\nbot_token = \"{FAKE_TOKEN}\"\napi_base_url = \"{}\"\n\
         mode = \"polling\"\npoll_timeout_secs = 1\n",
        fake.base
    );
    let _running = run_binary(&sim, &channel, &[]).await;
    fake.push_update(FakeTelegram::text_update(CHAT, "where is my parcel?"))
        .await;
    let entry = sim
        .wait_for_consumer_message("where is my parcel?", Duration::from_secs(30))
        .await
        .expect("the consumer's text reached LivePerson");
    // The MAIN dialog's id is its conversation's.
    let conversation = entry.dialog_id;
    sim.agent_send_rich(
        &conversation,
        json!({"type": "image", "url": "https://img.example/parcel.png"}),
        None,
    )
    .unwrap();
    assert!(
        switchboard_testkit::eventually(30, || fake
            .calls("sendPhoto")
            .iter()
            .any(|c| c.params["photo"] == "https://img.example/parcel.png"))
        .await,
        "{:?}",
        fake.calls("sendPhoto")
    );
    sim.agent_send_rich(
        &conversation,
        json!({"type": "text", "text": "It is on its way"}),
        None,
    )
    .unwrap();
    assert!(
        switchboard_testkit::eventually(30, || fake
            .calls("sendMessage")
            .iter()
            .any(|c| c.params["text"]
                .as_str()
                .is_some_and(|t| t.contains("It is on its way"))))
        .await,
        "{:?}",
        fake.calls("sendMessage")
    );
}

/// 4,000 emoji are 4,000 characters but 8,000 UTF-16 code units, which is how LivePerson counts
/// its 5,000-character SEND limit: the text goes as several SEND calls, in order, and nothing
/// is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_over_the_send_limit_goes_as_several_sends_in_order() {
    let c = Connector::start("lt", SimConfig::default(), 0.001).await;
    c.consumer("lea", "l0", "hi").await;
    let conversation = c.arrived("hi").await;
    let long: String = (0..4000)
        .map(|i| if i % 500 == 499 { '🚀' } else { '👋' })
        .collect();
    c.consumer("lea", "l1", long.clone()).await;
    let parts = eventually("every part of the long text", || {
        let texts = c.texts_in(&conversation);
        let parts: Vec<String> = texts.into_iter().skip(1).collect();
        (parts.concat().chars().count() >= long.chars().count()).then_some(parts)
    })
    .await;
    assert!(parts.len() >= 2, "{} SEND(s)", parts.len());
    assert_eq!(parts.concat(), long, "in order, nothing lost");
    for part in &parts {
        assert!(part.encode_utf16().count() < 5000);
    }
    assert!(c.dead_letters().await.is_empty());
    c.stop().await;
}

/// Posts `body` to the connector's webhook with LivePerson's headers, signed with `signature`
/// (the right one when `None`).
async fn post_webhook(c: &Connector, body: &[u8], signature: Option<&str>) -> reqwest::StatusCode {
    let signature = signature.map_or_else(
        || switchboard_liveperson::webhook::sign_sha1(&c.sim.client_secret(), body),
        str::to_owned,
    );
    c.http
        .post(format!("{}/webhooks/liveperson", c.base))
        .header("x-liveperson-account-id", c.sim.account_id())
        .header("x-liveperson-client-id", c.sim.client_id())
        .header("x-liveperson-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

/// In retention-time retry mode LivePerson counts any answer but 200/201 as a failure of the
/// whole app installation: an authentic notification the connector cannot use is answered 200
/// (and recorded); only a forged one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentic_notifications_that_cannot_be_used_are_answered_200() {
    let c = Connector::start("un", SimConfig::default(), 0.001).await;
    for body in [
        &b"\xff not json {"[..],
        b"[1, 2, 3]",
        br#"{"kind":"notification","type":"ms.MessagingEventNotification","body":{"changes":{"not":"an array"}}}"#,
    ] {
        let status = post_webhook(&c, body, None).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(body));
    }
    // Forged: refused.
    let forged = post_webhook(&c, b"[1, 2, 3]", Some("sha1=AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).await;
    assert_eq!(forged, 401);
    // The connector goes on as before.
    c.consumer("una", "u1", "still there?").await;
    let conversation = c.arrived("still there?").await;
    c.sim.agent_send_text(&conversation, "Yes").unwrap();
    eventually("the agent's answer", || {
        c.texts_to("una").contains(&"Yes".to_owned()).then_some(())
    })
    .await;
    c.stop().await;
}

/// An agent starts ("resumes") a conversation for a known consumer and writes at once; the
/// notification that the conversation exists comes late (its first attempt failed and count
/// mode keeps no order). The agent's message waits for it, then reaches the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_message_that_comes_before_its_conversation_waits_for_it() {
    let c = Connector::start("or", SimConfig::default(), 0.001).await;
    c.consumer("olaf", "o1", "my parcel is late").await;
    let first = c.arrived("my parcel is late").await;
    c.sim.agent_close(&first, false).unwrap();
    eventually("the close notice", || {
        c.delivered_to("olaf")
            .iter()
            .any(|o| matches!(o, Outbound::Closed { .. }))
            .then_some(())
    })
    .await;
    let lp_consumer = c.sim.conversation(&first).unwrap().consumer_id;
    c.sim.apply_faults(FaultRequest {
        delay_types: Some(BTreeMap::from([(
            "cqm.ExConversationChangeNotification".to_owned(),
            3000,
        )])),
        ..Default::default()
    });
    let second = c
        .sim
        .start_conversation_for_consumer(&lp_consumer, None)
        .unwrap();
    c.sim
        .agent_send_text(&second, "We found your parcel")
        .unwrap();
    // The agent's text was answered before the conversation was announced.
    let deliveries = c
        .sim
        .wait_until(Duration::from_secs(20), |s| {
            let d = s.webhook_deliveries();
            d.iter()
                .any(|d| {
                    d.conversation_id.as_deref() == Some(&second)
                        && d.notification_type.ends_with("ContentEvent")
                        && d.outcome == DeliveryOutcome::Delivered
                })
                .then_some(d)
        })
        .await
        .expect("the agent's text was delivered");
    assert!(
        deliveries
            .iter()
            .filter(|d| d.conversation_id.as_deref() == Some(&second)
                && d.notification_type.starts_with("cqm."))
            .all(|d| d.attempts == 0),
        "the conversation was announced first: the test proves nothing"
    );
    eventually("the agent's text", || {
        c.texts_to("olaf")
            .contains(&"We found your parcel".to_owned())
            .then_some(())
    })
    .await;
    c.consumer("olaf", "o2", "great, thanks").await;
    assert_eq!(c.arrived("great, thanks").await, second);
    c.stop().await;
}

fn transfers(c: &Connector, consumer: &str) -> Vec<Option<String>> {
    c.delivered_to(consumer)
        .into_iter()
        .filter_map(|o| match o {
            Outbound::Transferred { skill } => Some(skill),
            _ => None,
        })
        .collect()
}

/// LivePerson's routing moves a conversation asked for skill `-1` to a real skill before any
/// agent joins: not a transfer. A move between real skills is, and so is another agent taking
/// over from the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_real_skill_changes_and_agent_changes_are_transfers() {
    let connector = Connector::start(
        "tr",
        SimConfig {
            routed_skill_id: Some("4711".into()),
            ..SimConfig::default()
        },
        0.001,
    )
    .await;
    let c = &connector;
    c.consumer("tess", "t1", "hello").await;
    let conversation = c.arrived("hello").await;
    assert_eq!(c.sim.conversation(&conversation).unwrap().skill_id, "4711");
    let conversation = conversation.as_str();
    let say = |text: &'static str| {
        c.sim.agent_send_text(conversation, text).unwrap();
        eventually(text, move || {
            c.texts_to("tess").contains(&text.to_owned()).then_some(())
        })
    };
    // The agent's text follows the routing notifications (one conversation's notifications
    // come in order): by then they were handled.
    say("Hi, I am Ann").await;
    assert_eq!(transfers(c, "tess"), Vec::<Option<String>>::new());
    c.sim.transfer(conversation, "5000").unwrap();
    say("Hi, I am Bob from billing").await;
    assert_eq!(transfers(c, "tess"), vec![Some("5000".to_owned())]);
    c.sim.back_to_queue(conversation).unwrap();
    say("Hi, I am Cy").await;
    assert_eq!(
        transfers(c, "tess"),
        vec![Some("5000".to_owned()), None],
        "another agent took over"
    );
    connector.stop().await;
}

fn config_error(toml: &str) -> (String, String, String) {
    let (_dir, path, loaded) = load_toml(toml);
    let err = match loaded {
        Err(e) => e,
        Ok(loaded) => switchboard::check(&loaded).expect_err("the config is refused"),
    };
    let problem = &err.0[0];
    (
        problem.key.clone(),
        problem.origin.clone(),
        path.display().to_string(),
    )
}

#[test]
fn a_campaign_without_its_engagement_is_a_config_error() {
    let (key, origin, path) = config_error("[liveperson]\ncampaign_id = \"99999\"\n");
    assert_eq!(key, "liveperson.engagement_id");
    assert_eq!(origin, path);
    let (key, _, _) = config_error("[liveperson]\nengagement_id = \"888888\"\n");
    assert_eq!(key, "liveperson.campaign_id");
}

#[test]
fn features_can_be_narrowed_or_extended_but_not_misspelt() {
    let (key, _, _) =
        config_error("[liveperson]\nfeatures = [\"RICH_CONTENT\", \"MULTIDIALOG\"]\n");
    assert_eq!(key, "liveperson.features");
    let (_dir, _path, loaded) =
        load_toml("[liveperson]\nfeatures = [\"RICH_CONTENT\", \"AUTO_MESSAGES\"]\n");
    let loaded = loaded.unwrap();
    switchboard::check(&loaded).unwrap();
    assert_eq!(
        loaded.config.liveperson.engine_config().features,
        vec!["RICH_CONTENT", "AUTO_MESSAGES"]
    );
    let (_dir, _path, loaded) = load_toml("");
    assert_eq!(
        loaded.unwrap().config.liveperson.engine_config().features,
        DEFAULT_FEATURES
    );
}
