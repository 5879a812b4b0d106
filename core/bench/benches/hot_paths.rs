//! Criterion micro-benchmarks of Switchboard's hot paths: webhook signature verification,
//! webhook parsing, the translation of each event kind (both directions, and the channel-side
//! rendering) and the SQLite outbox (enqueue, claim, complete).
//!
//! ```sh
//! cargo bench -p switchboard-bench --bench hot_paths                  # everything
//! cargo bench -p switchboard-bench --bench hot_paths -- signature/    # one group
//! ```
//!
//! Every benchmark runs the crates' public functions on realistic inputs (the bodies of
//! `docs/protocol/liveperson.md` §7.4 and of the simulator, real-looking Slack, Telegram, Kannel and
//! Vonage requests). The translation is the runtime's own (`switchboard_liveperson::translate`,
//! which the router calls); what the router adds around it is I/O (the store, the engine), left
//! out and said so where a benchmark stops short of it.
//!
//! Groups:
//! - `signature/*`: authenticating a request on its raw bytes, valid and forged.
//! - `parse/*`: raw body to typed value, after authentication.
//! - `translate/*`: canonical inbound event to the Send API request bytes; LivePerson change to
//!   canonical outbound event; canonical outbound event to what a channel sends.
//! - `outbox/*`: the durable outbox on an SQLite file (WAL, as `Store::connect` opens it) in a
//!   temporary directory that is removed at the end, and (`outbox/postgres_*`, when
//!   `SWITCHBOARD_TEST_POSTGRES_URL` names a database) on PostgreSQL, in a schema of its own
//!   that is dropped at the end.

use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_channel_slack::{inbound as slack_in, outbound as slack_out};
use switchboard_channel_sms::vonage::{inbound as vonage_inbound, signature as vonage_sig};
use switchboard_channel_sms::{encoding, inbound as kannel};
use switchboard_channel_telegram::inbound as telegram_in;
use switchboard_core::http::{HeaderMap, HeaderValue, Request};
use switchboard_core::{
    Attachment, AttachmentBody, Bytes, ChatState, ConsumerAddress, ConsumerProfile, HttpRequest,
    Inbound, InboundEvent, MessageRef, Outbound, ReceiptStatus, Secret, SurveyAnswer, http_util,
};
use switchboard_liveperson::structured::{self, ClickAction};
use switchboard_liveperson::translate::{self, Step};
use switchboard_liveperson::webhook::{
    self, ACCOUNT_HEADER, CLIENT_HEADER, ConversationChange, MessageChange, NotificationChange,
    SIGNATURE_HEADER,
};
use switchboard_liveperson::{DialogRef, EngineConfig, SendRequest, agent_event};
use switchboard_store::{Direction, Enqueued, NewItem, Store};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const ACCOUNT_ID: &str = "12345678";
const CLIENT_ID: &str = "75588e18-0213-4e33-8174-883acac7e3c4";
const CLIENT_SECRET: &str = "k8Jd93hFq0sPz7LmW2xVb5RtYn1CgE4u";
const CONVERSATION: &str = "f2384f56-57d5-4087-bd47-8df0ec3102f6";
const SURVEY_DIALOG: &str = "7c1e3a52-9d0b-4f7e-8a66-2b5f0c9d1e44";
const AGENT_ID: &str = "e9b2867c-f984-5727-b034-fc9c6800bd9c";
const LP_CONSUMER_ID: &str = "5b0f3b3574c1a8eb71aebf79cf437cb3f6010b9a6df94771c22e5c637285f5f2";
/// Where the fixtures' upload lands (the `relativePath` LivePerson's upload URL answer names).
const UPLOADED_PATH: &str = "/v1/AUTH_async-images/12345678/a1b2c3d4.jpeg";
/// The Send API request id (the engine uses a fresh UUIDv4; its generation is not measured).
const REQUEST_ID: &str = "0d5e7b7a-3f7c-4b0e-9a43-6f1b3c2d9e10";

/// An agent's answer of realistic length; agent text often ends with a newline (docs/protocol/liveperson.md §7.4.1).
const AGENT_TEXT: &str = "Thanks for waiting, Ana. I have checked your order #48213-B and I can \
see that it left our warehouse in Rotterdam yesterday afternoon. The carrier's tracking shows \
it is now at the regional sorting centre and it is scheduled for delivery on Thursday between \
09:00 and 13:00. If nobody is at home, the driver will leave a card with instructions to pick it \
up at the nearest service point, or you can choose another delivery day on the carrier's \
website using the tracking number I am sending you separately. Is there anything else I can \
help you with regarding this order or your account today?\n";

/// A consumer's message of realistic length.
const CONSUMER_TEXT: &str = "Hi, I ordered a pair of trail shoes last week (order 48213-B) and \
the tracking page has not changed since Monday. Could you tell me when it will arrive? I am \
travelling on Friday, so if it cannot come before then I would rather pick it up somewhere. \
Thanks a lot!";

/// `ms.MessagingEventNotification` with an agent's `ContentEvent` text (docs/protocol/liveperson.md §7.4.1), ~1 KB.
fn lp_content_body() -> String {
    let message = serde_json::to_string(AGENT_TEXT).expect("a string serializes");
    format!(
        r#"{{"kind":"notification","body":{{"changes":[{{"sequence":5,"originatorId":"{AGENT_ID}","originatorMetadata":{{"id":"{AGENT_ID}","role":"ASSIGNED_AGENT"}},"serverTimestamp":1553593406049,"event":{{"type":"ContentEvent","message":{message},"contentType":"text/plain"}},"conversationId":"{CONVERSATION}","dialogId":"{CONVERSATION}","messageAudience":"ALL"}}]}},"type":"ms.MessagingEventNotification"}}"#
    )
}

/// A `RichContentEvent`: a vertical card (image, title, line, a reply and a link button) with
/// quick replies and an `ExternalId` (docs/protocol/liveperson.md §7.4.1, §11).
fn lp_rich_body() -> String {
    format!(
        r#"{{"kind":"notification","body":{{"changes":[{{"sequence":7,"originatorId":"{AGENT_ID}","originatorMetadata":{{"id":"{AGENT_ID}","role":"ASSIGNED_AGENT"}},"serverTimestamp":1553593406049,"event":{{"type":"RichContentEvent","content":{{"type":"vertical","elements":[{{"type":"image","url":"https://example.com/img/runner-42.jpg","tooltip":"Runner 42"}},{{"type":"text","text":"Runner 42 trail edition","style":{{"bold":true,"size":"large"}}}},{{"type":"text","text":"Waterproof, sizes 38 to 46, in stock"}},{{"type":"horizontal","elements":[{{"type":"button","title":"Add to cart","click":{{"actions":[{{"type":"publishText","text":"Add Runner 42 to my cart"}}],"metadata":[{{"type":"ExternalId","id":"add-042"}}]}}}},{{"type":"button","title":"Details","click":{{"actions":[{{"type":"link","name":"Details","uri":"https://example.com/p/042"}}]}}}}]}}]}},"quickReplies":{{"type":"quickReplies","itemsPerRow":3,"replies":[{{"type":"button","title":"Yes","click":{{"actions":[{{"type":"publishText","text":"Yes"}}],"metadata":[{{"type":"ExternalId","id":"yes"}}]}}}},{{"type":"button","title":"No","click":{{"actions":[{{"type":"publishText","text":"No"}}],"metadata":[{{"type":"ExternalId","id":"no"}}]}}}},{{"type":"button","title":"Talk to an agent","click":{{"actions":[{{"type":"publishText","text":"Talk to an agent"}}]}}}}]}}}},"conversationId":"{CONVERSATION}","dialogId":"{CONVERSATION}","metadata":[{{"type":"ExternalId","id":"card-042"}}],"messageAudience":"ALL"}}]}},"type":"ms.MessagingEventNotification"}}"#
    )
}

/// The survey bot's CSAT question in the POST_SURVEY dialog, as the simulator publishes it.
fn lp_survey_question_body() -> String {
    let replies: Vec<Value> = (1..=5)
        .map(|n| {
            json!({ "type": "button", "title": n.to_string(), "tooltip": n.to_string(),
                "click": { "actions": [{ "type": "publishText", "text": n.to_string() }],
                    "metadata": [{ "type": "Answer", "id": format!("csat-answer-{n}"), "questionId": "csat-q1" }] } })
        })
        .collect();
    json!({ "kind": "notification", "type": "ms.MessagingEventNotification",
        "body": { "changes": [{
            "sequence": 0, "originatorId": "survey-bot", "serverTimestamp": 1553593406049_i64,
            "originatorMetadata": { "id": "survey-bot", "role": "AGENT" },
            "event": { "type": "ContentEvent", "contentType": "text/plain",
                "message": "How would you rate your experience with us today? (1 = poor, 5 = excellent)",
                "quickReplies": { "type": "quickReplies", "itemsPerRow": 5, "replies": replies } },
            "conversationId": CONVERSATION, "dialogId": SURVEY_DIALOG, "messageAudience": "ALL",
            "metadata": [{ "type": "Question", "id": "csat-q1", "questionType": "CSAT" }] }] } })
    .to_string()
}

/// The agent read the consumer's messages 2 and 3 (docs/protocol/liveperson.md §7.4.1).
fn lp_accept_status_body() -> String {
    format!(
        r#"{{"kind":"notification","body":{{"changes":[{{"sequence":4,"originatorId":"{AGENT_ID}","originatorMetadata":{{"id":"{AGENT_ID}","role":"ASSIGNED_AGENT"}},"serverTimestamp":1538493548705,"event":{{"type":"AcceptStatusEvent","status":"READ","sequenceList":[2,3]}},"conversationId":"{CONVERSATION}","dialogId":"{CONVERSATION}","messageAudience":"ALL"}}]}},"type":"ms.MessagingEventNotification"}}"#
    )
}

/// The agent is typing (docs/protocol/liveperson.md §7.4.1: no sequence, no timestamp).
fn lp_chat_state_body() -> String {
    format!(
        r#"{{"kind":"notification","body":{{"changes":[{{"originatorId":"{AGENT_ID}","originatorMetadata":{{"id":"{AGENT_ID}","role":"ASSIGNED_AGENT"}},"event":{{"type":"ChatStateEvent","chatState":"COMPOSING"}},"conversationId":"{CONVERSATION}","dialogId":"{CONVERSATION}","messageAudience":"ALL"}}]}},"type":"ms.MessagingEventNotification"}}"#
    )
}

/// `cqm.ExConversationChangeNotification` UPSERT (docs/protocol/liveperson.md §7.4.2), open or closed by the agent.
fn lp_ex_conversation_body(closed: bool) -> String {
    let (state, extra, dialog_extra) = if closed {
        (
            "CLOSE",
            r#","closeReason":"AGENT","endTs":1553591954025"#,
            r#","endTs":1553591954025,"closedBy":"AGENT","closedCause":"Closed by agent""#,
        )
    } else {
        ("OPEN", "", "")
    };
    format!(
        r#"{{"kind":"notification","body":{{"subscriptionId":"ea7ecc5a-58c4-4a16-9510-4868bef08d79","changes":[{{"type":"UPSERT","result":{{"convId":"{CONVERSATION}","effectiveTTR":1553590349893,"conversationDetails":{{"skillId":"558327413","participants":[{{"id":"{LP_CONSUMER_ID}","role":"CONSUMER"}},{{"id":"{AGENT_ID}","role":"ASSIGNED_AGENT"}}],"dialogs":[{{"dialogId":"{CONVERSATION}","participantsDetails":[{{"id":"{LP_CONSUMER_ID}","role":"CONSUMER","state":"ACTIVE"}},{{"id":"{AGENT_ID}","role":"ASSIGNED_AGENT","state":"ACTIVE"}}],"dialogType":"MAIN","channelType":"MESSAGING","state":"{state}","creationTs":1553589749650,"metaDataLastUpdateTs":1553589749650{dialog_extra}}}],"brandId":"{ACCOUNT_ID}","state":"{state}","stage":"{state}","startTs":1553589749650,"metaDataLastUpdateTs":1553590954025,"ttr":{{"ttrType":"PRIORITIZED","value":600}},"conversationHandlerDetails":{{"accountId":"{ACCOUNT_ID}","skillId":"558327413"}}{extra}}}}}}}]}},"type":"cqm.ExConversationChangeNotification"}}"#
    )
}

/// A Slack `event_callback` for a direct message, with the `blocks` Slack adds, ~1 KB.
fn slack_event_body() -> String {
    let text = serde_json::to_string(CONSUMER_TEXT).expect("a string serializes");
    format!(
        r#"{{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","team_id":"T0123ABCD","context_team_id":"T0123ABCD","api_app_id":"A0123ABCD","event":{{"type":"message","user":"U0456EFGH","text":{text},"ts":"1712345678.123456","blocks":[{{"type":"rich_text","block_id":"Xy1z","elements":[{{"type":"rich_text_section","elements":[{{"type":"text","text":{text}}}]}}]}}],"team":"T0123ABCD","client_msg_id":"3f1e2d4c-5b6a-4789-8a0b-1c2d3e4f5a6b","channel":"D0789IJKL","event_ts":"1712345678.123456","channel_type":"im"}},"type":"event_callback","event_id":"Ev06ABCDEF12","event_time":1712345678,"authorizations":[{{"enterprise_id":null,"team_id":"T0123ABCD","user_id":"U0BOT0001","is_bot":true,"is_enterprise_install":false}}],"is_ext_shared_channel":false}}"#
    )
}

/// A Telegram update with a private text message.
fn telegram_update_body() -> String {
    let text = serde_json::to_string(CONSUMER_TEXT).expect("a string serializes");
    format!(
        r#"{{"update_id":734251987,"message":{{"message_id":4321,"from":{{"id":987654321,"is_bot":false,"first_name":"Ana","last_name":"García","username":"anagarcia","language_code":"es"}},"chat":{{"id":987654321,"first_name":"Ana","last_name":"García","username":"anagarcia","type":"private"}},"date":1712345678,"text":{text}}}}}"#
    )
}

/// Percent-encodes everything but unreserved characters (fixture building only).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const KANNEL_TOKEN: &str = "kannel-callback-token-7f3a9c";
/// One SMS's worth of consumer text (GSM-7, 150 characters).
const SMS_TEXT: &str = "Hi, my parcel 48213-B has not moved since Monday. Can it arrive before \
Friday? Otherwise I will pick it up at a service point. Thanks, Ana";

/// Kannel's `sms-service` get-url call for one MO message.
fn kannel_mo_request() -> HttpRequest {
    let uri = format!(
        "/mo?token={KANNEL_TOKEN}&from=%2B15551234567&to=12345&smsc=smsc-main&id=6f3c2a1e-8d4b-4c9f-a2e7-5b1d0c3f9e8a&ts=1712345678&coding=0&charset=UTF-8&text={}",
        percent_encode(SMS_TEXT)
    );
    Request::builder()
        .method("GET")
        .uri(uri)
        .body(Bytes::new())
        .expect("a valid request")
}

const VONAGE_SECRET: &str = "vonage-signature-secret-2c9d41";
const VONAGE_NOW: i64 = 1_712_345_678;

/// A Vonage inbound-SMS webhook (form format), one part of a concatenated message, signed with
/// `method`, as the raw body.
fn vonage_form_body(method: vonage_sig::SignatureMethod) -> Vec<u8> {
    let pairs = [
        ("msisdn", "447700900001".to_owned()),
        ("to", "447700900000".to_owned()),
        ("messageId", "0A0000000123ABCD1".to_owned()),
        ("text", SMS_TEXT.to_owned()),
        ("type", "text".to_owned()),
        ("keyword", "HI".to_owned()),
        ("message-timestamp", "2024-04-05 19:34:38".to_owned()),
        ("concat-ref", "108".to_owned()),
        ("concat-total", "2".to_owned()),
        ("concat-part", "1".to_owned()),
        ("timestamp", VONAGE_NOW.to_string()),
        ("nonce", "8a4b2c6e-1f3d-4e5a-9b7c-0d2e4f6a8b1c".to_owned()),
    ];
    let form: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    let mut form = form.join("&");
    let sig = vonage_sig::sign(
        method,
        VONAGE_SECRET,
        &vonage_inbound::form_pairs(form.as_bytes()),
    );
    form.push_str("&sig=");
    form.push_str(&sig);
    form.into_bytes()
}

/// The first messaging change of a notification.
fn message_change(body: &str) -> MessageChange {
    match webhook::parse(body.as_bytes()).map(|n| n.changes.into_iter().next()) {
        Ok(Some(NotificationChange::Message(change))) => change,
        other => panic!("fixture is not a messaging change: {other:?}"),
    }
}

/// The first conversation change of a notification.
fn conversation_change(body: &str) -> ConversationChange {
    match webhook::parse(body.as_bytes()).map(|n| n.changes.into_iter().next()) {
        Ok(Some(NotificationChange::Conversation(change))) => change,
        other => panic!("fixture is not a conversation change: {other:?}"),
    }
}

fn consumer() -> ConsumerAddress {
    ConsumerAddress::new("sms-main", "+15551234567")
}

fn profile() -> ConsumerProfile {
    ConsumerProfile {
        first_name: Some("Ana".into()),
        last_name: Some("García".into()),
        phone: Some("+15551234567".into()),
        language: Some("es-ES".into()),
        ..ConsumerProfile::default()
    }
}

/// The runtime's ref of agent event `sequence` in the fixtures' MAIN dialog.
fn message_ref(sequence: i64) -> String {
    translate::message_ref(&DialogRef::main(CONVERSATION), sequence)
}

// ---------------------------------------------------------------------------------------------
// signature/*
// ---------------------------------------------------------------------------------------------

fn signature(c: &mut Criterion) {
    let mut group = c.benchmark_group("signature");

    // LivePerson: account, client and HMAC over the raw body (docs/protocol/liveperson.md §7.3).
    let config = EngineConfig::new(ACCOUNT_ID, CLIENT_ID, Secret::new(CLIENT_SECRET));
    let body = lp_content_body();
    let lp_headers = |signature: String| {
        let mut headers = HeaderMap::new();
        headers.insert(ACCOUNT_HEADER, HeaderValue::from_static(ACCOUNT_ID));
        headers.insert(CLIENT_HEADER, HeaderValue::from_static(CLIENT_ID));
        headers.insert(
            SIGNATURE_HEADER,
            HeaderValue::from_str(&signature).expect("base64 is a header value"),
        );
        headers
    };
    let sha1 = lp_headers(webhook::sign_sha1(CLIENT_SECRET, body.as_bytes()));
    let sha256 = lp_headers(webhook::sign_sha256(CLIENT_SECRET, body.as_bytes()));
    let forged = lp_headers(webhook::sign_sha1("not-the-secret", body.as_bytes()));
    assert!(webhook::verify(&sha1, body.as_bytes(), &config).is_ok());
    assert!(webhook::verify(&sha256, body.as_bytes(), &config).is_ok());
    assert!(webhook::verify(&forged, body.as_bytes(), &config).is_err());
    for (name, headers) in [
        ("liveperson_sha1", &sha1),
        ("liveperson_sha256", &sha256),
        ("liveperson_sha1_forged", &forged),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| webhook::verify(black_box(headers), black_box(body.as_bytes()), &config))
        });
    }

    // Slack v0: HMAC-SHA256 over `v0:{timestamp}:{body}`, timestamp within 5 minutes.
    let slack_secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5");
    let slack_body = slack_event_body();
    let ts = "1712345678";
    let now = 1_712_345_700;
    let slack_request = |signature: String| {
        Request::builder()
            .method("POST")
            .uri("/events")
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", signature)
            .body(Bytes::from(slack_body.clone()))
            .expect("a valid request")
    };
    let valid = slack_request(slack_in::sign(
        slack_secret.expose(),
        ts,
        slack_body.as_bytes(),
    ));
    let forged = slack_request(slack_in::sign(
        "not-the-signing-secret",
        ts,
        slack_body.as_bytes(),
    ));
    assert!(slack_in::verify(&valid, &slack_secret, now).is_ok());
    assert!(slack_in::verify(&forged, &slack_secret, now).is_err());
    for (name, request) in [("slack_v0", &valid), ("slack_v0_forged", &forged)] {
        group.bench_function(name, |b| {
            b.iter(|| slack_in::verify(black_box(request), &slack_secret, now))
        });
    }

    // Vonage: sorted signing string, then MD5 (the dashboard default) or an HMAC, plus the
    // timestamp window and nonce. The form is already split into pairs (see parse/).
    use vonage_sig::SignatureMethod;
    for (name, method, secret) in [
        ("vonage_md5hash", SignatureMethod::Md5Hash, VONAGE_SECRET),
        ("vonage_sha256", SignatureMethod::Sha256, VONAGE_SECRET),
        (
            "vonage_sha256_forged",
            SignatureMethod::Sha256,
            "not-the-secret",
        ),
    ] {
        let params = vonage_inbound::form_pairs(&vonage_form_body(method));
        let outcome = vonage_sig::verify(method, secret, &params, VONAGE_NOW);
        assert_eq!(outcome.is_ok(), !name.ends_with("forged"), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| vonage_sig::verify(method, secret, black_box(&params), VONAGE_NOW))
        });
    }

    // Telegram: the secret token header, compared in constant time (no MAC over the body).
    let secret = Secret::new("tg-webhook-secret-3e8b1f0a9c7d");
    let telegram_request = |token: &str| {
        Request::builder()
            .method("POST")
            .uri("/webhook")
            .header(telegram_in::SECRET_HEADER, token)
            .body(Bytes::from(telegram_update_body()))
            .expect("a valid request")
    };
    let valid = telegram_request(secret.expose());
    let forged = telegram_request("tg-webhook-secret-3e8b1f0a9c7e");
    assert!(telegram_in::check_secret(&valid, &secret).is_ok());
    assert!(telegram_in::check_secret(&forged, &secret).is_err());
    for (name, request) in [
        ("telegram_secret_token", &valid),
        ("telegram_secret_token_forged", &forged),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| telegram_in::check_secret(black_box(request), &secret).is_ok())
        });
    }

    group.finish();
}

// ---------------------------------------------------------------------------------------------
// parse/*
// ---------------------------------------------------------------------------------------------

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");

    for (name, body) in [
        ("liveperson_content_event", lp_content_body()),
        ("liveperson_rich_content_event", lp_rich_body()),
        ("liveperson_accept_status_event", lp_accept_status_body()),
        ("liveperson_chat_state_event", lp_chat_state_body()),
        (
            "liveperson_ex_conversation_change",
            lp_ex_conversation_body(false),
        ),
    ] {
        let parsed = webhook::parse(body.as_bytes()).expect("fixture parses");
        assert!(
            matches!(
                parsed.changes.as_slice(),
                [NotificationChange::Message(_) | NotificationChange::Conversation(_)]
            ),
            "{name}: {parsed:?}"
        );
        group.bench_function(name, |b| {
            b.iter(|| webhook::parse(black_box(body.as_bytes())))
        });
    }

    let body = slack_event_body();
    assert!(matches!(
        slack_in::parse_events(body.as_bytes(), false),
        Ok(slack_in::EventsBody::Message(_))
    ));
    group.bench_function("slack_event_callback", |b| {
        b.iter(|| slack_in::parse_events(black_box(body.as_bytes()), false))
    });

    let body = telegram_update_body();
    assert!(
        telegram_in::parse_update(body.as_bytes())
            .expect("fixture parses")
            .message
            .is_some()
    );
    group.bench_function("telegram_update", |b| {
        b.iter(|| telegram_in::parse_update(black_box(body.as_bytes())))
    });

    // Kannel: query string to pairs, the token check, then the MO message.
    let request = kannel_mo_request();
    let token = Secret::new(KANNEL_TOKEN);
    let mo = |request: &HttpRequest| {
        let pairs = http_util::query_pairs_raw(request);
        kannel::check_token(&pairs, &token)?;
        kannel::parse_mo(&pairs)
    };
    assert_eq!(mo(&request).expect("fixture parses").text, SMS_TEXT);
    group.bench_function("kannel_mo_query", |b| b.iter(|| mo(black_box(&request))));

    // Vonage: the form body to pairs (needed by the signature check too), then the message.
    let body = vonage_form_body(vonage_sig::SignatureMethod::Md5Hash);
    let inbound = |body: &[u8]| {
        let pairs = vonage_inbound::form_pairs(body);
        vonage_inbound::parse_inbound(&pairs)
    };
    assert_eq!(inbound(&body).expect("fixture parses").text, SMS_TEXT);
    group.bench_function("vonage_inbound_form", |b| {
        b.iter(|| inbound(black_box(&body)))
    });

    group.finish();
}

// ---------------------------------------------------------------------------------------------
// translate/*
// ---------------------------------------------------------------------------------------------

/// The Send API requests of one consumer event in an open dialog: the router's own plan
/// (`switchboard_liveperson::translate::plan`), the click table's entry given (the router reads
/// it from the store), and the requests of an upload as `Engine::upload_file` and the worker
/// make them (the upload URL, then, with the path LivePerson's answer names, the
/// `hosted/file` event); the PUT of the bytes is I/O and not measured.
fn send_requests(event: &InboundEvent, to: &DialogRef, clicked: &ClickAction) -> Vec<SendRequest> {
    let steps = translate::plan(event, to, Some(clicked)).unwrap_or_default();
    let mut requests = Vec::with_capacity(steps.len() + 1);
    for step in steps {
        match step {
            Step::Send { request, .. } => requests.push(request),
            Step::Upload(upload) => {
                requests.push(SendRequest::UploadUrl {
                    size: upload.bytes.len(),
                    file_type: upload.file_type.to_owned(),
                });
                requests.push(upload.published(UPLOADED_PATH.into()));
            }
        }
    }
    requests
}

/// A consumer event to the bodies the engine POSTs (`SendRequest::to_json`, then bytes, as
/// `Engine::send` does).
fn inbound_to_send_bytes(
    event: &InboundEvent,
    to: &DialogRef,
    clicked: &ClickAction,
) -> Vec<Vec<u8>> {
    send_requests(event, to, clicked)
        .iter()
        .map(|request| serde_json::to_vec(&request.to_json(REQUEST_ID)).unwrap_or_default())
        .collect()
}

/// A 12,000-character consumer text: split in three SEND requests (docs/protocol/liveperson.md §9: 5,000 at most).
fn long_text() -> String {
    let mut text = String::new();
    while text.len() < 12_000 {
        text.push_str(CONSUMER_TEXT);
        text.push('\n');
    }
    text.truncate(12_000);
    text
}

fn translate(c: &mut Criterion) {
    let mut group = c.benchmark_group("translate");

    // Canonical inbound event -> Send API request bodies.
    let main = DialogRef::main(CONVERSATION);
    let survey = DialogRef {
        conversation_id: CONVERSATION.into(),
        dialog_id: SURVEY_DIALOG.into(),
    };
    let rich = structured::translate_rich(
        &json!({ "type": "vertical", "elements": [
            { "type": "text", "text": "Which size?" },
            { "type": "button", "title": "38", "click": { "actions": [{ "type": "publishText", "text": "38" }],
                "metadata": [{ "type": "ExternalId", "id": "size-38" }] } },
            { "type": "button", "title": "40", "click": { "actions": [{ "type": "publishText", "text": "40" }],
                "metadata": [{ "type": "ExternalId", "id": "size-40" }] } } ] }),
        None,
    );
    let clicked = rich
        .clicks
        .iter()
        .find(|c| c.button_id == "b1")
        .expect("the card's first button")
        .clone();
    let event = |body: Inbound| {
        InboundEvent::new(consumer(), body)
            .with_platform_id("6f3c2a1e-8d4b-4c9f-a2e7-5b1d0c3f9e8a")
            .with_profile(profile())
            .at_ms(1_712_345_678_000)
    };
    let photo = Attachment {
        name: Some("IMG_2041.jpeg".into()),
        mime: "image/jpeg".into(),
        caption: Some("the label on the box".into()),
        body: AttachmentBody::Inline {
            data: Bytes::from(vec![0xa5_u8; 180 * 1024]),
        },
    };
    let inbound = [
        (
            "inbound_text_to_send",
            event(Inbound::text(CONSUMER_TEXT)),
            &main,
            1,
        ),
        (
            "inbound_text_12k_to_send",
            event(Inbound::text(long_text())),
            &main,
            3,
        ),
        (
            "inbound_file_to_send",
            event(Inbound::File { file: photo }),
            &main,
            2,
        ),
        (
            "inbound_chat_state_to_send",
            event(Inbound::ChatState {
                state: ChatState::Composing,
            }),
            &main,
            1,
        ),
        (
            "inbound_receipt_to_send",
            event(Inbound::Receipt {
                status: ReceiptStatus::Read,
                messages: (5..8).map(|s| MessageRef::new(message_ref(s))).collect(),
            }),
            &main,
            1,
        ),
        (
            "inbound_choice_to_send",
            event(Inbound::Choice {
                message: MessageRef::new(message_ref(7)),
                choice: "b1".into(),
            }),
            &main,
            2,
        ),
        (
            "inbound_survey_to_send",
            event(Inbound::Survey {
                answer: SurveyAnswer {
                    csat: Some(5),
                    resolved: Some(true),
                },
            }),
            &survey,
            1,
        ),
        ("inbound_close_to_send", event(Inbound::Close), &main, 1),
        (
            "inbound_profile_to_send",
            event(Inbound::ProfileUpdate),
            &main,
            1,
        ),
    ];
    for (name, event, to, requests) in &inbound {
        assert_eq!(
            inbound_to_send_bytes(event, to, &clicked).len(),
            *requests,
            "{name}"
        );
        group.bench_function(*name, |b| {
            b.iter(|| inbound_to_send_bytes(black_box(event), to, &clicked))
        });
    }

    // LivePerson messaging change -> canonical outbound event (the webhook handler's filter,
    // `agent_event`, and the event id the runtime gives it, `translate::message_ref`).
    for (name, body) in [
        ("lp_text_to_outbound", lp_content_body()),
        ("lp_rich_to_outbound", lp_rich_body()),
        ("lp_survey_question_to_outbound", lp_survey_question_body()),
        ("lp_receipt_to_outbound", lp_accept_status_body()),
        ("lp_chat_state_to_outbound", lp_chat_state_body()),
    ] {
        let change = message_change(&body);
        let to_outbound = |change: &MessageChange| {
            if !change.is_for_consumer(Some(LP_CONSUMER_ID)) {
                return None;
            }
            let event = agent_event(change)?;
            let dialog = DialogRef {
                conversation_id: change.conversation_id.clone(),
                dialog_id: change.dialog_id.clone(),
            };
            let id = change.sequence.map(|s| translate::message_ref(&dialog, s));
            Some((id, event))
        };
        assert!(to_outbound(&change).is_some(), "{name}");
        group.bench_function(name, |b| b.iter(|| to_outbound(black_box(&change))));
    }

    // ExConversation close -> `Outbound::Closed` (`translate::closed_event`, as the webhook
    // handler calls it; its store look-ups are left out).
    let change = conversation_change(&lp_ex_conversation_body(true));
    assert!(translate::closed_event(&change).is_some());
    group.bench_function("lp_close_to_outbound", |b| {
        b.iter(|| translate::closed_event(black_box(&change)))
    });

    // Canonical outbound event -> what a channel sends.
    let card = structured::translate_rich(
        match &message_change(&lp_rich_body()).event {
            webhook::MessageEvent::Rich { content, .. } => content,
            other => panic!("not rich content: {other:?}"),
        },
        Some(&json!({ "type": "quickReplies", "replies": [
            { "type": "button", "title": "Yes", "click": { "actions": [{ "type": "publishText", "text": "Yes" }] } },
            { "type": "button", "title": "No", "click": { "actions": [{ "type": "publishText", "text": "No" }] } } ] })),
    )
    .content;
    let id = message_ref(7);
    group.bench_function("outbound_rich_to_slack_blocks", |b| {
        b.iter(|| slack_out::blocks(black_box(&id), black_box(&card)))
    });
    let outbound = Outbound::Rich {
        content: card.clone(),
    };
    group.bench_function("outbound_rich_to_sms_text", |b| {
        b.iter(|| switchboard_channel_sms::render(black_box(&outbound)))
    });

    // SMS coding and part count of ~1 KB texts, split under the default cap of 6 parts.
    let gsm7: String = AGENT_TEXT.repeat(2).chars().take(1000).collect();
    let ucs2: String = "Здравствуйте, Анна! Ваш заказ уже в пути 🚚. ".repeat(12);
    assert!(encoding::is_gsm7(&gsm7) && !encoding::is_gsm7(&ucs2));
    for (name, text) in [("sms_split_gsm7_1k", &gsm7), ("sms_split_ucs2_1k", &ucs2)] {
        assert!(encoding::split(text, 6).len() > 1, "{name}");
        group.bench_function(name, |b| b.iter(|| encoding::split(black_box(text), 6)));
    }

    group.finish();
}

// ---------------------------------------------------------------------------------------------
// outbox/*
// ---------------------------------------------------------------------------------------------

/// Dedup keys live this long for channel events (the runtime's `INBOUND_DEDUP_TTL`).
const DEDUP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The worker's lease (`RoutingSettings::default().lease`).
const LEASE: Duration = Duration::from_secs(120);
/// The worker's claim size (`RoutingSettings::default().batch`).
const CLAIM_BATCH: usize = 64;
const WORKER: &str = "sb-0b7e4c1a-2d3f-4a5b-8c6d-7e8f9a0b1c2d";
/// Consumers whose events share the queues.
const CONSUMERS: u64 = 100;

/// SQLite files in a temporary directory (removed at the end), one per benchmark so that
/// one's rows do not slow another down.
struct Outbox {
    dir: tempfile::TempDir,
    /// The to-LivePerson job of a consumer's text, as `StoreSink` stores it.
    payload: Value,
    /// Distinguishes dedup keys and spreads items over the consumers.
    counter: Cell<u64>,
    /// Every store opened, to close them at the end.
    opened: RefCell<Vec<Store>>,
    /// The PostgreSQL database of the `postgres_*` benchmarks, if one is named.
    postgres: Option<String>,
    /// The schemas made there, to drop them at the end.
    schemas: RefCell<Vec<String>>,
}

impl Outbox {
    fn new() -> Outbox {
        let event = InboundEvent::new(consumer(), Inbound::text(CONSUMER_TEXT))
            .with_platform_id("6f3c2a1e-8d4b-4c9f-a2e7-5b1d0c3f9e8a")
            .with_profile(profile())
            .at_ms(1_712_345_678_000);
        Outbox {
            dir: tempfile::tempdir().expect("a temporary directory"),
            payload: json!({
                "job": "inbound",
                "event": serde_json::to_value(&event).expect("events serialize"),
                "done": 0,
            }),
            counter: Cell::new(0),
            opened: RefCell::new(Vec::new()),
            postgres: std::env::var(POSTGRES_URL_VAR)
                .ok()
                .filter(|url| !url.is_empty()),
            schemas: RefCell::new(Vec::new()),
        }
    }

    /// Opens `{name}.db` as the product does (`Store::connect`: WAL, `synchronous=NORMAL`)
    /// with `backlog` items waiting in the to-LivePerson outbox.
    async fn store(&self, name: &str, backlog: u64) -> Store {
        let path = self.dir.path().join(format!("{name}.db"));
        self.open(&format!("sqlite://{}", path.display()), backlog)
            .await
    }

    /// A store in a fresh schema of the PostgreSQL database, with `backlog` items waiting;
    /// `None` when no database is named (the `postgres_*` benchmarks then measure nothing).
    async fn postgres_store(&self, name: &str, backlog: u64) -> Option<Store> {
        use sqlx::Connection;
        let admin = self.postgres.as_deref()?;
        let schema = format!("sb_bench_{name}_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .expect("the PostgreSQL database answers");
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .expect("an old schema is dropped");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("the schema is made");
        self.schemas.borrow_mut().push(schema.clone());
        let separator = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
        Some(self.open(&url, backlog).await)
    }

    async fn open(&self, url: &str, backlog: u64) -> Store {
        let store = Store::connect(url).await.expect("the store opens");
        let items: Vec<NewItem> = (0..backlog).map(|_| self.next().0).collect();
        for chunk in items.chunks(500) {
            store
                .enqueue(Direction::ToLivePerson, chunk, None)
                .await
                .expect("the backlog is stored");
        }
        self.opened.borrow_mut().push(store.clone());
        store
    }

    /// The next item (of each of the CONSUMERS consumers in turn), and a fresh dedup key as
    /// `StoreSink` derives it from the platform id.
    fn next(&self) -> (NewItem, String) {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let item = NewItem::new(
            format!("8:sms-main:+1555000{:04}", n % CONSUMERS),
            self.payload.clone(),
        );
        (item, format!("in:8:sms-main:{n:016x}"))
    }

    async fn close(self) {
        use sqlx::Connection;
        let stores = self.opened.take();
        for store in &stores {
            store.close().await;
        }
        drop(self.dir);
        if let Some(admin) = &self.postgres
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            for schema in self.schemas.take() {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// The environment variable naming the PostgreSQL database of the `postgres_*` benchmarks
/// (the tests' own).
const POSTGRES_URL_VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";

/// 64 enqueues at once, each with its dedup key, as when many webhooks arrive together.
async fn enqueue_64_concurrent(outbox: &Outbox, store: &Store) {
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let (item, key) = outbox.next();
            async move {
                store
                    .enqueue(
                        Direction::ToLivePerson,
                        std::slice::from_ref(&item),
                        Some((&key, LEASE)),
                    )
                    .await
                    .expect("enqueue")
            }
        })
        .collect();
    futures::future::join_all(calls).await;
}

/// The workers' steady state under load, `iters` times: claim up to 64 free heads, then
/// complete them one after the other or, `together`, all at once (as the workers of 64
/// consumers finishing together do); the outbox topped up (untimed) after each round.
async fn claim_64_complete(outbox: &Outbox, store: &Store, iters: u64, together: bool) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let claimed = store
            .claim(Direction::ToLivePerson, WORKER, 64, LEASE)
            .await
            .expect("claim");
        if together {
            let completions = claimed.iter().map(|item| store.complete(item.id, WORKER));
            for done in futures::future::join_all(completions).await {
                assert!(done.expect("complete"));
            }
        } else {
            for item in &claimed {
                assert!(store.complete(item.id, WORKER).await.expect("complete"));
            }
        }
        spent += start.elapsed();
        top_up(outbox, store, claimed.len()).await;
    }
    spent
}

/// `store` with 64 of its heads leased for an hour by another worker: consumers whose
/// events are in flight elsewhere.
async fn with_64_in_flight(store: Store) -> Store {
    let in_flight = store
        .claim(
            Direction::ToLivePerson,
            "busy-worker",
            64,
            Duration::from_secs(3600),
        )
        .await
        .expect("claim");
    assert_eq!(in_flight.len(), 64);
    store
}

/// Enqueues `n` more items (untimed), so that the backlog stays as it was.
async fn top_up(outbox: &Outbox, store: &Store, n: usize) {
    let items: Vec<NewItem> = (0..n).map(|_| outbox.next().0).collect();
    store
        .enqueue(Direction::ToLivePerson, &items, None)
        .await
        .expect("enqueue");
}

/// Claims the head item and completes it, `iters` times, the outbox topped up (untimed)
/// before each claim so that its backlog stays the same.
async fn claim_complete(outbox: &Outbox, store: &Store, iters: u64) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let (item, _) = outbox.next();
        store
            .enqueue(Direction::ToLivePerson, &[item], None)
            .await
            .expect("enqueue");
        let start = Instant::now();
        let claimed = store
            .claim(Direction::ToLivePerson, WORKER, 1, LEASE)
            .await
            .expect("claim");
        let id = claimed.first().expect("an item is claimable").id;
        assert!(store.complete(id, WORKER).await.expect("complete"));
        spent += start.elapsed();
    }
    spent
}

fn outbox(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // Created on first use, so that runs filtered to other benchmarks do not pay for them.
    let mut outbox: Option<Outbox> = None;
    let mut group = c.benchmark_group("outbox");

    // One consumer event, with its dedup key, in its own transaction (what `StoreSink` does).
    let mut store = None;
    group.bench_function("sqlite_enqueue_one", |b| {
        let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
        let store: &Store = store.get_or_insert_with(|| rt.block_on(outbox.store("one", 0)));
        b.to_async(&rt).iter(|| {
            let (item, key) = outbox.next();
            async move {
                let outcome = store
                    .enqueue(Direction::ToLivePerson, &[item], Some((&key, DEDUP_TTL)))
                    .await
                    .expect("enqueue");
                assert!(matches!(outcome, Enqueued::Stored(_)));
            }
        })
    });

    // Ten items in one transaction (the store's batch API; no dedup key).
    let mut store = None;
    group.bench_function("sqlite_enqueue_batch_10", |b| {
        let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
        let store: &Store = store.get_or_insert_with(|| rt.block_on(outbox.store("batch", 0)));
        b.to_async(&rt).iter(|| {
            let items: Vec<NewItem> = (0..10).map(|_| outbox.next().0).collect();
            async move {
                store
                    .enqueue(Direction::ToLivePerson, &items, None)
                    .await
                    .expect("enqueue")
            }
        })
    });

    // Ten consumer events submitted at once, each in its own transaction with its dedup key:
    // how `StoreSink::submit` stores a batch today.
    let mut store = None;
    group.bench_function("sqlite_enqueue_10_one_by_one", |b| {
        let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
        let store: &Store = store.get_or_insert_with(|| rt.block_on(outbox.store("sink", 0)));
        b.to_async(&rt).iter(|| {
            let batch: Vec<(NewItem, String)> = (0..10).map(|_| outbox.next()).collect();
            async move {
                for (item, key) in batch {
                    store
                        .enqueue(Direction::ToLivePerson, &[item], Some((&key, DEDUP_TTL)))
                        .await
                        .expect("enqueue");
                }
            }
        })
    });

    // One event's whole trip through an otherwise idle outbox: enqueue with its dedup key,
    // the worker's claim (up to CLAIM_BATCH items), complete.
    let mut store = None;
    group.bench_function("sqlite_enqueue_claim_complete", |b| {
        let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
        let store: &Store = store.get_or_insert_with(|| rt.block_on(outbox.store("trip", 0)));
        b.to_async(&rt).iter(|| {
            let (item, key) = outbox.next();
            async move {
                store
                    .enqueue(Direction::ToLivePerson, &[item], Some((&key, DEDUP_TTL)))
                    .await
                    .expect("enqueue");
                let claimed = store
                    .claim(Direction::ToLivePerson, WORKER, CLAIM_BATCH, LEASE)
                    .await
                    .expect("claim");
                for item in claimed {
                    assert!(store.complete(item.id, WORKER).await.expect("complete"));
                }
            }
        })
    });

    // 64 enqueues at once, as when many webhooks or consumers arrive together: on SQLite
    // they share transactions (group commit).
    let mut concurrent = None;
    group.bench_function("sqlite_enqueue_64_concurrent", |b| {
        let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
        let store: &Store =
            concurrent.get_or_insert_with(|| rt.block_on(outbox.store("concurrent", 0)));
        b.to_async(&rt)
            .iter(|| enqueue_64_concurrent(outbox, store))
    });

    // Claim + complete of the head item with 1,000 or 10,000 items (of CONSUMERS consumers)
    // waiting, as after an outage: a claim's cost grows with the backlog.
    for (name, backlog) in [
        ("sqlite_claim_complete_one_backlog_1k", 1_000),
        ("sqlite_claim_complete_one_backlog_10k", 10_000),
    ] {
        let mut store = None;
        group.bench_function(name, |b| {
            let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
            let store: &Store =
                store.get_or_insert_with(|| rt.block_on(outbox.store(name, backlog)));
            b.to_async(&rt)
                .iter_custom(|iters| claim_complete(outbox, store, iters))
        });
    }

    // The worker's steady state under load: 10,000 waiting over CONSUMERS consumers, 64 of
    // whose heads are in flight (leased by another worker); claim the free heads and complete
    // them (the outbox topped up, untimed, after each round).
    let mut busy = None;
    group.bench_function(
        "sqlite_claim_complete_free_heads_64_in_flight_backlog_10k",
        |b| {
            let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
            let store: &Store = busy.get_or_insert_with(|| {
                rt.block_on(async { with_64_in_flight(outbox.store("busy", 10_000).await).await })
            });
            b.to_async(&rt)
                .iter_custom(|iters| claim_64_complete(outbox, store, iters, false))
        },
    );

    // The grouped completions, on a file and on PostgreSQL (where each write alone would be a
    // transaction of its own, three round trips and a WAL flush).
    let mut sqlite = None;
    group.bench_function("sqlite_claim_64_complete_together_backlog_10k", |b| {
        let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
        let store: &Store =
            sqlite.get_or_insert_with(|| rt.block_on(outbox.store("together", 10_000)));
        b.to_async(&rt)
            .iter_custom(|iters| claim_64_complete(outbox, store, iters, true))
    });

    // PostgreSQL: one event stored with its dedup key; 64 at once; the grouped completions.
    let mut pg_one = None;
    let mut pg_concurrent = None;
    let mut pg_together = None;
    let mut pg_busy = None;
    let has_postgres = std::env::var(POSTGRES_URL_VAR).is_ok_and(|url| !url.is_empty());
    if !has_postgres {
        eprintln!("outbox/postgres_*: skipped, set {POSTGRES_URL_VAR} to a PostgreSQL database");
    }
    if has_postgres {
        group.bench_function("postgres_enqueue_one", |b| {
            let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
            let store: &Store = pg_one.get_or_insert_with(|| {
                rt.block_on(outbox.postgres_store("one", 0))
                    .expect("a PostgreSQL database")
            });
            b.to_async(&rt).iter(|| {
                let (item, key) = outbox.next();
                async move {
                    store
                        .enqueue(Direction::ToLivePerson, &[item], Some((&key, DEDUP_TTL)))
                        .await
                        .expect("enqueue")
                }
            })
        });
        group.bench_function("postgres_enqueue_64_concurrent", |b| {
            let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
            let store: &Store = pg_concurrent.get_or_insert_with(|| {
                rt.block_on(outbox.postgres_store("concurrent", 0))
                    .expect("a PostgreSQL database")
            });
            b.to_async(&rt)
                .iter(|| enqueue_64_concurrent(outbox, store))
        });
        group.bench_function("postgres_claim_64_complete_together_backlog_10k", |b| {
            let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
            let store: &Store = pg_together.get_or_insert_with(|| {
                rt.block_on(outbox.postgres_store("together", 10_000))
                    .expect("a PostgreSQL database")
            });
            b.to_async(&rt)
                .iter_custom(|iters| claim_64_complete(outbox, store, iters, true))
        });
        group.bench_function(
            "postgres_claim_complete_free_heads_64_in_flight_backlog_10k",
            |b| {
                let outbox: &Outbox = outbox.get_or_insert_with(Outbox::new);
                let store: &Store = pg_busy.get_or_insert_with(|| {
                    rt.block_on(async {
                        let store = outbox.postgres_store("busy", 10_000).await;
                        with_64_in_flight(store.expect("a PostgreSQL database")).await
                    })
                });
                b.to_async(&rt)
                    .iter_custom(|iters| claim_64_complete(outbox, store, iters, false))
            },
        );
    }

    group.finish();
    if let Some(outbox) = outbox {
        rt.block_on(outbox.close());
    }
}

criterion_group!(benches, signature, parse, translate, outbox);
criterion_main!(benches);
