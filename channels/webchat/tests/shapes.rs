//! The web chat's input, property-based, through the channel's HTTP surface: generated valid
//! messages, button choices and typing (with unknown fields added) reach the sink as sent;
//! invalid ids and empty or overlong texts are refused with a JSON 400 and submit nothing;
//! random bytes on every endpoint never panic and never half-apply.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use switchboard_core::{ChatState, Inbound, MessageRef};
use switchboard_testkit::json_shapes::{unknown_fields, with_fields};

use super::{request, setup};

/// Session and message ids as the page makes them: 8–64 of `[A-Za-z0-9_-]`.
fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{8,64}"
}

/// A text the channel takes: something other than white space, at most 4000 characters once
/// trimmed.
fn text() -> impl Strategy<Value = String> {
    ("[ \t\n]{0,3}", "\\PC{1,200}", "[ \t\n]{0,3}")
        .prop_map(|(a, b, c)| format!("{a}{b}{c}"))
        .prop_filter("not only white space", |t| !t.trim().is_empty())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn messages_choices_and_typing_reach_the_sink_as_sent() {
    let rt = runtime();
    #[derive(Debug, Clone)]
    enum Input {
        Message {
            id: String,
            text: String,
        },
        Choice {
            id: String,
            message: String,
            choice: String,
        },
        Typing(bool),
    }
    let input = prop_oneof![
        (id(), text()).prop_map(|(id, text)| Input::Message { id, text }),
        (id(), "[ -~]{1,200}", "[A-Za-z0-9_-]{1,64}").prop_map(|(id, message, choice)| {
            Input::Choice {
                id,
                message,
                choice,
            }
        }),
        any::<bool>().prop_map(Input::Typing),
    ];
    runner(128)
        .run(&(id(), input, unknown_fields()), |(session, input, extra)| {
            let (channel, ctx, sink) = setup();
            let (path, body, expected) = match input.clone() {
                Input::Message { id, text } => (
                    "/messages",
                    json!({ "session": session, "id": id, "text": text }),
                    (Some(id), Inbound::text(text.trim())),
                ),
                Input::Choice {
                    id,
                    message,
                    choice,
                } => (
                    "/choices",
                    json!({ "session": session, "id": id, "message": message, "choice": choice }),
                    (
                        Some(id),
                        Inbound::Choice {
                            message: MessageRef::new(message),
                            choice,
                        },
                    ),
                ),
                Input::Typing(typing) => (
                    "/typing",
                    json!({ "session": session, "typing": typing }),
                    (
                        None,
                        Inbound::ChatState {
                            state: if typing {
                                ChatState::Composing
                            } else {
                                ChatState::Paused
                            },
                        },
                    ),
                ),
            };
            let body = with_fields(body, extra).to_string();
            let response = rt.block_on(channel.handle_http(request("POST", path, &body), &ctx));
            prop_assert_eq!(response.status(), 200, "{:?}", input);
            let events = sink.0.lock().unwrap().clone();
            prop_assert_eq!(events.len(), 1);
            prop_assert_eq!(&events[0].consumer.id, &session);
            prop_assert_eq!(&events[0].platform_id, &expected.0);
            prop_assert_eq!(&events[0].body, &expected.1);
            Ok(())
        })
        .unwrap();
}

#[test]
fn invalid_input_is_refused_and_submits_nothing() {
    let rt = runtime();
    // One thing wrong at a time, everything else valid.
    let bad_id = prop_oneof![
        "[A-Za-z0-9_-]{0,7}",
        "[A-Za-z0-9_-]{65,80}",
        "[A-Za-z0-9_-]{4,10}[^A-Za-z0-9_-][A-Za-z0-9_-]{4,10}",
    ];
    let bad_text = prop_oneof![
        "[ \t\n]{0,5}",
        "[a-z]{4001,4100}".prop_map(|t| format!("  {t}  ")),
    ];
    let case = prop_oneof![
        (bad_id.clone(), id(), text())
            .prop_map(|(s, i, t)| json!({ "session": s, "id": i, "text": t })),
        (id(), bad_id.clone(), text())
            .prop_map(|(s, i, t)| json!({ "session": s, "id": i, "text": t })),
        (id(), id(), bad_text).prop_map(|(s, i, t)| json!({ "session": s, "id": i, "text": t })),
        // A required field missing, or of the wrong type.
        (id(), id()).prop_map(|(s, i)| json!({ "session": s, "id": i })),
        (id(), id(), any::<i64>())
            .prop_map(|(s, i, t)| json!({ "session": s, "id": i, "text": t })),
    ];
    runner(128)
        .run(&case, |body| {
            let (channel, ctx, sink) = setup();
            let response = rt.block_on(
                channel.handle_http(request("POST", "/messages", &body.to_string()), &ctx),
            );
            prop_assert_eq!(response.status(), 400, "{}", body);
            let json: Value = serde_json::from_slice(response.body())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&json["error"]["code"], "bad_request");
            prop_assert!(sink.0.lock().unwrap().is_empty(), "nothing half-applied");
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_bytes_never_panic_and_never_half_apply() {
    let rt = runtime();
    let strategy = (
        prop::sample::select(vec!["/messages", "/choices", "/typing"]),
        prop::collection::vec(any::<u8>(), 0..512),
    );
    runner(256)
        .run(&strategy, |(path, bytes)| {
            let (channel, ctx, sink) = setup();
            let request = switchboard_core::http::Request::builder()
                .method("POST")
                .uri(path)
                .body(switchboard_core::Bytes::from(bytes))
                .unwrap();
            let response = rt.block_on(channel.handle_http(request, &ctx));
            let submitted = sink.0.lock().unwrap().len();
            match response.status().as_u16() {
                200 => prop_assert_eq!(submitted, 1),
                400 => prop_assert_eq!(submitted, 0),
                other => return Err(TestCaseError::fail(format!("status {other}"))),
            }
            Ok(())
        })
        .unwrap();
}
