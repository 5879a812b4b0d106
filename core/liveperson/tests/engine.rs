//! The engine against the simulator over real HTTP: tokens, identities, conversations, the
//! Send API's answers and the recoveries LivePerson prescribes.

use std::time::Duration;

use bytes::Bytes;
use switchboard_core::{ConsumerProfile, Secret};
use switchboard_liveperson::{
    DialogRef, Engine, EngineConfig, EngineError, SendRequest, ext_consumer_id,
};
use switchboard_lp_sim::{PathClass, SimConfig, SimHandle, Simulator};

async fn setup(config: SimConfig) -> (SimHandle, Engine) {
    let sim = Simulator::start(config).await.unwrap();
    let engine = Engine::new(
        EngineConfig::new(
            sim.account_id(),
            sim.client_id(),
            Secret::new(sim.client_secret()),
        )
        .with_domain_api(sim.domain_api()),
    )
    .unwrap();
    (sim, engine)
}

fn text(to: &DialogRef, text: &str) -> SendRequest {
    SendRequest::Text {
        to: to.clone(),
        text: text.into(),
        metadata: None,
    }
}

#[tokio::test]
async fn identity_conversation_and_messages_follow_the_protocol() {
    let (sim, engine) = setup(SimConfig::default()).await;
    let ext = ext_consumer_id("sms", "+15550001");
    let mut consumer = engine.consumer_identity(&ext).await.unwrap();
    assert_eq!(
        consumer.lp_consumer_id.len(),
        64,
        "lp_consumer_id read from the JWS"
    );
    let profile = ConsumerProfile {
        first_name: Some("Ada".into()),
        ..Default::default()
    };
    let conversation = engine
        .create_conversation(&mut consumer, Some(&profile))
        .await
        .unwrap();
    let stored = sim.conversation(&conversation).unwrap();
    assert_eq!(
        stored.consumer_id, consumer.lp_consumer_id,
        "JWS lp id == participant id"
    );
    let to = DialogRef::main(&conversation);
    let first = engine
        .send(&mut consumer, &text(&to, "hello"))
        .await
        .unwrap();
    let second = engine
        .send(&mut consumer, &text(&to, "again"))
        .await
        .unwrap();
    assert_eq!(first.sequence, Some(0));
    assert_eq!(second.sequence, Some(1));
    // A second conversation while one is open is refused as LivePerson does.
    let again = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap_err();
    assert!(
        matches!(again, EngineError::AlreadyOpen { .. }),
        "{again:?}"
    );
    // After a close, SEND says "Conversation is close".
    engine
        .send(
            &mut consumer,
            &SendRequest::Close {
                conversation_id: conversation.clone(),
                skip_survey: true,
            },
        )
        .await
        .unwrap();
    let closed = engine
        .send(&mut consumer, &text(&to, "late"))
        .await
        .unwrap_err();
    assert_eq!(closed, EngineError::ConversationClosed);
    // CSAT on the closed conversation is accepted.
    engine
        .send(
            &mut consumer,
            &SendRequest::Csat {
                conversation_id: conversation.clone(),
                rate: 5,
                resolved: true,
                status: "FILLED",
            },
        )
        .await
        .unwrap();
    // One AppJWT served every call.
    assert_eq!(engine.app_jwt_fetches(), 1);
}

/// LivePerson leaves capabilities off unless the client names them, on the CONVERSATION call
/// and every SEND (docs/protocol/liveperson.md §5.8); surveys need MULTI_DIALOG. A `conversationContext` is a
/// `SharkContext` and says so; `campaignInfo` carries the campaign with its engagement.
#[tokio::test]
async fn every_messaging_call_announces_the_default_features_and_a_typed_context() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut config = EngineConfig::new(
        sim.account_id(),
        sim.client_id(),
        Secret::new(sim.client_secret()),
    )
    .with_domain_api(sim.domain_api());
    config.routing.language = Some("de-DE".into());
    config.routing.campaign_id = Some("99999".into());
    config.routing.engagement_id = Some("888888".into());
    let engine = Engine::new(config).unwrap();
    let mut consumer = engine
        .consumer_identity(&ext_consumer_id("sms", "+15550009"))
        .await
        .unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .expect("LivePerson takes the typed context and the campaign pair");
    engine
        .send(&mut consumer, &text(&DialogRef::main(&conversation), "hi"))
        .await
        .unwrap();
    let requests = sim.received_requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let properties = request
            .client_properties
            .as_ref()
            .unwrap_or_else(|| panic!("{} without Client-Properties", request.endpoint));
        assert_eq!(properties["type"], ".ClientProperties");
        assert_eq!(
            properties["features"],
            serde_json::json!(["RICH_CONTENT", "QUICK_REPLIES", "MULTI_DIALOG"])
        );
    }
    let stored = sim.conversation(&conversation).unwrap();
    assert_eq!(
        stored.context,
        Some(serde_json::json!({ "type": "SharkContext", "lang": "de-DE" }))
    );
    assert_eq!(
        stored.campaign,
        Some(serde_json::json!({ "campaignId": "99999", "engagementId": "888888" }))
    );
    assert!(stored.announces("MULTI_DIALOG"));
}

/// Sentinel refuses a parameter given twice (RFC 6749 §3.2, as the simulator does): the token
/// request names `grant_type` once, in the form body.
#[tokio::test]
async fn the_token_request_names_grant_type_once() {
    let (_sim, engine) = setup(SimConfig::default()).await;
    engine.check_ready().await.expect("Sentinel issued a token");
    assert_eq!(engine.app_jwt_fetches(), 1);
}

#[tokio::test]
async fn a_revoked_app_jwt_is_replaced_once_and_the_call_succeeds() {
    let (sim, engine) = setup(SimConfig::default()).await;
    let mut consumer = engine.consumer_identity("ext-1").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    sim.revoke_tokens();
    let to = DialogRef::main(&conversation);
    engine
        .send(&mut consumer, &text(&to, "after revocation"))
        .await
        .unwrap();
    assert_eq!(engine.app_jwt_fetches(), 2);
}

#[tokio::test]
async fn an_invalid_consumer_jws_is_replaced_once() {
    let (sim, engine) = setup(SimConfig::default()).await;
    let mut consumer = engine.consumer_identity("ext-2").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    sim.invalidate_consumer_jws(1);
    engine
        .send(
            &mut consumer,
            &text(&DialogRef::main(&conversation), "still me"),
        )
        .await
        .unwrap();
    assert!(
        sim.wait_for_consumer_message("still me", Duration::from_secs(5))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn expiring_tokens_are_renewed_before_they_lapse() {
    // A 2-second token: renewed at half its life, so no call ever meets an expired one.
    let (_sim, engine) = setup(SimConfig {
        app_jwt_ttl_secs: 2,
        ..SimConfig::default()
    })
    .await;
    let mut consumer = engine.consumer_identity("ext-3").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let to = DialogRef::main(&conversation);
    for i in 0..3 {
        engine
            .send(&mut consumer, &text(&to, &format!("tick {i}")))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(
        engine.app_jwt_fetches() >= 2,
        "renewed: {}",
        engine.app_jwt_fetches()
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_token_fetch() {
    let (_sim, engine) = setup(SimConfig::default()).await;
    let calls = (0..16).map(|i| {
        let engine = engine.clone();
        async move { engine.consumer_identity(&format!("c{i}")).await.unwrap() }
    });
    futures::future::join_all(calls).await;
    assert_eq!(engine.app_jwt_fetches(), 1, "single flight");
}

#[tokio::test]
async fn failures_are_classified_for_the_retry_policy() {
    let (sim, engine) = setup(SimConfig::default()).await;
    let mut consumer = engine.consumer_identity("ext-4").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let to = DialogRef::main(&conversation);
    sim.fail_next(PathClass::Send, 1, 429, Some(3));
    let limited = engine
        .send(&mut consumer, &text(&to, "x"))
        .await
        .unwrap_err();
    assert_eq!(
        limited,
        EngineError::Retryable {
            reason: "Send API: 429 Too Many Requests".into(),
            after: Some(Duration::from_secs(3)),
            rate_limited: true,
            may_have_arrived: false,
        }
    );
    sim.fail_next(PathClass::Send, 1, 503, None);
    assert!(
        engine
            .send(&mut consumer, &text(&to, "x"))
            .await
            .unwrap_err()
            .is_retryable()
    );
    // Oversize requests are a permanent 400 (docs/protocol/liveperson.md §9).
    let huge = "x".repeat(6000);
    let oversize = engine
        .send(&mut consumer, &text(&to, &huge))
        .await
        .unwrap_err();
    assert!(
        matches!(oversize, EngineError::Permanent { .. }),
        "{oversize:?}"
    );
    // Bad credentials: refused, not retried in a loop.
    let bad = Engine::new(
        EngineConfig::new(
            sim.account_id(),
            sim.client_id(),
            Secret::new("wrong-secret"),
        )
        .with_domain_api(sim.domain_api()),
    )
    .unwrap();
    let refused = bad.consumer_identity("ext-5").await.unwrap_err();
    assert!(
        matches!(refused, EngineError::Unauthorized { .. }),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        !message.contains("wrong-secret"),
        "secrets never in errors: {message}"
    );
    // An unreachable Domain API is retryable.
    let down = Engine::new(
        EngineConfig::new("123", "c", Secret::new("s")).with_domain_api("http://127.0.0.1:9"),
    )
    .unwrap();
    assert!(down.check_ready().await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn consumer_images_are_uploaded_and_agent_files_downloaded() {
    let (sim, engine) = setup(SimConfig::default()).await;
    let mut consumer = engine.consumer_identity("ext-6").await.unwrap();
    let conversation = engine
        .create_conversation(&mut consumer, None)
        .await
        .unwrap();
    let png = Bytes::from_static(b"\x89PNG\r\n\x1a\nnot really an image but bytes");
    let path = engine
        .upload_file(&mut consumer, "PNG", png.clone())
        .await
        .unwrap();
    assert!(path.starts_with('/'), "{path}");
    engine
        .send(
            &mut consumer,
            &SendRequest::File {
                to: DialogRef::main(&conversation),
                relative_path: path.clone(),
                file_type: "PNG".into(),
                caption: "receipt.png".into(),
                preview: None,
            },
        )
        .await
        .unwrap();
    let downloaded = engine.download_file(&mut consumer, &path).await.unwrap();
    assert_eq!(downloaded, png);
    let published = sim.conversation(&conversation).unwrap();
    assert!(
        published
            .transcript
            .iter()
            .any(|t| t.event["contentType"] == "hosted/file"
                && t.event["message"]["relativePath"] == path.as_str()),
        "hosted/file published"
    );
}
