//! The engine against the simulator's injected misbehaviour: malformed answers, requests that
//! were acted on although the answer never came, `Retry-After` dates, moving or missing Domain
//! API hosts, clock skew, an IdP answering 200, an account without file sharing.

use std::time::Duration;

use bytes::Bytes;
use switchboard_core::Secret;
use switchboard_liveperson::{
    DialogRef, Engine, EngineConfig, EngineError, MAY_HAVE_ARRIVED, SendRequest,
};
use switchboard_lp_sim::{
    FaultRequest, MalformedReply, PathClass, ScriptedFault, SimConfig, SimHandle, Simulator,
};

fn engine_for(sim: &SimHandle, tune: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut config = EngineConfig::new(
        sim.account_id(),
        sim.client_id(),
        Secret::new(sim.client_secret()),
    )
    .with_domain_api(sim.domain_api());
    tune(&mut config);
    Engine::new(config).unwrap()
}

async fn setup(config: SimConfig) -> (SimHandle, Engine) {
    let sim = Simulator::start(config).await.unwrap();
    let engine = engine_for(&sim, |_| {});
    (sim, engine)
}

fn text(to: &DialogRef, text: &str) -> SendRequest {
    SendRequest::Text {
        to: to.clone(),
        text: text.into(),
        metadata: None,
    }
}

/// How many times `text` reached the conversation.
fn copies(sim: &SimHandle, conversation: &str, text: &str) -> usize {
    sim.conversation(conversation)
        .map(|c| {
            c.consumer_messages()
                .filter(|t| t.event["message"] == text)
                .count()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn malformed_send_answers_are_success_or_may_have_arrived_never_a_refusal() {
    let (sim, engine) = setup(SimConfig::default()).await;
    let mut consumer = engine.consumer_identity("ext-malformed").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let to = DialogRef::main(&conversation);

    // Readable although unusual (docs/protocol/liveperson.md §4.2): a success.
    sim.malform_next(PathClass::Send, 1, MalformedReply::NumericCode);
    let numeric = engine
        .send(&mut consumer, &text(&to, "numeric"))
        .await
        .unwrap();
    assert_eq!(numeric.sequence, Some(0));
    sim.malform_next(PathClass::Send, 1, MalformedReply::StringBody);
    let string_body = engine
        .send(&mut consumer, &text(&to, "string body"))
        .await
        .unwrap();
    assert_eq!(
        string_body.sequence, None,
        "a string body carries no sequence"
    );

    // Unreadable: retryable, and flagged as possibly acted on (it was).
    for (reply, message) in [
        (MalformedReply::NonJson, "non json"),
        (MalformedReply::EmptyArray, "empty array"),
        (MalformedReply::JsonString, "json string"),
    ] {
        sim.malform_next(PathClass::Send, 1, reply);
        let e = engine
            .send(&mut consumer, &text(&to, message))
            .await
            .unwrap_err();
        assert!(e.is_retryable() && e.may_have_arrived(), "{reply:?}: {e:?}");
        assert!(e.to_string().contains(MAY_HAVE_ARRIVED));
        assert_eq!(copies(&sim, &conversation, message), 1, "{reply:?}");
    }

    // Errors with an integer code are still recognised (docs/protocol/liveperson.md §12.3).
    sim.agent_close(&conversation, false).unwrap();
    sim.malform_next(PathClass::Send, 1, MalformedReply::NumericCode);
    let closed = engine
        .send(&mut consumer, &text(&to, "late"))
        .await
        .unwrap_err();
    assert_eq!(closed, EngineError::ConversationClosed);

    // CONVERSATION with integer codes creates; with an unreadable answer it may have.
    sim.malform_next(PathClass::Conversation, 1, MalformedReply::NumericCode);
    let second = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    assert_ne!(second, conversation);
    sim.agent_close(&second, false).unwrap();
    sim.malform_next(PathClass::Conversation, 1, MalformedReply::EmptyArray);
    let lost = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap_err();
    assert!(lost.may_have_arrived(), "{lost:?}");
    // It was created: asking again meets LivePerson's one-open-conversation rule.
    let again = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap_err();
    assert!(
        matches!(again, EngineError::AlreadyOpen { .. }),
        "{again:?}"
    );
    assert_eq!(sim.conversations().len(), 3);
}

#[tokio::test]
async fn a_timed_out_send_may_have_arrived_a_refused_connection_did_not() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    // A timeout long enough for the calls before it on a loaded machine; the SEND's answer
    // is held far longer.
    let engine = engine_for(&sim, |c| c.request_timeout = Duration::from_secs(2));
    let mut consumer = engine.consumer_identity("ext-timeout").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let to = DialogRef::main(&conversation);
    sim.delay_next(PathClass::Send, 1, Duration::from_secs(10));
    let e = engine
        .send(&mut consumer, &text(&to, "committed"))
        .await
        .unwrap_err();
    assert!(e.may_have_arrived(), "{e:?}");
    assert_eq!(copies(&sim, &conversation, "committed"), 1);

    // The Domain API points SEND at a closed port: nothing can have arrived, and the answer
    // is forgotten, so that the next call asks the Domain API again.
    let services = engine.services().await.unwrap();
    sim.set_domain_host("asyncMessagingEnt", Some("127.0.0.1:9"));
    let fresh = engine_for(&sim, |_| {});
    let mut consumer2 = fresh.consumer_identity("ext-refused").await.unwrap();
    let e = fresh
        .create_conversation(&mut consumer2, None)
        .await
        .unwrap_err();
    assert!(e.is_retryable() && !e.may_have_arrived(), "{e:?}");
    sim.set_domain_host("asyncMessagingEnt", None);
    fresh
        .create_conversation(&mut consumer2, None)
        .await
        .expect("re-resolved after the connection failure");
    assert_eq!(fresh.services().await.unwrap(), services);
}

#[tokio::test]
async fn the_domain_answer_is_asked_again_after_its_ttl_and_follows_a_moved_host() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let engine = engine_for(&sim, |c| c.domain_ttl = Duration::from_millis(200));
    let mut consumer = engine.consumer_identity("ext-ttl").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let to = DialogRef::main(&conversation);
    engine
        .send(&mut consumer, &text(&to, "before"))
        .await
        .unwrap();
    let own = sim.public_host();
    assert_eq!(sim.received_requests().last().unwrap().host, Some(own));
    // LivePerson moves the messaging host (here: another name for the same server).
    let moved = format!("localhost:{}", sim.addr().port());
    sim.set_domain_host("asyncMessagingEnt", Some(&moved));
    tokio::time::sleep(Duration::from_millis(400)).await;
    engine
        .send(&mut consumer, &text(&to, "after"))
        .await
        .unwrap();
    assert_eq!(sim.received_requests().last().unwrap().host, Some(moved));
}

#[tokio::test]
async fn a_service_missing_from_the_domain_api_is_retried_not_refused() {
    let (sim, engine) = setup(SimConfig::default()).await;
    sim.set_domain_missing("asyncMessagingEnt", true);
    let e = engine.check_ready().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("asyncMessagingEnt"), "{e}");
    sim.set_domain_missing("asyncMessagingEnt", false);
    engine.check_ready().await.unwrap();

    // swift is optional: without it, files fail but nothing else does.
    sim.set_domain_missing("swift", true);
    let engine = engine_for(&sim, |_| {});
    assert_eq!(engine.services().await.unwrap().swift, None);
    let mut consumer = engine.consumer_identity("ext-noswift").await.unwrap();
    engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let e = engine
        .upload_file(&mut consumer, "PNG", Bytes::from_static(b"\x89PNG"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("swift"), "{e}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let (sim, engine) = setup(SimConfig::default()).await;
    let mut consumer = engine.consumer_identity("ext-date").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    sim.apply_faults(FaultRequest {
        fail_next: Some(ScriptedFault {
            class: PathClass::Send,
            count: 1,
            status: 429,
            retry_after: Some(120),
            retry_after_http_date: true,
        }),
        ..Default::default()
    });
    let e = engine
        .send(&mut consumer, &text(&DialogRef::main(&conversation), "x"))
        .await
        .unwrap_err();
    let EngineError::Retryable {
        after: Some(after),
        rate_limited: true,
        ..
    } = e
    else {
        panic!("{e:?}");
    };
    // Whole seconds on the wire, and the clock moved on while it travelled.
    assert!((60..=120).contains(&after.as_secs()), "{after:?} for 120 s");
}

#[tokio::test]
async fn clock_skew_does_not_make_a_fresh_token_look_expired() {
    let (sim, engine) = setup(SimConfig::default()).await;
    // LivePerson's clock more than an hour behind ours: by our clock every token it issues
    // has expired before it arrives. Its own lifetime (exp - iat) still holds.
    sim.set_clock_skew(-4000);
    let mut consumer = engine.consumer_identity("ext-skew").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let to = DialogRef::main(&conversation);
    for i in 0..3 {
        engine
            .send(&mut consumer, &text(&to, &format!("skewed {i}")))
            .await
            .unwrap();
    }
    assert_eq!(engine.app_jwt_fetches(), 1, "one token served every call");
}

#[tokio::test]
async fn an_idp_answering_200_instead_of_201_is_accepted() {
    let (sim, engine) = setup(SimConfig::default()).await;
    sim.apply_faults(FaultRequest {
        idp_status_200: Some(true),
        ..Default::default()
    });
    let consumer = engine.consumer_identity("ext-200").await.unwrap();
    assert_eq!(consumer.lp_consumer_id.len(), 64);
}

#[tokio::test]
async fn an_account_without_file_sharing_refuses_uploads_distinctly() {
    let (_sim, engine) = setup(SimConfig {
        file_sharing_enabled: false,
        ..SimConfig::default()
    })
    .await;
    let mut consumer = engine.consumer_identity("ext-nofiles").await.unwrap();
    engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let e = engine
        .upload_file(&mut consumer, "PNG", Bytes::from_static(b"\x89PNG"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, EngineError::FileSharingDisabled { .. }),
        "{e:?}"
    );
    assert!(!e.is_retryable());
}
