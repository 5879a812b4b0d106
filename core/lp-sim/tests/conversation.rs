//! CONVERSATION and SEND behaviour.

use serde_json::json;
use switchboard_lp_sim::SimConfig;

use crate::common::{Client, start, start_default, text};

#[tokio::test]
async fn create_and_send_with_shared_sequence() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let app = c.app_jwt().await;
    let jws = c.jws(&app, "alice").await;
    let r = c.create(&app, &jws).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body[0],
        json!({"code": "OK", "body": {"msg": "OK User Profile set successfully"}, "reqId": "1,"})
    );
    assert_eq!(r.body[1]["code"], "OK");
    assert_eq!(r.body[1]["reqId"], "2,");
    let conv = r.body[1]["body"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();

    let r = c.send(&app, &jws, text("1", &conv, "hello")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"reqId": "1", "code": "OK", "body": {"sequence": 0}})
    );

    // Numeric id echoed as a string; chat state unsequenced.
    let typing = json!({"kind": "req", "id": 7, "type": "ms.PublishEvent",
        "body": {"dialogId": conv, "event": {"type": "ChatStateEvent", "chatState": "COMPOSING"}}});
    let r = c.send(&app, &jws, typing).await;
    assert_eq!(
        r.body,
        json!({"reqId": "7", "code": "OK", "body": {"sequence": 0}})
    );

    let agent_seq = sim.agent_send_text(&conv, "Hi, how can I help?").unwrap();
    assert_eq!(agent_seq, 1);
    let receipt = json!({"kind": "req", "id": "r", "type": "ms.PublishEvent",
        "body": {"dialogId": conv, "event": {"type": "AcceptStatusEvent", "status": "READ", "sequenceList": [1]}}});
    assert_eq!(
        c.send(&app, &jws, receipt).await.body["body"]["sequence"],
        2
    );
    assert_eq!(
        c.send(&app, &jws, text("2", &conv, "second")).await.body["body"]["sequence"],
        3
    );

    let state = sim.conversation(&conv).unwrap();
    assert_eq!(state.dialogs[0].dialog_id, conv);
    assert_eq!(state.dialogs[0].dialog_type, "MAIN");
    assert_eq!(
        state.consumer_id,
        switchboard_lp_sim::lp_consumer_id(&c.acc, "alice")
    );
    assert_eq!(state.transcript.len(), 5);
    assert!(state.transcript[1].sequence.is_none());
    assert!(
        sim.wait_for_consumer_message("second", std::time::Duration::from_secs(1))
            .await
            .is_some()
    );
    assert!(
        sim.received_requests()
            .iter()
            .any(|r| r.endpoint == "conversation")
    );
}

#[tokio::test]
async fn one_open_conversation_per_consumer_and_closed_conversation() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("bob").await;
    let lp = switchboard_lp_sim::lp_consumer_id(&c.acc, "bob");

    let again = c.create(&app, &jws).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.body[0]["code"], "OK");
    assert_eq!(
        again.body[1],
        json!({"code": "BAD_REQUEST", "reqId": "2,", "body": {"msg": format!(
            "Consumer request conversation failed: User {lp} already has open conversation. Can't open another one.")}})
    );

    let close = json!({"kind": "req", "id": "c1", "type": "cm.UpdateConversationField",
        "body": {"conversationId": conv, "conversationField": {"field": "ConversationStateField", "conversationState": "CLOSE"}}});
    let r = c.send(&app, &jws, close.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"reqId": "c1", "code": "OK", "body": {"msg": "OK Conversation resolved successfully"}})
    );
    let state = sim.conversation(&conv).unwrap();
    assert_eq!(
        (state.state.as_str(), state.stage.as_str()),
        ("CLOSE", "CLOSE")
    );
    assert_eq!(state.close_reason.as_deref(), Some("CONSUMER"));

    let r = c.send(&app, &jws, text("9", &conv, "anyone?")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"reqId": "9", "code": "BAD_REQUEST", "body": {"msg": "Bad Request, Conversation is close"}})
    );
    let r = c.send(&app, &jws, close).await;
    assert_eq!(r.body["body"]["msg"], "Bad Request, Conversation is close");

    let r = c.create(&app, &jws).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.body[1]["body"]["conversationId"], conv.as_str());
}

#[tokio::test]
async fn batch_order_and_validation_errors() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let app = c.app_jwt().await;
    let jws = c.jws(&app, "carol").await;
    let wrong_order = json!([
        {"kind": "req", "id": "a", "type": "cm.ConsumerRequestConversation", "body": {"brandId": c.acc}},
        {"kind": "req", "id": "b", "type": "userprofile.SetUserProfile", "body": {}}
    ]);
    let r = c
        .post_raw(
            "conversation?v=3",
            Some(&app),
            Some(&jws),
            wrong_order.to_string(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert_eq!(r.body[0]["code"], "BAD_REQUEST");
    assert_eq!(r.body[1]["code"], "OK");
    assert!(sim.conversations().is_empty());

    let not_json = c
        .post_raw("conversation?v=3", Some(&app), Some(&jws), "{nope".into())
        .await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.body["code"], "BAD_REQUEST");

    let (app, jws, conv) = c.open("carol").await;
    let long = "x".repeat(5000);
    let r = c.send(&app, &jws, text("big", &conv, &long)).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"code": "BAD_REQUEST", "body": {"msg": "Bad Request"}, "reqId": "big"})
    );

    let r = c.send(&app, &jws, text("u", "no-such-dialog", "x")).await;
    assert_eq!(r.status, 400);
    let r = c
        .send(
            &app,
            &jws,
            json!({"kind": "req", "id": "t", "type": "ms.Nope", "body": {}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .post_raw(
            "conversation/send?v=3",
            Some(&app),
            Some(&jws),
            "[1,2".into(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["code"], "BAD_REQUEST");

    // Button click: ACTION with metadata, then the text with the same metadata.
    let action = json!({"kind": "req", "id": "22", "type": "ms.PublishEvent",
        "body": {"dialogId": conv, "conversationId": conv,
                 "event": {"type": "AcceptStatusEvent", "status": "ACTION", "sequenceList": [0]}},
        "metadata": [{"type": "ExternalId", "id": "Yes-1234"}]});
    assert_eq!(c.send(&app, &jws, action).await.status, 200);
    let t = sim.conversation(&conv).unwrap().transcript;
    assert_eq!(t[0].metadata.as_ref().unwrap()[0]["id"], "Yes-1234");

    // CSAT validation.
    let csat = |v: serde_json::Value| {
        json!({"kind": "req", "id": 5, "type": "cm.UpdateConversationField",
        "body": {"conversationId": conv, "conversationField": [v]}})
    };
    let r = c.send(&app, &jws, csat(json!({"field": "CSATRate", "csatRate": 9, "csatResolutionConfirmation": true, "status": "FILLED"}))).await;
    assert_eq!(r.status, 400);
    let r = c.send(&app, &jws, csat(json!({"field": "CSATRate", "csatRate": 4, "csatResolutionConfirmation": true, "status": "FILLED"}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        sim.conversation(&conv).unwrap().csat.unwrap()["csatRate"],
        4
    );
}

#[tokio::test]
async fn consumer_close_into_post_survey() {
    let sim = start(SimConfig {
        survey_skills: vec!["*".into()],
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("dave").await;
    sim.agent_accept(&conv).unwrap();
    let close = json!({"kind": "req", "id": "c", "type": "cm.UpdateConversationField",
        "body": {"conversationId": conv, "conversationField": {"field": "ConversationStateField", "conversationState": "CLOSE"}}});
    assert_eq!(c.send(&app, &jws, close).await.status, 200);
    let s = sim.conversation(&conv).unwrap();
    assert_eq!((s.state.as_str(), s.stage.as_str()), ("CLOSE", "OPEN"));
    let survey = s.survey_dialog().unwrap().to_string();
    assert!(s.participants.iter().any(|p| p.role == "READER"));
    assert!(s.participants.iter().any(|p| p.role == "AGENT"));
    let q = s.transcript.last().unwrap();
    assert_eq!(q.dialog_id, survey);
    assert_eq!(q.metadata.as_ref().unwrap()[0]["type"], "Question");
    assert_eq!(
        q.event["quickReplies"]["replies"].as_array().unwrap().len(),
        5
    );

    // MAIN is closed; the survey dialog takes the answer.
    assert_eq!(
        c.send(&app, &jws, text("m", &conv, "x")).await.body["body"]["msg"],
        "Bad Request, Conversation is close"
    );
    // Consumer can't open another conversation while the survey is open.
    assert_eq!(c.create(&app, &jws).await.status, 400);
    let answer = json!({"kind": "req", "id": "a", "type": "ms.PublishEvent",
        "body": {"dialogId": survey, "conversationId": conv,
                 "event": {"type": "ContentEvent", "contentType": "text/plain", "message": "5"}}});
    let r = c.send(&app, &jws, answer).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let s = sim.conversation(&conv).unwrap();
    assert_eq!(s.stage, "CLOSE");
    assert_eq!(s.csat.as_ref().unwrap()["csatRate"], 5);
    assert_eq!(s.dialogs[1].closed_cause.as_deref(), Some("Completed"));
}

#[tokio::test]
async fn auto_messages_and_client_properties() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let app = c.app_jwt().await;
    let jws = c.jws(&app, "quinn").await;
    let props = r#"{"type":".ClientProperties","features":["AUTO_MESSAGES","QUICK_REPLIES"]}"#;
    let base = c.host("asyncMessagingEnt").await;
    let body = json!([
        {"kind": "req", "id": "1", "type": "userprofile.SetUserProfile",
         "body": {"authenticatedData": {"lp_sdes": [{"type": "ctmrinfo", "info": {"socialId": "123", "ctype": "vip"}}]}}},
        {"kind": "req", "id": "2", "type": "cm.ConsumerRequestConversation",
         "body": {"brandId": c.acc, "campaignInfo": {"campaignId": "99", "engagementId": "88"}, "ttrDefName": "URGENT"}}
    ]);
    let r: serde_json::Value = c
        .http
        .post(format!(
            "{base}/api/account/{}/messaging/consumer/conversation?v=3",
            c.acc
        ))
        .header("authorization", &app)
        .header("x-lp-on-behalf", &jws)
        .header("client-properties", props)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conv = r[1]["body"]["conversationId"].as_str().unwrap().to_string();
    let s = sim.conversation(&conv).unwrap();
    assert_eq!(s.campaign.as_ref().unwrap()["campaignId"], "99");
    assert_eq!(
        s.sdes["authenticatedData"]["lp_sdes"][0]["info"]["ctype"],
        "vip"
    );
    assert_eq!(
        s.client_properties.as_ref().unwrap()["features"][0],
        "AUTO_MESSAGES"
    );
    let st = c
        .http
        .post(format!(
            "{base}/api/account/{}/messaging/consumer/conversation/send?v=3",
            c.acc
        ))
        .header("authorization", &app)
        .header("x-lp-on-behalf", &jws)
        .header("client-properties", props)
        .json(&text("3", &conv, "hi"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, 200);
    let t = sim.conversation(&conv).unwrap().transcript;
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].role, "CONTROLLER");
    assert_eq!(t[1].sequence, Some(1));
}

#[tokio::test]
async fn stage_close_skips_survey_and_dialog_change_opens_it() {
    let sim = start(SimConfig {
        survey_skills: vec!["-1".into()],
        ..Default::default()
    })
    .await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("rita").await;
    let stage = json!({"kind": "req", "id": "s", "type": "cm.UpdateConversationField",
        "body": {"conversationId": conv, "conversationField": {"field": "Stage", "conversationState": "CLOSE"}}});
    assert_eq!(c.send(&app, &jws, stage).await.status, 200);
    let s = sim.conversation(&conv).unwrap();
    assert_eq!(
        (s.state.as_str(), s.stage.as_str(), s.dialogs.len()),
        ("CLOSE", "CLOSE", 1)
    );

    let r = c.create(&app, &jws).await;
    let conv2 = r.body[1]["body"]["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let dc = json!({"kind": "req", "id": "d", "type": "cm.UpdateConversationField",
        "body": {"conversationId": conv2, "conversationField": [{"field": "DialogChange", "type": "UPDATE",
            "dialog": {"dialogId": conv2, "state": "CLOSE", "closedCause": "Closed by consumer"}}]}});
    assert_eq!(c.send(&app, &jws, dc).await.status, 200);
    let s = sim.conversation(&conv2).unwrap();
    assert_eq!((s.state.as_str(), s.stage.as_str()), ("CLOSE", "OPEN"));
    let survey = s.survey_dialog().unwrap().to_string();
    // Chat states are refused in the survey dialog; closing the survey dialog ends everything.
    let typing = json!({"kind": "req", "id": "t", "type": "ms.PublishEvent",
        "body": {"dialogId": survey, "conversationId": conv2, "event": {"type": "ChatStateEvent", "chatState": "COMPOSING"}}});
    assert_eq!(c.send(&app, &jws, typing).await.status, 400);
    let dc = json!({"kind": "req", "id": "d2", "type": "cm.UpdateConversationField",
        "body": {"conversationId": conv2, "conversationField": {"field": "DialogChange", "type": "UPDATE",
            "dialog": {"dialogId": survey, "state": "CLOSE"}}}});
    assert_eq!(c.send(&app, &jws, dc).await.status, 200);
    assert_eq!(sim.conversation(&conv2).unwrap().stage, "CLOSE");
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("uma").await;
    let bodies = [
        String::new(),
        "null".into(),
        "{}".into(),
        "[]".into(),
        "[null, 3, \"x\"]".into(),
        "\u{0}\u{1}".into(),
        json!({"kind": "req", "id": {"a": 1}, "type": "ms.PublishEvent", "body": "nope"}).to_string(),
        json!({"kind": "req", "id": "1", "type": "ms.PublishEvent", "body": {"dialogId": conv, "event": {"type": "ContentEvent", "contentType": "hosted/file", "message": "x"}}}).to_string(),
        json!({"kind": "req", "id": "1", "type": "ms.PublishEvent", "body": {"dialogId": conv, "event": {"type": "AcceptStatusEvent", "status": "READ", "sequenceList": ["a"]}}}).to_string(),
        json!({"kind": "req", "id": "1", "type": "cm.UpdateConversationField", "body": {"conversationId": conv, "conversationField": [1, 2]}}).to_string(),
        json!({"kind": "req", "id": "1", "type": "ms.GenerateURLForUploadFile", "body": {"fileSize": -1, "fileType": 3}}).to_string(),
        json!({"kind": "req", "id": "1", "type": "ms.GenerateURLForDownloadFile", "body": {"relativePath": "/v1/nope"}}).to_string(),
    ];
    for path in ["conversation?v=3", "conversation/send?v=3"] {
        for b in &bodies {
            let r = c.post_raw(path, Some(&app), Some(&jws), b.clone()).await;
            assert_eq!(r.status, 400, "{path} {b:?} → {:?}", r.body);
            assert!(r.body.is_object() || r.body.is_array(), "{path} {b:?}");
        }
    }
    // Control API and swift with garbage.
    for (m, url) in [
        ("POST", format!("{}/sim/faults", sim.base_url())),
        (
            "POST",
            format!("{}/sim/conversations/{conv}/messages", sim.base_url()),
        ),
        (
            "POST",
            format!("{}/sim/conversations/{conv}/files", sim.base_url()),
        ),
        (
            "PUT",
            format!(
                "{}/v1/AUTH_async-images/x.png?temp_url_sig=zz&temp_url_expires=abc",
                sim.base_url()
            ),
        ),
        (
            "GET",
            format!("{}/v1/AUTH_async-images/x.png", sim.base_url()),
        ),
    ] {
        let r = c
            .http
            .request(m.parse().unwrap(), &url)
            .body("{\"x\": [")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{m} {url} → {}", r.status());
        assert!(
            r.json::<serde_json::Value>().await.is_ok(),
            "{m} {url} JSON body"
        );
    }
}
