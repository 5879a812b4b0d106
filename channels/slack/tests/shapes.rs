//! The Slack parsers on valid shapes, property-based: generated Events API and interactivity
//! bodies, with fields Slack may add one day everywhere, come out as generated; what the
//! channel does not take is ignored, never an error. (Random bytes: `the_parsers_never_panic`.)

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchboard_channel_slack::inbound::{
    ButtonPress, EventsBody, FileAccess, Origin, SharedFile, UserMessage, button_value,
    parse_button_value, parse_events, parse_interactivity,
};
use switchboard_testkit::json_shapes::{unknown_fields, with_fields};

fn slack_id(prefix: &'static str) -> impl Strategy<Value = String> {
    "[A-Z0-9]{8,11}".prop_map(move |s| format!("{prefix}{s}"))
}

/// A message `ts` and the Unix milliseconds it stands for.
fn ts() -> impl Strategy<Value = (String, i64)> {
    (1_000_000_000i64..2_000_000_000, 0i64..1_000_000)
        .prop_map(|(secs, micros)| (format!("{secs}.{micros:06}"), secs * 1000 + micros / 1000))
}

/// A shared file as Slack describes it, and what the parser must make of it.
fn file() -> impl Strategy<Value = (Value, SharedFile)> {
    (
        slack_id("F"),
        prop::option::of("[a-zA-Z0-9 ._-]{1,20}"),
        prop::option::of(prop::sample::select(vec![
            "image/png",
            "application/pdf",
            "text/plain",
        ])),
        "[a-z0-9]{1,12}",
        prop::option::of(0u64..50_000_000),
        any::<bool>(),
        unknown_fields(),
    )
        .prop_map(|(id, name, mime, path, size, download, extra)| {
            let url = format!("https://files.slack.com/files-pri/T0-{id}/{path}");
            let mut value = json!({ "id": id, "url_private": url });
            if download {
                value["url_private_download"] = json!(format!("{url}/download"));
            }
            if let Some(name) = &name {
                value["name"] = json!(name);
            }
            if let Some(mime) = mime {
                value["mimetype"] = json!(mime);
            }
            if let Some(size) = size {
                value["size"] = json!(size);
            }
            let expected = SharedFile {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                mime: mime.unwrap_or("application/octet-stream").to_owned(),
                access: FileAccess::Download(if download {
                    format!("{url}/download")
                } else {
                    url
                }),
                size,
            };
            (with_fields(value, extra), expected)
        })
}

/// An `event_callback` envelope around `event`, authorized for our bot user `bot`.
fn envelope(event_id: &str, bot: &str, event: Value, extra: Map<String, Value>) -> Vec<u8> {
    let value = json!({
        "token": "deprecated", "team_id": "T0TEAM", "api_app_id": "A0APP",
        "event": event, "type": "event_callback", "event_id": event_id, "event_time": 1795384800,
        "authorizations": [{ "enterprise_id": null, "team_id": "T0TEAM", "user_id": bot,
            "is_bot": true, "is_enterprise_install": false }],
    });
    serde_json::to_vec(&with_fields(value, extra)).unwrap()
}

/// A consumer's direct message: its wire form's parts and what the parser must return.
#[derive(Debug, Clone)]
struct Dm {
    event: Value,
    event_id: String,
    bot: String,
    envelope_extra: Map<String, Value>,
    expected: UserMessage,
}

fn dm() -> impl Strategy<Value = Dm> {
    (
        slack_id("U"),
        slack_id("D"),
        any::<String>(),
        ts(),
        slack_id("Ev"),
        prop::collection::vec(file(), 0..3),
        unknown_fields(),
        unknown_fields(),
    )
        .prop_map(
            |(user, channel, text, (ts, ms), event_id, files, event_extra, envelope_extra)| {
                let mut event = json!({
                    "type": "message", "channel": channel, "user": user, "text": text,
                    "ts": ts, "event_ts": ts, "channel_type": "im",
                });
                if !files.is_empty() {
                    event["subtype"] = json!("file_share");
                    event["files"] = Value::from(
                        files
                            .iter()
                            .map(|(value, _)| value.clone())
                            .collect::<Vec<_>>(),
                    );
                }
                Dm {
                    event: with_fields(event, event_extra),
                    event_id,
                    bot: "UBOTUSER01".into(),
                    envelope_extra,
                    expected: UserMessage {
                        key: format!("slack:{channel}:{ts}"),
                        channel,
                        user,
                        text,
                        sent_at_ms: Some(ms),
                        files: files.into_iter().map(|(_, f)| f).collect(),
                        origin: Origin {
                            team_id: Some("T0TEAM".into()),
                            enterprise_id: None,
                        },
                    },
                }
            },
        )
}

impl Dm {
    fn body(&self) -> Vec<u8> {
        envelope(
            &self.event_id,
            &self.bot,
            self.event.clone(),
            self.envelope_extra.clone(),
        )
    }
}

proptest! {
    #[test]
    fn a_direct_message_comes_out_as_sent(dm in dm(), mentions in any::<bool>()) {
        prop_assert_eq!(parse_events(&dm.body(), mentions), Ok(EventsBody::Message(dm.expected)));
    }

    #[test]
    fn an_app_mention_is_taken_only_when_mentions_are_on(dm in dm(), channel in slack_id("C")) {
        let mut dm = dm;
        dm.event["type"] = json!("app_mention");
        dm.event["channel"] = json!(channel);
        dm.event.as_object_mut().unwrap().remove("channel_type");
        let ts = dm.event["ts"].as_str().unwrap().to_owned();
        let expected = UserMessage { key: format!("slack:{channel}:{ts}"), channel, ..dm.expected.clone() };
        prop_assert_eq!(parse_events(&dm.body(), true), Ok(EventsBody::Message(expected)));
        prop_assert!(matches!(parse_events(&dm.body(), false), Ok(EventsBody::Ignored(_))));
    }

    #[test]
    fn what_the_channel_does_not_take_is_ignored(
        dm in dm(),
        case in 0usize..5,
        subtype in prop::sample::select(vec!["message_changed", "message_deleted", "channel_join", "thread_broadcast", "bot_message"]),
        bot_id in slack_id("B"),
        mentions in any::<bool>(),
    ) {
        let mut dm = dm;
        match case {
            // Other bots' messages (our own come out as `OwnPost`, below).
            0 => dm.event["bot_id"] = json!(bot_id),
            1 => dm.event["bot_profile"] = json!({ "id": bot_id, "name": "another app" }),
            // Edits, deletions, joins …
            2 => dm.event["subtype"] = json!(subtype),
            // A channel message, not a DM (and not a mention).
            3 => dm.event["channel_type"] = json!("channel"),
            _ => dm.event["type"] = json!("reaction_added"),
        }
        prop_assert!(matches!(parse_events(&dm.body(), mentions), Ok(EventsBody::Ignored(_))), "case {}", case);
    }

    #[test]
    fn our_own_posts_are_echoes_never_messages(dm in dm(), by_user in any::<bool>(), mentions in any::<bool>()) {
        let mut dm = dm;
        if by_user {
            dm.event["user"] = json!(dm.bot.clone());
        } else {
            dm.event["bot_id"] = json!("B0OURBOT");
            dm.event["app_id"] = json!("A0APP");
        }
        let parsed = parse_events(&dm.body(), mentions);
        prop_assert!(matches!(parsed, Ok(EventsBody::OwnPost(_))), "{:?}", parsed);
    }

    #[test]
    fn the_url_check_answers_its_challenge(challenge in "[a-zA-Z0-9]{1,80}", extra in unknown_fields()) {
        let body = with_fields(json!({ "token": "t", "challenge": challenge, "type": "url_verification" }), extra);
        prop_assert_eq!(
            parse_events(body.to_string().as_bytes(), false),
            Ok(EventsBody::UrlVerification(challenge))
        );
    }

    #[test]
    fn a_button_press_comes_out_as_pressed(
        user in slack_id("U"),
        channel in prop_oneof![slack_id("D"), slack_id("C")],
        message in "lp:[a-f0-9-]{8,36}:[a-f0-9-]{8,36}:[0-9]{1,6}",
        button in "[a-z0-9-]{1,16}",
        (action_ts, _) in ts(),
        payload_extra in unknown_fields(),
        action_extra in unknown_fields(),
        user_extra in unknown_fields(),
        form_extra in prop::collection::vec(("x_[a-z]{1,8}", ".{0,20}"), 0..3),
    ) {
        let value = button_value(&message, &button);
        let payload = with_fields(json!({
            "type": "block_actions",
            "team": { "id": "T0TEAM", "domain": "team" },
            "user": with_fields(json!({ "id": user, "username": "someone" }), user_extra),
            "api_app_id": "A0APP",
            "container": { "type": "message", "message_ts": "1795384800.000100", "channel_id": channel },
            "channel": { "id": channel, "name": "directmessage" },
            "trigger_id": "1.2.3",
            "actions": [with_fields(json!({
                "action_id": "sb-0", "block_id": "b1", "type": "button", "value": value,
                "text": { "type": "plain_text", "text": "a button" }, "action_ts": action_ts,
            }), action_extra)],
        }), payload_extra);
        let mut form = vec![("payload".to_owned(), payload.to_string())];
        form.extend(form_extra);
        let body = serde_urlencoded::to_string(&form).unwrap();
        let press = parse_interactivity(body.as_bytes());
        prop_assert_eq!(press, Ok(Some(ButtonPress { channel, user, value: value.clone(), action_ts })));
        prop_assert_eq!(parse_button_value(&value), Some((message.as_str(), button.as_str())));
    }
}
