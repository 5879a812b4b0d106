//! The rules the simulator holds a connector to because LivePerson does (issue #17): features
//! named in `Client-Properties`, one `grant_type`, a typed `conversationContext`, both halves
//! of `campaignInfo`, the SEND limit in UTF-16 code units, survey events that name only their
//! dialog, and routing moving a conversation off skill `-1`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use switchboard_lp_sim::{AgentMessage, FaultRequest, SimConfig, SimError};

use crate::common::{Client, Receiver, kind, start, start_default, text};

fn close(conv: &str) -> Value {
    json!({"kind": "req", "id": "c", "type": "cm.UpdateConversationField",
        "body": {"conversationId": conv, "conversationField":
            {"field": "ConversationStateField", "conversationState": "CLOSE"}}})
}

fn surveyed() -> SimConfig {
    SimConfig {
        survey_skills: vec!["*".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_survey_opens_only_for_a_client_that_announced_multi_dialog() {
    let sim = start(surveyed()).await;
    let mut c = Client::new(&sim);
    c.features = Some(vec!["RICH_CONTENT", "QUICK_REPLIES"]);
    let (app, jws, conv) = c.open("no-multi-dialog").await;
    sim.agent_accept(&conv).unwrap();
    assert_eq!(c.send(&app, &jws, close(&conv)).await.status, 200);
    let s = sim.conversation(&conv).unwrap();
    assert_eq!((s.state.as_str(), s.stage.as_str()), ("CLOSE", "CLOSE"));
    assert!(s.dialogs.iter().all(|d| d.dialog_type == "MAIN"));

    // The same account and skill, with MULTI_DIALOG: the survey dialog opens.
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("multi-dialog").await;
    sim.agent_accept(&conv).unwrap();
    assert_eq!(c.send(&app, &jws, close(&conv)).await.status, 200);
    let s = sim.conversation(&conv).unwrap();
    assert_eq!((s.state.as_str(), s.stage.as_str()), ("CLOSE", "OPEN"));
    assert!(s.survey_dialog().is_some());
}

#[tokio::test]
async fn a_survey_question_carries_quick_replies_only_for_a_client_that_takes_them() {
    let sim = start(surveyed()).await;
    let mut c = Client::new(&sim);
    c.features = Some(vec!["MULTI_DIALOG"]);
    let (app, jws, conv) = c.open("survey-as-text").await;
    sim.agent_accept(&conv).unwrap();
    assert_eq!(c.send(&app, &jws, close(&conv)).await.status, 200);
    let question = sim.conversation(&conv).unwrap().transcript.pop().unwrap();
    assert_eq!(question.metadata.as_ref().unwrap()[0]["type"], "Question");
    assert!(question.event.get("quickReplies").is_none(), "{question:?}");
}

#[tokio::test]
async fn structured_content_and_quick_replies_reach_only_a_client_that_announced_them() {
    let sim = start_default().await;
    let mut c = Client::new(&sim);
    c.features = None;
    let (app, jws, conv) = c.open("plain-client").await;
    let card = json!({"type": "vertical", "elements": [{"type": "text", "text": "Card"}]});
    assert!(matches!(
        sim.agent_send_rich(&conv, card.clone(), None),
        Err(SimError::NotAnnounced("RICH_CONTENT"))
    ));
    assert!(matches!(
        sim.agent_send_quick_replies(&conv, "Pick", json!(["Yes", "No"])),
        Err(SimError::NotAnnounced("QUICK_REPLIES"))
    ));
    // Over HTTP, the agent console is told why.
    let r = c
        .http
        .post(format!(
            "{}/sim/conversations/{conv}/messages",
            sim.base_url()
        ))
        .json(&json!({"content": card}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("RICH_CONTENT"),
        "{body}"
    );
    assert!(
        sim.conversation(&conv).unwrap().transcript.is_empty(),
        "nothing was published"
    );

    // The next SEND announces RICH_CONTENT only: cards go, quick replies still do not.
    c.features = Some(vec!["RICH_CONTENT"]);
    assert_eq!(c.send(&app, &jws, text("1", &conv, "hi")).await.status, 200);
    sim.agent_send_rich(&conv, card, None).unwrap();
    assert!(matches!(
        sim.agent_send(
            &conv,
            AgentMessage {
                text: Some("Pick".into()),
                quick_replies: Some(json!(["Yes"])),
                ..Default::default()
            }
        ),
        Err(SimError::NotAnnounced("QUICK_REPLIES"))
    ));
    // A SEND without the header announces nothing any more.
    c.features = None;
    assert_eq!(
        c.send(&app, &jws, text("2", &conv, "again")).await.status,
        200
    );
    assert!(
        sim.agent_send_rich(&conv, json!({"type": "text", "text": "x"}), None)
            .is_err()
    );
}

#[tokio::test]
async fn the_token_request_is_refused_when_a_parameter_comes_twice() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let token = |query: &str| {
        format!(
            "{}/sentinel/api/account/{}/app/token?{query}",
            c.domain, c.acc
        )
    };
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.secret.as_str()),
    ];
    let r = c
        .http
        .post(token("v=1.0&grant_type=client_credentials"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type")
    );
    // Once, in the body: the documented request.
    let r = c
        .http
        .post(token("v=1.0"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn request_conversation(c: &Client, ext: &str, request: Value) -> (u16, Value) {
    let app = c.app_jwt().await;
    let jws = c.jws(&app, ext).await;
    let body = json!([
        {"kind": "req", "id": "1", "type": "userprofile.SetUserProfile", "body": {}},
        {"kind": "req", "id": "2", "type": "cm.ConsumerRequestConversation", "body": request}
    ]);
    let r = c
        .post_raw("conversation?v=3", Some(&app), Some(&jws), body.to_string())
        .await;
    (r.status, r.body)
}

#[tokio::test]
async fn a_conversation_context_without_its_type_is_refused() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let acc = sim.account_id();
    let (status, body) = request_conversation(
        &c,
        "untyped",
        json!({"brandId": acc, "channelType": "MESSAGING", "conversationContext": {"lang": "de-DE"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[1]["code"], "BAD_REQUEST");
    assert!(
        body[1]["body"]["msg"]
            .as_str()
            .unwrap()
            .contains("SharkContext"),
        "{body}"
    );
    assert!(sim.conversations().is_empty());
    let (status, _) = request_conversation(
        &c,
        "typed",
        json!({"brandId": acc, "channelType": "MESSAGING",
               "conversationContext": {"type": "SharkContext", "lang": "de-DE"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        sim.conversations()[0].context.as_ref().unwrap()["lang"],
        "de-DE"
    );
}

#[tokio::test]
async fn a_campaign_without_its_engagement_is_refused() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let acc = sim.account_id();
    for (ext, info) in [
        ("campaign-only", json!({"campaignId": "99999"})),
        ("engagement-only", json!({"engagementId": "888888"})),
    ] {
        let (status, body) = request_conversation(
            &c,
            ext,
            json!({"brandId": acc, "channelType": "MESSAGING", "campaignInfo": info}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body[1]["body"]["msg"]
                .as_str()
                .unwrap()
                .contains("campaignInfo")
        );
    }
    let (status, _) = request_conversation(
        &c,
        "both",
        json!({"brandId": acc, "channelType": "MESSAGING",
               "campaignInfo": {"campaignId": "99999", "engagementId": "888888"}}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_send_limit_counts_utf16_code_units() {
    let sim = start_default().await;
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("emoji").await;
    // 3,000 emoji: 3,000 characters as Rust counts them, 6,000 UTF-16 code units as Java does.
    let long = "👋".repeat(3000);
    let request = text("1", &conv, &long);
    assert!(request.to_string().chars().count() < 5000);
    let r = c.send(&app, &jws, request).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["body"]["msg"], "Bad Request");
    // Within the limit in code units: accepted.
    let r = c
        .send(&app, &jws, text("2", &conv, &"👋".repeat(2300)))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn survey_events_name_only_their_dialog() {
    let rx = Receiver::start().await;
    let sim = start(surveyed()).await;
    sim.set_webhook_endpoint(&rx.url);
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("surveyed").await;
    sim.agent_send_text(&conv, "Bye").unwrap();
    assert_eq!(c.send(&app, &jws, close(&conv)).await.status, 200);
    let survey = sim
        .conversation(&conv)
        .unwrap()
        .survey_dialog()
        .unwrap()
        .to_owned();
    let got = rx
        .wait(|all| {
            all.iter().any(|r| {
                kind(r) == "ContentEvent"
                    && r.json()["body"]["changes"][0]["dialogId"] == survey.as_str()
            })
        })
        .await;
    for r in got.iter().filter(|r| kind(r) != "ExConversation") {
        let change = &r.json()["body"]["changes"][0];
        if change["dialogId"] == survey.as_str() {
            assert!(change.get("conversationId").is_none(), "{change}");
        } else {
            assert_eq!(change["conversationId"], conv.as_str());
        }
    }
}

#[tokio::test]
async fn routing_moves_a_conversation_off_skill_minus_one_before_an_agent_joins() {
    let rx = Receiver::start().await;
    let sim = start(SimConfig {
        routed_skill_id: Some("4711".into()),
        ..Default::default()
    })
    .await;
    sim.set_webhook_endpoint(&rx.url);
    let c = Client::new(&sim);
    let (_, _, conv) = c.open("routed").await;
    let got = rx.wait(|all| all.len() >= 2).await;
    let skills: Vec<Value> = got
        .iter()
        .map(|r| r.json()["body"]["changes"][0]["result"]["conversationDetails"]["skillId"].clone())
        .collect();
    assert_eq!(skills, vec![json!("-1"), json!("4711")]);
    assert_eq!(sim.conversation(&conv).unwrap().skill_id, "4711");
    assert!(sim.conversation(&conv).unwrap().assigned_agent().is_none());
}

#[tokio::test]
async fn a_late_notification_type_is_overtaken_by_the_others() {
    let rx = Receiver::start().await;
    let sim = start_default().await;
    sim.set_webhook_endpoint(&rx.url);
    sim.apply_faults(FaultRequest {
        delay_types: Some(BTreeMap::from([(
            "cqm.ExConversationChangeNotification".to_owned(),
            300,
        )])),
        ..Default::default()
    });
    let c = Client::new(&sim);
    let (app, jws, conv) = c.open("late").await;
    assert_eq!(
        c.send(&app, &jws, text("1", &conv, "first")).await.status,
        200
    );
    let got = rx.wait(|all| all.len() >= 2).await;
    assert_eq!(kind(&got[0]), "ContentEvent");
    assert_eq!(kind(&got[1]), "ExConversation");
}
