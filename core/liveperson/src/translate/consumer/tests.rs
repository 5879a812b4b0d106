//! Each consumer event kind, and the requests it becomes, exactly.

use serde_json::json;
use switchboard_core::{
    Attachment, AttachmentBody, ChatState, ConsumerAddress, ConsumerProfile, Inbound, InboundEvent,
    MessageRef, ReceiptStatus, SurveyAnswer,
};

use super::*;
use crate::send_api::MAX_SEND_CHARS;

const PLATFORM_ID: &str = "msg-77";

fn event(body: Inbound) -> InboundEvent {
    InboundEvent::new(ConsumerAddress::new("sms-main", "+15551234567"), body)
        .with_platform_id(PLATFORM_ID)
}

fn main() -> DialogRef {
    DialogRef::main("conv-1")
}

fn survey() -> DialogRef {
    DialogRef {
        conversation_id: "conv-1".into(),
        dialog_id: "survey-1".into(),
    }
}

fn text(to: &DialogRef, text: &str, metadata: Option<serde_json::Value>) -> Step {
    Step::Send {
        request: SendRequest::Text {
            to: to.clone(),
            text: text.into(),
            metadata,
        },
        remember: Some(PLATFORM_ID.into()),
    }
}

fn steps(body: Inbound, to: &DialogRef) -> Vec<Step> {
    plan(&event(body), to, None).expect("a plan")
}

fn file(mime: &str, body: AttachmentBody) -> Inbound {
    Inbound::File {
        file: Attachment {
            name: Some("IMG_2041.jpeg".into()),
            mime: mime.into(),
            caption: Some("the label".into()),
            body,
        },
    }
}

fn inline(len: usize) -> AttachmentBody {
    AttachmentBody::Inline {
        data: Bytes::from(vec![7_u8; len]),
    }
}

#[test]
fn a_text_is_one_send_remembering_the_consumer_message() {
    assert_eq!(
        steps(Inbound::text("Hello"), &main()),
        vec![text(&main(), "Hello", None)]
    );
}

#[test]
fn a_blank_text_sends_nothing() {
    assert_eq!(steps(Inbound::text(" \n\t"), &main()), vec![]);
}

#[test]
fn a_long_text_is_split_into_sends_that_each_fit_and_keep_every_word() {
    let words: Vec<String> = (0..2_000).map(|i| format!("w{i:04}")).collect();
    let long = words.join(" ");
    let planned = steps(Inbound::text(long.clone()), &main());
    let parts: Vec<&str> = planned
        .iter()
        .map(|step| match step {
            Step::Send {
                request: SendRequest::Text { to, text, metadata },
                remember,
            } => {
                assert_eq!(
                    (to, metadata, remember.as_deref()),
                    (&main(), &None, Some(PLATFORM_ID))
                );
                let size = crate::send_api::utf16_len(
                    &SendRequest::Text {
                        to: main(),
                        text: text.clone(),
                        metadata: Some(json!([{ "type": "ExternalId", "id": "x".repeat(64) }])),
                    }
                    .to_json("00000000-0000-0000-0000-000000000000")
                    .to_string(),
                );
                assert!(size <= MAX_SEND_CHARS, "{size}");
                text.as_str()
            }
            other => panic!("not a text: {other:?}"),
        })
        .collect();
    assert_eq!(parts.len(), 3);
    // Cut at spaces: joined again with one, the text is whole.
    assert_eq!(parts.join(" "), long);
}

#[test]
fn an_image_is_uploaded_with_a_text_for_accounts_without_file_sharing() {
    let planned = steps(file("image/jpeg", inline(2048)), &main());
    let expected = Upload {
        to: main(),
        file_type: "JPEG",
        bytes: Bytes::from(vec![7_u8; 2048]),
        caption: "the label".into(),
        fallback: "[The consumer sent a file, but file sharing is disabled on this LivePerson \
                   account: the label (image/jpeg, 2048 bytes)]"
            .into(),
    };
    assert_eq!(planned, vec![Step::Upload(expected.clone())]);
    assert_eq!(
        expected
            .clone()
            .published("/v1/AUTH_async-images/1/a.jpeg".into()),
        SendRequest::File {
            to: main(),
            relative_path: "/v1/AUTH_async-images/1/a.jpeg".into(),
            file_type: "JPEG".into(),
            caption: "the label".into(),
            preview: None,
        }
    );
    assert_eq!(
        expected.fallback(),
        SendRequest::Text {
            to: main(),
            text: "[The consumer sent a file, but file sharing is disabled on this LivePerson \
                   account: the label (image/jpeg, 2048 bytes)]"
                .into(),
            metadata: None,
        }
    );
}

#[test]
fn a_file_liveperson_cannot_host_becomes_a_text_naming_it() {
    let pdf =
        "[The consumer sent a file LivePerson cannot show: the label (application/pdf, 10 bytes)]";
    assert_eq!(
        steps(file("application/pdf", inline(10)), &main()),
        vec![text(&main(), pdf, None)]
    );
    // Over LivePerson's 3 MB, even an image.
    let big = MAX_UPLOAD_BYTES + 1;
    assert_eq!(
        steps(file("image/png", inline(big)), &main()),
        vec![text(
            &main(),
            &format!(
                "[The consumer sent a file LivePerson cannot show: the label (image/png, {big} bytes)]"
            ),
            None
        )]
    );
}

#[test]
fn a_linked_file_is_its_caption_and_link_the_name_standing_in_for_a_caption() {
    let url = AttachmentBody::Url {
        url: "https://files.example/a.jpeg".into(),
    };
    assert_eq!(
        steps(file("image/jpeg", url.clone()), &main()),
        vec![text(
            &main(),
            "the label: https://files.example/a.jpeg",
            None
        )]
    );
    let Inbound::File { mut file } = file("image/jpeg", url) else {
        unreachable!()
    };
    file.caption = None;
    assert_eq!(
        steps(Inbound::File { file: file.clone() }, &main()),
        vec![text(
            &main(),
            "IMG_2041.jpeg: https://files.example/a.jpeg",
            None
        )]
    );
    file.name = None;
    assert_eq!(
        steps(Inbound::File { file }, &main()),
        vec![text(&main(), "file: https://files.example/a.jpeg", None)]
    );
}

#[test]
fn a_chat_state_goes_to_the_main_dialog_and_never_into_a_survey() {
    let typing = Inbound::ChatState {
        state: ChatState::Composing,
    };
    assert_eq!(
        steps(typing.clone(), &main()),
        vec![Step::Send {
            request: SendRequest::ChatState {
                to: main(),
                state: "COMPOSING"
            },
            remember: None,
        }]
    );
    assert_eq!(steps(typing, &survey()), vec![]);
    let states = [
        ChatState::Composing,
        ChatState::Paused,
        ChatState::Active,
        ChatState::Inactive,
        ChatState::Gone,
    ];
    assert_eq!(
        states.map(chat_state),
        ["COMPOSING", "PAUSE", "ACTIVE", "INACTIVE", "GONE"]
    );
}

#[test]
fn receipts_are_one_accept_status_per_dialog_skipping_foreign_ids() {
    let messages = [
        "lp:conv-1:conv-1:5",
        "slack-ts-1",
        "lp:conv-1:survey-1:2",
        "lp:conv-1:conv-1:6",
    ]
    .map(MessageRef::new)
    .to_vec();
    let accept = |to: DialogRef, sequences: Vec<i64>| Step::Send {
        request: SendRequest::AcceptStatus {
            to,
            status: AcceptStatus::Read,
            sequences,
            metadata: None,
        },
        remember: None,
    };
    assert_eq!(
        steps(
            Inbound::Receipt {
                status: ReceiptStatus::Read,
                messages,
            },
            &main()
        ),
        vec![accept(main(), vec![5, 6]), accept(survey(), vec![2])]
    );
}

fn choice(message: &str) -> Inbound {
    Inbound::Choice {
        message: MessageRef::new(message),
        choice: "b1".into(),
    }
}

fn clicked(text: Option<&str>) -> ClickAction {
    ClickAction {
        button_id: "b1".into(),
        text: text.map(str::to_owned),
        metadata: Some(json!([{ "type": "ExternalId", "id": "Yes-1234" }])),
    }
}

#[test]
fn a_click_is_an_action_receipt_then_its_text_both_with_the_buttons_metadata() {
    let metadata = Some(json!([{ "type": "ExternalId", "id": "Yes-1234" }]));
    let planned = plan(
        &event(choice("lp:conv-1:survey-1:4")),
        &main(),
        Some(&clicked(Some("yep"))),
    );
    assert_eq!(
        planned,
        Ok(vec![
            Step::Send {
                request: SendRequest::AcceptStatus {
                    to: survey(),
                    status: AcceptStatus::Action,
                    sequences: vec![4],
                    metadata: metadata.clone(),
                },
                remember: None,
            },
            text(&survey(), "yep", metadata),
        ])
    );
    // A button without publishText: the receipt alone.
    let planned = plan(
        &event(choice("lp:conv-1:conv-1:4")),
        &main(),
        Some(&clicked(None)),
    );
    assert_eq!(planned.map(|s| s.len()), Ok(1));
}

#[test]
fn a_click_on_an_earlier_conversations_message_is_its_text_in_the_current_one() {
    let metadata = Some(json!([{ "type": "ExternalId", "id": "Yes-1234" }]));
    let current = DialogRef::main("conv-2");
    assert_eq!(
        plan(
            &event(choice("lp:conv-1:conv-1:4")),
            &current,
            Some(&clicked(Some("yep")))
        ),
        Ok(vec![text(&current, "yep", metadata)])
    );
}

#[test]
fn a_click_without_its_button_or_on_a_foreign_message_cannot_be_planned() {
    assert_eq!(
        plan(&event(choice("lp:conv-1:conv-1:4")), &main(), None),
        Err(PlanError::UnknownButton {
            message: "lp:conv-1:conv-1:4".into(),
            choice: "b1".into(),
        })
    );
    let err = plan(&event(choice("3f2a")), &main(), Some(&clicked(Some("yep")))).unwrap_err();
    assert_eq!(err.to_string(), "choice on an unknown message `3f2a`");
}

#[test]
fn a_survey_answer_is_a_csat_rate_on_the_conversation_when_rated_1_to_5() {
    let answer = |csat, resolved| Inbound::Survey {
        answer: SurveyAnswer { csat, resolved },
    };
    let csat = |rate, resolved, status| {
        vec![Step::Send {
            request: SendRequest::Csat {
                conversation_id: "conv-1".into(),
                rate,
                resolved,
                status,
            },
            remember: None,
        }]
    };
    assert_eq!(
        steps(answer(Some(5), Some(true)), &survey()),
        csat(5, true, "FILLED")
    );
    assert_eq!(
        steps(answer(Some(1), Some(false)), &main()),
        csat(1, false, "FILLED")
    );
    assert_eq!(
        steps(answer(Some(4), None), &main()),
        csat(4, false, "PARTIALLY_FILLED")
    );
    assert_eq!(steps(answer(None, Some(true)), &main()), vec![]);
    assert_eq!(steps(answer(Some(6), Some(true)), &main()), vec![]);
    assert_eq!(steps(answer(Some(0), None), &main()), vec![]);
}

#[test]
fn close_and_profile_updates_are_one_request_each() {
    assert_eq!(
        steps(Inbound::Close, &main()),
        vec![Step::Send {
            request: SendRequest::Close {
                conversation_id: "conv-1".into(),
                skip_survey: false,
            },
            remember: None,
        }]
    );
    let profile = ConsumerProfile {
        first_name: Some("Ana".into()),
        ..ConsumerProfile::default()
    };
    let updated = event(Inbound::ProfileUpdate).with_profile(profile.clone());
    assert_eq!(
        plan(&updated, &main(), None),
        Ok(vec![Step::Send {
            request: SendRequest::SetProfile {
                body: profile_body(Some(&profile), &ext_consumer_id("sms-main", "+15551234567")),
            },
            remember: None,
        }])
    );
}

#[test]
fn only_messages_open_a_conversation_and_only_survey_answers_go_to_a_closed_one() {
    let cases = [
        (Inbound::text("hi"), Needs::Open),
        (file("image/png", inline(1)), Needs::Open),
        (choice("lp:c:c:1"), Needs::Open),
        (
            Inbound::Survey {
                answer: SurveyAnswer {
                    csat: Some(5),
                    resolved: None,
                },
            },
            Needs::Latest,
        ),
        (
            Inbound::ChatState {
                state: ChatState::Active,
            },
            Needs::IfOpen,
        ),
        (
            Inbound::Receipt {
                status: ReceiptStatus::Delivered,
                messages: vec![],
            },
            Needs::IfOpen,
        ),
        (Inbound::Close, Needs::IfOpen),
        (Inbound::ProfileUpdate, Needs::IfOpen),
    ];
    for (body, expected) in cases {
        assert_eq!(needs(&body), expected, "{body:?}");
    }
}

#[test]
fn a_delivered_agent_event_is_accepted_and_read_when_the_channel_cannot_say() {
    let receipt = |status| SendRequest::AcceptStatus {
        to: survey(),
        status,
        sequences: vec![9],
        metadata: None,
    };
    assert_eq!(
        delivered(&survey(), 9, false),
        vec![receipt(AcceptStatus::Accept)]
    );
    assert_eq!(
        delivered(&survey(), 9, true),
        vec![receipt(AcceptStatus::Accept), receipt(AcceptStatus::Read)]
    );
}
